//! The [`Host`] API (workload start / status / stop, heartbeat): what an embedder drives,
//! usable and testable without any lattice.

use std::time::Duration;

use crate::error::{StartError, StopError};
use crate::lifecycle;
use crate::runtime::Runtime;
use crate::workload::{Workload, WorkloadStatus};

/// What the embedder drives: usable and testable without any lattice.
#[async_trait::async_trait]
pub trait Host: Send + Sync {
    async fn heartbeat(&self) -> Heartbeat;
    async fn workload_start(&self, workload: Workload) -> Result<WorkloadStatus, StartError>;
    async fn workload_status(&self, workload_id: &str) -> Option<WorkloadStatus>;
    /// Refuses while components of other workloads link in-process to this one, unless `force`.
    async fn workload_stop(&self, workload_id: &str, force: bool) -> Result<(), StopError>;
}

/// A summary of the runtime for liveness reporting.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    pub uptime: Duration,
    pub plugins: Vec<String>,
    pub workloads: Vec<WorkloadStatus>,
}

#[async_trait::async_trait]
impl Host for Runtime {
    async fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            uptime: self.0.started.elapsed(),
            plugins: self.0.plugins.iter().map(|p| p.id().to_string()).collect(),
            workloads: self.0.lifecycle.lock().unwrap().statuses(),
        }
    }

    async fn workload_start(&self, workload: Workload) -> Result<WorkloadStatus, StartError> {
        lifecycle::start(&self.0, workload).await
    }

    async fn workload_status(&self, workload_id: &str) -> Option<WorkloadStatus> {
        self.0.lifecycle.lock().unwrap().status(workload_id)
    }

    async fn workload_stop(&self, workload_id: &str, force: bool) -> Result<(), StopError> {
        lifecycle::stop(&self.0, workload_id, force).await
    }
}
