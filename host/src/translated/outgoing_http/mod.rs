//! `wasi:http/outgoing-handler@0.2.x` ⇄ `wrpc:http/outgoing-handler@0.1.0` `handle`, what
//! wasmCloud hosts send to the link target of a component's outgoing-handler import (its
//! http-client provider). Requests, responses, bodies and errors cross through the same
//! conversions as the incoming half of the bridge ([`crate::http_bridge`]).
//!
//! Calls are routed by the caller's link for `wasi:http/outgoing-handler` and carry the
//! `source-id` and `link-name` headers; the serving side applies the allowed hosts of the link
//! between them (deny by default, as the in-process http-client built-in does).

mod client;
mod server;

pub use client::OutgoingHttpOverLattice;
pub use server::serve;

/// The routing key: links name the WASI interface.
const INTERFACE: &str = "wasi:http/outgoing-handler@0.2.0";
