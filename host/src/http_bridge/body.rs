//! Bodies between `wrpc:http` (a byte stream and a trailers future) and `http_body` bodies
//! (data frames, then a trailers frame), streamed chunk by chunk in both directions.
//!
//! wRPC streams carry no error: a body that fails part-way reaches the other side cut short,
//! without trailers (the failure is logged where it happens).

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use http_body::Frame;
use http_body_util::{BodyExt as _, StreamBody};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

use super::convert::{fields_from_headers, headers_from_fields};
use crate::wrpc_http::wrpc::http::types::Fields;

/// How many chunks may wait between a body and the wRPC stream it feeds.
const CHUNKS_IN_FLIGHT: usize = 16;

/// A body as wasmtime-wasi-http (and hyper) hand them over.
pub type Body = WasiBody;

/// A `stream<u8>` of the bindings.
pub type WireStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// A `future<option<fields>>` of the bindings.
pub type WireTrailers = Pin<Box<dyn Future<Output = Option<Fields>> + Send>>;

/// A body that yields `data`, then the trailers `trailers` resolves to (if any).
pub fn from_wire(data: WireStream, trailers: WireTrailers) -> Body {
    let data = data.map(|chunk| Ok(Frame::data(chunk)));
    let trailers = futures::stream::once(trailers).filter_map(|fields| async move {
        match headers_from_fields(fields?) {
            Ok(headers) => Some(Ok(Frame::trailers(headers))),
            Err(error) => {
                tracing::debug!("dropping wRPC HTTP trailers: {error}");
                Some(Err(ErrorCode::HttpProtocolError.into()))
            }
        }
    });
    StreamBody::new(data.chain(trailers)).boxed_unsync()
}

/// Splits `body` into a data stream and a trailers future; a task pumps the frames, at most
/// [`CHUNKS_IN_FLIGHT`] ahead of the reader, and stops when the reader goes away.
pub fn to_wire(mut body: Body) -> (WireStream, WireTrailers) {
    let (chunks, chunks_rx) = tokio::sync::mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let (trailers_tx, trailers_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(code) => {
                    tracing::warn!("HTTP body failed part-way, cut short: {code:?}");
                    return;
                }
            };
            match frame.into_data() {
                Ok(chunk) => {
                    if chunks.send(chunk).await.is_err() {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(headers) = frame.into_trailers() {
                        trailers = Some(fields_from_headers(&headers));
                    }
                }
            }
        }
        // The data stream ends before the trailers arrive, as readers expect.
        drop(chunks);
        let _ = trailers_tx.send(trailers);
    });
    let data = futures::stream::unfold(chunks_rx, |mut chunks| async move {
        chunks.recv().await.map(|chunk| (chunk, chunks))
    });
    let trailers = async move { trailers_rx.await.ok().flatten() };
    (Box::pin(data), Box::pin(trailers))
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    #[tokio::test]
    async fn data_and_trailers_survive_a_round_trip() {
        let chunks = vec![Bytes::from("ab"), Bytes::from("cd")];
        let trailers: Fields = vec![("x-sum".into(), vec![Bytes::from("abcd")])];
        let body = from_wire(
            Box::pin(futures::stream::iter(chunks)),
            Box::pin(std::future::ready(Some(trailers.clone()))),
        );
        let (data, back) = to_wire(body);
        let data: Vec<Bytes> = data.collect().await;
        assert_eq!(data.concat(), b"abcd");
        assert_eq!(back.await, Some(trailers));

        let plain = Full::new(Bytes::from("x"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let (data, trailers) = to_wire(plain);
        assert_eq!(data.collect::<Vec<_>>().await.concat(), b"x");
        assert_eq!(trailers.await, None);
    }
}
