//! The [`Runtime`] and its builder: one engine, the switched-on plugins, the running components.
//!
//! Two kinds of readers meet here, and they never wait for each other:
//! - calls read the running components through a map that is only ever locked for a lookup
//!   (and embedders that keep a [`ComponentHandle`] skip even that);
//! - lifecycle changes (start, stop, relink) take a short lock to plan and to commit, and do
//!   the slow parts (compiling, composing, plugin binds) with no lock held. See
//!   [`crate::lifecycle`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use wasmtime::component::Val;

use crate::budget::Budget;
use crate::component::ComponentSource;
use crate::engine::{Engine, EngineConfig};
use crate::error::{InvokeError, StartError};
use crate::lifecycle::Lifecycle;
use crate::linking::{ImportFallback, ImportRoute, LinkSource, LinkTable};
use crate::plugin::Plugin;
use crate::remote::RemoteInvoker;
use crate::running::{ComponentHandle, RunningComponent};
use crate::stats::CallObserver;
use crate::workload::{ComponentState, HostInterface};

/// Builds a [`Runtime`]: engine settings, the plugins to switch on, and the import fallback.
pub struct RuntimeBuilder {
    engine: EngineConfig,
    plugins: Vec<Arc<dyn Plugin>>,
    fallback: Option<Arc<dyn ImportFallback>>,
    remote: Option<Arc<dyn RemoteInvoker>>,
    links: Option<Arc<dyn LinkSource>>,
    in_process_links: bool,
    call_observer: Option<Arc<dyn CallObserver>>,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self {
            engine: EngineConfig::default(),
            plugins: Vec::new(),
            fallback: None,
            remote: None,
            links: None,
            in_process_links: true,
            call_observer: None,
        }
    }
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

    /// Reads explicit links from the embedder's store instead of the runtime's own table: the
    /// embedder then tells the runtime which components to [`Runtime::relink`] when links change.
    pub fn links(mut self, links: Arc<dyn LinkSource>) -> Self {
        self.links = Some(links);
        self
    }

    /// With `false`, components never link in-process: every link goes through the remote
    /// invoker, even to a component on this runtime. For comparison and debugging.
    pub fn in_process_links(mut self, enabled: bool) -> Self {
        self.in_process_links = enabled;
        self
    }

    /// Tells `observer` of every call any component ends (besides counting it in
    /// [`crate::ComponentHandle::stats`]).
    pub fn call_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.call_observer = Some(observer);
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
        let links = match self.links {
            Some(source) => Links::Embedder(source),
            None => Links::Own(Arc::new(LinkTable::default())),
        };
        Ok(Runtime(Arc::new(Inner {
            engine,
            plugins: self.plugins,
            fallback: self.fallback,
            remote: self.remote,
            links,
            in_process_links: self.in_process_links,
            call_observer: self.call_observer,
            started: Instant::now(),
            lifecycle: Mutex::default(),
            binding: tokio::sync::Mutex::default(),
            components: RwLock::default(),
        })))
    }
}

/// Where explicit links come from.
pub(crate) enum Links {
    /// The runtime's own table, edited with [`Runtime::set_link`].
    Own(Arc<LinkTable>),
    /// The embedder's store.
    Embedder(Arc<dyn LinkSource>),
}

impl Links {
    pub fn source(&self) -> &dyn LinkSource {
        match self {
            Links::Own(table) => table.as_ref(),
            Links::Embedder(source) => source.as_ref(),
        }
    }
}

/// Runs workloads on one wasmtime engine. Cloning shares it.
#[derive(Clone)]
pub struct Runtime(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub engine: Engine,
    pub plugins: Vec<Arc<dyn Plugin>>,
    pub fallback: Option<Arc<dyn ImportFallback>>,
    pub remote: Option<Arc<dyn RemoteInvoker>>,
    pub links: Links,
    pub in_process_links: bool,
    pub call_observer: Option<Arc<dyn CallObserver>>,
    pub started: Instant,
    /// Workloads, reservations and the generation that commits check; held only for short,
    /// synchronous plans and commits.
    pub lifecycle: Mutex<Lifecycle>,
    /// Orders plugin binds, rebinds and unbinds, so a rebind never outlives an unbind.
    pub binding: tokio::sync::Mutex<()>,
    /// What calls read. Written only under `lifecycle`; read without it.
    pub components: RwLock<HashMap<String, Arc<RunningComponent>>>,
}

impl Inner {
    pub fn running(&self, id: &str) -> Option<Arc<RunningComponent>> {
        self.components.read().unwrap().get(id).cloned()
    }
}

impl Runtime {
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    pub fn engine(&self) -> &Engine {
        &self.0.engine
    }

    /// A handle on a running component. Holding it keeps calls off every lock the runtime has.
    pub fn component(&self, id: &str) -> Option<ComponentHandle> {
        self.0.running(id).map(ComponentHandle)
    }

    /// How service `id` is doing, if it is one (a component that runs `wasi:cli/run`, or a
    /// workload's standalone service).
    pub fn service_state(&self, id: &str) -> Option<ComponentState> {
        self.0.lifecycle.lock().unwrap().service_state(id)
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
            .0
            .running(component_id)
            .ok_or_else(|| InvokeError::NotFound(component_id.to_string()))?;
        component.invoke(instance, function, params, budget).await
    }

    /// How each import of a running component is currently routed.
    pub async fn routes(&self, component_id: &str) -> Option<Vec<(String, ImportRoute)>> {
        Some(self.0.running(component_id)?.current().routes.clone())
    }

    /// Routes `source`'s imports of `interface` (`ns:pkg/iface`) to `target` and re-links
    /// `source` if it runs here: in-process when `target` runs here too, else the fallback.
    /// Only for a runtime that keeps its own links (see [`RuntimeBuilder::links`]).
    pub async fn set_link(
        &self,
        source: &str,
        interface: &str,
        target: &str,
    ) -> Result<(), StartError> {
        self.own_links()?.set(source, interface, target);
        self.relink(&[source.to_string()]).await
    }

    pub async fn remove_link(&self, source: &str, interface: &str) -> Result<(), StartError> {
        self.own_links()?.remove(source, interface);
        self.relink(&[source.to_string()]).await
    }

    fn own_links(&self) -> Result<&LinkTable, StartError> {
        match &self.0.links {
            Links::Own(table) => Ok(table),
            Links::Embedder(_) => Err(StartError::Invalid(
                "this runtime reads its links from the embedder; change them there".into(),
            )),
        }
    }

    /// Resolves the imports of `ids` (those running here) again, and of every component
    /// composed with them: after their links changed, or a target arrived or left. Calls
    /// already running finish on the old linking.
    pub async fn relink(&self, ids: &[String]) -> Result<(), StartError> {
        let mut first_error = None;
        for id in ids {
            if let Err(error) = crate::lifecycle::relink(&self.0, id).await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Swaps the code of running component `id` for `source`'s, in place: calls under way
    /// finish on the old code, new calls run the new one, and the component keeps serving
    /// throughout (its handle stays valid). Interfaces may change; embedders that serve the
    /// component's exports elsewhere re-subscribe when its exports do.
    pub async fn update(&self, id: &str, source: ComponentSource) -> Result<(), StartError> {
        crate::lifecycle::update(&self.0, id, &source).await
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
        crate::lifecycle::rebind(&self.0, workload_id, host_interfaces).await
    }

    /// Stops every workload and then every plugin.
    pub async fn shutdown(&self) {
        let ids: Vec<String> = self.0.lifecycle.lock().unwrap().workload_ids();
        for id in ids {
            let _ = crate::lifecycle::stop(&self.0, &id, true).await;
        }
        for plugin in &self.0.plugins {
            if let Err(error) = plugin.stop().await {
                tracing::warn!(plugin = plugin.id(), "stopping plugin: {error:#}");
            }
        }
    }
}
