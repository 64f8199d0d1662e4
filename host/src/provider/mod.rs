//! External capability providers: native processes started from `file://` references (provider
//! archives or plain executables), handed their HostData, supervised and linked.
//!
//! - [`archive`]: from reference to executable (PAR parsing, claims, extraction).
//! - [`credentials`]: the NATS credentials providers are handed.
//! - [`host_data`]: the HostData stdin line and the links providers receive.
//! - [`process`]: the child process (environment, output capture, no orphans).
//! - [`supervisor`]: one task per provider: (re)start with capped exponential backoff, health
//!   checks and their events, link and config delivery, graceful stop.
//!
//! Restarts are published as `provider_restarted` (`host_id`, `provider_id`, `image_ref`,
//! `instance_id` of the new process, `restarts` so far, `reason` the previous one ended), an
//! event the reference host does not have (it restarts silently).

mod archive;
mod credentials;
mod host_data;
mod process;
mod supervisor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use archive::ProviderClaims;

use crate::connect::NatsAuth;
use crate::state::HostState;
use crate::telemetry::OtelConfig;
use trellis_deployer::wire::{Annotations, DEFAULT_LINK_NAME};

/// How external providers are checked, restarted and stopped.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    /// Time between health checks (`wasmbus.rpc.{lattice}.{provider}.health`).
    pub health_interval: Duration,
    /// How long a health check waits for its answer.
    pub health_timeout: Duration,
    /// Unanswered health checks in a row after which a provider is restarted.
    pub missed_health_checks: u32,
    /// How long a new process may take to answer its first health check.
    pub startup_grace: Duration,
    /// The first restart delay; doubled after each restart up to `restart_backoff_max`, and
    /// back to this once a restarted provider reports healthy.
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    /// How long a stopping provider gets to answer the shutdown request and exit before it is
    /// killed.
    pub shutdown_timeout: Duration,
    /// Where provider binaries are extracted from their archives (a per-host subdirectory).
    pub cache_dir: PathBuf,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            health_interval: Duration::from_secs(30),
            health_timeout: Duration::from_secs(2),
            missed_health_checks: 3,
            startup_grace: Duration::from_secs(10),
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(5),
            cache_dir: std::env::temp_dir().join("trellis-providers"),
        }
    }
}

/// Whether a `provider.start` reference is for an external provider (not a built-in): a
/// `file://` or an OCI reference.
pub fn is_external(reference: &str) -> bool {
    reference.starts_with("file://") || crate::oci::is_oci_reference(reference)
}

/// What wasmCloud 1.x hosts report as a provider's `image_ref` (events, inventory, its lattice
/// spec): a `file://` reference as the plain path it names (percent-decoded), an `oci://`
/// reference without its scheme, anything else as given. `wash start provider` waits for a
/// `provider_started` whose `image_ref` is the reference without `file://`.
pub fn reported_ref(reference: &str) -> String {
    if reference.starts_with("file://")
        && let Ok(url) = url::Url::parse(reference)
        && let Ok(path) = url.to_file_path()
    {
        return path.display().to_string();
    }
    reference
        .strip_prefix("oci://")
        .unwrap_or(reference)
        .to_string()
}

/// What the host reports about an external provider.
#[derive(Clone, Debug)]
pub struct ProviderInfo {
    /// The reference the provider was started from (`provider_ref`).
    pub image_ref: String,
    pub annotations: Annotations,
    /// Named configuration merged into the provider's config.
    pub config: Vec<String>,
    /// From the provider archive, once it has been read.
    pub claims: Option<ProviderClaims>,
}

struct Entry {
    info: ProviderInfo,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// The external providers of a host.
pub struct ExternalProviders {
    table: Mutex<BTreeMap<String, Entry>>,
    nats: async_nats::Client,
    /// The host's XKey; its public key goes into every HostData.
    host_xkey: nkeys::XKey,
    settings: ProviderSettings,
    rpc_timeout: Duration,
    /// Handed to providers, so they export telemetry where the host does.
    otel_config: OtelConfig,
    /// How the host joined NATS; providers are handed the matching credentials.
    auth: NatsAuth,
}

impl ExternalProviders {
    pub fn new(
        nats: async_nats::Client,
        settings: ProviderSettings,
        rpc_timeout: Duration,
        auth: NatsAuth,
        otel_config: OtelConfig,
    ) -> Self {
        Self {
            table: Mutex::default(),
            nats,
            host_xkey: nkeys::XKey::new(),
            settings,
            rpc_timeout,
            auth,
            otel_config,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.table().contains_key(id)
    }

    pub fn list(&self) -> Vec<(String, ProviderInfo)> {
        self.table()
            .iter()
            .map(|(id, e)| (id.clone(), e.info.clone()))
            .collect()
    }

    /// Registers `id` and starts it in the background (`provider_started` or
    /// `provider_start_failed` follow); `false` when the ID is already running here.
    pub fn start(state: &Arc<HostState>, id: &str, info: ProviderInfo) -> bool {
        let (stop, stop_rx) = watch::channel(false);
        {
            let mut table = state.external.table();
            if table.contains_key(id) {
                return false;
            }
            let entry = Entry {
                info: info.clone(),
                stop,
                task: None,
            };
            table.insert(id.to_string(), entry);
        }
        let supervisor = supervisor::Supervisor::new(state.clone(), id, info, stop_rx);
        let task = tokio::spawn(supervisor.run());
        match state.external.table().get_mut(id) {
            Some(entry) => entry.task = Some(task),
            // The start already failed and removed the entry; the task has ended.
            None => task.abort(),
        }
        true
    }

    /// Stops `id` (shutdown request, bounded wait, kill) and publishes `provider_stopped`;
    /// `None` when it is not running here.
    pub async fn stop(state: &HostState, id: &str) -> Option<ProviderInfo> {
        let entry = state.external.table().remove(id)?;
        entry.stop.send_replace(true);
        if let Some(mut task) = entry.task {
            let budget = state.external.settings.shutdown_timeout * 2 + Duration::from_secs(1);
            if tokio::time::timeout(budget, &mut task).await.is_err() {
                tracing::warn!(
                    provider = id,
                    "provider supervisor did not stop within {budget:?}"
                );
                task.abort();
            }
        }
        let data = json!({
            "host_id": state.host_id,
            "provider_id": id,
            "annotations": entry.info.annotations,
            "reason": "stop",
            "instance_id": id,
            "public_key": id,
            "link_name": DEFAULT_LINK_NAME,
        });
        state.events.publish("provider_stopped", data).await;
        Some(entry.info)
    }

    /// Stops every external provider, all at once.
    pub async fn stop_all(state: &HostState) {
        let ids: Vec<String> = state.external.table().keys().cloned().collect();
        futures::future::join_all(ids.iter().map(|id| Self::stop(state, id))).await;
    }

    /// Records the claims read from the provider's archive.
    fn set_claims(&self, id: &str, claims: ProviderClaims) {
        if let Some(entry) = self.table().get_mut(id) {
            entry.info.claims = Some(claims);
        }
    }

    /// Forgets a provider whose start failed.
    fn forget(&self, id: &str) {
        self.table().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::reported_ref;

    #[test]
    fn provider_references_are_reported_as_wasmcloud_reports_them() {
        assert_eq!(
            reported_ref("file:///tmp/http%20srv.par.gz"),
            "/tmp/http srv.par.gz"
        );
        assert_eq!(reported_ref("oci://ghcr.io/x/y:1.0"), "ghcr.io/x/y:1.0");
        assert_eq!(reported_ref("ghcr.io/x/y:1.0"), "ghcr.io/x/y:1.0");
        assert_eq!(
            reported_ref("trellis+builtin://keyvalue"),
            "trellis+builtin://keyvalue"
        );
    }
}
