//! Trellis's built-in deployer, compatible with wadm: wadm (OAM) manifests are parsed and
//! validated ([`manifest`]), stored in JetStream KV like wadm does ([`store`]), served over the
//! wadm NATS API ([`api`]), and reconciled onto the lattice through the wasmCloud control
//! interface only (`component.scale`, `provider.start`, `link.put`, `config.put`, …).
//!
//! Data flows one way: CLI / NATS API → deployer → control interface → hosts.

pub mod api;
pub mod cli;
pub mod client;
pub mod lattice;
pub mod manifest;
pub mod plan;
pub mod spec;
pub mod status;
pub mod store;
mod worker;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use worker::MAX_ATTEMPTS;

/// How a deployer is configured.
#[derive(Clone, Debug)]
pub struct DeployerConfig {
    pub nats_url: String,
    pub lattice: String,
    /// Reconcile at least this often, even without events.
    pub reconcile_interval: Duration,
    /// Timeout of each control-interface request.
    pub request_timeout: Duration,
}

impl Default for DeployerConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            lattice: "default".into(),
            reconcile_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(2),
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

/// A running deployer.
pub struct Deployer {
    nats: async_nats::Client,
    tasks: Vec<JoinHandle<()>>,
}

impl Deployer {
    /// Connects, opens the manifest store, starts the reconciler (with every app deployed
    /// before a restart), follows lattice events and serves the wadm API.
    pub async fn start(config: DeployerConfig) -> Result<Self, DeployerError> {
        let nats = async_nats::ConnectOptions::new()
            .name("trellis-deployer")
            .connection_timeout(Duration::from_secs(5))
            .connect(&config.nats_url)
            .await
            .map_err(|e| DeployerError::Connect {
                url: config.nats_url.clone(),
                reason: e.to_string(),
            })?;
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
        for spec in api::deployed_apps(&store).await? {
            let _ = tx.send(worker::Msg::Deploy(Box::new(spec))).await;
        }
        let ctl = lattice::Ctl::new(nats.clone(), &config.lattice, config.request_timeout);
        let reconciler = worker::Worker::new(
            ctl,
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
        let mut requests = nats
            .queue_subscribe(api_subject.clone(), "wadm_server".into())
            .await
            .map_err(|e| subscribe(api_subject, e))?;
        let api = Arc::new(api::Api {
            store,
            statuses,
            worker: tx.clone(),
            nats: nats.clone(),
            lattice: config.lattice.clone(),
        });
        let mut tasks = vec![tokio::spawn(reconciler.run(rx))];
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
        let nats_api = nats.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(message) = requests.next().await {
                let (api, nats) = (api.clone(), nats_api.clone());
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
        }));
        nats.flush().await.map_err(|e| DeployerError::Connect {
            url: config.nats_url.clone(),
            reason: e.to_string(),
        })?;
        tracing::info!(lattice = %config.lattice, "deployer started");
        Ok(Self { nats, tasks })
    }

    /// Stops serving and reconciling, and drains the connection.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Err(e) = self.nats.drain().await {
            tracing::debug!("draining the deployer's connection: {e}");
        }
    }
}
