//! A component that serves invocations: its current linking, its concurrency limit, and the
//! per-invocation store (fresh instance, budget applied, plugins prepared).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::Semaphore;
use wasmtime::AsContextMut as _;
use wasmtime::Store;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Func, InstancePre, Type, Val};

use crate::budget::{self, Budget, BudgetExceeded, FuelMeteringOff};
use crate::component::LoadedComponent;
use crate::ctx::{Extensions, InvocationCtx};
use crate::engine::Engine;
use crate::error::InvokeError;
use crate::linking::ImportRoute;
use crate::plugin::Plugin;
use crate::remote::{RemoteCall, RemoteCtx, RemoteInvoker, value};
use crate::stats::{CallObserver, CallRecorder, CallStats};
use crate::wasi::{self, ResolvedMount, WasiGrants};
use crate::workload::WorkloadComponent;

/// How long an invocation waits for a free instance when its budget has no deadline.
const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(30);

/// One linking of a component: its code, what each import resolved to, and the code that
/// results. Swapped whole, so a call sees one consistent version.
pub(crate) struct Linked {
    /// The component's own code, as loaded.
    pub loaded: LoadedComponent,
    pub pre: InstancePre<InvocationCtx>,
    pub component: Component,
    /// The bytes that were compiled (the composition, when exporters were plugged in).
    pub bytes: Arc<[u8]>,
    pub routes: Vec<(String, ImportRoute)>,
    /// Plugins bound for this linking, in resolution order.
    pub plugins: Vec<Arc<dyn Plugin>>,
}

impl Linked {
    /// Components plugged in by composition.
    pub fn in_process_targets(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().filter_map(|(_, route)| match route {
            ImportRoute::InProcess(target) => Some(target.as_str()),
            _ => None,
        })
    }
}

pub(crate) struct RunningComponent {
    pub id: Arc<str>,
    pub workload: String,
    pub linked: RwLock<Arc<Linked>>,
    pub max_instances: u32,
    permits: Semaphore,
    /// What each call may spend; changed live by [`ComponentHandle::set_budget`].
    budget: RwLock<Budget>,
    grants: WasiGrants,
    mounts: Vec<ResolvedMount>,
    engine: Engine,
    remote: Option<Arc<dyn RemoteInvoker>>,
    /// Invocations that got an instance, from the host or from the lattice.
    invocations: AtomicU64,
    /// Invocations stopped by their budget.
    limit_hits: AtomicU64,
    /// How calls ended and how long they took.
    calls: CallRecorder,
}

/// A cloneable handle for invoking a running component (given to plugins and embedders).
#[derive(Clone)]
pub struct ComponentHandle(pub(crate) Arc<RunningComponent>);

impl ComponentHandle {
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// Calls `instance`.`function` (use `""` for a root function) on a fresh instance.
    pub async fn invoke(
        &self,
        instance: &str,
        function: &str,
        params: &[Val],
        overrides: Option<&Budget>,
    ) -> Result<Vec<Val>, InvokeError> {
        self.0.invoke(instance, function, params, overrides).await
    }

    /// A fresh store and instance-pre for plugins that drive exports with typed bindings: the
    /// calls made on it are calls of the export `interface` (e.g. `wasi:http/incoming-handler`).
    /// The caller must hold the returned permit for as long as the instance is in use.
    pub async fn new_instance_store(
        &self,
        interface: &'static str,
        overrides: Option<&Budget>,
    ) -> Result<(InstanceStore, tokio::sync::SemaphorePermit<'_>), InvokeError> {
        let started = Instant::now();
        let budget = self.0.budget_with(overrides);
        let permit = self.0.acquire(&budget).await;
        if let Err(error) = &permit {
            self.0.calls.failed(interface, started.elapsed(), error);
        }
        let permit = permit?;
        let instance = self.store_for_current_linking(budget, started, interface)?;
        Ok((instance, permit))
    }

    /// A store for the current linking made ahead of any call, to instantiate before a call
    /// comes: it holds no permit and is not an invocation until [`Self::reuse_instance_store`]
    /// readies it for its call.
    pub fn idle_instance_store(
        &self,
        interface: &'static str,
    ) -> Result<InstanceStore, InvokeError> {
        let budget = self.0.budget_with(None);
        self.store_for_current_linking(budget, Instant::now(), interface)
    }

    fn store_for_current_linking(
        &self,
        budget: Budget,
        started: Instant,
        interface: &'static str,
    ) -> Result<InstanceStore, InvokeError> {
        let linked = self.0.current();
        let store = self
            .0
            .new_store(&linked, &budget)
            .map_err(|e| self.0.bad_call(e))?;
        Ok(InstanceStore {
            store,
            linked,
            budget,
            started,
            interface,
        })
    }

    /// Readies `instance` (from [`Self::new_instance_store`], its last call ended without a
    /// trap, or from [`Self::idle_instance_store`]) for one more call on the same guest
    /// instance: waits for a permit as a new instance would, counts the invocation, renews the
    /// budget (fuel, wall time) and the plugins' per-invocation state (their config may have
    /// changed). `None` when the component has been
    /// relinked since the instance was made: drop it, make a new one.
    pub async fn reuse_instance_store(
        &self,
        instance: &mut InstanceStore,
        overrides: Option<&Budget>,
    ) -> Result<Option<tokio::sync::SemaphorePermit<'_>>, InvokeError> {
        if !Arc::ptr_eq(&instance.linked, &self.0.current()) {
            return Ok(None);
        }
        instance.started = Instant::now();
        let budget = self.0.budget_with(overrides);
        let permit = self.0.acquire(&budget).await;
        if let Err(error) = &permit {
            let waited = instance.started.elapsed();
            self.0.calls.failed(instance.interface, waited, error);
        }
        let permit = permit?;
        instance.budget = budget;
        instance.store.data_mut().extensions = self
            .0
            .prepared(&instance.linked)
            .map_err(|e| self.0.bad_call(e))?;
        budget::apply(&mut instance.store, &budget, self.0.engine.config());
        Ok(Some(permit))
    }

    /// Runs `call` (instantiation and calls on `instance`'s store) under the budget the store
    /// was made with: its wall time also bounds time parked in host functions, and a failure
    /// comes back classified as [`Self::invoke`]'s do (a budget stop counted and logged). The
    /// call is counted in [`Self::stats`], timed from when the instance was readied.
    pub async fn call<T>(
        &self,
        instance: &mut InstanceStore,
        call: impl AsyncFnOnce(&mut Store<InvocationCtx>) -> wasmtime::Result<T>,
    ) -> Result<T, InvokeError> {
        let budget = instance.budget;
        let outcome = self
            .0
            .run_with_deadline(call(&mut instance.store), &budget)
            .await;
        self.0.used(&instance.store, &budget);
        let outcome = outcome.map_err(|error| {
            self.0
                .invoke_error(error, &instance.store, &budget, &instance.linked)
        });
        self.0
            .calls
            .record(instance.interface, instance.started.elapsed(), &outcome);
        outcome
    }

    /// How its calls ended and took since it started, and its instances in use now.
    pub fn stats(&self) -> CallStats {
        let (ok, failed, duration_buckets, duration_total) = self.0.calls.snapshot();
        let max_instances = self.0.max_instances;
        let free = self
            .0
            .permits
            .available_permits()
            .min(max_instances as usize) as u32;
        let (fuel_consumed, memory_peak_bytes) = self.0.calls.usage();
        CallStats {
            ok,
            failed,
            duration_buckets,
            duration_total,
            in_use: max_instances - free,
            max_instances,
            fuel_consumed,
            memory_peak_bytes,
            interfaces: self.0.calls.interfaces(),
        }
    }

    /// What a call spends at most when its caller sets no limit of its own.
    pub fn budget(&self) -> Budget {
        *self.0.budget.read().unwrap()
    }

    /// Changes what calls may spend from the next call on (calls running keep theirs).
    pub fn set_budget(&self, budget: Budget) -> Result<(), FuelMeteringOff> {
        if budget.fuel.is_some() && !self.0.engine.config().fuel_metering {
            return Err(FuelMeteringOff);
        }
        *self.0.budget.write().unwrap() = budget;
        Ok(())
    }

    /// How many calls were stopped by their budget since the component started.
    pub fn limit_hits(&self) -> u64 {
        self.0.limit_hits.load(Ordering::Relaxed)
    }
}

/// A store for plugins that instantiate a component themselves, with the linking it was made
/// from (a relinked component's old instances are not reused) and the budget it runs under.
pub struct InstanceStore {
    pub store: Store<InvocationCtx>,
    linked: Arc<Linked>,
    budget: Budget,
    /// When the current call began waiting for its instance.
    started: Instant,
    /// The export its calls are calls of.
    interface: &'static str,
}

impl InstanceStore {
    /// What to instantiate in the store.
    pub fn pre(&self) -> &InstancePre<InvocationCtx> {
        &self.linked.pre
    }
}

impl ComponentHandle {
    /// The instances the component exports (`ns:pkg/iface@ver`), functions or not.
    pub fn exported_instances(&self) -> Vec<String> {
        self.0
            .current()
            .loaded
            .exports
            .iter()
            .map(|(instance, _)| instance.clone())
            .filter(|instance| !instance.is_empty())
            .collect()
    }

    /// What the component exports: instances with their function names, root functions under
    /// the empty name.
    pub fn exports(&self) -> Vec<(String, Vec<String>)> {
        self.0.current().loaded.exports.clone()
    }

    /// How many invocations this component has run (or is running) since it started.
    pub fn invocations(&self) -> u64 {
        self.0.invocations.load(Ordering::Relaxed)
    }

    /// The component's own exported functions (not what a composition re-exports), as
    /// `(instance, function)`; root functions have an empty instance. Functions that take or
    /// return resources are left out: they cannot be served one fresh instance per call.
    pub fn exported_functions(&self) -> Vec<(String, String)> {
        let linked = self.0.current();
        let mut functions = Vec::new();
        for (instance, names) in &linked.loaded.exports {
            for name in names {
                let ty = match instance.as_str() {
                    "" => linked.component.get_export(None, name),
                    instance => linked
                        .component
                        .get_export(None, instance)
                        .and_then(|(_, parent)| linked.component.get_export(Some(&parent), name)),
                };
                if let Some((ComponentItem::ComponentFunc(func), _)) = ty
                    && !name.starts_with('[')
                    && !func
                        .params()
                        .map(|(_, t)| t)
                        .chain(func.results())
                        .any(|t| mentions_resource(&t))
                {
                    functions.push((instance.clone(), name.clone()));
                }
            }
        }
        functions
    }

    /// Serves one wRPC invocation of `instance`.`function`: reads the parameters from `rx` as
    /// they arrive, runs a fresh instance under the component's budget, writes the results to
    /// `tx` and ends it (a failure ends it with no results: wRPC has no error channel).
    /// `caller_deadline` is how long the caller waits: the call stops then, not later, so no
    /// work is done for a caller that has given up.
    pub async fn serve_invocation<I, O>(
        &self,
        instance: &str,
        function: &str,
        caller_deadline: Option<Duration>,
        rx: I,
        tx: O,
    ) -> Result<(), InvokeError>
    where
        I: AsyncRead + Send + Unpin,
        O: AsyncWrite + Send + Unpin,
    {
        let started = Instant::now();
        let outcome = self
            .serve_timed(instance, function, caller_deadline, rx, tx)
            .await;
        self.0.calls.record(instance, started.elapsed(), &outcome);
        outcome
    }

    async fn serve_timed<I, O>(
        &self,
        instance: &str,
        function: &str,
        caller_deadline: Option<Duration>,
        mut rx: I,
        mut tx: O,
    ) -> Result<(), InvokeError>
    where
        I: AsyncRead + Send + Unpin,
        O: AsyncWrite + Send + Unpin,
    {
        let component = &self.0;
        let mut budget = self.budget();
        if let Some(deadline) = caller_deadline {
            budget.wall_time = Some(budget.wall_time.map_or(deadline, |own| own.min(deadline)));
        }
        let _permit = component.acquire(&budget).await?;
        let linked = component.current();
        let mut store = component
            .new_store(&linked, &budget)
            .map_err(|e| component.bad_call(e))?;
        let call = async {
            let guest = linked.pre.instantiate_async(&mut store).await?;
            let func = component.lookup(&linked, &mut store, &guest, instance, function)?;
            let ty = func.ty(&store);
            let params: Vec<Type> = ty.params().map(|(_, ty)| ty).collect();
            let result_types: Vec<Type> = ty.results().collect();
            let params = value::read(&mut rx, &params)
                .await
                .map_err(|e| wasmtime::format_err!("reading the parameters: {e}"))?;
            let mut results = vec![Val::Bool(false); result_types.len()];
            func.call_async(&mut store, &params, &mut results).await?;
            let mut encoded = BytesMut::new();
            for (result, ty) in results.iter().zip(&result_types) {
                value::encode(&mut store.as_context_mut(), result, ty, &mut encoded)
                    .map_err(|e| wasmtime::format_err!("encoding the results: {e}"))?;
            }
            let sent = async {
                tx.write_all(&encoded).await?;
                tx.flush().await?;
                tx.shutdown().await
            };
            sent.await
                .map_err(|e| wasmtime::format_err!("sending the results: {e}"))
        };
        let outcome = component.run_with_deadline(call, &budget).await;
        component.used(&store, &budget);
        outcome.map_err(|error| component.invoke_error(error, &store, &budget, &linked))
    }
}

/// Whether a value of `ty` carries a resource handle anywhere inside.
pub(crate) fn mentions_resource(ty: &Type) -> bool {
    match ty {
        Type::Own(_) | Type::Borrow(_) => true,
        Type::List(list) => mentions_resource(&list.ty()),
        Type::FixedLengthList(list) => mentions_resource(&list.ty()),
        Type::Map(map) => mentions_resource(&map.key()) || mentions_resource(&map.value()),
        Type::Record(record) => record.fields().any(|field| mentions_resource(&field.ty)),
        Type::Tuple(tuple) => tuple.types().any(|ty| mentions_resource(&ty)),
        Type::Variant(variant) => variant
            .cases()
            .any(|case| case.ty.as_ref().is_some_and(mentions_resource)),
        Type::Option(option) => mentions_resource(&option.ty()),
        Type::Result(result) => {
            result.ok().as_ref().is_some_and(mentions_resource)
                || result.err().as_ref().is_some_and(mentions_resource)
        }
        _ => false,
    }
}

impl RunningComponent {
    /// Whether it was granted anything of WASI beyond the baseline (environment, arguments,
    /// the host's stdio, network, volumes). Such a component is not composed into its
    /// importers: the composition would run it with the importer's WASI context, not its own.
    /// (Logged stdio is no grant: composed, its lines carry the importer's id.)
    pub fn has_own_wasi(&self) -> bool {
        let WasiGrants {
            env,
            args,
            inherit_stdout,
            inherit_stderr,
            stdio_to_log: _,
            network,
        } = &self.grants;
        !self.mounts.is_empty()
            || !env.is_empty()
            || !args.is_empty()
            || *inherit_stdout
            || *inherit_stderr
            || *network
    }

    /// `spec` gives the ID, instance limit, budget and grants; `mounts` are its volume mounts
    /// resolved to paths; `observer` hears of each call it ends.
    pub fn new(
        spec: &WorkloadComponent,
        workload: &str,
        linked: Linked,
        mounts: Vec<ResolvedMount>,
        engine: Engine,
        remote: Option<Arc<dyn RemoteInvoker>>,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Self {
        let id: Arc<str> = spec.id.as_str().into();
        let exported = linked.loaded.exports.iter().map(|(name, _)| name.as_str());
        Self {
            calls: CallRecorder::new(&id, exported, observer),
            id,
            workload: workload.to_string(),
            linked: RwLock::new(Arc::new(linked)),
            max_instances: spec.max_instances,
            permits: Semaphore::new(spec.max_instances.max(1) as usize),
            budget: RwLock::new(spec.budget),
            grants: spec.grants.clone(),
            mounts,
            engine,
            remote,
            invocations: AtomicU64::new(0),
            limit_hits: AtomicU64::new(0),
        }
    }

    /// The component's budget with `overrides` applied.
    pub(crate) fn budget_with(&self, overrides: Option<&Budget>) -> Budget {
        let own = *self.budget.read().unwrap();
        overrides.map_or(own, |o| own.overridden_by(o))
    }

    pub fn current(&self) -> Arc<Linked> {
        self.linked.read().unwrap().clone()
    }

    /// Swaps in a new linking; invocations already running finish on the old one.
    pub fn relinked(&self, linked: Linked) -> Arc<Linked> {
        std::mem::replace(&mut *self.linked.write().unwrap(), Arc::new(linked))
    }

    /// Takes one of the `max_instances` permits (waiting at most the budget's wall time) and
    /// counts the invocation.
    async fn acquire(
        &self,
        budget: &Budget,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, InvokeError> {
        let wait = budget.wall_time.unwrap_or(DEFAULT_QUEUE_WAIT);
        match tokio::time::timeout(wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => {
                self.invocations.fetch_add(1, Ordering::Relaxed);
                Ok(permit)
            }
            Ok(Err(_closed)) => Err(self.bad_call(anyhow::anyhow!("component is stopping"))),
            Err(_) => Err(InvokeError::Busy {
                component: self.id.to_string(),
                max_instances: self.max_instances,
                waited: wait,
            }),
        }
    }

    /// The plugins' per-invocation state, as they would give it now.
    fn prepared(&self, linked: &Linked) -> anyhow::Result<Extensions> {
        let mut extensions = Extensions::default();
        for plugin in &linked.plugins {
            plugin
                .prepare(&self.id, &mut extensions)
                .with_context(|| format!("plugin `{}` preparing the invocation", plugin.id()))?;
        }
        Ok(extensions)
    }

    pub(crate) fn new_store(
        &self,
        linked: &Linked,
        budget: &Budget,
    ) -> anyhow::Result<Store<InvocationCtx>> {
        let extensions = self.prepared(linked)?;
        let ctx = InvocationCtx {
            component_id: self.id.clone(),
            wasi: wasi::build_ctx(&self.id, &self.grants, &self.mounts)?,
            table: Default::default(),
            memory: Default::default(),
            extensions,
            remote: self.remote.clone().map(|invoker| RemoteCtx {
                invoker,
                call: RemoteCall {
                    caller: self.id.clone(),
                    selection: Default::default(),
                },
            }),
        };
        let mut store = Store::new(self.engine.wasmtime(), ctx);
        budget::apply(&mut store, budget, self.engine.config());
        Ok(store)
    }

    pub async fn invoke(
        &self,
        instance: &str,
        function: &str,
        params: &[Val],
        overrides: Option<&Budget>,
    ) -> Result<Vec<Val>, InvokeError> {
        let started = Instant::now();
        let outcome = self
            .invoke_timed(instance, function, params, overrides)
            .await;
        self.calls.record(instance, started.elapsed(), &outcome);
        outcome
    }

    async fn invoke_timed(
        &self,
        instance: &str,
        function: &str,
        params: &[Val],
        overrides: Option<&Budget>,
    ) -> Result<Vec<Val>, InvokeError> {
        let budget = self.budget_with(overrides);
        let _permit = self.acquire(&budget).await?;
        let linked = self.current();
        let mut store = self
            .new_store(&linked, &budget)
            .map_err(|e| self.bad_call(e))?;
        let call = async {
            let guest = linked.pre.instantiate_async(&mut store).await?;
            let func = self.lookup(&linked, &mut store, &guest, instance, function)?;
            let mut results = vec![Val::Bool(false); func.ty(&store).results().len()];
            func.call_async(&mut store, params, &mut results).await?;
            Ok::<_, wasmtime::Error>(results)
        };
        let outcome = self.run_with_deadline(call, &budget).await;
        self.used(&store, &budget);
        outcome.map_err(|error| self.invoke_error(error, &store, &budget, &linked))
    }

    /// Counts what a call on `store` used, at its end.
    fn used(&self, store: &Store<InvocationCtx>, budget: &Budget) {
        self.calls
            .used(budget::used(store, budget, self.engine.config()));
    }

    /// Epochs stop guest code; the timeout also stops a call parked in a host function.
    async fn run_with_deadline<T>(
        &self,
        call: impl Future<Output = wasmtime::Result<T>>,
        budget: &Budget,
    ) -> wasmtime::Result<T> {
        match budget.wall_time {
            Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
                Err(wasmtime::Error::new(BudgetExceeded::DeadlineExceeded(
                    limit,
                )))
            }),
            None => call.await,
        }
    }

    fn lookup(
        &self,
        linked: &Linked,
        store: &mut Store<InvocationCtx>,
        guest: &wasmtime::component::Instance,
        instance: &str,
        function: &str,
    ) -> wasmtime::Result<Func> {
        let no_such_export = || {
            wasmtime::Error::new(InvokeError::NoSuchExport {
                component: self.id.to_string(),
                instance: instance.to_string(),
                function: function.to_string(),
            })
        };
        let parent = match instance {
            "" => None,
            name => Some(
                linked
                    .component
                    .get_export_index(None, name)
                    .ok_or_else(no_such_export)?,
            ),
        };
        let index = linked
            .component
            .get_export_index(parent.as_ref(), function)
            .ok_or_else(no_such_export)?;
        guest.get_func(store, index).ok_or_else(no_such_export)
    }

    fn bad_call(&self, error: anyhow::Error) -> InvokeError {
        InvokeError::BadCall {
            component: self.id.to_string(),
            message: format!("{error:#}"),
        }
    }

    fn invoke_error(
        &self,
        error: wasmtime::Error,
        store: &Store<InvocationCtx>,
        budget: &Budget,
        linked: &Linked,
    ) -> InvokeError {
        let component = self.id.to_string();
        if let Some(exceeded) = budget::classify(&error, store.data().memory.hit.as_ref(), budget) {
            // Logged here, once per call; callers report it without logging it again.
            let hits = self.limit_hits.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(component, limit = %exceeded, hits, "call stopped by its limit");
            return InvokeError::Budget {
                component,
                exceeded,
            };
        }
        if let Some(typed) = error.downcast_ref::<InvokeError>() {
            return match typed {
                InvokeError::NoSuchExport {
                    component,
                    instance,
                    function,
                } => InvokeError::NoSuchExport {
                    component: component.clone(),
                    instance: instance.clone(),
                    function: function.clone(),
                },
                other => InvokeError::BadCall {
                    component,
                    message: other.to_string(),
                },
            };
        }
        let message = trap_message(&error);
        match self.trapping_exporter(&error, linked) {
            Some(exporter) => InvokeError::LinkedTrap {
                component,
                exporter,
                message,
            },
            None if error.downcast_ref::<wasmtime::Trap>().is_some() => {
                InvokeError::Trap { component, message }
            }
            None => InvokeError::BadCall { component, message },
        }
    }

    /// Which composed-in exporter a trap happened in, if any. Frames run innermost first; a
    /// frame without a module is a fused adapter, i.e. a crossing between components. The frame
    /// just inside the innermost crossing is the exporter's entry point, whose name (as
    /// wit-component emits it) is `{interface}#{function}`; when that name is missing, every
    /// candidate exporter is named.
    fn trapping_exporter(&self, error: &wasmtime::Error, linked: &Linked) -> Option<String> {
        let backtrace = error.downcast_ref::<wasmtime::WasmBacktrace>()?;
        let frames = backtrace.frames();
        let crossing = frames
            .iter()
            .position(|frame| frame.module().name().is_none() && frame.func_name().is_none())?;
        let entry = crossing.checked_sub(1).and_then(|i| frames[i].func_name());
        let entered = entry
            .and_then(|name| name.split_once('#'))
            .map(|(interface, _)| interface);
        let mut targets = linked
            .routes
            .iter()
            .filter_map(|(import, route)| match route {
                ImportRoute::InProcess(target) => Some((import.as_str(), target.as_str())),
                _ => None,
            });
        if let Some((_, target)) = targets.clone().find(|(import, _)| Some(*import) == entered) {
            return Some(target.to_string());
        }
        let mut names: Vec<&str> = targets.by_ref().map(|(_, target)| target).collect();
        names.dedup();
        (!names.is_empty()).then(|| names.join(" or "))
    }
}

/// The trap and its cause in one line.
fn trap_message(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("{trap}: {}", error.root_cause()),
        None => format!("{error:#}"),
    }
}
