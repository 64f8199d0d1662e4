//! A `wasi:http/incoming-handler` in front of a `kv-probe` import: `GET /count/{key}` logs the
//! request through `wasi:logging`, increments `key` in bucket `default` through the import
//! (another component, wherever the lattice runs it) and answers the new count; an error from
//! the import answers 502 with it.
use trellis::providers::kv_probe;
use wasi::logging::logging::{Level, log};
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({ path: "../../../wit", world: "trellis:providers/front-door", generate_all });

wasip2::http::proxy::export!(FrontDoor);

struct FrontDoor;

impl wasip2::exports::http::incoming_handler::Guest for FrontDoor {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        log(Level::Info, "front-door", &format!("request for {path}"));
        let (status, text) = match path.strip_prefix("/count/") {
            Some(key) => match kv_probe::increment("default", key, 1) {
                Ok(count) => (200, count.to_string()),
                Err(error) => (502, error),
            },
            None => (404, "try /count/{key}".to_string()),
        };
        let response = OutgoingResponse::new(Fields::new());
        response.set_status_code(status).expect("a valid status");
        let body = response.body().expect("the body");
        ResponseOutparam::set(response_out, Ok(response));
        let out = body.write().expect("the body stream");
        out.blocking_write_and_flush(text.as_bytes())
            .expect("writing the body");
        drop(out);
        OutgoingBody::finish(body, None).expect("finishing the body");
    }
}
