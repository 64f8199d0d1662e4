//! An OTLP/gRPC receiver for the telemetry tests: opentelemetry-proto's generated trace, logs
//! and metrics services on one loopback port (HTTP/2 by hyper), keeping every span, log record
//! and metric point exported to it, with the resource (service, host) of the process that sent
//! it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use tonic::codegen::Service as _;

/// One span as received.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// The sender's resource attributes (`service.name`, `wasmcloud.host.id`, …).
    pub resource: BTreeMap<String, String>,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's `SpanKind`: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// Event messages (a `tracing` event's message is its event name).
    pub events: Vec<String>,
}

impl ReceivedSpan {
    pub fn service(&self) -> &str {
        self.resource.get("service.name").map_or("", String::as_str)
    }

    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// One log record as received.
#[derive(Clone, Debug)]
pub struct ReceivedLog {
    pub resource: BTreeMap<String, String>,
    pub trace_id: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
}

/// One point of a sum or gauge as received (of a histogram: its count).
#[derive(Clone, Debug)]
pub struct ReceivedPoint {
    pub resource: BTreeMap<String, String>,
    pub metric: String,
    pub attributes: BTreeMap<String, String>,
    pub value: f64,
}

/// How many spans, log records and points the receiver keeps of each; later ones are counted
/// (benchmarks export millions) but not kept.
const KEPT: usize = 20_000;

#[derive(Default)]
struct Received {
    /// Spans exported to it, kept or not.
    span_count: std::sync::atomic::AtomicU64,
    spans: Mutex<Vec<ReceivedSpan>>,
    logs: Mutex<Vec<ReceivedLog>>,
    points: Mutex<Vec<ReceivedPoint>>,
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the OTLP receiver");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Received::default());
        let traces = TraceServiceServer::new(Sink(received.clone()));
        let logs = LogsServiceServer::new(Sink(received.clone()));
        let metrics = MetricsServiceServer::new(Sink(received.clone()));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (traces, logs, metrics) = (traces.clone(), logs.clone(), metrics.clone());
                let service =
                    hyper::service::service_fn(move |request: http::Request<Incoming>| {
                        let path = request.uri().path();
                        let answer: Answer = if path.contains("collector.logs") {
                            Box::pin(logs.clone().call(request))
                        } else if path.contains("collector.metrics") {
                            Box::pin(metrics.clone().call(request))
                        } else {
                            Box::pin(traces.clone().call(request))
                        };
                        answer
                    });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`, for `--override-observability-endpoint` with gRPC.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many spans were exported to it.
    pub fn span_count(&self) -> u64 {
        self.received
            .span_count
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().unwrap().clone()
    }

    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.received.logs.lock().unwrap().clone()
    }

    /// Every sum and gauge point received, oldest first.
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.received.points.lock().unwrap().clone()
    }

    /// Waits (up to `limit`) until `done` holds for the spans received so far; returns them.
    pub async fn spans_when(
        &self,
        limit: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let started = Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) || started.elapsed() > limit {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The answer of either service to one request.
type Answer = std::pin::Pin<
    Box<
        dyn Future<Output = Result<http::Response<tonic::body::Body>, std::convert::Infallible>>
            + Send,
    >,
>;

struct Sink(Arc<Received>);

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    self.0
                        .span_count
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if spans.len() >= KEPT {
                        continue;
                    }
                    spans.push(ReceivedSpan {
                        resource: resource.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        attributes: attributes(&span.attributes),
                        events: span.events.into_iter().map(|e| e.name).collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut logs = self.0.logs.lock().unwrap();
        for resource_logs in request.into_inner().resource_logs {
            let resource = resource_logs
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            for scope in resource_logs.scope_logs {
                for record in scope.log_records {
                    if logs.len() >= KEPT {
                        break;
                    }
                    logs.push(ReceivedLog {
                        resource: resource.clone(),
                        trace_id: hex(&record.trace_id),
                        body: text(record.body.as_ref()),
                        attributes: attributes(&record.attributes),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut points = self.0.points.lock().unwrap();
        for resource_metrics in request.into_inner().resource_metrics {
            let resource = resource_metrics
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            for scope in resource_metrics.scope_metrics {
                for metric in scope.metrics {
                    let data_points = match metric.data {
                        Some(metric::Data::Sum(sum)) => sum.data_points,
                        Some(metric::Data::Gauge(gauge)) => gauge.data_points,
                        Some(metric::Data::Histogram(histogram)) => {
                            for point in histogram.data_points {
                                points.push(ReceivedPoint {
                                    resource: resource.clone(),
                                    metric: metric.name.clone(),
                                    attributes: attributes(&point.attributes),
                                    value: point.count as f64,
                                });
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    for point in data_points {
                        if points.len() >= KEPT {
                            break;
                        }
                        let value = match point.value {
                            Some(number_data_point::Value::AsDouble(d)) => d,
                            Some(number_data_point::Value::AsInt(i)) => i as f64,
                            None => continue,
                        };
                        points.push(ReceivedPoint {
                            resource: resource.clone(),
                            metric: metric.name.clone(),
                            attributes: attributes(&point.attributes),
                            value,
                        });
                    }
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}
