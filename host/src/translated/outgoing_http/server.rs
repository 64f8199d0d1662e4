//! The server half: an http-client built-in started here as provider `P` serves
//! `wrpc:http/outgoing-handler@0.1.0` `handle` on `{lattice}.{P}`, queue group `{lattice}.{P}`,
//! as wasmCloud's http-client provider does, and sends each request from this host.
//!
//! Deny by default, as in-process: a caller may reach the hosts its link to `P` allows
//! (`allowed_hosts` in the link's plugin config, [`crate::reconcile::derive::link_config`]); any
//! other request, and a caller without such a link, gets an `error-code`.

use std::sync::{Arc, Weak};

use tokio::task::JoinSet;
use trellis_providers::http_client::allowed_hosts;
use wasmtime_wasi_http::RequestOptions as HttpOptions;
use wrpc_transport_nats::NatsContext;

use crate::http_bridge::body;
use crate::http_bridge::convert::{
    error_code_to_wire, fields_from_headers, headers_from_fields, http_error_to_code,
    method_to_http,
};
use crate::state::HostState;
use crate::translated::{accept_calls, caller_config, provider_server};
use crate::wrpc_http::exports::wrpc::http::outgoing_handler::{Handler, serve_interface};
use crate::wrpc_http::wrpc::http::types::{ErrorCode, Request, RequestOptions, Response, Scheme};

/// wasmtime-wasi-http's default for each timeout the caller leaves out.
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Subscribes provider `provider_id`'s `handle`; each request runs on its own task.
pub async fn serve(state: &Arc<HostState>, provider_id: &str) -> anyhow::Result<JoinSet<()>> {
    let server = provider_server(state, provider_id).await?;
    let handler = OutgoingHandler {
        state: Arc::downgrade(state),
        provider: provider_id.into(),
    };
    let subscribed = serve_interface(&server, handler).await?;
    Ok(accept_calls(provider_id, "outgoing HTTP", subscribed))
}

/// Sends the requests of every component linked to one http-client provider.
#[derive(Clone)]
struct OutgoingHandler {
    /// Weak: the provider's server lives in the host state, and must not keep it alive.
    state: Weak<HostState>,
    provider: Arc<str>,
}

impl Handler<NatsContext> for OutgoingHandler {
    async fn handle(
        &self,
        cx: NatsContext,
        request: Request,
        options: Option<RequestOptions>,
    ) -> anyhow::Result<Result<Response, ErrorCode>> {
        Ok(self.send(cx, request, options).await)
    }
}

impl OutgoingHandler {
    async fn send(
        &self,
        cx: NatsContext,
        request: Request,
        options: Option<RequestOptions>,
    ) -> Result<Response, ErrorCode> {
        let refused = |message: String| ErrorCode::InternalError(Some(message));
        let config = caller_config(&self.state, &self.provider, &cx, "http").map_err(refused)?;
        let allowed = allowed_hosts(&config).map_err(|error| refused(error.to_string()))?;
        let (request, options) = request_from_wire(request, options)?;
        allowed.check(&request).map_err(error_code_to_wire)?;
        let failed = |error| error_code_to_wire(http_error_to_code(error));
        let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options))
            .await
            .map_err(failed)?;
        // Drives the connection after the head: the body arrives only while it runs.
        let connection = wasmtime_wasi::runtime::spawn(async move {
            if let Err(error) = io.await {
                tracing::debug!("outgoing HTTP connection ended: {error}");
            }
        });
        Ok(response_to_wire(
            response.map(http_body_util::BodyExt::boxed_unsync),
            connection,
        ))
    }
}

fn duration(nanos: Option<u64>, default: std::time::Duration) -> std::time::Duration {
    nanos.map_or(default, std::time::Duration::from_nanos)
}

fn request_from_wire(
    request: Request,
    options: Option<RequestOptions>,
) -> Result<(http::Request<body::Body>, HttpOptions), ErrorCode> {
    let scheme = match &request.scheme {
        None | Some(Scheme::Http) => "http",
        Some(Scheme::Https) => "https",
        Some(Scheme::Other(_)) => return Err(ErrorCode::HttpProtocolError),
    };
    let authority = request
        .authority
        .as_deref()
        .ok_or(ErrorCode::HttpRequestUriInvalid)?;
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(request.path_with_query.as_deref().unwrap_or("/"))
        .build()
        .map_err(|_| ErrorCode::HttpRequestUriInvalid)?;
    let headers =
        headers_from_fields(request.headers).map_err(|_| ErrorCode::HttpRequestHeaderSize(None))?;
    let method =
        method_to_http(&request.method).map_err(|_| ErrorCode::HttpRequestMethodInvalid)?;
    let mut converted = http::Request::new(body::from_wire(request.body, request.trailers));
    *converted.method_mut() = method;
    *converted.uri_mut() = uri;
    *converted.headers_mut() = headers;
    if !converted.headers().contains_key(http::header::HOST) {
        let host =
            http::HeaderValue::from_str(authority).map_err(|_| ErrorCode::HttpRequestUriInvalid)?;
        converted.headers_mut().insert(http::header::HOST, host);
    }
    let options = options.unwrap_or(RequestOptions {
        connect_timeout: None,
        first_byte_timeout: None,
        between_bytes_timeout: None,
    });
    let options = HttpOptions {
        connect_timeout: Some(duration(options.connect_timeout, DEFAULT_TIMEOUT)),
        first_byte_timeout: Some(duration(options.first_byte_timeout, DEFAULT_TIMEOUT)),
        between_bytes_timeout: Some(duration(options.between_bytes_timeout, DEFAULT_TIMEOUT)),
    };
    Ok((converted, options))
}

fn response_to_wire(
    response: http::Response<body::Body>,
    connection: wasmtime_wasi::runtime::AbortOnDropJoinHandle<()>,
) -> Response {
    let (parts, body) = response.into_parts();
    // Dropping the connection task aborts the transfer, so the body keeps it.
    let body = http_body_util::BodyExt::map_frame(body, move |frame| {
        let _connection = &connection;
        frame
    });
    let (body, trailers) = body::to_wire(http_body_util::BodyExt::boxed_unsync(body));
    Response {
        body,
        trailers,
        status: parts.status.as_u16(),
        headers: fields_from_headers(&parts.headers),
    }
}
