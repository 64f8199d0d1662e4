//! Built-in provider plugins for the Trellis runtime: the capabilities most applications need,
//! served inside the host through [`trellis_runtime::Plugin`], each one switchable on or off by
//! registering it (or not) with the runtime builder.
//!
//! | module | serves | backends / notes |
//! |---|---|---|
//! | [`logging`] | `wasi:logging/logging` (unversioned and `0.1.0-draft`) | `tracing` events |
//! | [`config`] | `wasi:config/store` and legacy `wasi:config/runtime` (`0.2.0-draft`) | the component's config map |
//! | [`keyvalue`] | `wasi:keyvalue` store, atomics, batch (`0.2.0-draft`) | in-memory, NATS JetStream KV |
//! | [`blobstore`] | `wasi:blobstore` (`0.2.0-draft`) | filesystem (rooted), in-memory |
//! | [`http_client`] | `wasi:http/outgoing-handler` | deny by default, allowed hosts per component |
//! | [`http_server`] | consumes `wasi:http/incoming-handler` exports | hyper HTTP/1.1 listeners |
//! | [`messaging`] | `wasmcloud:messaging/consumer@0.2.0`, consumes `handler` exports | NATS (the host's connection) |
//! | [`secrets`] | `wasmcloud:secrets/store` and `reveal` (`0.1.0-draft`) | what the embedder granted each component |
//!
//! Each plugin keeps per-component state keyed by component id (set in `bind`, dropped in
//! `unbind`) and hands it to each invocation through the store's extensions in `prepare`.

pub mod blobstore;
mod bound;
pub mod config;
pub mod http;
pub mod http_client;
pub mod http_server;

pub mod keyvalue;
pub mod logging;
pub mod messaging;
pub mod nats;
pub mod secrets;
pub mod trace_context;

pub use blobstore::BlobstorePlugin;
pub use config::ConfigPlugin;
pub use http_client::HttpClientPlugin;
pub use http_server::HttpServerPlugin;

pub use keyvalue::KeyvaluePlugin;
pub use logging::LoggingPlugin;
pub use messaging::MessagingPlugin;
pub use secrets::SecretsPlugin;
