//! Lattice state shared by every host through JetStream KV: links and claims in
//! `LATTICEDATA_{lattice}` and named configuration in `CONFIGDATA_{lattice}`. Each host keeps an
//! in-memory mirror of each kind, loaded at start and kept current by a watch.

mod claims;
mod config;
mod links;
mod mirror;

pub use claims::{ClaimsStore, ProviderClaims as StoredProviderClaims, StoredClaims};
pub use config::ConfigStore;
pub use links::{LinkError, LinkStore};

/// Why a lattice-state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening bucket `{bucket}`: {reason}")]
    Bucket { bucket: String, reason: String },
    #[error("reading `{key}`: {reason}")]
    Read { key: String, reason: String },
    #[error("writing `{key}`: {reason}")]
    Write { key: String, reason: String },
    #[error("`{key}` holds invalid JSON: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{key}` kept changing under concurrent writers; try again")]
    Contended { key: String },
}
