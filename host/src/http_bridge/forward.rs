//! The forwarding half: the built-in HTTP server's requests for a component that does not run
//! on this host go over wRPC as `wrpc:http/incoming-handler@0.1.0` `handle` to
//! `{lattice}.{component}`, wherever in the lattice it runs.

use async_nats::HeaderMap;
use tracing::Instrument as _;
use trellis_providers::http::HandleError;
use trellis_providers::http_server::{RemoteHttpHandler, RemoteRoute};
use trellis_providers::trace_context;

use super::body;
use super::convert::{
    error_code_from_wire, fields_from_headers, headers_from_fields, method_from_http,
};
use crate::rpc::Lattice;
use crate::wrpc_http::wrpc::http::incoming_handler;
use crate::wrpc_http::wrpc::http::types::{Request, Response, Scheme};
use trellis_deployer::wire::DEFAULT_LINK_NAME;

/// Sends the HTTP server's remote routes over the lattice.
pub struct Forwarder {
    pub lattice: Lattice,
}

#[async_trait::async_trait]
impl RemoteHttpHandler for Forwarder {
    async fn handle(
        &self,
        route: &RemoteRoute,
        request: http::Request<body::Body>,
    ) -> Result<http::Response<body::Body>, HandleError> {
        let span = tracing::info_span!(
            target: trace_context::TARGET,
            "http forward",
            otel.name = %format_args!("{} (forwarded)", request.method()),
            otel.kind = "client",
            rpc.system = "wrpc",
            rpc.service = "wrpc:http/incoming-handler@0.1.0",
            rpc.method = "handle",
            wasmcloud.target.id = route.component_id.as_str(),
        );
        trace_context::continue_from_http(&span, request.headers());
        let mut request = request;
        // The serving host continues the trace from the request's own headers.
        trace_context::inject_http(&span, request.headers_mut());
        self.forward(route, request).instrument(span).await
    }
}

impl Forwarder {
    async fn forward(
        &self,
        route: &RemoteRoute,
        request: http::Request<body::Body>,
    ) -> Result<http::Response<body::Body>, HandleError> {
        let unreachable = |error: anyhow::Error| HandleError::Unreachable(format!("{error:#}"));
        let client = self
            .lattice
            .client(&route.component_id)
            .await
            .map_err(unreachable)?;
        // As a provider calling a component does: who calls, and whom.
        let mut headers = HeaderMap::new();
        headers.insert("source-id", route.source_id.as_str());
        headers.insert("target-id", route.component_id.as_str());
        headers.insert("link-name", DEFAULT_LINK_NAME);
        let call = incoming_handler::handle(&client, Some(headers), request_to_wire(request));
        // Bounds the wait for the response head; bodies take as long as they take.
        let (result, io) = tokio::time::timeout(self.lattice.timeout, call)
            .await
            .map_err(|_| {
                HandleError::Unreachable(format!("no response within {:?}", self.lattice.timeout))
            })?
            .map_err(unreachable)?;
        if let Some(io) = io {
            // Sends the request body and receives the response body.
            let component = route.component_id.clone();
            tokio::spawn(async move {
                if let Err(error) = io.await {
                    tracing::debug!(%component, "wRPC HTTP body transfer ended: {error:#}");
                }
            });
        }
        match result {
            Ok(response) => response_from_wire(response),
            Err(code) => Err(HandleError::Answered(error_code_from_wire(code))),
        }
    }
}

/// The request as an http-server provider sends it: authority from the URI or `Host` header.
fn request_to_wire(request: http::Request<body::Body>) -> Request {
    let (parts, body) = request.into_parts();
    let (body, trailers) = body::to_wire(body);
    let authority = parts
        .uri
        .authority()
        .map(|authority| authority.to_string())
        .or_else(|| {
            let host = parts.headers.get(http::header::HOST)?;
            host.to_str().ok().map(str::to_string)
        });
    let scheme = match parts.uri.scheme_str() {
        Some("https") => Scheme::Https,
        _ => Scheme::Http,
    };
    Request {
        body,
        trailers,
        method: method_from_http(&parts.method),
        path_with_query: parts.uri.path_and_query().map(|p| p.as_str().to_string()),
        scheme: Some(scheme),
        authority,
        headers: fields_from_headers(&parts.headers),
    }
}

fn response_from_wire(response: Response) -> Result<http::Response<body::Body>, HandleError> {
    let headers = headers_from_fields(response.headers)
        .map_err(|invalid| HandleError::Failed(format!("response {invalid}")))?;
    let status = http::StatusCode::from_u16(response.status)
        .map_err(|_| HandleError::Failed(format!("invalid response status {}", response.status)))?;
    let mut converted = http::Response::new(body::from_wire(response.body, response.trailers));
    *converted.status_mut() = status;
    *converted.headers_mut() = headers;
    Ok(converted)
}
