//! Serves components' `wasi:http/incoming-handler` exports over HTTP/1.1 with hyper.
//!
//! Each bound component gets a route from its binding config (as the wasmCloud http-server
//! provider's link config names them):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `address` | listen address, `ip:port` | `127.0.0.1:8000` |
//! | `path` | path prefix the component serves | `/` |
//! | `host` | `Host` header (port ignored) the component serves | any |
//!
//! A plugin made with [`HttpServerPlugin::configured_only`] (as the lattice host makes it) serves
//! only components whose config names an `address` (there, a link from the http-server provider
//! supplies it); others bind without a route and no listener opens for them.
//!
//! One listener per address, shared by every route on it and closed when its last route goes.
//! A request goes to the route whose host matches (a named host before any) with the longest
//! matching path prefix; none gives 404. Each request runs on a fresh instance of the component,
//! in-process, through wasmtime-wasi-http's `ProxyPre`; bodies stream both ways. A handler that
//! traps or fails before answering gives 500 with a short body; one that answers and then fails
//! mid-body has the connection cut (the status line is already sent).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use trellis_runtime::{Binding, ComponentHandle, Extensions, InterfaceName, InvocationCtx, Plugin};
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::http::{self, HttpState};

/// How long a connection may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a binding was refused.
#[derive(Debug, thiserror::Error)]
pub enum HttpServerError {
    #[error("bad listen address `{0}`")]
    BadAddress(String),
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
}

/// Where requests for one component come from.
struct Route {
    component_id: String,
    host: Option<String>,
    path: String,
    handle: ComponentHandle,
}

impl Route {
    fn matches(&self, host: &str, path: &str) -> bool {
        self.host
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(host))
            && path.starts_with(&self.path)
    }
}

type Routes = Arc<RwLock<Vec<Route>>>;

/// A bound socket and its accept loop.
struct Listener {
    routes: Routes,
    shutdown: watch::Sender<bool>,
}

/// The built-in HTTP server.
#[derive(Default)]
pub struct HttpServerPlugin {
    listeners: tokio::sync::Mutex<HashMap<SocketAddr, Listener>>,
    /// Serve only components whose config names an `address` (no default address).
    configured_only: bool,
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

    /// The addresses currently listened on.
    pub async fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners.lock().await.keys().copied().collect()
    }
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
                        let served = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_READ_TIMEOUT)
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
    let handle = {
        let routes = routes.read().unwrap();
        routes
            .iter()
            .filter(|route| route.matches(&host, request.uri().path()))
            .max_by_key(|route| (route.host.is_some(), route.path.len()))
            .map(|route| route.handle.clone())
    };
    match handle {
        Some(handle) => run(handle, request).await,
        None => short(StatusCode::NOT_FOUND, "no route\n"),
    }
}

/// Runs one request on a fresh instance of the component.
async fn run(handle: ComponentHandle, request: Request<Incoming>) -> Response<HyperOutgoingBody> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let component = handle.id().to_string();
    let call = tokio::spawn(async move {
        let (mut store, pre, _permit) = handle.new_instance_store(None).await?;
        let proxy = ProxyPre::new(pre)?.instantiate_async(&mut store).await?;
        let mut view = http::view(store.data_mut());
        let request = request.map(|body| body.map_err(wasmtime_wasi_http::p2::hyper_request_error));
        let request = view.new_incoming_request(Scheme::Http, request)?;
        let out = view.new_response_outparam(sender)?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, out)
            .await
    });
    match receiver.await {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => {
            tracing::warn!(%component, "HTTP handler answered with an error: {code:?}");
            short(StatusCode::INTERNAL_SERVER_ERROR, "handler error\n")
        }
        // The handler ended without answering: it trapped or could not be started.
        Err(_) => {
            match call.await {
                Ok(Ok(())) => {
                    tracing::warn!(%component, "HTTP handler returned without a response")
                }
                Ok(Err(error)) => tracing::warn!(%component, "HTTP handler failed: {error:#}"),
                Err(error) => tracing::warn!(%component, "HTTP handler task failed: {error}"),
            }
            short(StatusCode::INTERNAL_SERVER_ERROR, "handler failed\n")
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
        let text = config
            .get("address")
            .map_or("127.0.0.1:8000", String::as_str);
        let address: SocketAddr = text
            .parse()
            .map_err(|_| HttpServerError::BadAddress(text.to_string()))?;
        let route = Route {
            component_id: binding.component_id.clone(),
            host: config.get("host").map(|h| h.to_ascii_lowercase()),
            path: config.get("path").cloned().unwrap_or_else(|| "/".into()),
            handle: binding.component.clone(),
        };
        let mut listeners = self.listeners.lock().await;
        let listener = match listeners.get(&address) {
            Some(listener) => listener,
            None => {
                let (listener, socket) = listen(address)?;
                tokio::spawn(accept_loop(
                    socket,
                    listener.routes.clone(),
                    listener.shutdown.subscribe(),
                ));
                tracing::info!(%address, "HTTP server listening");
                listeners.entry(address).or_insert(listener)
            }
        };
        let mut routes = listener.routes.write().unwrap();
        if let Some(taken) = routes
            .iter()
            .find(|r| r.host == route.host && r.path == route.path)
        {
            return Err(HttpServerError::RouteTaken {
                address,
                host: route.host,
                path: route.path,
                component: taken.component_id.clone(),
            }
            .into());
        }
        routes.push(route);
        Ok(())
    }

    async fn unbind(&self, component_id: &str) {
        let mut listeners = self.listeners.lock().await;
        listeners.retain(|address, listener| {
            let mut routes = listener.routes.write().unwrap();
            routes.retain(|r| r.component_id != component_id);
            if routes.is_empty() {
                let _ = listener.shutdown.send(true);
                tracing::info!(%address, "HTTP server closed");
                false
            } else {
                true
            }
        });
    }

    async fn stop(&self) -> anyhow::Result<()> {
        for (_, listener) in self.listeners.lock().await.drain() {
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
        extensions.get_or_insert_with(|| HttpState::new(Arc::default()));
        Ok(())
    }
}
