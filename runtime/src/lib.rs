//! The Trellis runtime: runs WebAssembly components with wasmtime and knows nothing of NATS.
//!
//! A [`Runtime`] owns one [`Engine`], the registered [`Plugin`]s and the running
//! [`Workload`]s. Each component import is satisfied, in order, by the WASI baseline, an enabled
//! plugin, an export of another component on this runtime (linked in-process by composition),
//! or the embedder's [`ImportFallback`]; an import nobody satisfies fails the start. Every
//! invocation gets a fresh instance and runs under a [`Budget`].
//!
//! The embedder (the lattice host) drives it through the [`Host`] trait.

mod budget;
mod component;
mod ctx;
mod engine;
mod error;
mod host;
mod interface;
mod lifecycle;
mod link_names;
mod linking;
mod plugin;
mod remote;
mod resolve;
mod running;
mod runtime;
mod service;
mod stats;
mod stdio;
mod wasi;
mod workload;

pub use budget::{Budget, BudgetExceeded, FuelMeteringOff, Pacing};
pub use component::{ComponentSource, LoadedComponent, is_core_module};
pub use ctx::{Extensions, InvocationCtx};
pub use engine::{DEFAULT_KEEP_RESIDENT_BYTES, Engine, EngineConfig, PoolingLimits};
pub use error::{InvokeError, StartError, StopError};
pub use host::{Heartbeat, Host};
pub use interface::InterfaceName;
pub use link_names::LinkSelection;
pub use linking::{ImportFallback, ImportRoute, LinkSource, LinkTable};
pub use plugin::{Binding, Plugin};
pub use remote::{
    RemoteCall, RemoteIncoming, RemoteInvocation, RemoteInvoker, RemoteOutgoing, value,
};
pub use running::{ComponentHandle, InstanceStore};
pub use runtime::{Runtime, RuntimeBuilder};
pub use stats::{
    CallObserver, CallStats, DURATION_BOUNDS, DurationHistogram, FailureKind, InterfaceCalls,
};
pub use wasi::{Volume, VolumeKind, VolumeMount, WasiGrants};
pub use workload::{
    ComponentState, HostInterface, RestartPolicy, Workload, WorkloadComponent, WorkloadService,
    WorkloadState, WorkloadStatus,
};

pub use wasmtime::component::Val;
