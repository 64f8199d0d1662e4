//! A `wasi:http/incoming-handler`: `/trap` traps, `/spin` never answers (a busy loop, for
//! limits), `/echo` streams the request body back (with the
//! request's method and `x-*` headers as response headers, and the byte count as the trailer
//! `x-echoed-bytes`), anything else answers with who served it (the `NAME` environment variable)
//! and the path. Every response says how many requests its instance has served
//! (`x-instance-requests`), which shows whether the host reuses instances.
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Server);

struct Server;

/// Requests this instance has handled, this one included.
static SERVED: AtomicU32 = AtomicU32::new(0);

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

impl wasip2::exports::http::incoming_handler::Guest for Server {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path.starts_with("/trap") {
            panic!("asked to trap");
        }
        if path.starts_with("/spin") {
            let mut turns = 0u64;
            loop {
                turns = std::hint::black_box(turns.wrapping_add(1));
            }
        }
        let echo = path.starts_with("/echo");
        let headers = Fields::new();
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        headers
            .append("x-instance-requests", served.to_string().as_bytes())
            .expect("instance header");
        if echo {
            let method = method_name(&request.method());
            headers
                .append("x-method", method.as_bytes())
                .expect("method header");
            for (name, value) in request.headers().entries() {
                if name.starts_with("x-") {
                    headers.append(&name, &value).expect("echoed header");
                }
            }
        }
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("response body");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("response stream");
        let mut trailers = None;
        if echo {
            let incoming = request.consume().expect("request body");
            let mut input = incoming.stream().expect("request stream");
            let mut buffer = vec![0; 64 * 1024];
            let mut echoed = 0u64;
            loop {
                let read = Read::read(&mut input, &mut buffer).expect("reading the body");
                if read == 0 {
                    break;
                }
                Write::write_all(&mut out, &buffer[..read]).expect("echoing the body");
                echoed += read as u64;
            }
            drop(input);
            drop(IncomingBody::finish(incoming));
            let fields = Fields::new();
            fields
                .append("x-echoed-bytes", echoed.to_string().as_bytes())
                .expect("trailer");
            trailers = Some(fields);
        } else {
            let name = std::env::var("NAME").unwrap_or_default();
            write!(out, "hello from {name} at {path}").expect("writing the body");
        }
        out.flush().expect("flushing the body");
        drop(out);
        OutgoingBody::finish(body, trailers).expect("finishing the body");
    }
}
