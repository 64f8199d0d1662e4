//! Makes an outgoing HTTP GET through `wasi:http/outgoing-handler` and reports what it saw.
use std::io::Read as _;

use exports::trellis::providers::fetch_probe::Guest;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, OutgoingRequest, Scheme};

wit_bindgen::generate!({ path: "../../../wit", world: "trellis:providers/fetch-guest", generate_all });

struct Fetcher;

impl Guest for Fetcher {
    fn get(url: String) -> Result<String, String> {
        let (scheme, rest) = match url.split_once("://") {
            Some(("https", rest)) => (Scheme::Https, rest),
            Some((_, rest)) => (Scheme::Http, rest),
            None => (Scheme::Http, url.as_str()),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let request = OutgoingRequest::new(Fields::new());
        request.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
        request
            .set_authority(Some(authority))
            .map_err(|()| "authority")?;
        request
            .set_path_with_query(Some(path))
            .map_err(|()| "path")?;
        let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(format!("{code:?}")),
            Some(Err(())) => return Err("response taken twice".into()),
            None => return Err("response not ready".into()),
        };
        let status = response.status();
        let body = response.consume().map_err(|()| "response body")?;
        let mut text = String::new();
        body.stream()
            .map_err(|()| "response stream")?
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        Ok(format!("{status} {text}"))
    }
}

export!(Fetcher);
