//! A `wasi:http/incoming-handler`: `/trap` traps, `/echo` streams the request body back, anything
//! else answers with who served it (the `NAME` environment variable) and the path.
use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Server);

struct Server;

impl wasip2::exports::http::incoming_handler::Guest for Server {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path.starts_with("/trap") {
            panic!("asked to trap");
        }
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("response body");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("response stream");
        if path.starts_with("/echo") {
            let incoming = request.consume().expect("request body");
            let mut input = incoming.stream().expect("request stream");
            std::io::copy(&mut input, &mut out).expect("echoing the body");
            drop(input);
            drop(IncomingBody::finish(incoming));
        } else {
            let name = std::env::var("NAME").unwrap_or_default();
            write!(out, "hello from {name} at {path}").expect("writing the body");
        }
        out.flush().expect("flushing the body");
        drop(out);
        OutgoingBody::finish(body, None).expect("finishing the body");
    }
}
