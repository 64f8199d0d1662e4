//! A client of the wadm API over NATS (what `trellis app …` uses; it works against wadm too).

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::prefix;
use crate::connect::NatsAuth;

/// Why a request got no usable answer: one line, ending with a hint where one helps.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to NATS at {url}: {reason}; is nats-server running there? (`trellis up` starts one; --nats-url or TRELLIS_NATS_URL picks another)"
    )]
    Connect { url: String, reason: String },
    /// Nobody serves the wadm API on the lattice (NATS answered "no responders").
    #[error(
        "no deployer is answering on lattice `{0}` (start one: `trellis up`, `trellis deployer` or `trellis host --deployer`; --lattice or TRELLIS_LATTICE picks another lattice)"
    )]
    NoDeployer(String),
    #[error("{subject}: no reply within {timeout:?}; is the deployer overloaded or stopping?")]
    Timeout { subject: String, timeout: Duration },
    #[error("{subject}: {reason}")]
    Request { subject: String, reason: String },
    #[error("{subject}: reply is not JSON: {reason}")]
    Decode { subject: String, reason: String },
}

pub struct WadmClient {
    nats: async_nats::Client,
    lattice: String,
    timeout: Duration,
}

impl WadmClient {
    pub async fn connect(url: &str, lattice: &str, auth: &NatsAuth) -> Result<Self, ClientError> {
        let connect_error = |reason: String| ClientError::Connect {
            url: url.to_string(),
            reason,
        };
        let nats = crate::connect::options("trellis app", auth)
            .await
            .map_err(connect_error)?
            .connect(url)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        Ok(Self::new(nats, lattice))
    }

    pub fn new(nats: async_nats::Client, lattice: &str) -> Self {
        Self {
            nats,
            lattice: lattice.to_string(),
            timeout: Duration::from_secs(10),
        }
    }

    /// Sends `body` to `model.{op}[.{name}]` and returns the JSON reply.
    pub async fn request(
        &self,
        op: &str,
        name: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Value, ClientError> {
        let mut subject = format!("{}.{op}", prefix(&self.lattice));
        if let Some(name) = name {
            subject = format!("{subject}.{name}");
        }
        let fail = |reason: String| ClientError::Request {
            subject: subject.clone(),
            reason,
        };
        let reply = match tokio::time::timeout(
            self.timeout,
            self.nats.request(subject.clone(), body.into()),
        )
        .await
        {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                return Err(ClientError::NoDeployer(self.lattice.clone()));
            }
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(_) => {
                return Err(ClientError::Timeout {
                    subject,
                    timeout: self.timeout,
                });
            }
        };
        serde_json::from_slice(&reply.payload).map_err(|e| ClientError::Decode {
            subject: subject.clone(),
            reason: e.to_string(),
        })
    }

    /// Stores a manifest (as JSON, like wadm-client).
    pub async fn put(&self, document: &Value) -> Result<Value, ClientError> {
        self.request("put", None, document.to_string().into_bytes())
            .await
    }

    pub async fn deploy(&self, name: &str, version: Option<&str>) -> Result<Value, ClientError> {
        let body =
            version.map_or_else(Vec::new, |v| json!({"version": v}).to_string().into_bytes());
        self.request("deploy", Some(name), body).await
    }

    pub async fn undeploy(&self, name: &str) -> Result<Value, ClientError> {
        self.request("undeploy", Some(name), b"{}".to_vec()).await
    }

    pub async fn delete(&self, name: &str, version: Option<&str>) -> Result<Value, ClientError> {
        let body =
            version.map_or_else(Vec::new, |v| json!({"version": v}).to_string().into_bytes());
        self.request("del", Some(name), body).await
    }

    pub async fn status(&self, name: &str) -> Result<Value, ClientError> {
        self.request("status", Some(name), Vec::new()).await
    }

    /// The latest stored manifest of `name` (`{"result": "notfound"}` when none is stored).
    pub async fn get(&self, name: &str) -> Result<Value, ClientError> {
        self.request("get", Some(name), Vec::new()).await
    }

    pub async fn list(&self) -> Result<Value, ClientError> {
        self.request("get", None, Vec::new()).await
    }
}
