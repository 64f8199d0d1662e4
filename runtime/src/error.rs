//! Typed errors of the runtime's public operations.

use std::time::Duration;

use crate::budget::BudgetExceeded;

/// Why a workload (or one of its components) could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("workload `{0}` is already running")]
    WorkloadExists(String),
    #[error("component id `{0}` is already in use on this host")]
    ComponentExists(String),
    #[error("component `{component}`: {source:#}")]
    Load {
        component: String,
        #[source]
        source: anyhow::Error,
    },
    #[error(
        "component `{component}` imports `{import}`, which no WASI baseline, enabled plugin, \
         component on this host or fallback provides"
    )]
    UnresolvedImport { component: String, import: String },
    #[error("component `{component}`: plugin `{plugin}` refused the binding: {reason:#}")]
    BindingRefused {
        component: String,
        plugin: String,
        reason: anyhow::Error,
    },
    #[error("components {0:?} link to each other in a cycle; in-process links must form a tree")]
    LinkCycle(Vec<String>),
    #[error("{0}")]
    Invalid(String),
}

/// Why one invocation failed. The component keeps serving either way.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("no component `{0}` is running here")]
    NotFound(String),
    #[error("component `{component}` has no exported function `{function}` in `{instance}`")]
    NoSuchExport {
        component: String,
        instance: String,
        function: String,
    },
    #[error("component `{component}`: all {max_instances} instances stayed busy for {waited:?}")]
    Busy {
        component: String,
        max_instances: u32,
        waited: Duration,
    },
    #[error("component `{component}` stopped by its budget: {exceeded}")]
    Budget {
        component: String,
        #[source]
        exceeded: BudgetExceeded,
    },
    #[error("component `{component}` failed in linked component `{exporter}`: {message}")]
    LinkedTrap {
        component: String,
        exporter: String,
        message: String,
    },
    #[error("component `{component}` trapped: {message}")]
    Trap { component: String, message: String },
    #[error("component `{component}`: bad call: {message}")]
    BadCall { component: String, message: String },
}

impl InvokeError {
    /// The budget that stopped the call, if that is why it failed.
    pub fn budget_exceeded(&self) -> Option<&BudgetExceeded> {
        match self {
            Self::Budget { exceeded, .. } => Some(exceeded),
            _ => None,
        }
    }
}

/// Why a workload could not be stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("no workload `{0}` is running")]
    NotFound(String),
    #[error(
        "workload `{workload}` is linked in-process by running components {dependents:?}; \
         stop them first or force the stop"
    )]
    HasDependents {
        workload: String,
        dependents: Vec<String>,
    },
}
