//! `wasmcloud:messaging@0.2.0` over the host's NATS connection: components send with
//! `consumer.publish` / `consumer.request` and receive, on their `handler.handle-message`
//! export, the messages of the subscriptions their binding config names:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `subscriptions` | comma-separated subjects (wildcards allowed), each optionally `subject\|queue-group` | none |
//!
//! These are the wasmCloud messaging-nats provider's names (in the lattice, the source config
//! of a link from the messaging provider to the component). That provider's connection keys
//! (`cluster_uris`, `client_jwt`, `client_seed`, `tls_ca`, …) are ignored: the plugin is handed
//! a client and uses it for everything.
//!
//! Each message runs `handle-message` on a fresh instance, with its subject, body and reply-to
//! subject as received; a handler's answer to a request is a `publish` to that reply-to.
//! Messages of one subscription are handled concurrently (at most [`MAX_IN_FLIGHT`] waiting or
//! running, then the subscription is read no further until one finishes), so their order is not
//! kept. A handler that traps or returns an error is logged; the subscription goes on. When the
//! config changes (a rebind), subscriptions still wanted stay as they are, so none of their
//! messages is lost; unbinding unsubscribes (and returns once the server knows), dropping what
//! the client had buffered.
//!
//! Sending is allowed to any subject except those of the lattice's control plane and the NATS
//! APIs ([`RESERVED_PREFIXES`]), for `subject` and `reply-to` alike: the wasmCloud provider
//! sends on a connection of its own, but this plugin sends on the host's, which may drive the
//! control interface and write the lattice's buckets. (wasmCloud also refuses to send for a
//! component that has no link to the provider; here the binding is what grants it.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use trellis_runtime::{
    Binding, ComponentHandle, Extensions, InterfaceName, InvocationCtx, InvokeError, Plugin,
};
use wasmtime::component::{HasData, Linker};

use crate::trace_context;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasmcloud:messaging/messaging",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use bindings::MessagingPre;
use bindings::wasmcloud::messaging::{consumer, types};
use types::BrokerMessage;

/// Messages of one subscription being handled or waiting for an instance at once.
pub const MAX_IN_FLIGHT: usize = 64;

/// Subject prefixes (whole tokens) a component may not send to or ask replies on.
pub const RESERVED_PREFIXES: [&str; 5] = ["wasmbus", "$JS", "$KV", "$O", "$SYS"];

/// Why a binding was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("bad subscription `{0}` (expected SUBJECT or SUBJECT|QUEUE-GROUP)")]
    BadSubscription(String),
    #[error("subscribing to `{subject}`: {message}")]
    Subscribe { subject: String, message: String },
}

/// One entry of the `subscriptions` config.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Subscription {
    subject: String,
    queue_group: Option<String>,
}

/// Parses `a.b, c.>|workers`: empty entries are skipped.
fn parse_subscriptions(text: &str) -> Result<Vec<Subscription>, MessagingError> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (subject, queue_group) = match entry.split_once('|') {
                Some((subject, group)) => (subject.trim(), Some(group.trim())),
                None => (entry, None),
            };
            if subject.is_empty() || queue_group.is_some_and(str::is_empty) {
                return Err(MessagingError::BadSubscription(entry.to_string()));
            }
            Ok(Subscription {
                subject: subject.to_string(),
                queue_group: queue_group.map(str::to_string),
            })
        })
        .collect()
}

fn is_reserved(subject: &str) -> bool {
    let first = subject.split('.').next().unwrap_or_default();
    RESERVED_PREFIXES.contains(&first)
}

/// A subscription and the task reading it; dropping it unsubscribes.
struct Reader {
    subscription: Subscription,
    task: JoinHandle<()>,
}

impl Reader {
    /// Unsubscribes: returns once the subscriber is gone and its unsubscribe is on its way.
    async fn close(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Aborting the task drops its subscriber, which unsubscribes; messages already being
        // handled finish.
        self.task.abort();
    }
}

/// Serves `wasmcloud:messaging` on one NATS connection.
pub struct MessagingPlugin {
    client: async_nats::Client,
    /// Component id → its subscriptions.
    readers: tokio::sync::Mutex<HashMap<String, Vec<Reader>>>,
}

impl MessagingPlugin {
    /// A plugin that sends and subscribes on `client`.
    pub fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            readers: tokio::sync::Mutex::default(),
        }
    }

    /// The readers `binding` asks for: those of `current` it still wants, new ones for the rest.
    /// The rest of `current` is dropped (unsubscribed).
    async fn reconcile(
        &self,
        binding: &Binding,
        mut current: Vec<Reader>,
    ) -> Result<Vec<Reader>, MessagingError> {
        if binding.exports.is_empty() {
            // Bound only to send: nothing to deliver.
            return Ok(Vec::new());
        }
        let wanted = binding
            .config
            .get("subscriptions")
            .map_or(Ok(Vec::new()), |text| parse_subscriptions(text))?;
        let mut readers = Vec::with_capacity(wanted.len());
        let mut started = Vec::new();
        for subscription in wanted {
            if let Some(kept) = current.iter().position(|r| r.subscription == subscription) {
                readers.push(current.swap_remove(kept));
                continue;
            }
            let subscriber = self.subscribe(&subscription).await?;
            started.push(subscription.subject.clone());
            readers.push(Reader {
                subscription,
                task: tokio::spawn(deliver(subscriber, binding.component.clone())),
            });
        }
        if !started.is_empty() {
            tracing::info!(
                component = binding.component_id,
                subjects = ?started,
                "messaging subscriptions started"
            );
        }
        Ok(readers)
    }

    async fn subscribe(
        &self,
        subscription: &Subscription,
    ) -> Result<async_nats::Subscriber, MessagingError> {
        let subject = subscription.subject.clone();
        let subscribed = match &subscription.queue_group {
            Some(group) => {
                self.client
                    .queue_subscribe(subject.clone(), group.clone())
                    .await
            }
            None => self.client.subscribe(subject.clone()).await,
        };
        subscribed.map_err(|error| MessagingError::Subscribe {
            subject,
            message: error.to_string(),
        })
    }
}

/// The trace context of a message the current invocation sends to `subject`, when tracing is
/// on (a producer span of its own, ended once the message is out); otherwise none, and the
/// message goes without headers as before.
fn publish_headers(subject: &str) -> Option<async_nats::HeaderMap> {
    let span = tracing::info_span!(
        target: trace_context::TARGET,
        "message publish",
        otel.name = %format_args!("send {subject}"),
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.destination.name = subject,
    );
    if span.is_disabled() {
        return None;
    }
    let mut headers = async_nats::HeaderMap::new();
    trace_context::inject_nats(&span, &mut headers);
    Some(headers)
}

/// Reads one subscription until it ends or its task is aborted, handling each message on a
/// task of its own.
async fn deliver(mut subscriber: async_nats::Subscriber, component: ComponentHandle) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(message) = subscriber.next().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let component = component.clone();
        tokio::spawn(async move {
            handle(&component, message).await;
            drop(permit);
        });
    }
}

/// Runs `handle-message` for one message on a fresh instance; failures are logged.
async fn handle(component: &ComponentHandle, message: async_nats::Message) {
    let span = tracing::info_span!(
        target: trace_context::TARGET,
        "message delivery",
        otel.name = %format_args!("process {}", message.subject),
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = message.subject.as_str(),
        wasmcloud.component.id = component.id(),
    );
    trace_context::continue_from_nats(&span, message.headers.as_ref());
    let message = BrokerMessage {
        subject: message.subject.to_string(),
        body: message.payload.to_vec(),
        reply_to: message.reply.map(|subject| subject.to_string()),
    };
    let outcome = async {
        let (mut instance, _permit) = component
            .new_instance_store("wasmcloud:messaging/handler", None)
            .await?;
        let guest = MessagingPre::new(instance.pre().clone())?;
        let handled = component
            .call(&mut instance, async |store| {
                let guest = guest.instantiate_async(&mut *store).await?;
                guest
                    .wasmcloud_messaging_handler()
                    .call_handle_message(&mut *store, &message)
                    .await
            })
            .await?;
        anyhow::Ok(handled)
    }
    .instrument(span)
    .await;
    let (id, subject) = (component.id(), &message.subject);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(
                component = id,
                subject,
                "message handler returned an error: {error}"
            )
        }
        Err(error)
            if error
                .downcast_ref::<InvokeError>()
                .is_some_and(|e| e.budget_exceeded().is_some()) => {}
        Err(error) => tracing::warn!(component = id, subject, "message handler failed: {error:#}"),
    }
}

/// Per-invocation state: the connection sends go out on.
struct Outbox(async_nats::Client);

/// What the generated `consumer` host trait is implemented for.
struct Sender {
    client: Option<async_nats::Client>,
}

struct SenderData;

impl HasData for SenderData {
    type Data<'a> = Sender;
}

fn sender(ctx: &mut InvocationCtx) -> Sender {
    Sender {
        client: ctx.extensions().get_mut::<Outbox>().map(|o| o.0.clone()),
    }
}

impl Sender {
    fn client(&self) -> Result<&async_nats::Client, String> {
        self.client
            .as_ref()
            .ok_or_else(|| "messaging is not available to this component".to_string())
    }
}

fn check_subject(subject: &str) -> Result<(), String> {
    if is_reserved(subject) {
        return Err(format!(
            "subject `{subject}` is reserved for the lattice and NATS ({} are not available)",
            RESERVED_PREFIXES.map(|p| format!("{p}.>")).join(", ")
        ));
    }
    Ok(())
}

impl types::Host for Sender {}

impl consumer::Host for Sender {
    async fn request(
        &mut self,
        subject: String,
        body: Vec<u8>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<BrokerMessage, String>> {
        let client = match self
            .client()
            .and_then(|c| check_subject(&subject).map(|()| c))
        {
            Ok(client) => client,
            Err(error) => return Ok(Err(error)),
        };
        let timeout = Duration::from_millis(timeout_ms.into());
        let mut request = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(timeout));
        if let Some(headers) = publish_headers(&subject) {
            request = request.headers(headers);
        }
        Ok(match client.send_request(subject.clone(), request).await {
            Ok(reply) => Ok(BrokerMessage {
                subject: reply.subject.to_string(),
                body: reply.payload.to_vec(),
                reply_to: reply.reply.map(|s| s.to_string()),
            }),
            Err(error) => Err(match error.kind() {
                async_nats::RequestErrorKind::TimedOut => {
                    format!("request to `{subject}` timed out after {timeout_ms} ms")
                }
                async_nats::RequestErrorKind::NoResponders => {
                    format!("no responders on `{subject}`")
                }
                _ => format!("request to `{subject}`: {error}"),
            }),
        })
    }

    async fn publish(&mut self, msg: BrokerMessage) -> wasmtime::Result<Result<(), String>> {
        let checked = self.client().and_then(|client| {
            check_subject(&msg.subject)?;
            msg.reply_to.as_deref().map_or(Ok(()), check_subject)?;
            Ok(client)
        });
        let client = match checked {
            Ok(client) => client,
            Err(error) => return Ok(Err(error)),
        };
        let BrokerMessage {
            subject,
            body,
            reply_to,
        } = msg;
        let published = match (reply_to, publish_headers(&subject)) {
            (Some(reply_to), Some(headers)) => {
                client
                    .publish_with_reply_and_headers(subject.clone(), reply_to, headers, body.into())
                    .await
            }
            (Some(reply_to), None) => {
                client
                    .publish_with_reply(subject.clone(), reply_to, body.into())
                    .await
            }
            (None, Some(headers)) => {
                client
                    .publish_with_headers(subject.clone(), headers, body.into())
                    .await
            }
            (None, None) => client.publish(subject.clone(), body.into()).await,
        };
        if let Err(error) = published {
            return Ok(Err(format!("publishing to `{subject}`: {error}")));
        }
        // Out of the client's buffer before the component goes on, as wasmCloud does.
        Ok(client
            .flush()
            .await
            .map_err(|error| format!("publishing to `{subject}`: {error}")))
    }
}

#[async_trait::async_trait]
impl Plugin for MessagingPlugin {
    fn id(&self) -> &str {
        "messaging"
    }

    fn imports(&self) -> Vec<InterfaceName> {
        ["types", "consumer"]
            .iter()
            .map(|i| {
                InterfaceName::parse(&format!("wasmcloud:messaging/{i}@0.2.0")).expect("valid name")
            })
            .collect()
    }

    fn exports(&self) -> Vec<InterfaceName> {
        vec![InterfaceName::parse("wasmcloud:messaging/handler@0.2.0").expect("valid name")]
    }

    async fn bind(&self, binding: &Binding) -> anyhow::Result<()> {
        let mut all = self.readers.lock().await;
        let readers = self.reconcile(binding, Vec::new()).await?;
        all.insert(binding.component_id.clone(), readers);
        Ok(())
    }

    /// Keeps the subscriptions the new config still names (unbinding first would lose their
    /// messages until they are back).
    async fn rebind(&self, binding: &Binding) -> anyhow::Result<()> {
        let mut all = self.readers.lock().await;
        let current = all.remove(&binding.component_id).unwrap_or_default();
        let readers = self.reconcile(binding, current).await?;
        all.insert(binding.component_id.clone(), readers);
        Ok(())
    }

    /// Returns once the server has stopped delivering to the component's subscriptions: a
    /// request sent after the component stopped finds no responder, rather than a subscriber
    /// that is going away and leaves it to time out.
    async fn unbind(&self, component_id: &str) {
        let readers = self.readers.lock().await.remove(component_id);
        let Some(readers) = readers.filter(|readers| !readers.is_empty()) else {
            return;
        };
        for reader in readers {
            reader.close().await;
        }
        if let Err(error) = crate::nats::registered(&self.client).await {
            tracing::debug!(component = component_id, "unsubscribing: {error}");
        }
    }

    async fn stop(&self) -> anyhow::Result<()> {
        self.readers.lock().await.clear();
        Ok(())
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<InvocationCtx>,
        interface: &InterfaceName,
    ) -> anyhow::Result<()> {
        match interface.interface.as_str() {
            "types" => types::add_to_linker::<_, SenderData>(linker, sender)?,
            "consumer" => consumer::add_to_linker::<_, SenderData>(linker, sender)?,
            other => anyhow::bail!("the messaging plugin does not serve `{other}`"),
        }
        Ok(())
    }

    fn prepare(&self, _component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        extensions.insert(Outbox(self.client.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_parse_like_the_wasmcloud_provider() {
        let parsed = parse_subscriptions(" a.b , ,orders.>|workers,").unwrap();
        assert_eq!(
            parsed,
            [
                Subscription {
                    subject: "a.b".into(),
                    queue_group: None
                },
                Subscription {
                    subject: "orders.>".into(),
                    queue_group: Some("workers".into())
                },
            ]
        );
        assert!(parse_subscriptions("a|").is_err());
        assert!(parse_subscriptions("|q").is_err());
    }

    #[test]
    fn lattice_and_nats_api_subjects_are_reserved() {
        for subject in [
            "wasmbus.ctl.v1.default.host.stop",
            "$KV.CONFIGDATA_x.k",
            "$SYS",
        ] {
            assert!(is_reserved(subject), "{subject}");
        }
        for subject in ["wasmbusy.x", "orders.new", "_INBOX.abc.1", "a.wasmbus"] {
            assert!(!is_reserved(subject), "{subject}");
        }
    }
}
