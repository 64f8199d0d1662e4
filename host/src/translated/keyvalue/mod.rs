//! `wasi:keyvalue` (store, atomics, batch; 0.2.0-draft) ⇄ `wrpc:keyvalue/…@0.2.0-draft`, the
//! interface wasmCloud's keyvalue providers (keyvalue-nats, -redis, -vault) serve. Every function
//! takes the bucket as its name string; the WIT is vendored in `wit/deps/wrpc-keyvalue`.
//!
//! Calls are routed by the caller's link for the WASI interface (`wasi:keyvalue/store`,
//! `wasi:keyvalue/atomics`, `wasi:keyvalue/batch`) and carry the `source-id` and `link-name`
//! headers; the serving side picks the caller's backend from the link between them.

mod client;
pub mod component;
mod server;

pub use client::KeyvalueOverLattice;
pub use server::serve;

/// Client calls and server handlers for the three interfaces, from wit-bindgen-wrpc.
mod wrpc_bindings {
    wit_bindgen_wrpc::generate!({
        inline: "
            package trellis:translated-keyvalue;

            world translated {
                import wrpc:keyvalue/store@0.2.0-draft;
                import wrpc:keyvalue/atomics@0.2.0-draft;
                import wrpc:keyvalue/batch@0.2.0-draft;
                export wrpc:keyvalue/store@0.2.0-draft;
                export wrpc:keyvalue/atomics@0.2.0-draft;
                export wrpc:keyvalue/batch@0.2.0-draft;
            }
        ",
        path: "../wit/deps/wrpc-keyvalue",
        generate_all,
    });
}
