//! The deployer's only way to the hosts: requests on the wasmCloud control interface
//! (`wasmbus.ctl.v1.{lattice}.…`), with the wire types of [`crate::wire`].

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::wire::{
    CtlResponse, HostInventory, HostSummary, Link, ScaleComponentCommand, StartProviderCommand,
    StopProviderCommand,
};

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("{subject}: no answer ({reason})")]
    Request { subject: String, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error("{subject}: unexpected reply: {reason}")]
    Decode { subject: String, reason: String },
}

/// A control-interface client on one NATS connection.
#[derive(Clone)]
pub struct Ctl {
    nats: async_nats::Client,
    prefix: String,
    timeout: Duration,
}

impl Ctl {
    pub fn new(nats: async_nats::Client, lattice: &str, timeout: Duration) -> Self {
        Self {
            nats,
            prefix: format!("wasmbus.ctl.v1.{lattice}"),
            timeout,
        }
    }

    async fn call(&self, subject: String, body: Vec<u8>) -> Result<Option<Value>, CtlError> {
        let request = self.nats.request(subject.clone(), body.into());
        let reply = match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                return Err(CtlError::Request {
                    subject,
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(CtlError::Request {
                    subject,
                    reason: format!("timed out after {:?}", self.timeout),
                });
            }
        };
        let envelope: CtlResponse<Value> =
            serde_json::from_slice(&reply.payload).map_err(|e| CtlError::Decode {
                subject: subject.clone(),
                reason: e.to_string(),
            })?;
        if envelope.success {
            Ok(envelope.response)
        } else {
            Err(CtlError::Refused(envelope.message))
        }
    }

    async fn send(&self, subject: String, body: &impl Serialize) -> Result<(), CtlError> {
        let body = serde_json::to_vec(body).map_err(|e| CtlError::Decode {
            subject: subject.clone(),
            reason: e.to_string(),
        })?;
        self.call(subject, body).await.map(drop)
    }

    async fn query<T: DeserializeOwned>(&self, subject: String) -> Result<Option<T>, CtlError> {
        match self.call(subject.clone(), Vec::new()).await? {
            None => Ok(None),
            Some(value) => serde_json::from_value(value)
                .map(Some)
                .map_err(|e| CtlError::Decode {
                    subject,
                    reason: e.to_string(),
                }),
        }
    }

    /// Every host that answers `host.ping` within `wait`.
    pub async fn ping(&self, wait: Duration) -> Vec<HostSummary> {
        let inbox = self.nats.new_inbox();
        let Ok(mut replies) = self.nats.subscribe(inbox.clone()).await else {
            return Vec::new();
        };
        let subject = format!("{}.host.ping", self.prefix);
        if self
            .nats
            .publish_with_reply(subject, inbox, Vec::new().into())
            .await
            .is_err()
        {
            return Vec::new();
        }
        let mut hosts = Vec::new();
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                reply = replies.next() => {
                    let Some(reply) = reply else { break };
                    if let Ok(CtlResponse::<Value> { success: true, response: Some(r), .. }) =
                        serde_json::from_slice(&reply.payload)
                        && let Ok(summary) = serde_json::from_value::<HostSummary>(r)
                    {
                        hosts.push(summary);
                    }
                }
            }
        }
        hosts
    }

    pub async fn inventory(&self, host_id: &str) -> Result<HostInventory, CtlError> {
        let subject = format!("{}.host.get.{host_id}", self.prefix);
        self.query(subject.clone())
            .await?
            .ok_or_else(|| CtlError::Decode {
                subject,
                reason: "no inventory in the reply".into(),
            })
    }

    pub async fn scale(&self, command: &ScaleComponentCommand) -> Result<(), CtlError> {
        let subject = format!("{}.component.scale.{}", self.prefix, command.host_id);
        self.send(subject, command).await
    }

    pub async fn start_provider(&self, command: &StartProviderCommand) -> Result<(), CtlError> {
        let subject = format!("{}.provider.start.{}", self.prefix, command.host_id);
        self.send(subject, command).await
    }

    pub async fn stop_provider(&self, command: &StopProviderCommand) -> Result<(), CtlError> {
        let subject = format!("{}.provider.stop.{}", self.prefix, command.host_id);
        self.send(subject, command).await
    }

    pub async fn links(&self) -> Result<Vec<Link>, CtlError> {
        let subject = format!("{}.link.get", self.prefix);
        Ok(self.query(subject).await?.unwrap_or_default())
    }

    pub async fn put_link(&self, link: &Link) -> Result<(), CtlError> {
        self.send(format!("{}.link.put", self.prefix), link).await
    }

    pub async fn delete_link(&self, link: &Link) -> Result<(), CtlError> {
        let body = serde_json::json!({
            "source_id": link.source_id,
            "name": link.name,
            "wit_namespace": link.wit_namespace,
            "wit_package": link.wit_package,
        });
        self.send(format!("{}.link.del", self.prefix), &body).await
    }

    /// A named config, `None` when it does not exist.
    pub async fn config(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, CtlError> {
        self.query(format!("{}.config.get.{name}", self.prefix))
            .await
    }

    pub async fn put_config(
        &self,
        name: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CtlError> {
        self.send(format!("{}.config.put.{name}", self.prefix), values)
            .await
    }

    pub async fn delete_config(&self, name: &str) -> Result<(), CtlError> {
        let subject = format!("{}.config.del.{name}", self.prefix);
        self.call(subject, Vec::new()).await.map(drop)
    }
}
