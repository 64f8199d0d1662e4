//! Long-running services: a component exporting `wasi:cli/run`, or a WASI preview-1 core
//! module with `_start`. Each runs in its own task until it returns or is stopped.

use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use tokio::task::JoinHandle;
use wasmtime::Store;
use wasmtime::component::Linker;

use crate::budget::{self, Budget};
use crate::component::{BinaryKind, LoadedComponent, binary_kind};
use crate::ctx::InvocationCtx;
use crate::engine::Engine;
use crate::wasi::{self, ResolvedMount, WasiGrants};
use crate::workload::ComponentState;

/// Services have no deadline; memory is still capped.
const SERVICE_BUDGET: Budget = Budget {
    wall_time: None,
    fuel: None,
    memory_bytes: Some(256 << 20),
};

pub(crate) struct ServiceHandle {
    state: Arc<Mutex<ComponentState>>,
    task: JoinHandle<()>,
}

impl ServiceHandle {
    /// Loads and starts the service. Load errors (not wasm, no `wasi:cli/run`, no `_start`)
    /// are returned here; traps and exit codes show up later in [`ServiceHandle::state`].
    pub fn start(
        engine: &Engine,
        id: &str,
        bytes: Arc<[u8]>,
        grants: &WasiGrants,
        mounts: &[ResolvedMount],
    ) -> anyhow::Result<Self> {
        let run = match binary_kind(&bytes)? {
            BinaryKind::Component => run_component(engine, id, bytes, grants, mounts)?,
            BinaryKind::CoreModule => run_core_module(engine, &bytes, grants, mounts)?,
        };
        let state = Arc::new(Mutex::new(ComponentState::Running));
        let task_state = state.clone();
        let id = id.to_string();
        let task = tokio::spawn(async move {
            let outcome = run.await;
            let next = match outcome {
                Ok(()) => ComponentState::Exited,
                Err(error) => {
                    tracing::warn!(service = %id, "service failed: {error:#}");
                    ComponentState::Failed(format!("{error:#}"))
                }
            };
            *task_state.lock().unwrap() = next;
        });
        Ok(Self { state, task })
    }

    pub fn state(&self) -> ComponentState {
        self.state.lock().unwrap().clone()
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

type ServiceRun = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

fn run_component(
    engine: &Engine,
    id: &str,
    bytes: Arc<[u8]>,
    grants: &WasiGrants,
    mounts: &[ResolvedMount],
) -> anyhow::Result<ServiceRun> {
    let loaded = LoadedComponent::compile(engine, bytes)?;
    let mut linker = Linker::new(engine.wasmtime());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let pre = linker
        .instantiate_pre(&loaded.component)
        .map_err(anyhow::Error::from)
        .context("a service may import only the WASI baseline")?;
    let command = wasmtime_wasi::p2::bindings::CommandPre::new(pre)
        .map_err(anyhow::Error::from)
        .context("a component service must export wasi:cli/run")?;
    let ctx = InvocationCtx {
        component_id: id.into(),
        wasi: wasi::build_ctx(grants, mounts)?,
        table: Default::default(),
        memory: Default::default(),
        extensions: Default::default(),
        remote: None,
    };
    let mut store = Store::new(engine.wasmtime(), ctx);
    budget::apply(&mut store, &SERVICE_BUDGET, engine.config());
    Ok(Box::pin(async move {
        let command = command.instantiate_async(&mut store).await?;
        match command.wasi_cli_run().call_run(&mut store).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(())) => bail!("wasi:cli/run returned an error"),
            Err(error) => exit_status(error),
        }
    }))
}

/// Store data for preview-1 modules.
struct P1Ctx {
    wasi: wasmtime_wasi::p1::WasiP1Ctx,
}

fn run_core_module(
    engine: &Engine,
    bytes: &[u8],
    grants: &WasiGrants,
    mounts: &[ResolvedMount],
) -> anyhow::Result<ServiceRun> {
    let module = wasmtime::Module::new(engine.wasmtime(), bytes)
        .map_err(anyhow::Error::from)
        .context("loading core module")?;
    if !module.exports().any(|export| export.name() == "_start") {
        bail!("core module has no `_start` export; only WASI commands can run as services");
    }
    let mut linker = wasmtime::Linker::<P1Ctx>::new(engine.wasmtime());
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |ctx| &mut ctx.wasi)?;
    let pre = linker
        .instantiate_pre(&module)
        .map_err(anyhow::Error::from)
        .context("linking core module")?;
    let mut store = Store::new(
        engine.wasmtime(),
        P1Ctx {
            wasi: wasi::build_p1_ctx(grants, mounts)?,
        },
    );
    budget::cooperate(&mut store, None, engine.config());
    if engine.config().fuel_metering {
        store.set_fuel(u64::MAX)?;
    }
    Ok(Box::pin(async move {
        let instance = pre.instantiate_async(&mut store).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        match start.call_async(&mut store, ()).await {
            Ok(()) => Ok(()),
            Err(error) => exit_status(error),
        }
    }))
}

/// `proc_exit(0)` is a normal end; any other exit code or trap is a failure.
fn exit_status(error: wasmtime::Error) -> anyhow::Result<()> {
    match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        Some(exit) if exit.0 == 0 => Ok(()),
        Some(exit) => bail!("exited with code {}", exit.0),
        None => Err(anyhow::Error::from(error).context("trapped")),
    }
}
