//! The `wasi:http` ⇄ `wrpc:http` bridge, on the bindings of [`crate::wrpc_http`]:
//!
//! - [`serve`]: a component's `wasi:http/incoming-handler@0.2.x` export is also served as
//!   `wrpc:http/incoming-handler@0.1.0` `handle`, so an http-server provider anywhere in the
//!   lattice (wasmCloud's, or another Trellis host's built-in) can call it;
//! - [`forward`]: the built-in HTTP server's routes to components that do not run here go out
//!   as that same call (the reconciler, [`crate::reconcile`], tells the server which routes
//!   those are).
//!
//! Method, path with query, scheme, authority, headers, body and trailers cross both ways;
//! bodies stream chunk by chunk ([`body`]); errors map to `wasi:http/types.error-code`.

pub(crate) mod body;
pub(crate) mod convert;
pub mod forward;
pub mod serve;
