//! Everything a running host knows, shared by the control handlers, the heartbeat and the
//! lifecycle tasks.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use trellis_runtime::Runtime;

use crate::builtins::{BuiltinAlias, Plugins, Providers};
use crate::components::Components;
use crate::events::Events;
use crate::files::FilePolicy;
use crate::identity::Identity;
use crate::limits::HostLimits;
use crate::metrics::HostMetrics;
use crate::oci::Oci;
use crate::provider::ExternalProviders;
use crate::rpc::Lattice;
use crate::secrets::Secrets;
use crate::store::{ClaimsStore, ConfigStore, LinkStore};

/// A request to stop the host, with the time it may take (from `host.stop`'s `timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopRequest {
    pub timeout: Option<Duration>,
}

pub struct HostState {
    pub identity: Identity,
    pub host_id: String,
    pub lattice: String,
    pub nats_url: String,
    pub started: Instant,
    pub labels: RwLock<BTreeMap<String, String>>,
    pub runtime: Runtime,
    pub components: Components,
    pub links: Arc<LinkStore>,
    /// wRPC on NATS: serving exports and reaching link targets.
    pub rpc: Lattice,
    pub config: ConfigStore,
    /// Claims of the lattice's signed artifacts (`claims.get`).
    pub claims: ClaimsStore,
    /// The built-in plugins switched on, and the built-in providers started from them.
    pub plugins: Plugins,
    pub providers: Arc<Providers>,
    pub builtin_aliases: Vec<BuiltinAlias>,
    /// Provider processes started from `file://` references.
    pub external: ExternalProviders,
    /// Pulls OCI artifacts through the digest cache, with `registry.put` credentials.
    pub oci: Oci,
    /// Which `file://` references may be loaded.
    pub files: FilePolicy,
    /// Where host-path volumes may come from.
    pub volume_roots: Vec<std::path::PathBuf>,
    pub limits: HostLimits,
    /// Resolves `SECRET_…` references through the lattice's secrets backends.
    pub secrets: Secrets,
    pub events: Events,
    /// Host-wide counters for `/metrics` and `trellis.stats`.
    pub metrics: Arc<HostMetrics>,
    pub stop: watch::Sender<Option<StopRequest>>,
}

impl HostState {
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.labels.read().unwrap().clone()
    }
}
