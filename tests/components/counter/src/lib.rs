//! A `wasi:http/incoming-handler` that counts its requests in `wasi:keyvalue`: each request
//! increments the counter named by its path (`/` counts under `hits`) in the linked bucket and
//! answers `count: N` with the new value. A key-value failure answers 500 with the error.
use std::io::Write as _;

use wasi::keyvalue::{atomics, store};
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({
    path: "../../../wit/deps/keyvalue",
    inline: "
        package trellis:counter;
        world counter {
            import wasi:keyvalue/store@0.2.0-draft;
            import wasi:keyvalue/atomics@0.2.0-draft;
        }
    ",
    world: "trellis:counter/counter",
    generate_all,
});

wasip2::http::proxy::export!(Counter);

struct Counter;

/// Opens the bucket the link configured (the empty identifier means that one).
fn increment(key: &str) -> Result<u64, String> {
    let describe = |e: store::Error| match e {
        store::Error::NoSuchStore => "no such store".to_string(),
        store::Error::AccessDenied => "access denied".to_string(),
        store::Error::Other(message) => message,
    };
    let bucket = store::open("").map_err(describe)?;
    atomics::increment(&bucket, key, 1).map_err(describe)
}

impl wasip2::exports::http::incoming_handler::Guest for Counter {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        let key = match path.trim_matches('/') {
            "" => "hits".to_string(),
            other => other.replace('/', "."),
        };
        let (status, text) = match increment(&key) {
            Ok(count) => (200, format!("count: {count}\n")),
            Err(error) => (500, format!("keyvalue error: {error}\n")),
        };
        let response = OutgoingResponse::new(Fields::new());
        response.set_status_code(status).expect("a valid status");
        let body = response.body().expect("response body");
        ResponseOutparam::set(response_out, Ok(response));
        let mut out = body.write().expect("response stream");
        out.write_all(text.as_bytes()).expect("writing the body");
        out.flush().expect("flushing the body");
        drop(out);
        OutgoingBody::finish(body, None).expect("finishing the body");
    }
}
