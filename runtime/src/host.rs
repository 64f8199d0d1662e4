//! The [`Host`] API (workload start / status / stop, heartbeat) and the [`Runtime`] behind it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Linker, Val};

use crate::budget::Budget;
use crate::component::LoadedComponent;
use crate::ctx::InvocationCtx;
use crate::engine::{Engine, EngineConfig};
use crate::error::{InvokeError, StartError, StopError};
use crate::interface::InterfaceName;
use crate::link_names;
use crate::linking::{self, ImportFallback, ImportRoute, LinkTable, Plug};
use crate::plugin::{Binding, Plugin};
use crate::remote::{Remote, RemoteInvoker, WrpcPolyfill};
use crate::running::{ComponentHandle, Linked, RunningComponent};
use crate::service::ServiceHandle;
use crate::wasi::{self, MaterializedVolumes};
use crate::workload::{ComponentState, HostInterface, Workload, WorkloadState, WorkloadStatus};

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

/// Builds a [`Runtime`]: engine settings, the plugins to switch on, and the import fallback.
#[derive(Default)]
pub struct RuntimeBuilder {
    engine: EngineConfig,
    plugins: Vec<Arc<dyn Plugin>>,
    fallback: Option<Arc<dyn ImportFallback>>,
    remote: Option<Arc<dyn RemoteInvoker>>,
    local_links_only_by_wrpc: bool,
}

impl RuntimeBuilder {
    pub fn engine(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }

    /// Switches a plugin on. Plugins are consulted in the order they are added.
    pub fn plugin(mut self, plugin: Arc<dyn Plugin>) -> Self {
        self.plugins.push(plugin);
        self
    }

    pub fn fallback(mut self, fallback: Arc<dyn ImportFallback>) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Lets imports nothing on this runtime provides go to the lattice over wRPC (after the
    /// fallback, if one is set).
    pub fn remote(mut self, invoker: Arc<dyn RemoteInvoker>) -> Self {
        self.remote = Some(invoker);
        self
    }

    /// With `false`, components never link in-process: every link goes through the remote
    /// invoker, even to a component on this runtime. For comparison and debugging.
    pub fn in_process_links(mut self, enabled: bool) -> Self {
        self.local_links_only_by_wrpc = !enabled;
        self
    }

    /// Creates the engine and starts every plugin.
    pub async fn build(self) -> anyhow::Result<Runtime> {
        let engine = Engine::new(self.engine)?;
        for plugin in &self.plugins {
            plugin
                .start()
                .await
                .map_err(|e| e.context(format!("starting plugin `{}`", plugin.id())))?;
        }
        Ok(Runtime(Arc::new(Inner {
            engine,
            plugins: self.plugins,
            fallback: self.fallback,
            remote: self.remote.map(Remote),
            in_process_links: !self.local_links_only_by_wrpc,
            started: Instant::now(),
            state: Default::default(),
        })))
    }
}

/// Runs workloads on one wasmtime engine. Cloning shares it.
#[derive(Clone)]
pub struct Runtime(Arc<Inner>);

struct Inner {
    engine: Engine,
    plugins: Vec<Arc<dyn Plugin>>,
    fallback: Option<Arc<dyn ImportFallback>>,
    remote: Option<Remote>,
    in_process_links: bool,
    started: Instant,
    /// One lock for every lifecycle change, so starts, stops and relinks never interleave.
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    workloads: BTreeMap<String, RunningWorkload>,
    components: HashMap<String, Arc<RunningComponent>>,
    links: LinkTable,
}

struct RunningWorkload {
    component_ids: Vec<String>,
    service: Option<(String, ServiceHandle)>,
    _volumes: MaterializedVolumes,
}

impl Runtime {
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    pub async fn component(&self, id: &str) -> Option<ComponentHandle> {
        self.0
            .state
            .lock()
            .await
            .components
            .get(id)
            .cloned()
            .map(ComponentHandle)
    }

    /// Invokes an export of a running component on a fresh instance.
    pub async fn invoke(
        &self,
        component_id: &str,
        instance: &str,
        function: &str,
        params: &[Val],
        budget: Option<&Budget>,
    ) -> Result<Vec<Val>, InvokeError> {
        let component = self
            .component(component_id)
            .await
            .ok_or_else(|| InvokeError::NotFound(component_id.to_string()))?;
        component.invoke(instance, function, params, budget).await
    }

    /// How each import of a running component is currently routed.
    pub async fn routes(&self, component_id: &str) -> Option<Vec<(String, ImportRoute)>> {
        let state = self.0.state.lock().await;
        Some(state.components.get(component_id)?.current().routes.clone())
    }

    /// Routes `source`'s imports of `interface` (`ns:pkg/iface`) to `target` and re-links
    /// `source` if it runs here: in-process when `target` runs here too, else the fallback.
    pub async fn set_link(
        &self,
        source: &str,
        interface: &str,
        target: &str,
    ) -> Result<(), StartError> {
        let mut state = self.0.state.lock().await;
        state.links.set(source, interface, target);
        self.relink_with_dependents(&state, source)
    }

    pub async fn remove_link(&self, source: &str, interface: &str) -> Result<(), StartError> {
        let mut state = self.0.state.lock().await;
        state.links.remove(source, interface);
        self.relink_with_dependents(&state, source)
    }

    /// Binds every component of a running workload to its plugins again, with new plugin
    /// configuration (e.g. when the lattice links that configure the plugins change): each
    /// plugin is rebound ([`Plugin::rebind`]) with `host_interfaces`. Linking is unchanged, and
    /// the workload keeps running when a plugin refuses the new binding (the error says which).
    pub async fn rebind(
        &self,
        workload_id: &str,
        host_interfaces: &[HostInterface],
    ) -> Result<(), StartError> {
        let state = self.0.state.lock().await;
        let Some(workload) = state.workloads.get(workload_id) else {
            return Err(StartError::Invalid(format!(
                "workload `{workload_id}` is not running"
            )));
        };
        for id in &workload.component_ids {
            let Some(running) = state.components.get(id) else {
                continue;
            };
            let plugins = running.current().plugins.clone();
            self.bind(workload_id, host_interfaces, running, &plugins, true)
                .await?;
        }
        Ok(())
    }

    /// Stops every workload and then every plugin.
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self
            .0
            .state
            .lock()
            .await
            .workloads
            .keys()
            .cloned()
            .collect();
        for id in ids {
            let _ = self.workload_stop(&id, true).await;
        }
        for plugin in &self.0.plugins {
            if let Err(error) = plugin.stop().await {
                tracing::warn!(plugin = plugin.id(), "stopping plugin: {error:#}");
            }
        }
    }

    /// Re-links `id` (if it runs here) and, recursively, every component composed with it.
    fn relink_with_dependents(&self, state: &State, id: &str) -> Result<(), StartError> {
        let Some(component) = state.components.get(id) else {
            return Ok(());
        };
        let members = self.workload_members(state, &component.workload);
        let linked = self.link(
            state,
            id,
            &component.loaded,
            &members,
            &component.current().plugins,
        )?;
        component.relinked(linked);
        for dependent in dependents(state, &[id.to_string()]) {
            self.relink_with_dependents(state, &dependent)?;
        }
        Ok(())
    }

    fn workload_members(&self, state: &State, workload: &str) -> Vec<(String, LoadedComponent)> {
        state
            .workloads
            .get(workload)
            .map(|w| {
                w.component_ids
                    .iter()
                    .filter_map(|id| {
                        state
                            .components
                            .get(id)
                            .map(|c| (id.clone(), c.loaded.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Decides where each import of `loaded` goes and builds the code that does it.
    /// `members` are the components of the same workload (linked in-process by default).
    fn link(
        &self,
        state: &State,
        id: &str,
        loaded: &LoadedComponent,
        members: &[(String, LoadedComponent)],
        bound_plugins: &[Arc<dyn Plugin>],
    ) -> Result<Linked, StartError> {
        let engine = &self.0.engine;
        let load_error = |source: anyhow::Error| StartError::Load {
            component: id.to_string(),
            source,
        };

        // In-process targets first: they change which component we compile.
        let mut plugs: Vec<Plug> = Vec::new();
        let mut routes = Vec::new();
        for import in &loaded.imports {
            if let Some(target) = self.in_process_target(state, id, loaded, import, members) {
                let bytes = match state.components.get(&target) {
                    Some(running) => running.current().bytes.clone(),
                    None => {
                        return Err(StartError::Invalid(format!("`{target}` is not linked yet")));
                    }
                };
                match plugs.iter_mut().find(|plug| plug.id == target) {
                    Some(plug) => plug.imports.push(import.clone()),
                    None => plugs.push(Plug {
                        id: target.clone(),
                        bytes,
                        imports: vec![import.clone()],
                    }),
                }
                routes.push((import.clone(), ImportRoute::InProcess(target)));
            }
        }
        let (component, bytes) = if plugs.is_empty() {
            (loaded.component.clone(), loaded.bytes.clone())
        } else {
            let composed: Arc<[u8]> = linking::compose(&loaded.bytes, &plugs)
                .map_err(load_error)?
                .into();
            let (component, _) = engine.compile(&composed).map_err(load_error)?;
            (component, composed)
        };

        // The remaining imports, including those the plugged-in exporters still need.
        let mut linker = Linker::<InvocationCtx>::new(engine.wasmtime());
        let mut plugins: Vec<Arc<dyn Plugin>> = Vec::new();
        let mut wasi_linked = false;
        let imports: Vec<(String, ComponentItem)> = component
            .component_type()
            .imports(engine.wasmtime())
            .map(|(name, item)| (name.to_string(), item))
            .collect();
        for (import, item) in &imports {
            let name = InterfaceName::parse(import);
            let route = match &name {
                Some(name) if wasi::is_baseline(name) => {
                    if !wasi_linked {
                        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
                            .map_err(|e| load_error(e.into()))?;
                        wasi_linked = true;
                    }
                    ImportRoute::Wasi
                }
                Some(name) if link_names::is_bus_lattice(name) => {
                    link_names::add_to_linker(&mut linker, name).map_err(load_error)?;
                    ImportRoute::Bus
                }
                Some(name) if let Some(plugin) = self.plugin_for(name, bound_plugins) => {
                    plugin.add_to_linker(&mut linker, name).map_err(|e| {
                        load_error(
                            e.context(format!("plugin `{}` linking `{import}`", plugin.id())),
                        )
                    })?;
                    if !plugins.iter().any(|p| Arc::ptr_eq(p, &plugin)) {
                        plugins.push(plugin.clone());
                    }
                    ImportRoute::Plugin(plugin.id().to_string())
                }
                _ => self.link_elsewhere(&mut linker, id, import, item)?,
            };
            if !routes.iter().any(|(name, _)| name == import) {
                routes.push((import.clone(), route));
            }
        }
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| load_error(e.into()))?;
        Ok(Linked {
            pre,
            component,
            bytes,
            routes,
            plugins,
        })
    }

    /// Routes an import nothing on this runtime provides: the embedder's fallback first, then
    /// the lattice over wRPC. Neither → the start fails naming the import.
    fn link_elsewhere(
        &self,
        linker: &mut Linker<InvocationCtx>,
        id: &str,
        import: &str,
        item: &ComponentItem,
    ) -> Result<ImportRoute, StartError> {
        let engine = self.0.engine.wasmtime();
        let fail = |e: anyhow::Error, how: &str| StartError::Load {
            component: id.to_string(),
            source: e.context(format!("linking `{import}` {how}")),
        };
        if let Some(fallback) = &self.0.fallback
            && fallback
                .link(engine, linker, id, import, item)
                .map_err(|e| fail(e, "through the fallback"))?
        {
            return Ok(ImportRoute::Fallback);
        }
        if self.0.remote.is_some()
            && WrpcPolyfill
                .link(engine, linker, id, import, item)
                .map_err(|e| fail(e, "to the lattice"))?
        {
            return Ok(ImportRoute::Remote);
        }
        Err(StartError::UnresolvedImport {
            component: id.to_string(),
            import: import.to_string(),
        })
    }

    /// The first enabled plugin implementing `import`. On a re-link, only plugins the
    /// component is already bound to are considered, so bindings never change under it.
    fn plugin_for(
        &self,
        import: &InterfaceName,
        bound: &[Arc<dyn Plugin>],
    ) -> Option<Arc<dyn Plugin>> {
        let candidates = if bound.is_empty() {
            &self.0.plugins[..]
        } else {
            bound
        };
        candidates
            .iter()
            .find(|p| p.imports().iter().any(|pattern| pattern.covers(import)))
            .cloned()
    }

    /// The component on this runtime that `id`'s `import` should be composed with, if any: the
    /// explicit link's target when it runs here, else a member of the same workload. Never for
    /// a component that chooses its links at run time (`wasmcloud:bus/lattice`).
    fn in_process_target(
        &self,
        state: &State,
        id: &str,
        importer: &LoadedComponent,
        import: &str,
        members: &[(String, LoadedComponent)],
    ) -> Option<String> {
        let name = InterfaceName::parse(import)?;
        if !self.0.in_process_links
            || importer.chooses_links()
            || wasi::is_baseline(&name)
            || self.plugin_for(&name, &[]).is_some()
        {
            return None;
        }
        if let Some(target) = state.links.target(id, &name) {
            let exports = |c: &LoadedComponent| c.exports_instance(import);
            let here = state
                .components
                .get(target)
                .is_some_and(|c| exports(&c.loaded))
                || members
                    .iter()
                    .any(|(member, c)| member == target && exports(c));
            return here.then(|| target.to_string());
        }
        members
            .iter()
            .find(|(member, c)| member != id && c.exports_instance(import))
            .map(|(member, _)| member.clone())
    }

    fn status_of(state: &State, id: &str) -> Option<WorkloadStatus> {
        let workload = state.workloads.get(id)?;
        let mut components: BTreeMap<String, ComponentState> = workload
            .component_ids
            .iter()
            .map(|c| (c.clone(), ComponentState::Running))
            .collect();
        let mut overall = WorkloadState::Running;
        if let Some((service_id, service)) = &workload.service {
            let service_state = service.state();
            overall = match &service_state {
                ComponentState::Running => WorkloadState::Running,
                ComponentState::Exited => WorkloadState::Completed,
                ComponentState::Failed(reason) => WorkloadState::Failed(reason.clone()),
            };
            components.insert(service_id.clone(), service_state);
        }
        Some(WorkloadStatus {
            id: id.to_string(),
            state: overall,
            components,
        })
    }

    async fn start_locked(
        &self,
        state: &mut State,
        workload: Workload,
    ) -> Result<WorkloadStatus, StartError> {
        let workload_id = workload.id();
        if state.workloads.contains_key(&workload_id) {
            return Err(StartError::WorkloadExists(workload_id));
        }
        for component in &workload.components {
            if state.components.contains_key(&component.id)
                || workload
                    .components
                    .iter()
                    .filter(|c| c.id == component.id)
                    .count()
                    > 1
            {
                return Err(StartError::ComponentExists(component.id.clone()));
            }
            if component.budget.fuel.is_some() && !self.0.engine.config().fuel_metering {
                return Err(StartError::Invalid(format!(
                    "component `{}` has a fuel budget, but the engine has fuel metering off",
                    component.id
                )));
            }
        }
        let volumes = MaterializedVolumes::create(&workload.volumes)
            .map_err(|e| StartError::Invalid(format!("{e:#}")))?;

        let mut members = Vec::new();
        for component in &workload.components {
            let load_error = |source| StartError::Load {
                component: component.id.clone(),
                source,
            };
            let bytes = component.source.read().await.map_err(load_error)?;
            members.push((
                component.id.clone(),
                LoadedComponent::compile(&self.0.engine, bytes).map_err(load_error)?,
            ));
        }

        // Link exporters before their importers; what never becomes linkable is a cycle.
        state.workloads.insert(
            workload_id.clone(),
            RunningWorkload {
                component_ids: Vec::new(),
                service: None,
                _volumes: MaterializedVolumes::default(),
            },
        );
        let result = self
            .link_members(state, &workload, &workload_id, &members, &volumes)
            .await;
        let running = state
            .workloads
            .get_mut(&workload_id)
            .expect("inserted above");
        running._volumes = volumes;
        if let Err(error) = result {
            self.remove_workload(state, &workload_id).await;
            return Err(error);
        }

        if let Some(service) = &workload.service {
            let started = async {
                let mounts = running._volumes.resolve(&service.mounts)?;
                let bytes = service.source.read().await?;
                ServiceHandle::start(&self.0.engine, &service.id, bytes, &service.grants, &mounts)
            }
            .await;
            match started {
                Ok(handle) => running.service = Some((service.id.clone(), handle)),
                Err(source) => {
                    self.remove_workload(state, &workload_id).await;
                    return Err(StartError::Load {
                        component: service.id.clone(),
                        source,
                    });
                }
            }
        }
        // Components elsewhere on this runtime that link to the newcomers now call them
        // in-process instead of over the lattice.
        let started: Vec<String> = workload.components.iter().map(|c| c.id.clone()).collect();
        for source in state.links.sources_linking_to(&started) {
            if !started.contains(&source)
                && let Err(error) = self.relink_with_dependents(state, &source)
            {
                tracing::warn!(component = %source, "re-linking to a new local target: {error}");
            }
        }
        tracing::info!(workload = %workload_id, components = workload.components.len(), "workload started");
        Ok(Self::status_of(state, &workload_id).expect("just started"))
    }

    async fn link_members(
        &self,
        state: &mut State,
        workload: &Workload,
        workload_id: &str,
        members: &[(String, LoadedComponent)],
        volumes: &MaterializedVolumes,
    ) -> Result<(), StartError> {
        let mut pending: Vec<usize> = (0..members.len()).collect();
        while !pending.is_empty() {
            let ready = pending.iter().position(|&i| {
                let (id, loaded) = &members[i];
                loaded.imports.iter().all(|import| {
                    match self.in_process_target(state, id, loaded, import, members) {
                        Some(target) => state.components.contains_key(&target),
                        None => true,
                    }
                })
            });
            let Some(position) = ready else {
                return Err(StartError::LinkCycle(
                    pending.iter().map(|&i| members[i].0.clone()).collect(),
                ));
            };
            let index = pending.remove(position);
            let (id, loaded) = &members[index];
            let spec = &workload.components[index];
            let linked = self.link(state, id, loaded, members, &[])?;
            let mounts = volumes
                .resolve(&spec.mounts)
                .map_err(|source| StartError::Load {
                    component: id.clone(),
                    source,
                })?;
            let plugins = linked.plugins.clone();
            let running = Arc::new(RunningComponent::new(
                spec,
                workload_id,
                loaded.clone(),
                linked,
                mounts,
                self.0.engine.clone(),
                self.0.remote.clone(),
            ));
            state.components.insert(id.clone(), running.clone());
            state
                .workloads
                .get_mut(workload_id)
                .expect("registered")
                .component_ids
                .push(id.clone());
            self.bind(
                workload_id,
                &workload.host_interfaces,
                &running,
                &plugins,
                false,
            )
            .await?;
        }
        Ok(())
    }

    /// Binds `running` to every plugin it imports from or whose consumed exports it has (with
    /// `again`, rebinds it to them and unbinds it from the others).
    async fn bind(
        &self,
        workload_id: &str,
        host_interfaces: &[HostInterface],
        running: &Arc<RunningComponent>,
        imported_from: &[Arc<dyn Plugin>],
        again: bool,
    ) -> Result<(), StartError> {
        let linked = running.current();
        let import_names: Vec<InterfaceName> = linked
            .routes
            .iter()
            .filter_map(|(name, _)| InterfaceName::parse(name))
            .collect();
        let export_names: Vec<InterfaceName> = running
            .loaded
            .exports
            .iter()
            .filter_map(|(name, _)| InterfaceName::parse(name))
            .collect();
        for plugin in &self.0.plugins {
            let imports: Vec<InterfaceName> =
                if imported_from.iter().any(|p| Arc::ptr_eq(p, plugin)) {
                    import_names
                        .iter()
                        .filter(|i| plugin.imports().iter().any(|p| p.covers(i)))
                        .cloned()
                        .collect()
                } else {
                    Vec::new()
                };
            let exports: Vec<InterfaceName> = export_names
                .iter()
                .filter(|e| plugin.exports().iter().any(|p| p.covers(e)))
                .cloned()
                .collect();
            if imports.is_empty() && exports.is_empty() {
                if again {
                    plugin.unbind(&running.id).await;
                }
                continue;
            }
            let config = host_interfaces
                .iter()
                .filter(|hi| {
                    InterfaceName::parse(&hi.interface).is_some_and(|pattern| {
                        imports.iter().chain(&exports).any(|i| pattern.covers(i))
                    })
                })
                .flat_map(|hi| hi.config.clone())
                .collect();
            let binding = Binding {
                component_id: running.id.to_string(),
                workload: workload_id.to_string(),
                imports,
                exports,
                config,
                component: ComponentHandle(running.clone()),
            };
            let bound = if again {
                plugin.rebind(&binding).await
            } else {
                plugin.bind(&binding).await
            };
            bound.map_err(|reason| StartError::BindingRefused {
                component: running.id.to_string(),
                plugin: plugin.id().to_string(),
                reason,
            })?;
        }
        Ok(())
    }

    /// Unbinds and forgets every component and the service of a workload.
    async fn remove_workload(&self, state: &mut State, workload_id: &str) {
        let Some(workload) = state.workloads.remove(workload_id) else {
            return;
        };
        if let Some((_, service)) = workload.service {
            service.stop();
        }
        for id in &workload.component_ids {
            if state.components.remove(id).is_some() {
                for plugin in &self.0.plugins {
                    plugin.unbind(id).await;
                }
            }
        }
    }
}

/// Components (outside `targets`) whose current linking composes any of `targets` in.
fn dependents(state: &State, targets: &[String]) -> Vec<String> {
    state
        .components
        .values()
        .filter(|c| !targets.contains(&c.id.to_string()))
        .filter(|c| {
            c.current()
                .in_process_targets()
                .any(|t| targets.iter().any(|x| x == t))
        })
        .map(|c| c.id.to_string())
        .collect()
}

#[async_trait::async_trait]
impl Host for Runtime {
    async fn heartbeat(&self) -> Heartbeat {
        let state = self.0.state.lock().await;
        Heartbeat {
            uptime: self.0.started.elapsed(),
            plugins: self.0.plugins.iter().map(|p| p.id().to_string()).collect(),
            workloads: state
                .workloads
                .keys()
                .filter_map(|id| Self::status_of(&state, id))
                .collect(),
        }
    }

    async fn workload_start(&self, workload: Workload) -> Result<WorkloadStatus, StartError> {
        let mut state = self.0.state.lock().await;
        self.start_locked(&mut state, workload).await
    }

    async fn workload_status(&self, workload_id: &str) -> Option<WorkloadStatus> {
        Self::status_of(&*self.0.state.lock().await, workload_id)
    }

    async fn workload_stop(&self, workload_id: &str, force: bool) -> Result<(), StopError> {
        let mut state = self.0.state.lock().await;
        let members = match state.workloads.get(workload_id) {
            Some(workload) => workload.component_ids.clone(),
            None => return Err(StopError::NotFound(workload_id.to_string())),
        };
        let dependents = dependents(&state, &members);
        if !dependents.is_empty() && !force {
            return Err(StopError::HasDependents {
                workload: workload_id.to_string(),
                dependents,
            });
        }
        self.remove_workload(&mut state, workload_id).await;
        for dependent in dependents {
            // Their imports now go to the fallback; if nothing provides them, the dependent keeps
            // its last composition (it holds its own copy of the exporter) and we say so.
            if let Err(error) = self.relink_with_dependents(&state, &dependent) {
                tracing::warn!(component = %dependent, "kept previous in-process link after forced stop: {error}");
            }
        }
        tracing::info!(workload = %workload_id, force, "workload stopped");
        Ok(())
    }
}
