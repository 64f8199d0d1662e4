//! What a component's calls did since it started: how many ended well, how many failed and
//! why, and how long they took (a histogram). Recorded with relaxed atomics on the call path,
//! so keeping them costs a few uncontended adds per call; read as a [`CallStats`] snapshot by
//! whoever exports them (the lattice host's `/metrics` and `ctl top`), or seen call by call by
//! a [`CallObserver`] the embedder installs (the host's OTLP histograms).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::InvokeError;

/// Upper bounds (seconds) of the duration buckets, as Prometheus client libraries default
/// them, with finer steps below 5 ms where component calls mostly end.
pub const DURATION_BOUNDS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Why a call failed, as metrics count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// The guest (or a component linked into it) trapped.
    Trap,
    /// Its budget stopped it (wall time, fuel, memory).
    Budget,
    /// Every instance stayed busy.
    Busy,
    /// The call itself was wrong or could not be made (no such export, bad arguments, …).
    Call,
}

impl FailureKind {
    pub const ALL: [FailureKind; 4] = [Self::Trap, Self::Budget, Self::Busy, Self::Call];

    pub fn name(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::Budget => "budget",
            Self::Busy => "busy",
            Self::Call => "call",
        }
    }

    fn of(error: &InvokeError) -> Self {
        match error {
            InvokeError::Trap { .. } | InvokeError::LinkedTrap { .. } => Self::Trap,
            InvokeError::Budget { .. } => Self::Budget,
            InvokeError::Busy { .. } => Self::Busy,
            InvokeError::NotFound(_)
            | InvokeError::NoSuchExport { .. }
            | InvokeError::BadCall { .. } => Self::Call,
        }
    }
}

/// Told of every call a component ends, as it is counted: for an embedder that exports calls
/// one by one (e.g. into an OpenTelemetry histogram). Runs on the call path: keep it cheap.
pub trait CallObserver: Send + Sync + 'static {
    /// `component` ended a call of `interface` (unversioned, `""` for a root function) after
    /// `took`; `failure` says why it failed, if it did.
    fn call_ended(
        &self,
        component: &Arc<str>,
        interface: &str,
        took: Duration,
        failure: Option<FailureKind>,
    );
}

/// Durations in [`DURATION_BOUNDS`] buckets, and their sum: relaxed atomics, for any timed
/// thing (a component's calls here; the host's wRPC calls).
#[derive(Default)]
pub struct DurationHistogram {
    /// Per bucket (not cumulative); the last counts those above every bound.
    buckets: [AtomicU64; DURATION_BOUNDS.len() + 1],
    nanos: AtomicU64,
}

impl DurationHistogram {
    pub fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = DURATION_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.nanos.fetch_add(
            took.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// Counts per bucket (not cumulative) and the summed duration.
    pub fn snapshot(&self) -> (Vec<u64>, Duration) {
        let buckets = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        (
            buckets,
            Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
        )
    }
}

/// How calls ended and how long they took.
#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    failed: [AtomicU64; FailureKind::ALL.len()],
    durations: DurationHistogram,
}

impl Outcomes {
    fn record(&self, took: Duration, failure: Option<FailureKind>) {
        match failure {
            None => &self.ok,
            Some(kind) => &self.failed[kind as usize],
        }
        .fetch_add(1, Ordering::Relaxed);
        self.durations.record(took);
    }

    fn snapshot(&self) -> (u64, Vec<(FailureKind, u64)>, Vec<u64>, Duration) {
        let failed = FailureKind::ALL
            .iter()
            .map(|kind| (*kind, self.failed[*kind as usize].load(Ordering::Relaxed)))
            .collect();
        let (buckets, total) = self.durations.snapshot();
        (self.ok.load(Ordering::Relaxed), failed, buckets, total)
    }
}

/// The live counters of one component: in all, and per exported interface.
pub(crate) struct CallRecorder {
    all: Outcomes,
    /// By unversioned interface name (`""`: root functions), fixed when it starts.
    interfaces: HashMap<Box<str>, Outcomes>,
    /// Fuel its calls burned (fuel metering on), and the most linear memory one held.
    fuel: AtomicU64,
    memory_peak: AtomicU64,
    observer: Option<(Arc<str>, Arc<dyn CallObserver>)>,
}

/// `ns:pkg/iface` of `ns:pkg/iface@version`.
pub(crate) fn unversioned(interface: &str) -> &str {
    interface
        .split_once('@')
        .map_or(interface, |(name, _)| name)
}

impl CallRecorder {
    /// Counters for `component` and each of its exported `interfaces`, also reported to
    /// `observer` when there is one.
    pub fn new<'a>(
        component: &Arc<str>,
        interfaces: impl IntoIterator<Item = &'a str>,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Self {
        Self {
            all: Outcomes::default(),
            interfaces: interfaces
                .into_iter()
                .map(|name| (unversioned(name).into(), Outcomes::default()))
                .collect(),
            fuel: AtomicU64::default(),
            memory_peak: AtomicU64::default(),
            observer: observer.map(|observer| (component.clone(), observer)),
        }
    }

    /// Counts one call of `interface` that ended after `took` with `outcome`.
    pub fn record<T>(&self, interface: &str, took: Duration, outcome: &Result<T, InvokeError>) {
        let failure = outcome.as_ref().err().map(FailureKind::of);
        self.count(interface, took, failure);
    }

    /// Counts one call of `interface` that failed with `error` after `took`.
    pub fn failed(&self, interface: &str, took: Duration, error: &InvokeError) {
        self.count(interface, took, Some(FailureKind::of(error)));
    }

    fn count(&self, interface: &str, took: Duration, failure: Option<FailureKind>) {
        let interface = unversioned(interface);
        self.all.record(took, failure);
        if let Some(outcomes) = self.interfaces.get(interface) {
            outcomes.record(took, failure);
        }
        if let Some((component, observer)) = &self.observer {
            observer.call_ended(component, interface, took, failure);
        }
    }

    /// Counts what one call used at its end (see [`crate::budget`]).
    pub fn used(&self, (fuel, memory): (Option<u64>, usize)) {
        if let Some(fuel) = fuel {
            self.fuel.fetch_add(fuel, Ordering::Relaxed);
        }
        self.memory_peak.fetch_max(memory as u64, Ordering::Relaxed);
    }

    /// Fuel burned in all, and the peak linear memory of one call.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.fuel.load(Ordering::Relaxed),
            self.memory_peak.load(Ordering::Relaxed),
        )
    }

    pub fn snapshot(&self) -> (u64, Vec<(FailureKind, u64)>, Vec<u64>, Duration) {
        self.all.snapshot()
    }

    /// Each exported interface's calls, by name.
    pub fn interfaces(&self) -> Vec<InterfaceCalls> {
        let mut interfaces: Vec<InterfaceCalls> = self
            .interfaces
            .iter()
            .map(|(name, outcomes)| {
                let (ok, failed, duration_buckets, duration_total) = outcomes.snapshot();
                InterfaceCalls {
                    interface: name.to_string(),
                    ok,
                    failed,
                    duration_buckets,
                    duration_total,
                }
            })
            .collect();
        interfaces.sort_by(|a, b| a.interface.cmp(&b.interface));
        interfaces
    }
}

/// The calls of one exported interface (unversioned; `""`: root functions).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InterfaceCalls {
    pub interface: String,
    pub ok: u64,
    pub failed: Vec<(FailureKind, u64)>,
    pub duration_buckets: Vec<u64>,
    pub duration_total: Duration,
}

/// A snapshot of one component's calls since it started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallStats {
    /// Calls that ended well.
    pub ok: u64,
    /// Failed calls by why.
    pub failed: Vec<(FailureKind, u64)>,
    /// Calls per [`DURATION_BOUNDS`] bucket (not cumulative), then those above every bound.
    pub duration_buckets: Vec<u64>,
    /// The summed duration of every call.
    pub duration_total: Duration,
    /// Instances running calls now, and the most it may run at once.
    pub in_use: u32,
    pub max_instances: u32,
    /// Fuel its calls burned, when the engine meters fuel (0 otherwise).
    pub fuel_consumed: u64,
    /// The most linear memory one of its instances held at the end of a call, in bytes.
    pub memory_peak_bytes: u64,
    /// The same calls by exported interface.
    pub interfaces: Vec<InterfaceCalls>,
}

impl CallStats {
    /// Every call that ended.
    pub fn calls(&self) -> u64 {
        self.ok + self.errors()
    }

    pub fn errors(&self) -> u64 {
        self.failed.iter().map(|(_, n)| n).sum()
    }
}
