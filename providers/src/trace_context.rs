//! W3C trace context (`traceparent`, `tracestate`) on the hops a call crosses: HTTP headers and
//! NATS message headers, as wasmCloud 1.x hosts and SDK providers carry them.
//!
//! Spans on these hops use the target [`TARGET`], which the host's log output leaves out and its
//! trace export takes in. With tracing off no subscriber wants them, so the macros skip them and
//! every function here returns at its first check: nothing is parsed, nothing is written.

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `tracing` target of the spans exported as traces.
pub const TARGET: &str = "trellis_trace";

/// Makes `span` continue the trace whose context `headers` carry (the caller's span becomes its
/// parent). Must come before the span is first entered.
pub fn continue_from_http(span: &tracing::Span, headers: &http::HeaderMap) {
    continue_from(span, &HttpHeaders(headers));
}

/// [`continue_from_http`] for a NATS message's headers.
pub fn continue_from_nats(span: &tracing::Span, headers: Option<&async_nats::HeaderMap>) {
    if let Some(headers) = headers {
        continue_from(span, &NatsHeaders(headers));
    }
}

/// Writes `span`'s context into outgoing HTTP headers, so the receiver's spans are its children.
pub fn inject_http(span: &tracing::Span, headers: &mut http::HeaderMap) {
    inject(span, &mut HttpHeadersMut(headers));
}

/// [`inject_http`] for NATS message headers.
pub fn inject_nats(span: &tracing::Span, headers: &mut async_nats::HeaderMap) {
    inject(span, &mut NatsHeadersMut(headers));
}

fn continue_from(span: &tracing::Span, carrier: &dyn Extractor) {
    if span.is_disabled() {
        return;
    }
    use opentelemetry::trace::TraceContextExt as _;
    let parent =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(carrier));
    // Without a context in the headers the span keeps the parent it has (the current span).
    if parent.span().span_context().is_valid() {
        // Only fails when no OpenTelemetry layer is installed: nothing to continue then.
        let _ = span.set_parent(parent);
    }
}

fn inject(span: &tracing::Span, carrier: &mut dyn Injector) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, carrier)
    });
}

struct HttpHeaders<'a>(&'a http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HttpHeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HttpHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(key),
            http::HeaderValue::try_from(value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct NatsHeaders<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(async_nats::HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

struct NatsHeadersMut<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}
