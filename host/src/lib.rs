//! The Trellis lattice host: joins a wasmCloud NATS lattice and behaves on the wire like a
//! wasmCloud 1.x host: it answers the control interface, publishes CloudEvents, shares links and
//! configuration through JetStream KV, and runs components on the Trellis runtime.
//!
//! [`LatticeHost::start`] brings a host up from a [`HostConfig`]; [`LatticeHost::stop`] takes it
//! down gracefully. The `trellis host` command is a thin CLI over these two.

mod builtins;
mod components;
mod connect;
mod ctl;
mod embedded;
mod events;
mod files;
mod grants;
mod http_bridge;
mod identity;
mod inventory;
mod limits;
pub mod metrics;
pub mod oci;
mod provider;
mod reconcile;
mod rpc;
pub mod secrets;
pub mod sign;
mod state;
mod store;
pub mod telemetry;
mod translated;
pub mod wrpc_http;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use trellis_runtime::{EngineConfig, Runtime};

pub use builtins::{Builtin, BuiltinAlias, BuiltinError, BuiltinRef, parse_switches};
pub use connect::NatsAuth;
pub use embedded::{EmbeddedNats, EmbeddedNatsError};
pub use files::{FilePolicy, FileRefused};
pub use identity::{IdentityError, builtin_labels, friendly_name};
pub use limits::{ComponentLimits, HostLimits, LimitError};
pub use provider::ProviderSettings;
pub use state::StopRequest;
pub use store::StoreError;

use crate::builtins::{Plugins, Providers};
use crate::components::Components;
use crate::events::Events;
use crate::identity::Identity;
use crate::metrics::HostMetrics;
use crate::oci::{Oci, OciSettings};
use crate::provider::ExternalProviders;
use crate::secrets::Secrets;
use crate::state::HostState;
use crate::store::{ClaimsStore, ConfigStore, LinkStore};
use crate::telemetry::{Observability, Signal};

/// How a host is configured.
#[derive(Clone, Debug)]
pub struct HostConfig {
    pub nats_url: String,
    pub nats_auth: NatsAuth,
    pub lattice: String,
    /// Merged over the built-in `hostcore.*` labels (which cannot be overridden).
    pub labels: BTreeMap<String, String>,
    /// An nkeys server seed (`SN…`); a fresh key is made when absent.
    pub host_seed: Option<String>,
    /// Friendly name; a random `adjective-noun-NNNN` when absent.
    pub name: Option<String>,
    pub heartbeat_interval: Duration,
    /// Link co-located components in-process (default); `false` sends every link over wRPC.
    pub in_process_links: bool,
    /// How long a component's call to the lattice may take.
    pub rpc_timeout: Duration,
    /// How long a graceful stop waits for running control requests and components.
    pub stop_timeout: Duration,
    /// The built-in provider plugins switched on (default: all of them).
    pub builtins: BTreeSet<Builtin>,
    /// Provider references `provider.start` treats as built-ins, besides the built-in schemes.
    pub builtin_aliases: Vec<BuiltinAlias>,
    /// Health checks, restarts and stops of external (process) providers.
    pub providers: ProviderSettings,
    /// The OCI cache, plain-HTTP registries and the `latest` policy.
    pub oci: OciSettings,
    /// Which `file://` components and providers may be loaded (none by default).
    pub files: FilePolicy,
    /// Host directories components may be given as volumes (their named config's
    /// `trellis.volume.*` keys), subdirectories included; none by default.
    pub volume_roots: Vec<std::path::PathBuf>,
    /// What components may use, unless they set lower limits of their own.
    pub limits: HostLimits,
    /// Run components built for the component model's async ABI (WASI 0.3), at a cost to every
    /// instance and cross-component call of the others; off by default.
    pub component_model_async: bool,
    /// Where to serve Prometheus metrics (`GET /metrics`); `None` opens no port.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The subject prefix of the lattice's secrets backends (wasmCloud's `wasmcloud.secrets`);
    /// `None`: secret references are refused.
    pub secrets_topic: Option<String>,
    /// OTLP export (the process installs the exporters; the host hands the settings to its
    /// providers and feeds its metrics to the exporter).
    pub observability: Observability,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_auth: NatsAuth::default(),
            lattice: "default".into(),
            labels: BTreeMap::new(),
            host_seed: None,
            name: None,
            heartbeat_interval: Duration::from_secs(30),
            in_process_links: true,
            rpc_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(10),
            builtins: Builtin::default_set(),
            builtin_aliases: Vec::new(),
            providers: ProviderSettings::default(),
            oci: OciSettings::default(),
            files: FilePolicy::default(),
            volume_roots: Vec::new(),
            limits: HostLimits::default(),
            component_model_async: false,
            secrets_topic: None,
            metrics_addr: None,
            observability: Observability::default(),
        }
    }
}

/// Why a host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "invalid lattice name `{0}`: use only letters, digits, `-` and `_` (it becomes a NATS \
         subject token and part of KV bucket names)"
    )]
    InvalidLattice(String),
    #[error("label `{0}` is reserved: keys starting with `hostcore.` are set by the host")]
    ReservedLabel(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("lattice state (JetStream KV; is JetStream enabled on the server?): {0}")]
    Store(#[from] StoreError),
    #[error("subscribing to the control interface: {0}")]
    Subscribe(String),
    #[error("starting the runtime: {0:#}")]
    Runtime(anyhow::Error),
    #[error("{0:#}")]
    Secrets(anyhow::Error),
    #[error("serving metrics on {addr} (--metrics-addr): {reason}")]
    Metrics {
        addr: std::net::SocketAddr,
        reason: String,
    },
}

/// A running lattice host.
///
/// A process that embeds one should install a global `tracing` subscriber first, as the
/// `trellis` binary does: without one, tracing's `log` feature (which oci-client enables)
/// evaluates the fields of disabled spans, and wrpc-transport-nats's writers then hex-format
/// every buffer they publish, which makes bulk wRPC traffic an order of magnitude slower.
pub struct LatticeHost {
    state: Arc<HostState>,
    nats: async_nats::Client,
    closing: watch::Sender<bool>,
    ctl: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    reconciler: JoinHandle<()>,
    metrics_server: Option<JoinHandle<()>>,
    metrics_addr: Option<std::net::SocketAddr>,
    stop_timeout: Duration,
}

impl LatticeHost {
    /// Connects, opens the lattice buckets, subscribes the control interface, then announces
    /// the host (`host_started`, first `host_heartbeat`).
    pub async fn start(config: HostConfig) -> Result<Self, HostError> {
        if config.lattice.is_empty()
            || !config
                .lattice
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(HostError::InvalidLattice(config.lattice));
        }
        if let Some(key) = config
            .labels
            .keys()
            .find(|k| identity::is_reserved_label(k))
        {
            return Err(HostError::ReservedLabel(key.clone()));
        }
        let identity = Identity::new(config.host_seed.as_deref(), config.name)?;
        let host_id = identity.host_id();
        let metrics = Arc::new(HostMetrics::default());
        let nats = connect::connect(&config.nats_url, &config.nats_auth, metrics.clone())
            .await
            .map_err(|reason| HostError::Connect {
                url: config.nats_url.clone(),
                reason,
            })?;
        let js = async_nats::jetstream::new(nats.clone());
        let links = Arc::new(LinkStore::open(&js, &config.lattice).await?);
        let store_config = ConfigStore::open(&js, &config.lattice).await?;
        let claims = ClaimsStore::open(&js, &config.lattice).await?;
        let lattice = rpc::Lattice::new(
            nats.clone(),
            &config.lattice,
            links.clone(),
            config.rpc_timeout,
            metrics.clone(),
        );
        let forwarder = Arc::new(http_bridge::forward::Forwarder {
            lattice: lattice.clone(),
        });
        let plugins = Plugins::new(&config.builtins, &nats, forwarder);
        let forwarding = translated::forwarding_plugins(&lattice);
        let providers = Arc::new(Providers::default());
        let mut builder = Runtime::builder();
        if config.observability.enabled(Signal::Metrics) {
            builder = builder.call_observer(Arc::new(telemetry::CallDurations::new(
                &opentelemetry::global::meter("trellis"),
                &host_id,
            )));
        }
        let runtime = plugins
            .all
            .iter()
            .chain(&forwarding)
            .fold(builder, |builder, plugin| builder.plugin(plugin.clone()))
            .remote(Arc::new(lattice.clone()))
            .links(Arc::new(reconcile::RuntimeLinks {
                store: links.clone(),
                providers: providers.clone(),
            }))
            .in_process_links(config.in_process_links)
            .engine(EngineConfig {
                component_model_async: config.component_model_async,
                ..config.limits.engine_config()
            })
            .build()
            .await
            .map_err(HostError::Runtime)?;
        let secrets = Secrets::new(nats.clone(), config.secrets_topic, &identity)
            .map_err(HostError::Secrets)?;
        let mut labels = config.labels;
        labels.extend(builtin_labels());
        let state = Arc::new(HostState {
            events: Events::new(nats.clone(), &config.lattice, &host_id),
            identity,
            host_id,
            lattice: config.lattice,
            nats_url: config.nats_url,
            started: Instant::now(),
            labels: RwLock::new(labels),
            runtime,
            components: Components::default(),
            links,
            rpc: lattice.clone(),
            config: store_config,
            claims,
            plugins,
            providers,
            builtin_aliases: config.builtin_aliases,
            external: ExternalProviders::new(
                nats.clone(),
                config.providers,
                config.rpc_timeout,
                config.nats_auth.clone(),
                config.observability.otel_config(),
            ),
            oci: Oci::new(config.oci),
            files: config.files,
            volume_roots: config.volume_roots,
            limits: config.limits,
            secrets,
            metrics: metrics.clone(),
            stop: watch::Sender::new(None),
        });

        // Bound before anything is announced: a taken address fails the start.
        let metrics_listener =
            match config.metrics_addr {
                Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                    HostError::Metrics {
                        addr,
                        reason: e.to_string(),
                    }
                })?),
                None => None,
            };
        let metrics_addr = metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok());
        let metrics_server =
            metrics_listener.map(|listener| tokio::spawn(metrics::serve(state.clone(), listener)));
        if config.observability.enabled(Signal::Metrics) {
            telemetry::observe_host(
                &opentelemetry::global::meter("trellis"),
                Arc::downgrade(&state),
            );
        }
        let (closing, closing_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let ctl = tokio::spawn({
            let (state, nats, drain) = (state.clone(), nats.clone(), config.stop_timeout);
            async move {
                ctl::serve(state, nats, closing_rx, drain, ready_tx).await;
            }
        });
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(HostError::Subscribe(reason)),
            Err(_) => return Err(HostError::Subscribe("control task ended".into())),
        }

        let started = serde_json::json!({
            "friendly_name": state.identity.friendly_name,
            "labels": state.labels(),
            "uptime_seconds": 0,
            "version": state.identity.version,
        });
        state.events.publish("host_started", started).await;
        let reconciler = tokio::spawn(reconcile::run(state.clone()));
        let heartbeat = tokio::spawn(inventory::heartbeat(
            state.clone(),
            config.heartbeat_interval,
        ));
        tracing::info!(host_id = %state.host_id, name = %state.identity.friendly_name, lattice = %state.lattice, "host started");
        Ok(Self {
            state,
            nats,
            closing,
            ctl,
            heartbeat,
            reconciler,
            metrics_server,
            metrics_addr,
            stop_timeout: config.stop_timeout,
        })
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// The host ID (`N…`).
    pub fn host_id(&self) -> &str {
        &self.state.host_id
    }

    pub fn friendly_name(&self) -> &str {
        &self.state.identity.friendly_name
    }

    /// The runtime the host's components run on.
    pub fn runtime(&self) -> &Runtime {
        &self.state.runtime
    }

    /// Resolves when a `host.stop` request arrives.
    pub async fn stop_requested(&self) -> StopRequest {
        let mut requests = self.state.stop.subscribe();
        match requests.wait_for(Option::is_some).await {
            Ok(request) => request.unwrap_or(StopRequest { timeout: None }),
            // The sender lives in the state we hold, so this cannot close.
            Err(_) => StopRequest { timeout: None },
        }
    }

    /// Stops gracefully: stops taking requests and lets running ones finish (bounded by the
    /// stop timeout, or `deadline` if shorter), stops every component, publishes
    /// `host_stopped` and drains the NATS connection.
    pub async fn stop(self, deadline: Option<Duration>) -> anyhow::Result<()> {
        let budget = deadline.map_or(self.stop_timeout, |d| d.min(self.stop_timeout));
        self.heartbeat.abort();
        self.reconciler.abort();
        if let Some(server) = &self.metrics_server {
            server.abort();
        }
        self.closing.send_replace(true);
        if tokio::time::timeout(budget, self.ctl).await.is_err() {
            tracing::warn!("control interface did not stop within {budget:?}");
        }
        // Bounded by the provider shutdown timeout.
        ExternalProviders::stop_all(&self.state).await;
        let stopped = async {
            self.state.components.stop_all(&self.state).await;
            self.state.runtime.shutdown().await;
        };
        if tokio::time::timeout(budget, stopped).await.is_err() {
            tracing::warn!("components did not stop within {budget:?}");
        }
        let data = serde_json::json!({ "labels": self.state.labels() });
        self.state.events.publish("host_stopped", data).await;
        self.state.links.stop_watching();
        self.state.config.stop_watching();
        self.state.claims.stop_watching();
        // Bounded: with the server gone, flush and drain would wait for a reconnect forever.
        let closed = async {
            self.nats.flush().await?;
            self.nats.drain().await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(budget, closed).await {
            Ok(result) => result?,
            Err(_) => tracing::warn!("NATS did not drain within {budget:?}"),
        }
        tracing::info!(host_id = %self.state.host_id, "host stopped");
        Ok(())
    }
}
