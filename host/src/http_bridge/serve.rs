//! The serving half: a component's `wasi:http/incoming-handler` export answers
//! `wrpc:http/incoming-handler@0.1.0` `handle`, each request run in-process exactly as the
//! built-in HTTP server runs it ([`trellis_providers::http::handle_request`]).

use futures::StreamExt as _;
use tokio::task::JoinSet;
use trellis_providers::http::{HandleError, handle_request};
use trellis_runtime::ComponentHandle;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use super::body;
use super::convert::{
    error_code_to_wire, fields_from_headers, headers_from_fields, method_to_http,
};
use crate::wrpc_http::exports::wrpc::http::incoming_handler::{Handler, serve_interface};
use crate::wrpc_http::wasi::http::types::FieldSizePayload;
use crate::wrpc_http::wrpc::http::types::{ErrorCode, Request, Response, Scheme as WireScheme};

/// Whether `instance` is an export the bridge serves: `wasi:http/incoming-handler@0.2.x`.
pub fn is_incoming_handler(instance: &str) -> bool {
    instance
        .strip_prefix("wasi:http/incoming-handler@0.2.")
        .is_some()
}

/// Serves `wrpc:http/incoming-handler@0.1.0` `handle` on `server` (the component's prefix and
/// queue group) if `component` exports `wasi:http/incoming-handler@0.2.x`; the accept loop
/// joins `tasks`, each request runs detached so that it finishes even when serving stops.
pub async fn serve(
    server: &wrpc_transport_nats::Client,
    component: &ComponentHandle,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    if !component
        .exported_instances()
        .iter()
        .any(|instance| is_incoming_handler(instance))
    {
        return Ok(());
    }
    let handler = IncomingHandler {
        component: component.clone(),
    };
    for (instance, function, mut invocations) in serve_interface(server, handler).await? {
        let id = component.id().to_string();
        tasks.spawn(async move {
            while let Some(invocation) = invocations.next().await {
                let invocation = match invocation {
                    Ok(invocation) => invocation,
                    Err(error) => {
                        tracing::warn!(component = %id, instance, function, "accepting invocation: {error:#}");
                        continue;
                    }
                };
                let id = id.clone();
                tokio::spawn(async move {
                    if let Err(error) = invocation.await {
                        tracing::warn!(component = %id, instance, function, "wRPC invocation failed: {error:#}");
                    }
                });
            }
        });
    }
    Ok(())
}

/// Answers `wrpc:http/incoming-handler.handle` for one component.
#[derive(Clone)]
pub struct IncomingHandler {
    pub component: ComponentHandle,
}

impl<Ctx: Send> Handler<Ctx> for IncomingHandler {
    async fn handle(
        &self,
        _cx: Ctx,
        request: Request,
    ) -> anyhow::Result<Result<Response, ErrorCode>> {
        let (scheme, request) = match request_from_wire(request) {
            Ok(converted) => converted,
            Err(code) => return Ok(Err(code)),
        };
        match handle_request(self.component.clone(), None, scheme, request).await {
            Ok(response) => Ok(Ok(response_to_wire(response))),
            Err(HandleError::Answered(code)) => Ok(Err(error_code_to_wire(code))),
            // Logged by the runtime, with the limit.
            Err(error @ HandleError::Limited(_)) => {
                Ok(Err(ErrorCode::InternalError(Some(error.to_string()))))
            }
            Err(error) => {
                tracing::warn!(component = %self.component.id(), "wRPC HTTP request: {error}");
                Ok(Err(ErrorCode::InternalError(Some(error.to_string()))))
            }
        }
    }
}

/// The request as the component will see it: the URI from scheme, authority and path.
fn request_from_wire(request: Request) -> Result<(Scheme, http::Request<body::Body>), ErrorCode> {
    let scheme = match request.scheme {
        None | Some(WireScheme::Http) => Scheme::Http,
        Some(WireScheme::Https) => Scheme::Https,
        Some(WireScheme::Other(other)) => Scheme::Other(other),
    };
    let headers = headers_from_fields(request.headers).map_err(|invalid| {
        ErrorCode::HttpRequestHeaderSize(Some(FieldSizePayload {
            field_name: Some(invalid.0),
            field_size: None,
        }))
    })?;
    let mut uri = http::Uri::builder();
    match &request.authority {
        Some(authority) => {
            let scheme = match &scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
                Scheme::Other(other) => other,
            };
            uri = uri.scheme(scheme).authority(authority.as_str());
        }
        // wasi:http needs an authority: from the URI, or else the `Host` header.
        None if !headers.contains_key(http::header::HOST) => {
            return Err(ErrorCode::HttpRequestUriInvalid);
        }
        None => {}
    }
    let uri = uri
        .path_and_query(request.path_with_query.as_deref().unwrap_or("/"))
        .build()
        .map_err(|_| ErrorCode::HttpRequestUriInvalid)?;
    let method =
        method_to_http(&request.method).map_err(|_| ErrorCode::HttpRequestMethodInvalid)?;
    let mut converted = http::Request::new(body::from_wire(request.body, request.trailers));
    *converted.method_mut() = method;
    *converted.uri_mut() = uri;
    *converted.headers_mut() = headers;
    Ok((scheme, converted))
}

fn response_to_wire(response: http::Response<body::Body>) -> Response {
    let (parts, body) = response.into_parts();
    let (body, trailers) = body::to_wire(body);
    Response {
        body,
        trailers,
        status: parts.status.as_u16(),
        headers: fields_from_headers(&parts.headers),
    }
}
