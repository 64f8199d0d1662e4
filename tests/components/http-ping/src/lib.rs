//! A `wasi:http/incoming-handler` that answers each request with one call of
//! `trellis:example/pong.ping` (wherever its link points: in-process, or over wRPC on another
//! host), so that a request's cost is the HTTP path plus one component-to-component call.
use trellis::example::pong;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({ path: "../../../wit/example", world: "pinger" });

wasip2::http::proxy::export!(HttpPing);

struct HttpPing;

impl wasip2::exports::http::incoming_handler::Guest for HttpPing {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let text = format!("pong {}\n", pong::ping(41));
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("the body");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("the body stream");
        stream
            .blocking_write_and_flush(text.as_bytes())
            .expect("writing the body");
        drop(stream);
        OutgoingBody::finish(body, None).expect("finishing the body");
    }
}
