//! What the HTTP client and server plugins share: the per-invocation `wasi:http` context (from
//! wasmtime-wasi-http) kept in the store's extensions, where outgoing requests go (an
//! [`OutgoingSender`]: sent from here within the allowed hosts, or handed to whoever else
//! serves `wasi:http/outgoing-handler`), and linking `wasi:http/types`, which several plugins
//! serve (whichever is consulted first links it).
//!
//! [`handle_request`] runs one request on a component's `wasi:http/incoming-handler` export
//! in-process: the built-in HTTP server uses it, and so does the lattice host when it serves
//! that export as `wrpc:http/incoming-handler` to other hosts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::{Request, Response};
use tracing::Instrument as _;
use trellis_runtime::{BudgetExceeded, ComponentHandle, InstanceStore, InvocationCtx, RemoteCall};

use crate::trace_context;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::{HyperIncomingBody, HyperOutgoingBody};
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttp, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
};

/// What drives a response's body once its head has arrived (wasmtime-wasi-http runs it).
pub type IoFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

/// A request on its way: the response head, and what drives its body.
pub type SendFuture = Box<
    dyn Future<Output = wasmtime_wasi_http::Result<(hyper::Response<WasiBody>, IoFuture)>> + Send,
>;

/// Hosts a component may reach with `wasi:http/outgoing-handler`: `host` (any port) or
/// `host:port`. Empty means nothing may be reached.
#[derive(Debug, Default, Clone)]
pub struct AllowedHosts(Vec<(String, Option<u16>)>);

impl AllowedHosts {
    /// Parses a comma-separated list such as `example.com,127.0.0.1:8080`.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut hosts = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (host, port) = match entry.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') || host.ends_with(']') => (
                    host,
                    Some(
                        port.parse::<u16>()
                            .map_err(|_| format!("bad port in `{entry}`"))?,
                    ),
                ),
                _ => (entry, None),
            };
            hosts.push((host.to_ascii_lowercase(), port));
        }
        Ok(Self(hosts))
    }

    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.0
            .iter()
            .any(|(h, p)| h.eq_ignore_ascii_case(host) && p.is_none_or(|p| p == port))
    }
}

/// Where a component's `wasi:http/outgoing-handler` requests go.
pub trait OutgoingSender: Send + Sync + 'static {
    /// Starts sending `request` for the invocation `caller` (absent when the runtime has no
    /// lattice); an error is an `error-code` the guest sees, not a trap.
    fn send(
        &self,
        caller: Option<&RemoteCall>,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> SendFuture;
}

impl AllowedHosts {
    /// `http-request-denied` unless `request`'s authority is allowed.
    pub fn check<B>(&self, request: &hyper::Request<B>) -> Result<(), ErrorCode> {
        let Some(authority) = request.uri().authority() else {
            return Err(ErrorCode::HttpRequestUriInvalid);
        };
        let use_tls = request.uri().scheme_str() == Some("https");
        let port = authority
            .port_u16()
            .unwrap_or(if use_tls { 443 } else { 80 });
        if self.allows(authority.host(), port) {
            Ok(())
        } else {
            tracing::debug!(
                host = authority.host(),
                port,
                "outgoing HTTP request denied"
            );
            Err(ErrorCode::HttpRequestDenied)
        }
    }
}

/// Sends from this host, and only to allowed hosts.
impl OutgoingSender for AllowedHosts {
    fn send(
        &self,
        _caller: Option<&RemoteCall>,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> SendFuture {
        let checked = self.check(&request);
        Box::new(async move {
            checked.map_err(wasmtime_wasi_http::Error::from)?;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            let io: IoFuture = Box::new(io);
            Ok((response.map(http_body_util::BodyExt::boxed_unsync), io))
        })
    }
}

/// The hooks wasmtime-wasi-http calls, with the invocation's caller as of the latest
/// `outgoing-handler` call (a component may choose another link between two requests).
struct Hooks {
    sender: Arc<dyn OutgoingSender>,
    caller: Option<RemoteCall>,
}

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        mut request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _outcome: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        // The guest's invocation span is current: the request continues its trace.
        let span = tracing::info_span!(
            target: trace_context::TARGET,
            "http client request",
            otel.name = %request.method(),
            otel.kind = "client",
            http.request.method = %request.method(),
            server.address = request.uri().host().unwrap_or_default(),
            url.full = %request.uri(),
        );
        trace_context::inject_http(&span, request.headers_mut());
        let sent = self.sender.send(self.caller.as_ref(), request, options);
        Box::new(Box::into_pin(sent).instrument(span))
    }
}

/// Per-invocation `wasi:http` state.
pub struct HttpState {
    ctx: WasiHttpCtx,
    hooks: Hooks,
}

impl HttpState {
    pub fn new(sender: Arc<dyn OutgoingSender>) -> Self {
        Self {
            ctx: WasiHttpCtx::new(),
            hooks: Hooks {
                sender,
                caller: None,
            },
        }
    }

    /// Nothing may be reached.
    pub(crate) fn deny_all() -> Self {
        Self::new(Arc::new(AllowedHosts::default()))
    }
}

/// The `wasi:http` view of an invocation; deny-all state when no plugin prepared one.
pub(crate) fn view(ctx: &mut InvocationCtx) -> WasiHttpCtxView<'_> {
    let (table, extensions) = ctx.table_and_extensions();
    let state = extensions.get_or_insert_with(HttpState::deny_all);
    WasiHttpCtxView {
        ctx: &mut state.ctx,
        table,
        hooks: &mut state.hooks,
    }
}

/// [`view`] for `wasi:http/outgoing-handler`, the only interface that sends: its hooks learn
/// the invocation's caller as of this call (the other `wasi:http` calls need not pay for it).
fn outgoing_view(ctx: &mut InvocationCtx) -> WasiHttpCtxView<'_> {
    let caller = ctx.remote_call().cloned();
    ctx.extensions()
        .get_or_insert_with(HttpState::deny_all)
        .hooks
        .caller = caller;
    view(ctx)
}

/// Links `wasi:http/types`.
pub fn add_types_to_linker(linker: &mut Linker<InvocationCtx>) -> wasmtime::Result<()> {
    use wasmtime_wasi_http::p2::bindings::{LinkOptions, http::types};
    types::add_to_linker::<_, WasiHttp>(linker, &LinkOptions::default().into(), view)
}

/// Links `wasi:http/outgoing-handler`: requests go to the invocation's [`OutgoingSender`].
pub fn add_outgoing_to_linker(linker: &mut Linker<InvocationCtx>) -> wasmtime::Result<()> {
    use wasmtime_wasi_http::p2::bindings::http::outgoing_handler;
    outgoing_handler::add_to_linker::<_, WasiHttp>(linker, outgoing_view)
}

/// Why a component gave no response to an HTTP request.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The handler answered with an error code instead of a response.
    #[error("the HTTP handler answered with an error: {0:?}")]
    Answered(ErrorCode),
    /// The handler trapped, returned without answering, or could not be started.
    #[error("the HTTP handler failed: {0}")]
    Failed(String),
    /// The handler was stopped by one of its component's limits (already logged by the runtime).
    #[error("the HTTP handler was stopped: {0}")]
    Limited(BudgetExceeded),
    /// The component runs elsewhere and could not be reached.
    #[error("the HTTP handler could not be reached: {0}")]
    Unreachable(String),
}

/// Instances of one component kept between requests, for a route that lets an instance serve
/// more than one (as `wasmtime serve --max-instance-reuse-count` does) or keeps instances warm:
/// a request takes an idle instance if there is one, and the instance goes back after a request
/// that ended without a trap, until it has served `requests_per_instance`. With `warm` above 0,
/// instances are also made ahead of requests: once a request's handler has ended, its task
/// makes instances until `warm` are idle, so that with one request per instance every request
/// still gets a fresh instance, its instantiation off the request's path. Idle instances hold
/// none of the component's `max_instances` permits and go with the pool.
pub struct InstancePool {
    requests_per_instance: u32,
    warm: usize,
    idle: Mutex<Vec<ReadyInstance>>,
    /// Instances being made ahead now.
    warming: AtomicUsize,
}

/// A guest instance with its store, and how many requests it has served.
struct ReadyInstance {
    instance: InstanceStore,
    proxy: Proxy,
    served: u32,
}

impl InstancePool {
    pub fn new(requests_per_instance: u32, warm: usize) -> Self {
        Self {
            requests_per_instance,
            warm,
            idle: Mutex::default(),
            warming: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Option<ReadyInstance> {
        self.idle.lock().unwrap().pop()
    }

    fn give_back(&self, ready: ReadyInstance) {
        if ready.served < self.requests_per_instance {
            self.idle.lock().unwrap().push(ready);
        }
    }

    /// Makes instances ahead until `warm` are idle or on their way (on the caller's task: the
    /// one that just served a request, after its handler).
    async fn refill(&self, handle: &ComponentHandle) {
        loop {
            let idle = self.idle.lock().unwrap().len();
            if idle + self.warming.load(Ordering::Relaxed) >= self.warm {
                return;
            }
            let _warming = Warming::start(&self.warming);
            match warm_instance(handle).await {
                Ok(ready) => self.idle.lock().unwrap().push(ready),
                // The next request makes its own instance, and reports what fails.
                Err(error) => {
                    tracing::debug!(component = %handle.id(), "making an instance ahead: {error:#}");
                    return;
                }
            }
        }
    }
}

/// Counts an instance being made ahead for as long as it lives (its task may be cancelled).
struct Warming<'a>(&'a AtomicUsize);

impl<'a> Warming<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Warming<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An instance of `handle` made ahead of its request.
async fn warm_instance(handle: &ComponentHandle) -> anyhow::Result<ReadyInstance> {
    let mut instance = handle.idle_instance_store("wasi:http/incoming-handler")?;
    let proxy = ProxyPre::new(instance.pre().clone())?
        .instantiate_async(&mut instance.store)
        .await?;
    Ok(ReadyInstance {
        instance,
        proxy,
        served: 0,
    })
}

/// An idle instance from `pool` renewed for one more call, or else a new one; with the
/// component permit the call holds.
async fn ready_instance<'h>(
    handle: &'h ComponentHandle,
    pool: Option<&InstancePool>,
) -> anyhow::Result<(ReadyInstance, tokio::sync::SemaphorePermit<'h>)> {
    if let Some(mut ready) = pool.and_then(InstancePool::take)
        && let Some(permit) = handle
            .reuse_instance_store(&mut ready.instance, None)
            .await?
    {
        return Ok((ready, permit));
    }
    let (mut instance, permit) = handle
        .new_instance_store("wasi:http/incoming-handler", None)
        .await?;
    let proxy = ProxyPre::new(instance.pre().clone())?
        .instantiate_async(&mut instance.store)
        .await?;
    let ready = ReadyInstance {
        instance,
        proxy,
        served: 0,
    };
    Ok((ready, permit))
}

/// Runs one request on `handle`'s `wasi:http/incoming-handler` export: on a fresh instance, or
/// on one from `pool` when given. Resolves as soon as the handler sets its response; the body
/// streams from the instance, which keeps running (holding its instance permit) until the body
/// is written.
///
/// The guest runs only while someone waits for it: if this future is dropped before the
/// response (the client went away), or the response body before its end, the call is cancelled
/// at the guest's next epoch.
pub async fn handle_request(
    handle: ComponentHandle,
    pool: Option<Arc<InstancePool>>,
    scheme: Scheme,
    request: Request<HyperIncomingBody>,
) -> Result<Response<HyperOutgoingBody>, HandleError> {
    let span = tracing::info_span!(
        target: trace_context::TARGET,
        "http request",
        otel.name = %request.method(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %request.method(),
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        wasmcloud.component.id = handle.id(),
    );
    trace_context::continue_from_http(&span, request.headers());
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let served_span = span.clone();
    let call = tokio::spawn(async move {
        let served = async {
            let (mut ready, permit) = ready_instance(&handle, pool.as_deref())
                .await
                .map_err(|e| HandleError::Failed(format!("{e:#}")))?;
            let proxy = &ready.proxy;
            let handled = handle
                .call(&mut ready.instance, async |store| {
                    let mut http = view(store.data_mut());
                    let request = http.new_incoming_request(scheme, request)?;
                    let out = http.new_response_outparam(sender)?;
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut *store, request, out)
                        .await
                })
                .await;
            // A failed call's instance is dropped, never reused.
            handled.map_err(|error| match error.budget_exceeded() {
                Some(exceeded) => HandleError::Limited(exceeded.clone()),
                None => HandleError::Failed(error.to_string()),
            })?;
            drop(permit);
            ready.served += 1;
            if let Some(pool) = &pool {
                pool.give_back(ready);
            }
            Ok::<_, HandleError>(())
        }
        .instrument(served_span)
        .await;
        // After the handler, outside its span: the next request's instance.
        if let Some(pool) = &pool {
            pool.refill(&handle).await;
        }
        served
    });
    let guard = CancelOnDrop(Some(call.abort_handle()));
    let answered = match receiver.await {
        Ok(Ok(response)) => {
            let (head, body) = response.into_parts();
            let body = read_ahead(GuardedBody { body, guard }).await;
            Ok(Response::from_parts(head, body.boxed_unsync()))
        }
        Ok(Err(code)) => Err(HandleError::Answered(code)),
        // The handler ended without answering: it trapped, was stopped or could not start.
        Err(_) => Err(match call.await {
            Ok(Ok(())) => HandleError::Failed("returned without a response".to_string()),
            Ok(Err(error)) => error,
            Err(error) => HandleError::Failed(format!("task failed: {error}")),
        }),
    };
    match &answered {
        Ok(response) => {
            span.record("http.response.status_code", response.status().as_u16());
        }
        Err(error) => {
            span.record("otel.status_code", "ERROR");
            tracing::warn!(target: trace_context::TARGET, parent: &span, "{error}");
        }
    }
    answered
}

/// Cancels a request's guest call when dropped, unless the call is done with (disarmed).
struct CancelOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(call) = self.0.take() {
            call.abort();
        }
    }
}

/// A response body that cancels the guest call behind it when dropped before its end (the
/// client disconnected); after the end, the guest may go on with work of its own.
struct GuardedBody {
    body: HyperOutgoingBody,
    guard: CancelOnDrop,
}

impl hyper::body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            self.guard.0 = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// How long a response's head waits for the rest of its body: the first bytes of a streamed
/// response leave at most this much later.
const READ_AHEAD_WAIT: Duration = Duration::from_millis(1);

/// How much of a body is read ahead before its head goes out.
const READ_AHEAD_BYTES: usize = 64 << 10;

/// Reads the start of a response body before its head is sent: up to its end, within
/// [`READ_AHEAD_WAIT`] and [`READ_AHEAD_BYTES`]. Most handlers write a short body and end right
/// after answering; read ahead, such a response leaves in one write with its length (head,
/// body), where sent as it comes it takes a write per part (head, chunk, end), each waking the
/// client. The guest's body writes complete as they are read, so it is not held up meanwhile.
async fn read_ahead(mut body: GuardedBody) -> ReadAhead {
    let mut ahead = ReadAhead::default();
    let window = tokio::time::sleep(READ_AHEAD_WAIT);
    tokio::pin!(window);
    while ahead.bytes < READ_AHEAD_BYTES {
        tokio::select! {
            biased;
            frame = body.frame() => match frame {
                None => return ahead,
                Some(Err(error)) => {
                    ahead.failed = Some(error);
                    return ahead;
                }
                Some(Ok(frame)) => {
                    ahead.bytes += frame.data_ref().map_or(0, bytes::Bytes::len);
                    ahead.ready.push_back(frame);
                }
            },
            () = &mut window => break,
        }
    }
    ahead.rest = Some(body);
    ahead
}

/// A response body read ahead: the frames read, then how it failed or the rest of it.
#[derive(Default)]
struct ReadAhead {
    ready: std::collections::VecDeque<hyper::body::Frame<bytes::Bytes>>,
    /// Data bytes in `ready`.
    bytes: usize,
    failed: Option<wasmtime_wasi_http::Error>,
    rest: Option<GuardedBody>,
}

impl hyper::body::Body for ReadAhead {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Some(frame) = self.ready.pop_front() {
            self.bytes -= frame.data_ref().map_or(0, bytes::Bytes::len);
            return std::task::Poll::Ready(Some(Ok(frame)));
        }
        if let Some(error) = self.failed.take() {
            return std::task::Poll::Ready(Some(Err(error)));
        }
        match &mut self.rest {
            Some(rest) => std::pin::Pin::new(rest).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty()
            && self.failed.is_none()
            && self.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
    }

    /// Exact once the whole body was read ahead, so that it is sent with its length (unless
    /// it has trailers, which only a chunked body carries).
    fn size_hint(&self) -> hyper::body::SizeHint {
        let ready = self.bytes as u64;
        let trailers = self.ready.iter().any(hyper::body::Frame::is_trailers);
        match &self.rest {
            None if !trailers => hyper::body::SizeHint::with_exact(ready),
            None => {
                let mut hint = hyper::body::SizeHint::new();
                hint.set_lower(ready);
                hint
            }
            Some(rest) => {
                let rest = rest.size_hint();
                let mut hint = hyper::body::SizeHint::new();
                hint.set_lower(rest.lower() + ready);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + ready);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AllowedHosts;

    #[test]
    fn allowed_hosts_match_host_and_port() {
        let allowed = AllowedHosts::parse("Example.com, 127.0.0.1:8080").unwrap();
        assert!(allowed.allows("example.com", 443));
        assert!(allowed.allows("127.0.0.1", 8080));
        assert!(!allowed.allows("127.0.0.1", 8081));
        assert!(!allowed.allows("other.com", 80));
        assert!(!AllowedHosts::default().allows("example.com", 80));
        assert!(AllowedHosts::parse("host:port").is_err());
    }
}
