//! Long-running services: a component exporting `wasi:cli/run`, or a WASI preview-1 core
//! module with `_start`, run in a task of their own and restarted by their [`RestartPolicy`].
//!
//! A service that is also a component of its workload (linked like any, so it may import
//! plugins, other components in-process and the lattice) runs `wasi:cli/run` on a fresh
//! instance of its current linking at each start. A standalone one (preview-1, or a component
//! importing only the WASI baseline) gets the baseline alone.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::task::JoinHandle;
use wasmtime::Store;
use wasmtime::component::Linker;

use crate::budget::{self, Budget};
use crate::component::{BinaryKind, LoadedComponent, binary_kind};
use crate::ctx::InvocationCtx;
use crate::engine::Engine;
use crate::running::RunningComponent;
use crate::wasi::{self, ResolvedMount, WasiGrants};
use crate::workload::{ComponentState, RestartPolicy};

/// Services have no deadline; memory is still capped.
const SERVICE_BUDGET: Budget = Budget {
    wall_time: None,
    fuel: None,
    memory_bytes: Some(256 << 20),
};

/// The wait before the first restart; it doubles with each restart, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run that lasted this long was healthy: the next restart waits [`FIRST_BACKOFF`] again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

pub(crate) struct ServiceHandle {
    state: Arc<Mutex<ComponentState>>,
    task: JoinHandle<()>,
}

impl ServiceHandle {
    /// Loads and starts a standalone service. Load errors (not wasm, no `wasi:cli/run`, no
    /// `_start`, imports beyond the baseline) are returned here; how runs end shows up later
    /// in [`ServiceHandle::state`].
    pub fn start(
        engine: &Engine,
        id: &str,
        bytes: Arc<[u8]>,
        grants: &WasiGrants,
        mounts: &[ResolvedMount],
        policy: RestartPolicy,
    ) -> anyhow::Result<Self> {
        let id: Arc<str> = id.into();
        let next_run: Box<dyn FnMut() -> anyhow::Result<ServiceRun> + Send> =
            match binary_kind(&bytes)? {
                BinaryKind::Component => {
                    let command = command_pre(engine, bytes)?;
                    let (engine, id, grants, mounts) =
                        (engine.clone(), id.clone(), grants.clone(), mounts.to_vec());
                    Box::new(move || run_command(&engine, &id, &command, &grants, &mounts))
                }
                BinaryKind::CoreModule => {
                    let pre = core_module_pre(engine, &bytes)?;
                    let (engine, id, grants, mounts) =
                        (engine.clone(), id.clone(), grants.clone(), mounts.to_vec());
                    Box::new(move || run_core_module(&engine, &id, &pre, &grants, &mounts))
                }
            };
        Ok(Self::supervise(id, policy, next_run))
    }

    /// Runs `component`'s `wasi:cli/run` export as a service: each start on a fresh instance
    /// of its linking at that moment, under its memory limit but no deadline or fuel.
    pub fn of_component(component: Arc<RunningComponent>, policy: RestartPolicy) -> Self {
        let id = component.id.clone();
        Self::supervise(id, policy, move || {
            Ok(Box::pin(run_linked(component.clone())))
        })
    }

    /// Starts runs made by `start` until `policy` says stop.
    fn supervise(
        id: Arc<str>,
        policy: RestartPolicy,
        mut start: impl FnMut() -> anyhow::Result<ServiceRun> + Send + 'static,
    ) -> Self {
        let state = Arc::new(Mutex::new(ComponentState::Running));
        let task_state = state.clone();
        let task = tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            let mut restarts = 0u32;
            loop {
                *task_state.lock().unwrap() = ComponentState::Running;
                let started = Instant::now();
                let outcome = match start() {
                    Ok(run) => run.await,
                    Err(error) => Err(error),
                };
                let failure = outcome.err().map(|error| format!("{error:#}"));
                let again = match policy {
                    RestartPolicy::Never => false,
                    RestartPolicy::OnFailure => failure.is_some(),
                    RestartPolicy::Always => true,
                };
                let ended = failure
                    .clone()
                    .unwrap_or_else(|| "exited with code 0".into());
                if !again {
                    match &failure {
                        Some(reason) => tracing::warn!(service = %id, "service failed: {reason}"),
                        None => tracing::info!(service = %id, "service exited with code 0"),
                    }
                    *task_state.lock().unwrap() = match failure {
                        Some(reason) => ComponentState::Failed(reason),
                        None => ComponentState::Exited,
                    };
                    return;
                }
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = FIRST_BACKOFF;
                }
                restarts += 1;
                tracing::warn!(service = %id, restarts, backoff = ?backoff, "service {ended}; restarting");
                *task_state.lock().unwrap() = ComponentState::Restarting {
                    last: ended,
                    restarts,
                };
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        Self { state, task }
    }

    pub fn state(&self) -> ComponentState {
        self.state.lock().unwrap().clone()
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

type ServiceRun = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One run of a linked component's `wasi:cli/run`.
async fn run_linked(component: Arc<RunningComponent>) -> anyhow::Result<()> {
    let linked = component.current();
    let budget = Budget {
        memory_bytes: component.budget_with(None).memory_bytes,
        ..SERVICE_BUDGET
    };
    let mut store = component.new_store(&linked, &budget)?;
    let command = wasmtime_wasi::p2::bindings::CommandPre::new(linked.pre.clone())
        .map_err(anyhow::Error::from)
        .context("a component service must export wasi:cli/run")?;
    let command = command.instantiate_async(&mut store).await?;
    outcome(command.wasi_cli_run().call_run(&mut store).await)
}

fn outcome(run: wasmtime::Result<Result<(), ()>>) -> anyhow::Result<()> {
    match run {
        Ok(Ok(())) => Ok(()),
        Ok(Err(())) => bail!("wasi:cli/run returned an error"),
        Err(error) => exit_status(error),
    }
}

/// A standalone component service: the WASI baseline only.
fn command_pre(
    engine: &Engine,
    bytes: Arc<[u8]>,
) -> anyhow::Result<wasmtime_wasi::p2::bindings::CommandPre<InvocationCtx>> {
    let loaded = LoadedComponent::compile(engine, bytes)?;
    let mut linker = Linker::new(engine.wasmtime());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let pre = linker
        .instantiate_pre(&loaded.component)
        .map_err(anyhow::Error::from)
        .context("a standalone service may import only the WASI baseline")?;
    wasmtime_wasi::p2::bindings::CommandPre::new(pre)
        .map_err(anyhow::Error::from)
        .context("a component service must export wasi:cli/run")
}

fn run_command(
    engine: &Engine,
    id: &Arc<str>,
    command: &wasmtime_wasi::p2::bindings::CommandPre<InvocationCtx>,
    grants: &WasiGrants,
    mounts: &[ResolvedMount],
) -> anyhow::Result<ServiceRun> {
    let ctx = InvocationCtx {
        component_id: id.clone(),
        wasi: wasi::build_ctx(id, grants, mounts)?,
        table: Default::default(),
        memory: Default::default(),
        extensions: Default::default(),
        remote: None,
    };
    let mut store = Store::new(engine.wasmtime(), ctx);
    budget::apply(&mut store, &SERVICE_BUDGET, engine.config());
    let command = command.clone();
    Ok(Box::pin(async move {
        let command = command.instantiate_async(&mut store).await?;
        outcome(command.wasi_cli_run().call_run(&mut store).await)
    }))
}

/// Store data for preview-1 modules.
struct P1Ctx {
    wasi: wasmtime_wasi::p1::WasiP1Ctx,
}

fn core_module_pre(engine: &Engine, bytes: &[u8]) -> anyhow::Result<wasmtime::InstancePre<P1Ctx>> {
    let module = wasmtime::Module::new(engine.wasmtime(), bytes)
        .map_err(anyhow::Error::from)
        .context("loading core module")?;
    if !module.exports().any(|export| export.name() == "_start") {
        bail!("core module has no `_start` export; only WASI commands can run as services");
    }
    let mut linker = wasmtime::Linker::<P1Ctx>::new(engine.wasmtime());
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |ctx| &mut ctx.wasi)?;
    linker
        .instantiate_pre(&module)
        .map_err(anyhow::Error::from)
        .context("linking core module")
}

fn run_core_module(
    engine: &Engine,
    id: &Arc<str>,
    pre: &wasmtime::InstancePre<P1Ctx>,
    grants: &WasiGrants,
    mounts: &[ResolvedMount],
) -> anyhow::Result<ServiceRun> {
    let mut store = Store::new(
        engine.wasmtime(),
        P1Ctx {
            wasi: wasi::build_p1_ctx(id, grants, mounts)?,
        },
    );
    budget::cooperate(&mut store, None, engine.config());
    if engine.config().fuel_metering {
        store.set_fuel(u64::MAX)?;
    }
    let pre = pre.clone();
    Ok(Box::pin(async move {
        let instance = pre.instantiate_async(&mut store).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        match start.call_async(&mut store, ()).await {
            Ok(()) => Ok(()),
            Err(error) => exit_status(error),
        }
    }))
}

fn exit_status(error: wasmtime::Error) -> anyhow::Result<()> {
    match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        Some(exit) if exit.0 == 0 => Ok(()),
        Some(exit) => bail!("exited with code {}", exit.0),
        None => Err(anyhow::Error::from(error).context("trapped")),
    }
}
