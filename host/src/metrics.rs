//! What this host has done, for operators: per component, its calls (how they ended, how long
//! they took, instances in use); per host, control requests, wRPC calls sent, NATS disconnects
//! and provider restarts.
//!
//! Read two ways, both off by default and costing nothing until read (the counters are
//! relaxed atomics the call path bumps anyway):
//! - `/metrics` in the Prometheus text format on `--metrics-addr` ([`serve`]);
//! - the extension subject `wasmbus.ctl.v1.{lattice}.trellis.stats`, which every host answers
//!   with [`HostStats`] as JSON (`trellis ctl top` reads it).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `trellis_component_calls_total` | counter | `component`, `outcome` (`ok`, `trap`, `budget`, `busy`, `call`) |
//! | `trellis_component_call_duration_seconds` | histogram | `component` |
//! | `trellis_interface_calls_total` | counter | `component`, `interface` (exported, unversioned), `outcome` |
//! | `trellis_interface_call_duration_seconds` | histogram | `component`, `interface` |
//! | `trellis_component_instances_in_use` | gauge | `component` |
//! | `trellis_component_instances_max` | gauge | `component` |
//! | `trellis_component_fuel_consumed_total` | counter | `component` |
//! | `trellis_component_memory_peak_bytes` | gauge | `component` |
//! | `trellis_ctl_requests_total` | counter | `operation` (e.g. `component.scale`), `outcome` (`ok`, `error`) |
//! | `trellis_wrpc_calls_total` | counter | `component` (the caller), `outcome` (`ok`, `no_link`, `transport`) |
//! | `trellis_wrpc_call_duration_seconds` | histogram | |
//! | `trellis_compile_cache_total` | counter | `outcome` (`hit`, `miss`) |
//! | `trellis_nats_disconnects_total` | counter | |
//! | `trellis_provider_restarts_total` | counter | `provider` |
//! | `trellis_provider_healthy` | gauge (0/1) | `provider` |
//! | `trellis_host_info` | gauge (1) | `host_id`, `name`, `version` |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use trellis_runtime::{DURATION_BOUNDS, DurationHistogram, FailureKind};

use crate::state::HostState;

/// The host-wide counters (components keep their own, in the runtime).
#[derive(Default)]
pub struct HostMetrics {
    /// (operation, succeeded) → requests.
    ctl: Mutex<BTreeMap<(&'static str, bool), u64>>,
    /// (calling component, outcome) → wRPC calls it made.
    wrpc_calls: Mutex<BTreeMap<(Arc<str>, WrpcOutcome), u64>>,
    /// Sent wRPC calls, from the call to the end of their results.
    wrpc_durations: DurationHistogram,
    nats_disconnects: AtomicU64,
    provider_restarts: Mutex<BTreeMap<String, u64>>,
    provider_health: Mutex<BTreeMap<String, bool>>,
}

/// The host-wide counters at one moment, as both exports read them.
#[derive(Clone, Debug, Default)]
pub struct HostCounters {
    /// (operation, `ok` | `error`, requests).
    pub ctl: Vec<(&'static str, &'static str, u64)>,
    /// (calling component, outcome, calls).
    pub wrpc_calls: Vec<(Arc<str>, &'static str, u64)>,
    pub nats_disconnects: u64,
    pub provider_restarts: Vec<(String, u64)>,
    pub provider_health: Vec<(String, bool)>,
    /// Compilations answered from the cache, and not.
    pub compile_cache: (u64, u64),
}

impl HostMetrics {
    pub fn counters(&self, compile_cache: (u64, u64)) -> HostCounters {
        HostCounters {
            ctl: self
                .ctl
                .lock()
                .unwrap()
                .iter()
                .map(|((operation, ok), n)| (*operation, if *ok { "ok" } else { "error" }, *n))
                .collect(),
            wrpc_calls: self
                .wrpc_calls
                .lock()
                .unwrap()
                .iter()
                .map(|((component, outcome), n)| (component.clone(), outcome.name(), *n))
                .collect(),
            nats_disconnects: self.nats_disconnects.load(Ordering::Relaxed),
            provider_restarts: self
                .provider_restarts
                .lock()
                .unwrap()
                .iter()
                .map(|(provider, n)| (provider.clone(), *n))
                .collect(),
            provider_health: self
                .provider_health
                .lock()
                .unwrap()
                .iter()
                .map(|(provider, healthy)| (provider.clone(), *healthy))
                .collect(),
            compile_cache,
        }
    }
}

/// How a wRPC call a component made ended, as far as the lattice is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WrpcOutcome {
    /// Sent, and its results read (or no longer wanted by the caller).
    Ok,
    /// Not sent: the component has no link (or chose no target) for the interface.
    NoLink,
    /// NATS or the target failed it: no answer, a broken stream.
    Transport,
}

impl WrpcOutcome {
    fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NoLink => "no_link",
            Self::Transport => "transport",
        }
    }
}

impl HostMetrics {
    pub fn ctl_request(&self, operation: &'static str, succeeded: bool) {
        *self
            .ctl
            .lock()
            .unwrap()
            .entry((operation, succeeded))
            .or_default() += 1;
    }

    pub fn wrpc_call(&self, caller: &Arc<str>, outcome: WrpcOutcome) {
        *self
            .wrpc_calls
            .lock()
            .unwrap()
            .entry((caller.clone(), outcome))
            .or_default() += 1;
    }

    /// `Some(healthy)` as a provider's health checks report it; `None` once it is stopped.
    pub fn provider_health(&self, provider: &str, healthy: Option<bool>) {
        let mut health = self.provider_health.lock().unwrap();
        match healthy {
            Some(healthy) => {
                health.insert(provider.to_string(), healthy);
            }
            None => {
                health.remove(provider);
            }
        }
    }

    pub fn wrpc_call_ended(&self, took: std::time::Duration) {
        self.wrpc_durations.record(took);
    }

    pub fn nats_disconnected(&self) {
        self.nats_disconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn provider_restarted(&self, provider: &str) {
        *self
            .provider_restarts
            .lock()
            .unwrap()
            .entry(provider.to_string())
            .or_default() += 1;
    }
}

/// One component's calls since it started, as `trellis.stats` reports them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentStats {
    pub id: String,
    pub ok: u64,
    /// Failed calls by why (`trap`, `budget`, `busy`, `call`).
    pub failed: BTreeMap<String, u64>,
    /// Upper bounds (seconds) of the duration buckets; a last bucket counts the rest.
    pub duration_bounds: Vec<f64>,
    /// Calls per bucket (not cumulative).
    pub duration_buckets: Vec<u64>,
    pub duration_total_seconds: f64,
    pub in_use: u32,
    pub max_instances: u32,
    /// Fuel its calls burned (when the host meters fuel), and the most linear memory one of
    /// its instances held at the end of a call.
    #[serde(default)]
    pub fuel_consumed: u64,
    #[serde(default)]
    pub memory_peak_bytes: u64,
    /// The same calls by exported interface.
    #[serde(default)]
    pub interfaces: Vec<InterfaceStats>,
}

/// One exported interface's calls (unversioned name; `""` for root functions).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfaceStats {
    pub interface: String,
    pub ok: u64,
    pub failed: BTreeMap<String, u64>,
    /// Calls per bucket of the component's `duration_bounds` (not cumulative).
    pub duration_buckets: Vec<u64>,
    pub duration_total_seconds: f64,
}

/// Failed calls by the name of why.
fn failures(failed: &[(FailureKind, u64)]) -> BTreeMap<String, u64> {
    failed
        .iter()
        .map(|(kind, n)| (kind.name().to_string(), *n))
        .collect()
}

impl ComponentStats {
    pub fn calls(&self) -> u64 {
        self.ok + self.failed.values().sum::<u64>()
    }
}

/// What `wasmbus.ctl.v1.{lattice}.trellis.stats` answers: this host and its components.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostStats {
    pub host_id: String,
    pub friendly_name: String,
    pub components: Vec<ComponentStats>,
}

/// The components running here, with their call statistics now.
pub fn host_stats(state: &HostState) -> HostStats {
    let mut components = Vec::new();
    for (id, _) in state.components.running() {
        let Some(handle) = state.runtime.component(&id) else {
            continue;
        };
        let stats = handle.stats();
        components.push(ComponentStats {
            id,
            ok: stats.ok,
            failed: failures(&stats.failed),
            duration_bounds: DURATION_BOUNDS.to_vec(),
            duration_buckets: stats.duration_buckets,
            duration_total_seconds: stats.duration_total.as_secs_f64(),
            in_use: stats.in_use,
            max_instances: stats.max_instances,
            fuel_consumed: stats.fuel_consumed,
            memory_peak_bytes: stats.memory_peak_bytes,
            interfaces: stats
                .interfaces
                .iter()
                .map(|calls| InterfaceStats {
                    interface: calls.interface.clone(),
                    ok: calls.ok,
                    failed: failures(&calls.failed),
                    duration_buckets: calls.duration_buckets.clone(),
                    duration_total_seconds: calls.duration_total.as_secs_f64(),
                })
                .collect(),
        });
    }
    HostStats {
        host_id: state.host_id.clone(),
        friendly_name: state.identity.friendly_name.clone(),
        components,
    }
}

/// The samples of one histogram series: `labels` (`k="v",…` or empty), per-bucket counts
/// over [`DURATION_BOUNDS`] (not cumulative, then the rest) and the sum.
fn histogram(out: &mut String, name: &str, labels: &str, buckets: &[u64], sum: f64) {
    let separator = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (bound, n) in DURATION_BOUNDS.iter().zip(buckets) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
        );
    }
    let count: u64 = buckets.iter().sum();
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {count}\n{name}_sum{braces} {sum}\n{name}_count{braces} {count}"
    );
}

/// Everything in the Prometheus text format (version 0.0.4).
pub fn render(state: &HostState) -> String {
    let stats = host_stats(state);
    let metrics = &state.metrics;
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut out,
        "trellis_host_info",
        "gauge",
        "The host: its ID, friendly name and version.",
    );
    let _ = writeln!(
        out,
        "trellis_host_info{{host_id=\"{}\",name=\"{}\",version=\"{}\"}} 1",
        escape(&stats.host_id),
        escape(&stats.friendly_name),
        state.identity.version
    );
    family(
        &mut out,
        "trellis_component_calls_total",
        "counter",
        "Calls a component ended, by outcome.",
    );
    for component in &stats.components {
        let id = escape(&component.id);
        let _ = writeln!(
            out,
            "trellis_component_calls_total{{component=\"{id}\",outcome=\"ok\"}} {}",
            component.ok
        );
        for kind in FailureKind::ALL {
            let n = component.failed.get(kind.name()).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "trellis_component_calls_total{{component=\"{id}\",outcome=\"{}\"}} {n}",
                kind.name()
            );
        }
    }
    family(
        &mut out,
        "trellis_component_call_duration_seconds",
        "histogram",
        "How long a component's calls took, from waiting for an instance to the end.",
    );
    for component in &stats.components {
        histogram(
            &mut out,
            "trellis_component_call_duration_seconds",
            &format!("component=\"{}\"", escape(&component.id)),
            &component.duration_buckets,
            component.duration_total_seconds,
        );
    }
    family(
        &mut out,
        "trellis_interface_calls_total",
        "counter",
        "Calls of a component's exported interface it ended, by outcome.",
    );
    for component in &stats.components {
        for calls in &component.interfaces {
            let labels = format!(
                "component=\"{}\",interface=\"{}\"",
                escape(&component.id),
                escape(&calls.interface)
            );
            let _ = writeln!(
                out,
                "trellis_interface_calls_total{{{labels},outcome=\"ok\"}} {}",
                calls.ok
            );
            for kind in FailureKind::ALL {
                let n = calls.failed.get(kind.name()).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "trellis_interface_calls_total{{{labels},outcome=\"{}\"}} {n}",
                    kind.name()
                );
            }
        }
    }
    family(
        &mut out,
        "trellis_interface_call_duration_seconds",
        "histogram",
        "How long calls of a component's exported interface took.",
    );
    for component in &stats.components {
        for calls in &component.interfaces {
            histogram(
                &mut out,
                "trellis_interface_call_duration_seconds",
                &format!(
                    "component=\"{}\",interface=\"{}\"",
                    escape(&component.id),
                    escape(&calls.interface)
                ),
                &calls.duration_buckets,
                calls.duration_total_seconds,
            );
        }
    }
    type Read = fn(&ComponentStats) -> u64;
    let per_component: [(&str, &str, &str, Read); 4] = [
        (
            "trellis_component_instances_in_use",
            "gauge",
            "Instances of a component running calls now.",
            |c| c.in_use.into(),
        ),
        (
            "trellis_component_instances_max",
            "gauge",
            "The most instances of a component that may run calls at once.",
            |c| c.max_instances.into(),
        ),
        (
            "trellis_component_fuel_consumed_total",
            "counter",
            "Fuel a component's calls burned (0 unless the host meters fuel).",
            |c| c.fuel_consumed,
        ),
        (
            "trellis_component_memory_peak_bytes",
            "gauge",
            "The most linear memory one of a component's instances held at the end of a call.",
            |c| c.memory_peak_bytes,
        ),
    ];
    for (name, kind, help, value) in per_component {
        family(&mut out, name, kind, help);
        for component in &stats.components {
            let _ = writeln!(
                out,
                "{name}{{component=\"{}\"}} {}",
                escape(&component.id),
                value(component)
            );
        }
    }
    let counters = metrics.counters(state.runtime.engine().compile_cache_hits());
    family(
        &mut out,
        "trellis_ctl_requests_total",
        "counter",
        "Control interface requests this host answered, by operation and outcome.",
    );
    for (operation, outcome, n) in &counters.ctl {
        let _ = writeln!(
            out,
            "trellis_ctl_requests_total{{operation=\"{operation}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    family(
        &mut out,
        "trellis_wrpc_calls_total",
        "counter",
        "wRPC calls components made to the lattice, by calling component and outcome.",
    );
    for (component, outcome, n) in &counters.wrpc_calls {
        let _ = writeln!(
            out,
            "trellis_wrpc_calls_total{{component=\"{}\",outcome=\"{outcome}\"}} {n}",
            escape(component),
        );
    }
    family(
        &mut out,
        "trellis_wrpc_call_duration_seconds",
        "histogram",
        "How long wRPC calls components made took, from sending to the end of the results.",
    );
    let (buckets, total) = metrics.wrpc_durations.snapshot();
    histogram(
        &mut out,
        "trellis_wrpc_call_duration_seconds",
        "",
        &buckets,
        total.as_secs_f64(),
    );
    let (hits, misses) = counters.compile_cache;
    family(
        &mut out,
        "trellis_compile_cache_total",
        "counter",
        "Component compilations, answered from the compiled-component cache (`hit`) or not.",
    );
    let _ = writeln!(
        out,
        "trellis_compile_cache_total{{outcome=\"hit\"}} {hits}\n\
         trellis_compile_cache_total{{outcome=\"miss\"}} {misses}"
    );
    family(
        &mut out,
        "trellis_nats_disconnects_total",
        "counter",
        "Times the host's NATS connection was lost (it reconnects).",
    );
    let _ = writeln!(
        out,
        "trellis_nats_disconnects_total {}",
        counters.nats_disconnects
    );
    family(
        &mut out,
        "trellis_provider_restarts_total",
        "counter",
        "Restarts of an external provider after it exited or stopped answering.",
    );
    for (provider, n) in &counters.provider_restarts {
        let _ = writeln!(
            out,
            "trellis_provider_restarts_total{{provider=\"{}\"}} {n}",
            escape(provider)
        );
    }
    family(
        &mut out,
        "trellis_provider_healthy",
        "gauge",
        "1 while an external provider answers its health checks as healthy, else 0.",
    );
    for (provider, healthy) in &counters.provider_health {
        let _ = writeln!(
            out,
            "trellis_provider_healthy{{provider=\"{}\"}} {}",
            escape(provider),
            u8::from(*healthy)
        );
    }
    out
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `addr` until the task is aborted; anything else is 404.
pub async fn serve(state: Arc<HostState>, listener: tokio::net::TcpListener) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: try again shortly rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                let state = state.clone();
                async move {
                    if request.uri().path() == "/metrics" {
                        hyper::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                            .body(Full::new(Bytes::from(render(&state))))
                    } else {
                        hyper::Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::from_static(b"not found: try /metrics\n")))
                    }
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
