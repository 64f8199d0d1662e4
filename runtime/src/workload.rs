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
    Exited,
    Failed(String),
}

/// How a workload is doing.
#[derive(Clone, Debug)]
pub struct WorkloadStatus {
    pub id: String,
    pub state: WorkloadState,
    /// Per component and service: its state.
    pub components: BTreeMap<String, ComponentState>,
}
