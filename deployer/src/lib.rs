//! Trellis's built-in deployer, compatible with wadm: wadm (OAM) manifests are parsed and
//! validated ([`manifest`]), stored in JetStream KV like wadm does ([`store`]), served over the
//! wadm NATS API ([`api`]), and reconciled onto the lattice through the wasmCloud control
//! interface only (`component.scale`, `provider.start`, `link.put`, `config.put`, …).
//!
//! Data flows one way: CLI / NATS API → deployer → control interface → hosts.

pub mod api;
pub mod cli;
pub mod client;
pub mod connect;
pub mod lattice;
mod lease;
pub mod manifest;
pub mod plan;
pub mod spec;
pub mod status;
pub mod store;
pub mod wire;
mod worker;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::connect::NatsAuth;

pub use worker::MAX_ATTEMPTS;

/// How a deployer is configured.
#[derive(Clone, Debug)]
pub struct DeployerConfig {
    pub nats_url: String,
    pub nats_auth: NatsAuth,
    pub lattice: String,
    /// Reconcile at least this often, even without events.
    pub reconcile_interval: Duration,
    /// Timeout of each control-interface request.
    pub request_timeout: Duration,
    /// How long the lattice lease lasts without renewal (failover time after a crash).
    pub lease_ttl: Duration,
}

impl Default for DeployerConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_auth: NatsAuth::default(),
            lattice: "default".into(),
            reconcile_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(9),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeployerError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("subscribing to {subject}: {reason}")]
    Subscribe { subject: String, reason: String },
}

/// A running deployer (active, or standing by while another one holds the lattice lease).
pub struct Deployer {
    nats: async_nats::Client,
    tasks: Vec<JoinHandle<()>>,
    active: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    lease: JoinHandle<()>,
}

impl Deployer {
    /// Connects, opens the manifest store, starts the reconciler (with every app deployed
    /// before a restart), follows lattice events and serves the wadm API.
    pub async fn start(config: DeployerConfig) -> Result<Self, DeployerError> {
        let connect_error = |reason: String| DeployerError::Connect {
            url: config.nats_url.clone(),
            reason,
        };
        let nats = connect::options("trellis-deployer", &config.nats_auth)
            .await
            .map_err(connect_error)?
            .connect(&config.nats_url)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let subscribe =
            |subject: String, reason: async_nats::SubscribeError| DeployerError::Subscribe {
                subject,
                reason: reason.to_string(),
            };
        let js = async_nats::jetstream::new(nats.clone());
        let store = store::ManifestStore::open(&js, &config.lattice).await?;
        let status_stream = async_nats::jetstream::stream::Config {
            name: "wadm_status".into(),
            subjects: vec!["wadm.status.*.*".into()],
            max_messages_per_subject: 10,
            allow_direct: true,
            ..Default::default()
        };
        if let Err(e) = js.get_or_create_stream(status_stream).await {
            tracing::warn!("status stream wadm_status: {e}");
        }
        let statuses: worker::Statuses = Arc::new(RwLock::new(BTreeMap::new()));
        let (tx, rx) = mpsc::channel(1024);
        let lease = lease::Lease::open(&js, &config.lattice, config.lease_ttl).await?;
        let (active_tx, active) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let lease = tokio::spawn(lease.run(active_tx, stop_rx));
        let ctl = lattice::Ctl::new(nats.clone(), &config.lattice, config.request_timeout);
        let reconciler = worker::Worker::new(
            ctl,
            store.clone(),
            nats.clone(),
            &config.lattice,
            statuses.clone(),
            config.reconcile_interval,
        );
        let events_subject = format!("wasmbus.evt.{}.>", config.lattice);
        let mut events = nats
            .subscribe(events_subject.clone())
            .await
            .map_err(|e| subscribe(events_subject, e))?;
        let api_subject = format!("{}.>", api::prefix(&config.lattice));
        let api = Arc::new(api::Api {
            store: store.clone(),
            statuses,
            worker: tx.clone(),
            nats: nats.clone(),
            lattice: config.lattice.clone(),
        });
        let mut tasks = vec![tokio::spawn(reconciler.run(rx, active.clone()))];
        tasks.push(tokio::spawn(async move {
            while let Some(message) = events.next().await {
                let Ok(event) = serde_json::from_slice::<serde_json::Value>(&message.payload)
                else {
                    continue;
                };
                let name = message.subject.rsplit('.').next().unwrap_or_default();
                let msg = worker::Msg::Event {
                    name: name.to_string(),
                    source: event["source"].as_str().unwrap_or_default().to_string(),
                    data: event["data"].clone(),
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        }));
        let (serving_tx, mut serving) = watch::channel(false);
        tasks.push(tokio::spawn(serve_api(
            api,
            nats.clone(),
            api_subject,
            active.clone(),
            serving_tx,
        )));
        // Unless another deployer holds the lease, answer the API before returning.
        let mut first = active.clone();
        let settled = async {
            let _ = first.changed().await;
            if *first.borrow() {
                let _ = serving.wait_for(|s| *s).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), settled)
            .await
            .is_err()
        {
            tracing::warn!("the deployer lease or API subscription is slow to settle");
        }
        nats.flush().await.map_err(|e| DeployerError::Connect {
            url: config.nats_url.clone(),
            reason: e.to_string(),
        })?;
        tracing::info!(lattice = %config.lattice, "deployer started");
        Ok(Self {
            nats,
            tasks,
            active,
            stop,
            lease,
        })
    }

    /// Whether this deployer holds the lattice lease (serves the API and reconciles).
    pub fn is_active(&self) -> bool {
        *self.active.borrow()
    }

    /// Stops at once, as if the process had died: the lease is neither released nor renewed,
    /// so a standby takes over only when it expires (after the lease TTL), and whatever was
    /// under way is left for it to finish.
    pub fn abort(self) {
        self.lease.abort();
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Releases the lease (another deployer takes over at once), stops serving and
    /// reconciling, and drains the connection.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if tokio::time::timeout(Duration::from_secs(2), self.lease)
            .await
            .is_err()
        {
            tracing::warn!("releasing the deployer lease timed out");
        }
        for task in &self.tasks {
            task.abort();
        }
        if let Err(e) = self.nats.drain().await {
            tracing::debug!("draining the deployer's connection: {e}");
        }
    }
}

/// Serves the wadm API while this deployer is active; unsubscribes while it stands by.
async fn serve_api(
    api: Arc<api::Api>,
    nats: async_nats::Client,
    subject: String,
    mut active: watch::Receiver<bool>,
    serving: watch::Sender<bool>,
) {
    loop {
        if active.wait_for(|a| *a).await.is_err() {
            return;
        }
        let mut requests = match nats
            .queue_subscribe(subject.clone(), "wadm_server".into())
            .await
        {
            Ok(requests) => requests,
            Err(e) => {
                tracing::error!("subscribing to {subject}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = nats.flush().await {
            tracing::warn!("flushing the API subscription: {e}");
        }
        serving.send_replace(true);
        loop {
            tokio::select! {
                changed = active.changed() => {
                    if changed.is_err() || !*active.borrow() {
                        break;
                    }
                }
                message = requests.next() => {
                    let Some(message) = message else { break };
                    let (api, nats) = (api.clone(), nats.clone());
                    tokio::spawn(async move {
                        let reply = api
                            .respond(&message.subject, message.headers.as_ref(), &message.payload)
                            .await;
                        if let Some(inbox) = message.reply
                            && let Err(e) = nats.publish(inbox, reply.to_string().into()).await
                        {
                            tracing::warn!("replying to {}: {e}", message.subject);
                        }
                    });
                }
            }
        }
        serving.send_replace(false);
        if let Err(e) = requests.unsubscribe().await {
            tracing::debug!("leaving the API queue group: {e}");
        }
    }
}
