//! The client half: with the http-client built-in switched off, a component's outgoing requests
//! go to the target of its `wasi:http/outgoing-handler` link as `wrpc:http/outgoing-handler`
//! calls. The component keeps wasmtime-wasi-http's own `wasi:http/types`; only sending changes.
//!
//! Anything that keeps a request from being answered (no link, nobody serving the target, a
//! transport failure, no response head within the rpc timeout) reaches the guest as an
//! `error-code` saying why, never as a trap or a hang.

use std::sync::Arc;

use trellis_providers::http::{
    HttpState, IoFuture, OutgoingSender, SendFuture, add_outgoing_to_linker, add_types_to_linker,
};
use trellis_providers::trace_context;
use trellis_runtime::{Extensions, InterfaceName, InvocationCtx, Plugin, RemoteCall};
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{RequestOptions as HttpOptions, WasiBody};

use super::INTERFACE;
use crate::http_bridge::body;
use crate::http_bridge::convert::{
    error_code_from_wire, fields_from_headers, headers_from_fields, method_from_http,
};
use crate::rpc::Lattice;
use crate::wrpc_http::wrpc::http::outgoing_handler;
use crate::wrpc_http::wrpc::http::types::{Request, RequestOptions, Response, Scheme};

/// Serves `wasi:http/outgoing-handler` (and `wasi:http/types`) by sending over the lattice.
pub struct OutgoingHttpOverLattice {
    sender: Arc<LatticeSender>,
}

impl OutgoingHttpOverLattice {
    pub fn new(lattice: Lattice) -> Self {
        Self {
            sender: Arc::new(LatticeSender { lattice }),
        }
    }
}

#[async_trait::async_trait]
impl Plugin for OutgoingHttpOverLattice {
    fn id(&self) -> &str {
        "http-client-over-lattice"
    }

    fn forwards(&self) -> bool {
        true
    }

    fn imports(&self) -> Vec<InterfaceName> {
        ["wasi:http/outgoing-handler", "wasi:http/types"]
            .iter()
            .map(|name| InterfaceName::parse(name).expect("valid name"))
            .collect()
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<InvocationCtx>,
        interface: &InterfaceName,
    ) -> anyhow::Result<()> {
        match interface.interface.as_str() {
            "outgoing-handler" => add_outgoing_to_linker(linker)?,
            "types" => add_types_to_linker(linker)?,
            other => anyhow::bail!("outgoing HTTP over the lattice does not serve `{other}`"),
        }
        Ok(())
    }

    /// Replaces whatever another HTTP plugin prepared: this plugin is the one that sends.
    fn prepare(&self, _component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        extensions.insert(HttpState::new(self.sender.clone()));
        Ok(())
    }
}

/// Sends each request to the caller's link target.
struct LatticeSender {
    lattice: Lattice,
}

impl OutgoingSender for LatticeSender {
    fn send(
        &self,
        caller: Option<&RemoteCall>,
        request: http::Request<WasiBody>,
        options: Option<HttpOptions>,
    ) -> SendFuture {
        let internal = |message: String| ErrorCode::InternalError(Some(message));
        let route = caller
            .ok_or_else(|| "this host has no lattice to send on".to_string())
            .and_then(|caller| {
                self.lattice
                    .route(caller, INTERFACE)
                    .map_err(|error| error.to_string())
            });
        let lattice = self.lattice.clone();
        Box::new(async move {
            let (target, mut headers) = route.map_err(internal)?;
            // The HTTP client span of the request (see trellis_providers::http).
            trace_context::inject_nats(&tracing::Span::current(), &mut headers);
            let (request, options) = request_to_wire(request, options.as_ref());
            let timeout = lattice.timeout;
            let failed = |error: anyhow::Error| {
                internal(format!(
                    "outgoing HTTP via `{target}` over the lattice failed: {error:#}"
                ))
            };
            let client = lattice.client(&target).await.map_err(failed)?;
            // Bounds the wait for the response head; bodies take as long as they take.
            let answer = tokio::time::timeout(
                timeout,
                outgoing_handler::handle(&client, Some(headers), request, Some(options)),
            );
            let (result, io) = match answer.await {
                Ok(Ok(answer)) => answer,
                Ok(Err(error)) => return Err(failed(error).into()),
                Err(_) => {
                    return Err(internal(format!(
                        "outgoing HTTP target `{target}` did not answer within {timeout:?}"
                    ))
                    .into());
                }
            };
            let response = response_from_wire(result.map_err(error_code_from_wire)?)?;
            // Sends the request body and receives the response body.
            let io: IoFuture = Box::new(async move {
                if let Some(io) = io
                    && let Err(error) = io.await
                {
                    tracing::debug!(%target, "wRPC outgoing HTTP body transfer ended: {error:#}");
                }
                Ok(())
            });
            Ok((response, io))
        })
    }
}

/// Nanoseconds, as `wasi:clocks` durations travel.
fn nanos(duration: std::time::Duration) -> Option<u64> {
    u64::try_from(duration.as_nanos()).ok()
}

/// The request as wasmCloud hosts send it to an http-client provider: the target from the
/// URI's scheme and authority (wasmtime-wasi-http's `host` header is not sent again).
fn request_to_wire(
    request: http::Request<WasiBody>,
    options: Option<&HttpOptions>,
) -> (Request, RequestOptions) {
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(http::header::HOST);
    let (body, trailers) = body::to_wire(body);
    let scheme = match parts.uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") | None => Scheme::Http,
        Some(other) => Scheme::Other(other.to_string()),
    };
    let request = Request {
        body,
        trailers,
        method: method_from_http(&parts.method),
        path_with_query: parts.uri.path_and_query().map(|p| p.as_str().to_string()),
        scheme: Some(scheme),
        authority: parts.uri.authority().map(|a| a.to_string()),
        headers: fields_from_headers(&parts.headers),
    };
    let timeout = |pick: fn(&HttpOptions) -> Option<std::time::Duration>| {
        options.and_then(pick).and_then(nanos)
    };
    let options = RequestOptions {
        connect_timeout: timeout(|o| o.connect_timeout),
        first_byte_timeout: timeout(|o| o.first_byte_timeout),
        between_bytes_timeout: timeout(|o| o.between_bytes_timeout),
    };
    (request, options)
}

fn response_from_wire(response: Response) -> Result<http::Response<body::Body>, ErrorCode> {
    let headers = headers_from_fields(response.headers)
        .map_err(|invalid| ErrorCode::InternalError(Some(format!("response {invalid}"))))?;
    let status = http::StatusCode::from_u16(response.status).map_err(|_| {
        ErrorCode::InternalError(Some(format!("invalid response status {}", response.status)))
    })?;
    let mut converted = http::Response::new(body::from_wire(response.body, response.trailers));
    *converted.status_mut() = status;
    *converted.headers_mut() = headers;
    Ok(converted)
}
