//! wRPC on NATS: serving this host's component exports to the lattice, and sending component
//! imports that nothing on this host provides to their link targets.
//!
//! Subjects follow wasmCloud: `{lattice}.{target id}.wrpc.0.0.1.{instance}.{function}`, with the
//! queue group `{lattice}.{target id}` so that one replica in the lattice takes each call.

use crate::metrics::{HostMetrics, WrpcOutcome};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::io::AsyncRead;
use tokio::task::JoinSet;
use tracing::Instrument as _;
use trellis_providers::trace_context;
use trellis_runtime::{
    ComponentHandle, InterfaceName, RemoteCall, RemoteIncoming, RemoteInvocation, RemoteInvoker,
    RemoteOutgoing, Runtime,
};
use wrpc_transport::{Invoke as _, Serve as _};

use crate::store::LinkStore;
use trellis_deployer::wire::DEFAULT_LINK_NAME;

/// How long the caller waits for the results, in milliseconds: the serving host stops the call
/// then rather than work for a caller that has given up. Callers that do not send it (wasmCloud
/// hosts, providers) get the component's own time limit.
const TIMEOUT_HEADER: &str = "trellis-timeout-ms";

/// Why a remote call could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error(
        "component `{source_id}` has no `{link_name}` link for `{interface}`: put a link from it \
         to a component or provider that exports `{interface}`"
    )]
    NoLink {
        source_id: String,
        link_name: String,
        interface: String,
    },
    #[error("`{0}` is not an interface name; only interface imports go over the lattice")]
    NotAnInterface(String),
}

/// What every wRPC client of this host shares.
#[derive(Clone)]
pub struct Lattice {
    pub nats: async_nats::Client,
    pub lattice: String,
    pub links: Arc<LinkStore>,
    pub timeout: Duration,
    /// One NATS wRPC client per target prefix: each owns an inbox subscription.
    clients: Arc<Mutex<HashMap<String, wrpc_transport_nats::Client>>>,
    /// Counts the calls components send.
    metrics: Arc<HostMetrics>,
}

impl Lattice {
    pub fn new(
        nats: async_nats::Client,
        lattice: &str,
        links: Arc<LinkStore>,
        timeout: Duration,
        metrics: Arc<HostMetrics>,
    ) -> Self {
        Self {
            nats,
            lattice: lattice.to_string(),
            links,
            timeout,
            clients: Default::default(),
            metrics,
        }
    }

    /// The prefix of every subject a lattice ID serves.
    fn prefix(&self, id: &str) -> String {
        format!("{}.{id}", self.lattice)
    }

    pub(crate) async fn client(&self, target: &str) -> anyhow::Result<wrpc_transport_nats::Client> {
        let prefix = self.prefix(target);
        if let Some(client) = self.clients.lock().unwrap().get(&prefix) {
            return Ok(client.clone());
        }
        let client =
            wrpc_transport_nats::Client::new(self.nats.clone(), prefix.clone(), None).await?;
        Ok(self
            .clients
            .lock()
            .unwrap()
            .entry(prefix)
            .or_insert(client)
            .clone())
    }

    /// Where `call`'s import of `instance` goes, with the headers that tell the target who calls
    /// through which link (`source-id`, `link-name`): the target the component chose through
    /// `wasmcloud:bus/lattice`, else its link (by the link name it chose, `default` unless it
    /// chose one).
    pub(crate) fn route(
        &self,
        call: &RemoteCall,
        instance: &str,
    ) -> Result<(String, HeaderMap), RpcError> {
        let interface = InterfaceName::parse(instance)
            .ok_or_else(|| RpcError::NotAnInterface(instance.to_string()))?
            .unversioned();
        let link_name = call
            .selection
            .link_name(&interface)
            .unwrap_or(DEFAULT_LINK_NAME);
        let target = match call.selection.target(&interface) {
            Some(target) => target.to_string(),
            None => self.target(&call.caller, link_name, instance)?,
        };
        let mut headers = HeaderMap::new();
        headers.insert("source-id", &*call.caller);
        headers.insert("link-name", link_name);
        headers.insert(
            TIMEOUT_HEADER,
            self.timeout.as_millis().to_string().as_str(),
        );
        Ok((target, headers))
    }

    /// The target of `source`'s `link_name` link for `instance` (`ns:pkg/iface@ver`).
    fn target(&self, source: &str, link_name: &str, instance: &str) -> Result<String, RpcError> {
        let interface = InterfaceName::parse(instance)
            .ok_or_else(|| RpcError::NotAnInterface(instance.to_string()))?;
        self.links
            .links_from(source)
            .into_iter()
            .find(|link| {
                link.name == link_name
                    && link.covers(
                        &interface.namespace,
                        &interface.package,
                        &interface.interface,
                    )
            })
            .map(|link| link.target)
            .ok_or_else(|| RpcError::NoLink {
                source_id: source.to_string(),
                link_name: link_name.to_string(),
                interface: interface.unversioned(),
            })
    }
}

impl RemoteInvoker for Lattice {
    fn invoke(
        &self,
        call: RemoteCall,
        instance: &str,
        func: &str,
        params: Bytes,
    ) -> RemoteInvocation {
        let lattice = self.clone();
        // The caller's span (its invocation) is current here; the call's span ends when the
        // results have been read.
        let span = tracing::info_span!(
            target: trace_context::TARGET,
            "wrpc call",
            otel.name = %format_args!("{instance}/{func}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "wrpc",
            rpc.service = instance,
            rpc.method = func,
            wasmcloud.component.id = &*call.caller,
            wasmcloud.target.id = tracing::field::Empty,
        );
        let (instance, func) = (instance.to_string(), func.to_string());
        let started = std::time::Instant::now();
        Box::pin(async move {
            let mut outcome = WrpcOutcome::NoLink;
            let sent = async {
                let (target, mut headers) = lattice.route(&call, &instance)?;
                outcome = WrpcOutcome::Transport;
                span.record("wasmcloud.target.id", target.as_str());
                trace_context::inject_nats(&span, &mut headers);
                let client = lattice.client(&target).await?;
                // No async values cross, so there are no result paths to subscribe.
                let no_async_results: [[Option<usize>; 0]; 0] = [];
                let (outgoing, incoming) = client
                    .invoke(Some(headers), &instance, &func, params, no_async_results)
                    .await?;
                let outgoing: RemoteOutgoing = Box::new(outgoing);
                let incoming: RemoteIncoming = Box::new(CallResults {
                    inner: incoming,
                    _span: span.clone(),
                    started,
                    caller: call.caller.clone(),
                    failed: false,
                    metrics: lattice.metrics.clone(),
                });
                anyhow::Ok((outgoing, incoming))
            };
            let sent = sent.await;
            if let Err(error) = &sent {
                span.record("otel.status_code", "ERROR");
                tracing::warn!(target: trace_context::TARGET, parent: &span, "{error:#}");
                lattice.metrics.wrpc_call(&call.caller, outcome);
            }
            sent
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn check_link(&self, caller: &str, link_name: &str, interface: &str) -> Result<(), String> {
        self.target(caller, link_name, interface)
            .map(drop)
            .map_err(|error| error.to_string())
    }
}

/// Serves a component's exports on the lattice for as long as it lives; dropping it stops.
pub struct ExportServer {
    tasks: JoinSet<()>,
}

impl ExportServer {
    /// Subscribes every exported function of `component_id` (functions that pass resources are
    /// left out, as wasmCloud does), `wasi:http/incoming-handler` as `wrpc:http` (see
    /// [`crate::http_bridge`]), `wasi:keyvalue` as `wrpc:keyvalue` (see
    /// [`crate::translated::keyvalue::component`]) and `wasi:blobstore` as `wrpc:blobstore` (see
    /// [`crate::translated::blobstore::component`]). Calls run on the component as it was
    /// started, through its handle: serving one never waits on the runtime's lifecycle.
    pub async fn start(
        lattice: &Lattice,
        runtime: &Runtime,
        component_id: &str,
    ) -> anyhow::Result<Self> {
        let Some(handle) = runtime.component(component_id) else {
            anyhow::bail!("component `{component_id}` is not running here");
        };
        let prefix = lattice.prefix(component_id);
        let server = wrpc_transport_nats::Client::new(
            lattice.nats.clone(),
            prefix.clone(),
            Some(prefix.into()),
        )
        .await?;
        let mut tasks = JoinSet::new();
        // A service's `wasi:cli/run` is its host's to run, not the lattice's to call.
        let served = handle
            .exported_functions()
            .into_iter()
            .filter(|(instance, _)| !instance.starts_with("wasi:cli/run@"));
        for (instance, function) in served {
            let no_async_params: Vec<Box<[Option<usize>]>> = Vec::new();
            let mut invocations =
                Box::pin(server.serve(&instance, &function, no_async_params).await?);
            let component = handle.clone();
            tasks.spawn(async move {
                while let Some(invocation) = invocations.next().await {
                    let (headers, tx, rx) = match invocation {
                        Ok(invocation) => invocation,
                        Err(error) => {
                            tracing::warn!(component = %component.id(), %instance, %function, "accepting invocation: {error:#}");
                            continue;
                        }
                    };
                    let (component, instance, function) =
                        (component.clone(), instance.clone(), function.clone());
                    let deadline = caller_deadline(headers.headers.as_ref());
                    let span = serve_span(&component, &instance, &function, headers.headers.as_ref());
                    // Detached: a call in flight finishes even when serving stops.
                    tokio::spawn(async move {
                        let served = component.serve_invocation(&instance, &function, deadline, rx, tx).await;
                        if served.is_err() {
                            tracing::Span::current().record("otel.status_code", "ERROR");
                        }
                        match served {
                            // Logged by the runtime, with the limit.
                            Err(error) if error.budget_exceeded().is_some() => {}
                            Err(error) => {
                                tracing::warn!(component = %component.id(), %instance, %function, "wRPC invocation failed: {error}");
                            }
                            Ok(()) => {}
                        }
                    }.instrument(span));
                }
            });
        }
        crate::http_bridge::serve::serve(&server, &handle, &mut tasks).await?;
        crate::translated::keyvalue::component::serve(&server, &handle, &mut tasks).await?;
        crate::translated::blobstore::component::serve(
            &server,
            &handle,
            lattice.timeout,
            &mut tasks,
        )
        .await?;
        Ok(Self { tasks })
    }
}

/// The span of serving one invocation, continuing the caller's trace from the message headers.
fn serve_span(
    component: &ComponentHandle,
    instance: &str,
    function: &str,
    headers: Option<&HeaderMap>,
) -> tracing::Span {
    let span = tracing::info_span!(
        target: trace_context::TARGET,
        "wrpc serve",
        otel.name = %format_args!("{instance}/{function}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "wrpc",
        rpc.service = instance,
        rpc.method = function,
        wasmcloud.component.id = component.id(),
        wasmcloud.caller.id = tracing::field::Empty,
    );
    if !span.is_disabled()
        && let Some(caller) = headers.and_then(|headers| headers.get("source-id"))
    {
        span.record("wasmcloud.caller.id", caller.as_str());
    }
    trace_context::continue_from_nats(&span, headers);
    span
}

/// A call's result stream: the call's span stays open, and its time runs, until the results
/// have been read (or the caller gave up on them).
struct CallResults<R> {
    inner: R,
    _span: tracing::Span,
    started: std::time::Instant,
    caller: Arc<str>,
    /// Reading the results failed.
    failed: bool,
    metrics: Arc<HostMetrics>,
}

impl<R> Drop for CallResults<R> {
    fn drop(&mut self) {
        self.metrics.wrpc_call_ended(self.started.elapsed());
        let outcome = match self.failed {
            true => WrpcOutcome::Transport,
            false => WrpcOutcome::Ok,
        };
        self.metrics.wrpc_call(&self.caller, outcome);
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CallResults<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let read = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Err(_)) = &read {
            self.failed = true;
        }
        read
    }
}

/// The caller's [`TIMEOUT_HEADER`], if it sent a valid one.
fn caller_deadline(headers: Option<&HeaderMap>) -> Option<Duration> {
    let millis = headers?.get(TIMEOUT_HEADER)?.as_str().parse().ok()?;
    Some(Duration::from_millis(millis))
}

impl Drop for ExportServer {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}
