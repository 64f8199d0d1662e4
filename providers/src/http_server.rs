//! Serves components' `wasi:http/incoming-handler` exports over HTTP/1.1 and cleartext HTTP/2
//! (prior knowledge) with hyper.
//!
//! Each bound component gets a route from its binding config (as the wasmCloud http-server
//! provider's link config names them):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `address` | listen address, `ip:port` | `127.0.0.1:8000` |
//! | `path` | path prefix the component serves | `/` |
//! | `host` | `Host` header (port ignored) the component serves | any |
//! | `requests_per_instance` | requests one instance may serve, one after another ([`crate::http::InstancePool`]) | 1: a fresh instance per request |
//! | `warm_instances` | instances made ahead of requests, off their path (at most 64) | 0: made for each request |
//!
//! A plugin made with [`HttpServerPlugin::configured_only`] (as the lattice host makes it) serves
//! only components whose config names an `address` (there, a link from the http-server provider
//! supplies it); others bind without a route and no listener opens for them.
//!
//! The embedder may also declare *remote routes* ([`HttpServerPlugin::set_remote_routes`]): the
//! same config, for a component that may run on another host. A request on a remote route goes
//! to the [`RemoteHttpHandler`] the plugin was made with (the lattice host forwards it over
//! wRPC); a component bound here shadows its own remote route, so it is served in-process while
//! it runs here and remotely once it leaves.
//!
//! One listener per address, shared by every route on it and closed when its last route goes.
//! A request goes to the route whose host matches (a named host before any) with the longest
//! matching path prefix; none gives 404. Each request runs in-process on a fresh instance of the
//! component (or a reused one, when the route allows), through [`crate::http::handle_request`];
//! bodies stream both ways. A handler that
//! traps or fails before answering gives 500 with a short body, an unreachable remote component
//! 502; one that answers and then fails mid-body has the connection cut (the status line is
//! already sent).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use trellis_runtime::{
    Binding, BudgetExceeded, ComponentHandle, Extensions, InterfaceName, InvocationCtx, Plugin,
};
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::{HyperIncomingBody, HyperOutgoingBody};

use crate::http::{self, HandleError, HttpState, InstancePool};

/// How long a connection may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The most instances a route may keep made ahead of its requests.
const MAX_WARM_INSTANCES: usize = 64;

/// Why a binding was refused.
#[derive(Debug, thiserror::Error)]
pub enum HttpServerError {
    #[error("bad listen address `{0}`")]
    BadAddress(String),
    #[error("bad requests_per_instance `{0}`: a whole number from 1")]
    BadRequestsPerInstance(String),
    #[error("bad warm_instances `{0}`: a whole number from 0 to {MAX_WARM_INSTANCES}")]
    BadWarmInstances(String),
    #[error("listening on {address}: {message}")]
    Listen {
        address: SocketAddr,
        message: String,
    },
    #[error("{address} already routes host {host:?} path `{path}` to `{component}`")]
    RouteTaken {
        address: SocketAddr,
        host: Option<String>,
        path: String,
        component: String,
    },
    #[error("remote routes need a server made with a remote handler")]
    NoRemoteHandler,
}

/// A route to a component that may run on another host, as the embedder declares it (the
/// lattice host: one per link from an http-server provider started on it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRoute {
    /// Whose route it is (the provider the requests come from).
    pub source_id: String,
    pub component_id: String,
    /// `address`, `path` and `host`, as in a binding's config.
    pub config: BTreeMap<String, String>,
}

/// Serves requests on remote routes: the embedder's way to reach a component elsewhere.
#[async_trait::async_trait]
pub trait RemoteHttpHandler: Send + Sync + 'static {
    async fn handle(
        &self,
        route: &RemoteRoute,
        request: Request<HyperIncomingBody>,
    ) -> Result<Response<HyperOutgoingBody>, HandleError>;
}

/// Where a route's requests go.
#[derive(Clone)]
enum Target {
    /// The component runs here: in-process, with the route's idle instances if it reuses them.
    Local(ComponentHandle, Option<Arc<InstancePool>>),
    /// Through the remote handler.
    Remote(Arc<dyn RemoteHttpHandler>, Arc<RemoteRoute>),
}

/// Where requests for one component come from.
struct Route {
    component_id: String,
    host: Option<String>,
    path: String,
    target: Target,
}

impl Route {
    fn matches(&self, host: &str, path: &str) -> bool {
        self.host
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(host))
            && path.starts_with(&self.path)
    }

    fn is_local(&self) -> bool {
        matches!(self.target, Target::Local(..))
    }

    /// Whether `self` may share its host and path with `other`: only a component's local route
    /// with its own remote route (the local one shadows it).
    fn may_share_with(&self, other: &Route) -> bool {
        self.component_id == other.component_id && self.is_local() != other.is_local()
    }
}

type Routes = Arc<RwLock<Vec<Route>>>;

/// A bound socket and its accept loop.
struct Listener {
    routes: Routes,
    shutdown: watch::Sender<bool>,
}

/// The listeners and the remote routes currently declared.
#[derive(Default)]
struct Servers {
    listeners: HashMap<SocketAddr, Listener>,
    remote_routes: Vec<RemoteRoute>,
}

impl Servers {
    /// Adds `route` on `address`, opening a listener if there is none yet.
    fn add(&mut self, address: SocketAddr, route: Route) -> Result<(), HttpServerError> {
        let listener = match self.listeners.get(&address) {
            Some(listener) => listener,
            None => {
                let (listener, socket) = listen(address)?;
                tokio::spawn(accept_loop(
                    socket,
                    listener.routes.clone(),
                    listener.shutdown.subscribe(),
                ));
                tracing::info!(%address, "HTTP server listening");
                self.listeners.entry(address).or_insert(listener)
            }
        };
        let mut routes = listener.routes.write().unwrap();
        if let Some(taken) = routes
            .iter()
            .find(|r| r.host == route.host && r.path == route.path && !r.may_share_with(&route))
        {
            return Err(HttpServerError::RouteTaken {
                address,
                host: route.host,
                path: route.path,
                component: taken.component_id.clone(),
            });
        }
        routes.push(route);
        Ok(())
    }

    /// Removes the routes `gone` picks and closes listeners left without any.
    fn remove(&mut self, gone: impl Fn(&Route) -> bool) {
        self.listeners.retain(|address, listener| {
            let mut routes = listener.routes.write().unwrap();
            routes.retain(|r| !gone(r));
            if routes.is_empty() {
                let _ = listener.shutdown.send(true);
                tracing::info!(%address, "HTTP server closed");
                false
            } else {
                true
            }
        });
    }
}

/// The built-in HTTP server.
#[derive(Default)]
pub struct HttpServerPlugin {
    servers: tokio::sync::Mutex<Servers>,
    /// Serve only components whose config names an `address` (no default address).
    configured_only: bool,
    /// Serves the remote routes.
    remote: Option<Arc<dyn RemoteHttpHandler>>,
}

impl HttpServerPlugin {
    pub fn new() -> Self {
        Self::default()
    }

    /// A server that routes only components configured with an `address`; a component
    /// exporting `wasi:http/incoming-handler` without one is bound but not served.
    pub fn configured_only() -> Self {
        Self {
            configured_only: true,
            ..Self::default()
        }
    }

    /// The same server, able to serve remote routes through `handler`.
    pub fn with_remote(self, handler: Arc<dyn RemoteHttpHandler>) -> Self {
        Self {
            remote: Some(handler),
            ..self
        }
    }

    /// The addresses currently listened on.
    pub async fn addresses(&self) -> Vec<SocketAddr> {
        self.servers
            .lock()
            .await
            .listeners
            .keys()
            .copied()
            .collect()
    }

    /// Makes `routes` the remote routes: routes no longer declared go (listeners left without
    /// routes close), new ones are added. Returns the routes that could not be added, and why.
    pub async fn set_remote_routes(
        &self,
        routes: Vec<RemoteRoute>,
    ) -> Vec<(RemoteRoute, HttpServerError)> {
        let mut servers = self.servers.lock().await;
        if servers.remote_routes == routes {
            return Vec::new();
        }
        let current = std::mem::take(&mut servers.remote_routes);
        servers.remove(|route| match &route.target {
            Target::Remote(_, declared) => !routes.contains(declared.as_ref()),
            Target::Local(..) => false,
        });
        let mut failed = Vec::new();
        for declared in routes.iter().filter(|r| !current.contains(r)) {
            let added = match &self.remote {
                None => Err(HttpServerError::NoRemoteHandler),
                Some(handler) => {
                    route_config(&declared.config).and_then(|(address, host, path)| {
                        let route = Route {
                            component_id: declared.component_id.clone(),
                            host,
                            path,
                            target: Target::Remote(handler.clone(), Arc::new(declared.clone())),
                        };
                        servers.add(address, route)
                    })
                }
            };
            if let Err(error) = added {
                failed.push((declared.clone(), error));
            }
        }
        servers.remote_routes = routes
            .into_iter()
            .filter(|r| !failed.iter().any(|(f, _)| f == r))
            .collect();
        failed
    }
}

/// A route's address, host and path from its config.
fn route_config(
    config: &BTreeMap<String, String>,
) -> Result<(SocketAddr, Option<String>, String), HttpServerError> {
    let text = config
        .get("address")
        .map_or("127.0.0.1:8000", String::as_str);
    let address: SocketAddr = text
        .parse()
        .map_err(|_| HttpServerError::BadAddress(text.to_string()))?;
    Ok((
        address,
        config.get("host").map(|h| h.to_ascii_lowercase()),
        config.get("path").cloned().unwrap_or_else(|| "/".into()),
    ))
}

fn listen(address: SocketAddr) -> Result<(Listener, tokio::net::TcpListener), HttpServerError> {
    let failed = |e: std::io::Error| HttpServerError::Listen {
        address,
        message: e.to_string(),
    };
    let socket = std::net::TcpListener::bind(address).map_err(failed)?;
    socket.set_nonblocking(true).map_err(failed)?;
    let socket = tokio::net::TcpListener::from_std(socket).map_err(failed)?;
    let (shutdown, _) = watch::channel(false);
    Ok((
        Listener {
            routes: Routes::default(),
            shutdown,
        },
        socket,
    ))
}

async fn accept_loop(
    socket: tokio::net::TcpListener,
    routes: Routes,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = socket.accept() => match accepted {
                Ok((stream, _)) => {
                    // Responses go out in several small writes (head, body chunks, end); with
                    // Nagle's algorithm each waits for the client's delayed ACK (~40 ms).
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!("TCP_NODELAY: {error}");
                    }
                    let routes = routes.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let routes = routes.clone();
                            async move { Ok::<_, Infallible>(dispatch(&routes, request).await) }
                        });
                        // HTTP/1.1, or HTTP/2 when the client starts with its preface
                        // (cleartext, prior knowledge: there is no TLS to negotiate it).
                        let mut builder = auto::Builder::new(TokioExecutor::new());
                        builder
                            .http1()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_READ_TIMEOUT);
                        builder.http2().timer(TokioTimer::new());
                        let served = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(error) = served {
                            tracing::debug!("HTTP connection ended: {error}");
                        }
                    });
                }
                Err(error) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!("accepting an HTTP connection: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

fn short(status: StatusCode, text: &'static str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// Finds the route for a request and runs it.
async fn dispatch(routes: &Routes, request: Request<Incoming>) -> Response<HyperOutgoingBody> {
    let Some(host) = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
    else {
        return short(StatusCode::BAD_REQUEST, "missing Host header\n");
    };
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h).to_string();
    let target = {
        let routes = routes.read().unwrap();
        routes
            .iter()
            .filter(|route| route.matches(&host, request.uri().path()))
            .max_by_key(|route| (route.host.is_some(), route.path.len(), route.is_local()))
            .map(|route| (route.component_id.clone(), route.target.clone()))
    };
    let Some((component, target)) = target else {
        return short(StatusCode::NOT_FOUND, "no route\n");
    };
    let request = request.map(|body| body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
    let response = match target {
        Target::Local(handle, pool) => {
            http::handle_request(handle, pool, Scheme::Http, request).await
        }
        Target::Remote(handler, route) => handler.handle(&route, request).await,
    };
    match response {
        Ok(response) => response,
        Err(error) => {
            if !matches!(error, HandleError::Limited(_)) {
                tracing::warn!(%component, "{error}");
            }
            match error {
                HandleError::Limited(BudgetExceeded::DeadlineExceeded(_)) => short(
                    StatusCode::GATEWAY_TIMEOUT,
                    "handler stopped by its time limit\n",
                ),
                HandleError::Limited(_) => short(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "handler stopped by its limit\n",
                ),
                HandleError::Answered(_) => {
                    short(StatusCode::INTERNAL_SERVER_ERROR, "handler error\n")
                }
                HandleError::Failed(_) => {
                    short(StatusCode::INTERNAL_SERVER_ERROR, "handler failed\n")
                }
                HandleError::Unreachable(_) => {
                    short(StatusCode::BAD_GATEWAY, "component unreachable\n")
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Plugin for HttpServerPlugin {
    fn id(&self) -> &str {
        "http-server"
    }

    fn imports(&self) -> Vec<InterfaceName> {
        vec![InterfaceName::parse("wasi:http/types").expect("valid name")]
    }

    fn exports(&self) -> Vec<InterfaceName> {
        vec![InterfaceName::parse("wasi:http/incoming-handler").expect("valid name")]
    }

    async fn bind(&self, binding: &Binding) -> anyhow::Result<()> {
        if binding.exports.is_empty() {
            // Bound only for `wasi:http/types`: nothing to serve.
            return Ok(());
        }
        let config = &binding.config;
        if self.configured_only && !config.contains_key("address") {
            return Ok(());
        }
        let (address, host, path) = route_config(config)?;
        let reuse = match config.get("requests_per_instance") {
            None => 1,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => return Err(HttpServerError::BadRequestsPerInstance(text.clone()).into()),
            },
        };
        let warm = match config.get("warm_instances") {
            None => 0,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if n <= MAX_WARM_INSTANCES => n,
                _ => return Err(HttpServerError::BadWarmInstances(text.clone()).into()),
            },
        };
        let pool = (reuse > 1 || warm > 0).then(|| Arc::new(InstancePool::new(reuse, warm)));
        let route = Route {
            component_id: binding.component_id.clone(),
            host,
            path,
            target: Target::Local(binding.component.clone(), pool),
        };
        self.servers.lock().await.add(address, route)?;
        Ok(())
    }

    async fn unbind(&self, component_id: &str) {
        self.servers
            .lock()
            .await
            .remove(|r| r.is_local() && r.component_id == component_id);
    }

    async fn stop(&self) -> anyhow::Result<()> {
        for (_, listener) in self.servers.lock().await.listeners.drain() {
            let _ = listener.shutdown.send(true);
        }
        Ok(())
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<InvocationCtx>,
        interface: &InterfaceName,
    ) -> anyhow::Result<()> {
        match interface.interface.as_str() {
            "types" => http::add_types_to_linker(linker)?,
            other => anyhow::bail!("the http-server plugin does not serve `{other}`"),
        }
        Ok(())
    }

    /// Deny-all outgoing state unless the http-client plugin prepared the component's own.
    fn prepare(&self, _component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        extensions.get_or_insert_with(HttpState::deny_all);
        Ok(())
    }
}
