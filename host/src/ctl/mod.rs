//! The control interface server: subscribes the `wasmbus.ctl.v1.{lattice}` subjects, hands each
//! request to its operation (one small function per operation, grouped by area) and replies
//! with the `{success, message, response}` envelope.

mod components;
mod host;
mod lattice;
mod providers;
pub mod subjects;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::components::ComponentError;
use crate::state::HostState;
use crate::store::{LinkError, StoreError};
use subjects::Operation;
use trellis_deployer::wire::{CheckedNames, CtlResponse, check_config_name};

/// What an operation answers.
pub enum Reply {
    /// `success: true`, with an optional note and payload.
    Done {
        message: String,
        response: Option<Value>,
    },
    /// No reply at all (an auction this host does not bid in).
    Silent,
}

impl Reply {
    pub fn ok() -> Self {
        Self::note("")
    }

    pub fn note(message: impl Into<String>) -> Self {
        Self::Done {
            message: message.into(),
            response: None,
        }
    }

    pub fn with(response: impl Serialize) -> Result<Self, CtlError> {
        Ok(Self::Done {
            message: String::new(),
            response: Some(serde_json::to_value(response).map_err(CtlError::Encode)?),
        })
    }
}

/// Why a control request failed; the text becomes the reply's `message`.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("unsupported subject `{0}`")]
    UnsupportedSubject(String),
    #[error("invalid {operation} request: {reason}")]
    BadRequest {
        operation: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Refused(String),
    #[error("encoding the reply: {0}")]
    Encode(serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Component(#[from] ComponentError),
}

/// Decodes a JSON request body; the error names the operation and what is wrong.
pub fn decode<T: DeserializeOwned>(operation: &Operation, payload: &[u8]) -> Result<T, CtlError> {
    let bad = |reason: String| CtlError::BadRequest {
        operation: operation.name(),
        reason,
    };
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("empty payload, expected a JSON object".into()));
    }
    serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))
}

/// Decodes a request body whose names become subject tokens or KV keys, and checks the names:
/// a refused one fails the request, naming the field and the rule.
pub fn decode_checked<T: DeserializeOwned + CheckedNames>(
    operation: &Operation,
    payload: &[u8],
) -> Result<T, CtlError> {
    let value: T = decode(operation, payload)?;
    value.check_names().map_err(|error| CtlError::BadRequest {
        operation: operation.name(),
        reason: error.to_string(),
    })?;
    Ok(value)
}

/// A config name from a subject (`config.{put,get,del}.{name}`), checked like one in a body.
fn config_name<'a>(operation: &Operation, name: &'a str) -> Result<&'a str, CtlError> {
    check_config_name("config name", name).map_err(|error| CtlError::BadRequest {
        operation: operation.name(),
        reason: error.to_string(),
    })?;
    Ok(name)
}

/// Subscribes every control subject, reports that on `ready`, then serves requests until
/// `closing` turns true and waits (up to `drain`) for the requests already being handled.
pub async fn serve(
    state: Arc<HostState>,
    nats: async_nats::Client,
    mut closing: watch::Receiver<bool>,
    drain: Duration,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let mut streams = Vec::new();
    for subscription in subjects::subscriptions(&state.lattice, &state.host_id) {
        let subscribed = match subscription.queue_group {
            Some(group) => nats.queue_subscribe(subscription.subject, group).await,
            None => nats.subscribe(subscription.subject).await,
        };
        match subscribed {
            Ok(subscriber) => streams.push(subscriber),
            Err(error) => {
                let _ = ready.send(Err(error.to_string()));
                return;
            }
        }
    }
    // The server must know every subscription before the host announces itself.
    if let Err(error) = trellis_providers::nats::registered(&nats).await {
        let _ = ready.send(Err(error));
        return;
    }
    let _ = ready.send(Ok(()));
    let mut requests = futures::stream::select_all(streams);
    let mut handling = JoinSet::new();
    loop {
        tokio::select! {
            _ = closing.wait_for(|closing| *closing) => break,
            Some(_) = handling.join_next(), if !handling.is_empty() => {}
            message = requests.next() => {
                let Some(message) = message else { break };
                let state = state.clone();
                let nats = nats.clone();
                handling.spawn(async move {
                    let body = respond(&state, &message.subject, &message.payload)
                        .await
                        .map(|body| {
                            let max_payload = nats.server_info().max_payload;
                            within_max_payload(body, max_payload, &message.subject)
                        });
                    if let (Some(reply), Some(body)) = (message.reply, body)
                        && let Err(error) = nats.publish(reply, body).await
                    {
                        tracing::warn!(subject = %message.subject, "replying: {error}");
                    }
                });
            }
        }
    }
    drop(requests);
    let finished = async { while handling.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, finished).await.is_err() {
        tracing::warn!("control requests still running after {drain:?}; abandoning them");
    }
}

/// Handles one request and renders the reply body (`None`: stay silent).
async fn respond(state: &Arc<HostState>, subject: &str, payload: &[u8]) -> Option<Bytes> {
    let (name, outcome) = match subjects::parse(subject, &state.lattice, &state.host_id) {
        Some(operation) => (operation.name(), dispatch(state, &operation, payload).await),
        None => (
            "unsupported",
            Err(CtlError::UnsupportedSubject(subject.to_string())),
        ),
    };
    if !matches!(outcome, Ok(Reply::Silent)) {
        state.metrics.ctl_request(name, outcome.is_ok());
    }
    let envelope = match outcome {
        Ok(Reply::Silent) => return None,
        Ok(Reply::Done { message, response }) => CtlResponse {
            success: true,
            message,
            response,
        },
        Err(error) => {
            tracing::debug!(subject, "control request failed: {error}");
            CtlResponse {
                success: false,
                message: error.to_string(),
                response: None,
            }
        }
    };
    match serde_json::to_vec(&envelope) {
        Ok(body) => Some(body.into()),
        Err(error) => {
            tracing::error!(subject, "encoding a control reply: {error}");
            None
        }
    }
}

/// `body`, or in its place a failure naming the limit when the NATS server would refuse it
/// (a reply over its `max_payload` is dropped, and the client would only see a timeout): e.g.
/// the inventory of a host with many thousands of components.
fn within_max_payload(body: Bytes, max_payload: usize, subject: &str) -> Bytes {
    if max_payload == 0 || body.len() <= max_payload {
        return body;
    }
    tracing::warn!(
        subject,
        size = body.len(),
        max_payload,
        "a control reply is larger than the NATS server accepts"
    );
    let envelope = CtlResponse::<Value> {
        success: false,
        message: format!(
            "the reply ({} bytes) is larger than the NATS server's max_payload ({max_payload} \
             bytes): raise max_payload in the server's configuration",
            body.len()
        ),
        response: None,
    };
    serde_json::to_vec(&envelope).map_or(body, Bytes::from)
}

async fn dispatch(
    state: &Arc<HostState>,
    operation: &Operation<'_>,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    use Operation::*;
    match operation {
        HostPing => host::ping(state),
        TrellisStats => Reply::with(crate::metrics::host_stats(state)),
        HostGet => host::get(state),
        HostStop => host::stop(state, operation, payload),
        LabelPut => host::label_put(state, operation, payload).await,
        LabelDel => host::label_del(state, operation, payload).await,
        RegistryPut => host::registry_put(state, operation, payload),
        ComponentScale => components::scale(state, operation, payload),
        ComponentUpdate => components::update(state, operation, payload),
        ComponentAuction => components::auction(state, operation, payload),
        ProviderStart => providers::start(state, operation, payload).await,
        ProviderStop => providers::stop(state, operation, payload).await,
        ProviderAuction => providers::auction(state, operation, payload),
        LinkPut => lattice::link_put(state, operation, payload).await,
        LinkDel => lattice::link_del(state, operation, payload).await,
        LinkGet => lattice::link_get(state),
        ClaimsGet => lattice::claims_get(state),
        ConfigPut(name) => {
            let name = config_name(operation, name)?;
            lattice::config_put(state, operation, name, payload).await
        }
        ConfigGet(name) => lattice::config_get(state, config_name(operation, name)?),
        ConfigDel(name) => lattice::config_del(state, config_name(operation, name)?).await,
    }
}

/// Whether every constraint equals one of `labels` (auction placement).
fn constraints_match(
    constraints: &std::collections::BTreeMap<String, String>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    constraints
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}
