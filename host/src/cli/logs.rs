//! Log output of the `trellis` binary: `tracing` events on stderr as text for people or as
//! JSON (one object a line, event fields at the top level) for collectors. Levels per module
//! come from `RUST_LOG`, else the command's default. With telemetry switched on, the same
//! subscriber also exports spans and log records over OTLP ([`trellis_host::telemetry`]).

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};
use trellis_host::telemetry::{Exporters, Observability, Signal};
use trellis_providers::trace_context;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Crates whose own spans and events would only describe the export itself.
const EXPORT_NOISE: &str = "h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,\
                            opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off";

/// Installs the global subscriber; `default_level` applies when `RUST_LOG` is unset or invalid.
/// Returns the exporters `observability` switched on, to be shut down at exit.
pub fn init(
    format: LogFormat,
    default_level: &str,
    observability: &Observability,
) -> anyhow::Result<Exporters> {
    let exporters = Exporters::start(observability)?;
    // The spans that only exist to be exported stay out of the log output.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into())
        .add_directive(format!("{}=off", trace_context::TARGET).parse()?);
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output = match format {
        LogFormat::Text => output
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => output
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    let level = &observability.args.trace_level;
    // The spans are at `info`: the most verbose level any filter enables becomes the `log`
    // crate's maximum, and at `trace` every `log::trace!` in wasmtime and cranelift would be
    // dispatched and filtered, a fifth of an HTTP request's time.
    let exported = || -> anyhow::Result<EnvFilter> {
        Ok(EnvFilter::try_new(format!(
            "{level},{}=info,{EXPORT_NOISE}",
            trace_context::TARGET
        ))?)
    };
    let traces = match &exporters.tracer {
        Some(provider) => Some(
            // Each span carries the attributes it was given and no more: source locations,
            // threads, busy/idle times and targets cost allocations on every request. The
            // OpenTelemetry context is made current on entry only when log records need it for
            // their trace IDs (every poll of an instrumented future enters its span).
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("trellis"))
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_target(false)
                .with_context_activation(exporters.logger.is_some())
                .with_filter(exported()?),
        ),
        None => None,
    };
    let logs = match &exporters.logger {
        Some(provider) => Some(
            opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(provider)
                .with_filter(exported()?),
        ),
        None => None,
    };
    Registry::default()
        .with(output)
        .with(traces)
        .with(logs)
        .try_init()?;
    if let Some(meter) = &exporters.meter {
        opentelemetry::global::set_meter_provider(meter.clone());
    }
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        if observability.enabled(signal) {
            let endpoint = observability.endpoint(signal);
            let protocol = observability.args.observability_protocol;
            tracing::info!(?signal, %endpoint, ?protocol, "exporting over OTLP");
        }
    }
    Ok(exporters)
}
