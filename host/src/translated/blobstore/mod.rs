//! `wasi:blobstore` (blobstore, container, types; 0.2.0-draft) ⇄ `wrpc:blobstore/blobstore`, the
//! interface wasmCloud's blobstore providers (blobstore-fs, -s3, -azure) serve. Containers
//! travel as their names, objects as `object-id` records, object data and listings as wRPC
//! streams. Two versions are in use; the WIT of both is vendored in `wit/deps/wrpc-blobstore-*`:
//!
//! - `@0.2.0`, which current wasmCloud hosts call: functions that stream return a future too,
//!   carrying the outcome of the transfer, and `write-container-data` answers before the data
//!   has arrived;
//! - `@0.1.0`, which older providers serve: streams only, and `write-container-data` answers
//!   once it has all the data.
//!
//! Like a wasmCloud host, the client calls `@0.2.0` and falls back to `@0.1.0` when nobody
//! answers on the `@0.2.0` subject; the server serves both. Calls are routed by the caller's
//! link for `wasi:blobstore/blobstore` (whichever of the three interfaces the component called)
//! and carry the `source-id` and `link-name` headers; the serving side picks the caller's backend
//! from the link between them.

mod client;
pub mod component;
mod server;

pub use client::BlobstoreOverLattice;
pub use server::serve;

/// How much object data one stream item carries when the server sends an object.
const CHUNK: usize = 64 << 10;

/// Client calls and server handlers for both versions, from wit-bindgen-wrpc.
mod wrpc_bindings {
    wit_bindgen_wrpc::generate!({
        inline: "
            package trellis:translated-blobstore;

            world translated {
                import wrpc:blobstore/blobstore@0.2.0;
                import wrpc:blobstore/blobstore@0.1.0;
                export wrpc:blobstore/blobstore@0.2.0;
                export wrpc:blobstore/blobstore@0.1.0;
            }
        ",
        path: "../wit",
        generate_all,
    });
}
