//! Traces, metrics and logs exported over OTLP, switched and addressed as on wasmCloud 1.x hosts
//! (`--enable-observability`, `--enable-traces`, …, `--override-*-endpoint`,
//! `--observability-protocol`), and the same settings handed to providers in
//! `HostData.otel_config`.
//!
//! Everything is off by default. Exports are batched on the Tokio runtime into bounded queues:
//! an unreachable collector drops what does not fit (the SDK counts and reports the drops) and
//! never holds up a call.

use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Serialize;

use trellis_runtime::{CallObserver, DURATION_BOUNDS, FailureKind};

use crate::metrics::HostStats;
use crate::state::HostState;

/// The `service.name` of a host's telemetry unless `OTEL_SERVICE_NAME` says otherwise.
const SERVICE_NAME: &str = "trellis-host";

/// How OTLP is carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// HTTP with protobuf bodies (port 4318).
    #[default]
    Http,
    /// gRPC (port 4317).
    Grpc,
}

/// The command-line switches (names and meanings of wasmCloud 1.x's `wasmcloud` binary).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ObservabilityArgs {
    /// Export traces, metrics and logs over OTLP.
    #[arg(long, env = "TRELLIS_OBSERVABILITY_ENABLED", conflicts_with_all = ["enable_traces", "enable_metrics", "enable_logs"])]
    pub enable_observability: bool,
    /// Export traces over OTLP (`--enable-traces` or `--enable-traces=true|false`).
    #[arg(long, env = "TRELLIS_TRACES_ENABLED", num_args = 0..=1, default_missing_value = "true")]
    pub enable_traces: Option<bool>,
    /// Export metrics over OTLP.
    #[arg(long, env = "TRELLIS_METRICS_ENABLED", num_args = 0..=1, default_missing_value = "true")]
    pub enable_metrics: Option<bool>,
    /// Export logs over OTLP.
    #[arg(long, env = "TRELLIS_LOGS_ENABLED", num_args = 0..=1, default_missing_value = "true")]
    pub enable_logs: Option<bool>,
    /// The collector for every signal [default: http://127.0.0.1:4318 (http), :4317 (grpc)].
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub override_observability_endpoint: Option<String>,
    /// The traces endpoint, used as given.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub override_traces_endpoint: Option<String>,
    /// The metrics endpoint, used as given.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")]
    pub override_metrics_endpoint: Option<String>,
    /// The logs endpoint, used as given.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")]
    pub override_logs_endpoint: Option<String>,
    #[arg(long, env = "TRELLIS_OBSERVABILITY_PROTOCOL", value_enum, default_value_t = Protocol::Http)]
    pub observability_protocol: Protocol,
    /// The least level of spans and logs exported (`RUST_LOG`-style directives also work).
    #[arg(long, env = "TRELLIS_TRACE_LEVEL", default_value = "info")]
    pub trace_level: String,
}

/// One kind of telemetry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    fn path(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        }
    }
}

/// What is exported where, resolved from [`ObservabilityArgs`].
#[derive(Clone, Debug, Default)]
pub struct Observability {
    pub args: ObservabilityArgs,
    /// The host's ID and lattice, carried by everything exported (resource attributes).
    pub host_id: Option<String>,
    pub lattice: Option<String>,
}

impl Observability {
    pub fn new(args: ObservabilityArgs) -> Self {
        Self {
            args,
            ..Self::default()
        }
    }

    /// Whether `signal` is exported: its own switch, else `--enable-observability`.
    pub fn enabled(&self, signal: Signal) -> bool {
        let own = match signal {
            Signal::Traces => self.args.enable_traces,
            Signal::Metrics => self.args.enable_metrics,
            Signal::Logs => self.args.enable_logs,
        };
        own.unwrap_or(self.args.enable_observability)
    }

    /// Where `signal` goes: its own endpoint as given; else the general one (gRPC: its
    /// scheme and authority; HTTP: with `/v1/{signal}` when it has no path); else the local
    /// collector's default port.
    pub fn endpoint(&self, signal: Signal) -> String {
        let own = match signal {
            Signal::Traces => &self.args.override_traces_endpoint,
            Signal::Metrics => &self.args.override_metrics_endpoint,
            Signal::Logs => &self.args.override_logs_endpoint,
        };
        if let Some(own) = own {
            return own.clone();
        }
        let protocol = self.args.observability_protocol;
        match (&self.args.override_observability_endpoint, protocol) {
            (Some(general), Protocol::Grpc) => match url::Url::parse(general) {
                Ok(url) => url.origin().ascii_serialization(),
                Err(_) => general.clone(),
            },
            (Some(general), Protocol::Http) => match url::Url::parse(general) {
                Ok(mut url) if url.path() == "/" => {
                    url.set_path(&format!("/v1/{}", signal.path()));
                    url.to_string()
                }
                _ => general.clone(),
            },
            (None, Protocol::Grpc) => "http://127.0.0.1:4317".into(),
            (None, Protocol::Http) => format!("http://127.0.0.1:4318/v1/{}", signal.path()),
        }
    }

    /// `HostData.otel_config` (wasmcloud-core 0.21's shape), so an SDK provider exports to the
    /// same collector as its host.
    pub fn otel_config(&self) -> OtelConfig {
        let args = &self.args;
        OtelConfig {
            enable_observability: args.enable_observability,
            enable_traces: args.enable_traces,
            enable_metrics: args.enable_metrics,
            enable_logs: args.enable_logs,
            observability_endpoint: args.override_observability_endpoint.clone(),
            traces_endpoint: args.override_traces_endpoint.clone(),
            metrics_endpoint: args.override_metrics_endpoint.clone(),
            logs_endpoint: args.override_logs_endpoint.clone(),
            protocol: match args.observability_protocol {
                Protocol::Http => "Http",
                Protocol::Grpc => "Grpc",
            },
            additional_ca_paths: Vec::new(),
            trace_level: wasmcloud_level(&args.trace_level),
        }
    }
}

/// wasmCloud's level names (`critical` is its `error`); directives other than a bare level
/// leave providers at `info`.
fn wasmcloud_level(level: &str) -> &'static str {
    match level.trim().to_ascii_lowercase().as_str() {
        "error" => "error",
        "warn" => "warn",
        "debug" => "debug",
        "trace" => "trace",
        _ => "info",
    }
}

/// `HostData.otel_config`: the optional fields are left out when unset.
#[derive(Clone, Debug, Serialize)]
pub struct OtelConfig {
    enable_observability: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_traces: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_metrics: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_logs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observability_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traces_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logs_endpoint: Option<String>,
    protocol: &'static str,
    additional_ca_paths: Vec<String>,
    trace_level: &'static str,
}

/// The exporters running; [`Self::shutdown`] flushes what they hold.
#[derive(Default)]
pub struct Exporters {
    pub tracer: Option<SdkTracerProvider>,
    pub meter: Option<SdkMeterProvider>,
    pub logger: Option<SdkLoggerProvider>,
}

/// An OTLP exporter of one signal (`$builder`: its `…Exporter::builder()`) to `$endpoint` over
/// `$protocol`; the three signals' builders share no trait, hence a macro.
macro_rules! otlp_exporter {
    ($builder:expr, $protocol:expr, $endpoint:expr, $what:literal) => {
        match $protocol {
            Protocol::Grpc => $builder.with_tonic().with_endpoint($endpoint).build(),
            Protocol::Http => $builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint($endpoint)
                .build(),
        }
        .with_context(|| format!("the OTLP {} exporter for {}", $what, $endpoint))
    };
}

impl Exporters {
    /// Builds the exporters `observability` switches on; must run inside the Tokio runtime.
    pub fn start(observability: &Observability) -> anyhow::Result<Self> {
        let resource = self::resource(observability);
        let protocol = observability.args.observability_protocol;
        let mut exporters = Self::default();
        if observability.enabled(Signal::Traces) {
            let endpoint = observability.endpoint(Signal::Traces);
            let exporter = otlp_exporter!(
                opentelemetry_otlp::SpanExporter::builder(),
                protocol,
                &endpoint,
                "trace"
            )?;
            let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
            exporters.tracer = Some(
                SdkTracerProvider::builder()
                    .with_span_processor(processor)
                    .with_resource(resource.clone())
                    .build(),
            );
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
        }
        if observability.enabled(Signal::Metrics) {
            let endpoint = observability.endpoint(Signal::Metrics);
            let exporter = otlp_exporter!(
                opentelemetry_otlp::MetricExporter::builder(),
                protocol,
                &endpoint,
                "metric"
            )?;
            let reader = opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
            exporters.meter = Some(
                SdkMeterProvider::builder()
                    .with_reader(reader)
                    .with_resource(resource.clone())
                    .build(),
            );
        }
        if observability.enabled(Signal::Logs) {
            let endpoint = observability.endpoint(Signal::Logs);
            let exporter = otlp_exporter!(
                opentelemetry_otlp::LogExporter::builder(),
                protocol,
                &endpoint,
                "log"
            )?;
            let processor = opentelemetry_sdk::logs::log_processor_with_async_runtime::BatchLogProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
            exporters.logger = Some(
                SdkLoggerProvider::builder()
                    .with_log_processor(processor)
                    .with_resource(resource)
                    .build(),
            );
        }
        Ok(exporters)
    }

    /// Sends what the exporters still hold, each bounded in time.
    pub fn shutdown(&self) {
        if let Some(tracer) = &self.tracer {
            let _ = tracer.shutdown_with_timeout(Duration::from_secs(5));
        }
        if let Some(meter) = &self.meter {
            let _ = meter.shutdown_with_timeout(Duration::from_secs(5));
        }
        if let Some(logger) = &self.logger {
            let _ = logger.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

/// `service.name` (`OTEL_SERVICE_NAME`, else `trellis-host`), `service.version`, the host
/// (`service.instance.id`, `wasmcloud.host.id`, `wasmcloud.lattice`) and
/// `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(observability: &Observability) -> Resource {
    let mut builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if let Some(host_id) = &observability.host_id {
        builder = builder.with_attributes([
            KeyValue::new("service.instance.id", host_id.clone()),
            KeyValue::new("wasmcloud.host.id", host_id.clone()),
        ]);
    }
    if let Some(lattice) = &observability.lattice {
        builder = builder.with_attribute(KeyValue::new("wasmcloud.lattice", lattice.clone()));
    }
    match std::env::var("OTEL_SERVICE_NAME") {
        Ok(name) if !name.is_empty() => builder.build(),
        _ => builder.with_service_name(SERVICE_NAME).build(),
    }
}

/// Every call's duration into the OTLP histogram `trellis.component.call.duration` (seconds,
/// the bounds of `/metrics`), by component and outcome.
pub struct CallDurations {
    histogram: Histogram<f64>,
    host_id: KeyValue,
}

impl CallDurations {
    pub fn new(meter: &Meter, host_id: &str) -> Self {
        Self {
            histogram: meter
                .f64_histogram("trellis.component.call.duration")
                .with_unit("s")
                .with_description(
                    "How long a component's calls took, from waiting for an instance to the end.",
                )
                .with_boundaries(DURATION_BOUNDS.to_vec())
                .build(),
            host_id: KeyValue::new("wasmcloud.host.id", host_id.to_string()),
        }
    }
}

impl CallObserver for CallDurations {
    fn call_ended(
        &self,
        component: &Arc<str>,
        interface: &str,
        took: Duration,
        failure: Option<FailureKind>,
    ) {
        let outcome = failure.map_or("ok", FailureKind::name);
        self.histogram.record(
            took.as_secs_f64(),
            &[
                self.host_id.clone(),
                KeyValue::new(
                    "wasmcloud.component.id",
                    opentelemetry::StringValue::from(component.clone()),
                ),
                KeyValue::new("rpc.service", interface.to_string()),
                KeyValue::new("outcome", outcome),
            ],
        );
    }
}

/// The host's metrics as OTLP instruments, read from the same counters `/metrics` serves
/// whenever the exporter collects (see [`crate::metrics`] for what each counts). Once the host
/// is gone they report nothing.
pub fn observe_host(meter: &Meter, state: Weak<HostState>) {
    /// One observable instrument: its kind, name, description and what it reads.
    macro_rules! observe {
        ($kind:ident, $name:literal, $help:literal, |$host:ident, $counters:ident, $observer:ident| $read:block) => {{
            let state = state.clone();
            meter
                .$kind($name)
                .with_description($help)
                .with_callback(move |$observer| {
                    let Some(state) = state.upgrade() else {
                        return;
                    };
                    let stats = crate::metrics::host_stats(&state);
                    let counters = state
                        .metrics
                        .counters(state.runtime.engine().compile_cache_hits());
                    let ($host, $counters) = (&stats, &counters);
                    $read
                })
                .build();
        }};
    }
    let component = |host: &HostStats, id: &str| {
        vec![
            KeyValue::new("wasmcloud.host.id", host.host_id.clone()),
            KeyValue::new("wasmcloud.component.id", id.to_string()),
        ]
    };
    let host_only =
        |host: &HostStats| vec![KeyValue::new("wasmcloud.host.id", host.host_id.clone())];
    let with = |mut attributes: Vec<KeyValue>, key: &'static str, value: String| {
        attributes.push(KeyValue::new(key, value));
        attributes
    };
    observe!(
        u64_observable_counter,
        "trellis.component.calls",
        "Calls a component ended, by outcome.",
        |host, _counters, observer| {
            for c in &host.components {
                observer.observe(c.ok, &with(component(host, &c.id), "outcome", "ok".into()));
                for (kind, n) in &c.failed {
                    observer.observe(*n, &with(component(host, &c.id), "outcome", kind.clone()));
                }
            }
        }
    );
    observe!(
        u64_observable_gauge,
        "trellis.component.instances.in_use",
        "A component's instances running calls now.",
        |host, _counters, observer| {
            for c in &host.components {
                observer.observe(u64::from(c.in_use), &component(host, &c.id));
            }
        }
    );
    observe!(
        u64_observable_counter,
        "trellis.component.fuel_consumed",
        "Fuel a component's calls burned (when the host meters fuel).",
        |host, _counters, observer| {
            for c in &host.components {
                observer.observe(c.fuel_consumed, &component(host, &c.id));
            }
        }
    );
    observe!(
        u64_observable_gauge,
        "trellis.component.memory_peak",
        "The most linear memory (bytes) one of a component's instances held at the end of a call.",
        |host, _counters, observer| {
            for c in &host.components {
                observer.observe(c.memory_peak_bytes, &component(host, &c.id));
            }
        }
    );
    observe!(
        u64_observable_counter,
        "trellis.ctl.requests",
        "Control interface requests this host answered.",
        |host, counters, observer| {
            for (operation, outcome, n) in &counters.ctl {
                let attributes = with(
                    with(host_only(host), "operation", operation.to_string()),
                    "outcome",
                    outcome.to_string(),
                );
                observer.observe(*n, &attributes);
            }
        }
    );
    observe!(
        u64_observable_counter,
        "trellis.wrpc.calls",
        "wRPC calls components made, by caller and outcome.",
        |host, counters, observer| {
            for (caller, outcome, n) in &counters.wrpc_calls {
                observer.observe(
                    *n,
                    &with(component(host, caller), "outcome", outcome.to_string()),
                );
            }
        }
    );
    observe!(
        u64_observable_counter,
        "trellis.nats.disconnects",
        "Times the host's NATS connection was lost.",
        |host, counters, observer| {
            observer.observe(counters.nats_disconnects, &host_only(host));
        }
    );
    observe!(
        u64_observable_counter,
        "trellis.provider.restarts",
        "Restarts of an external provider.",
        |host, counters, observer| {
            for (provider, n) in &counters.provider_restarts {
                observer.observe(
                    *n,
                    &with(host_only(host), "wasmcloud.provider.id", provider.clone()),
                );
            }
        }
    );
    observe!(
        u64_observable_gauge,
        "trellis.provider.healthy",
        "1 while an external provider reports healthy, else 0.",
        |host, counters, observer| {
            for (provider, healthy) in &counters.provider_health {
                observer.observe(
                    u64::from(*healthy),
                    &with(host_only(host), "wasmcloud.provider.id", provider.clone()),
                );
            }
        }
    );
    observe!(
        u64_observable_counter,
        "trellis.compile_cache",
        "Component compilations, answered from the cache (`hit`) or not.",
        |host, counters, observer| {
            let (hits, misses) = counters.compile_cache;
            observer.observe(hits, &with(host_only(host), "outcome", "hit".into()));
            observer.observe(misses, &with(host_only(host), "outcome", "miss".into()));
        }
    );
}
