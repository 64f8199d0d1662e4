//! Workloads: what the embedder asks the runtime to run, and how it is going.

use std::collections::BTreeMap;

use crate::budget::Budget;
use crate::component::ComponentSource;
use crate::wasi::{Volume, VolumeMount, WasiGrants};

/// A set of components (and optionally one service) started, linked and stopped together.
#[derive(Clone, Debug, Default)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    pub service: Option<WorkloadService>,
    pub components: Vec<WorkloadComponent>,
    /// Plugin configuration, per interface the workload's components import from plugins.
    pub host_interfaces: Vec<HostInterface>,
    pub volumes: Vec<Volume>,
}

impl Workload {
    /// `namespace/name`, the key the runtime knows the workload by.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A component serving invocations.
#[derive(Clone, Debug)]
pub struct WorkloadComponent {
    /// Unique on the runtime; the lattice uses it as the component ID.
    pub id: String,
    pub source: ComponentSource,
    /// Concurrent invocations; more wait (up to `queue_timeout` of the budget's wall time).
    pub max_instances: u32,
    pub budget: Budget,
    pub grants: WasiGrants,
    pub mounts: Vec<VolumeMount>,
    /// Also run its `wasi:cli/run` export as a service, restarted by this policy (it still
    /// serves invocations of its other exports).
    pub run: Option<RestartPolicy>,
}

impl WorkloadComponent {
    pub fn new(id: impl Into<String>, source: ComponentSource) -> Self {
        Self {
            id: id.into(),
            source,
            max_instances: 1,
            budget: Budget::default(),
            grants: WasiGrants::default(),
            mounts: Vec::new(),
            run: None,
        }
    }
}

/// A long-running program: a component exporting `wasi:cli/run`, or a preview-1 core module
/// with `_start`.
#[derive(Clone, Debug)]
pub struct WorkloadService {
    pub id: String,
    pub source: ComponentSource,
    pub grants: WasiGrants,
    pub mounts: Vec<VolumeMount>,
    pub restart: RestartPolicy,
}

/// When a service that ended is started again. Restarts wait 250 ms, doubling each time up
/// to 30 s (back to 250 ms after a run of a minute or more).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Never: its end is final.
    #[default]
    Never,
    /// When it fails (traps, returns an error, exits with a code other than 0).
    OnFailure,
    /// Whenever it ends.
    Always,
}

/// Configuration handed to the plugin that serves `interface` for this workload.
#[derive(Clone, Debug)]
pub struct HostInterface {
    /// `ns:pkg/iface` (any version) or a full versioned name.
    pub interface: String,
    pub config: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadState {
    Running,
    /// Every component serves, but the service ended.
    Completed,
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComponentState {
    Running,
    /// A service that exited with code 0 and is not restarted.
    Exited,
    /// A service that failed (`exited with code N`, a trap) and is not restarted.
    Failed(String),
    /// A service that ended (`last`) and starts again after its backoff.
    Restarting {
        last: String,
        restarts: u32,
    },
}

/// How a workload is doing.
#[derive(Clone, Debug)]
pub struct WorkloadStatus {
    pub id: String,
    pub state: WorkloadState,
    /// Per component and service: its state.
    pub components: BTreeMap<String, ComponentState>,
}
