//! Import resolution: where each import of a component goes, and the linking that does it.
//!
//! Resolution happens in two steps so that no lock is held while code compiles:
//! - [`Inner::plan`] (under the lifecycle lock, cheap) decides which imports go in-process to
//!   which component on this runtime, reading the link source and the code those components run
//!   now;
//! - [`build`] (no lock, on a blocking thread) composes the exporters in, compiles the result and
//!   links the remaining imports: WASI baseline, `wasmcloud:bus/lattice`, plugins, the embedder's
//!   fallback, the lattice over wRPC.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::Linker;
use wasmtime::component::types::ComponentItem;

use crate::component::LoadedComponent;
use crate::ctx::InvocationCtx;
use crate::error::StartError;
use crate::interface::InterfaceName;
use crate::link_names;
use crate::linking::{self, ImportRoute, Plug};
use crate::plugin::Plugin;
use crate::remote::polyfill;
use crate::running::Linked;
use crate::runtime::Inner;
use crate::wasi;

/// A component being linked, with the workload members it may be composed with.
pub(crate) struct Subject<'a> {
    pub id: &'a str,
    pub loaded: &'a LoadedComponent,
    /// The components of its workload (linked in-process by default).
    pub members: &'a [(String, LoadedComponent)],
    /// Linked code of members that are not running yet (this start links them first).
    pub built: &'a HashMap<String, Arc<[u8]>>,
}

/// Which exporters to compose into a component, decided under the lifecycle lock.
pub(crate) struct LinkPlan {
    plugs: Vec<Plug>,
    routes: Vec<(String, ImportRoute)>,
}

impl Inner {
    /// Plans `subject`'s in-process links from what runs here now.
    pub fn plan(&self, subject: &Subject<'_>) -> Result<LinkPlan, StartError> {
        let mut plugs: Vec<Plug> = Vec::new();
        let mut routes = Vec::new();
        for import in &subject.loaded.imports {
            let Some(target) = self.in_process_target(subject, import) else {
                continue;
            };
            let bytes = match (self.running(&target), subject.built.get(&target)) {
                (Some(running), _) => running.current().bytes.clone(),
                (None, Some(bytes)) => bytes.clone(),
                (None, None) => {
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
        Ok(LinkPlan { plugs, routes })
    }

    /// Whether every in-process target of `subject` is running here or already built.
    pub fn ready_to_plan(&self, subject: &Subject<'_>) -> bool {
        subject.loaded.imports.iter().all(|import| {
            self.in_process_target(subject, import)
                .is_none_or(|target| {
                    self.running(&target).is_some() || subject.built.contains_key(&target)
                })
        })
    }

    /// The component on this runtime that `subject`'s `import` should be composed with, if any
    /// (rules 2 and 4 of [`Inner::plugin_for`]'s precedence): the explicit link's target when it
    /// runs here, else (no link and no plugin) a member of the same workload. Never for a
    /// component that chooses its links at run time (`wasmcloud:bus/lattice`).
    fn in_process_target(&self, subject: &Subject<'_>, import: &str) -> Option<String> {
        let name = InterfaceName::parse(import)?;
        if !self.in_process_links || subject.loaded.chooses_links() || wasi::is_baseline(&name) {
            return None;
        }
        let exports = |c: &LoadedComponent| c.exports_instance(import);
        if let Some(target) = self.links.source().target(subject.id, &name.unversioned()) {
            let here = self
                .running(&target)
                .is_some_and(|c| exports(&c.current().loaded) && !c.has_own_wasi())
                || subject
                    .members
                    .iter()
                    .any(|(member, c)| *member == target && exports(c));
            return here.then_some(target);
        }
        if self.plugin_for(subject.id, &name).is_some() {
            return None;
        }
        subject
            .members
            .iter()
            .find(|(member, c)| member != subject.id && exports(c))
            .map(|(member, _)| member.clone())
    }

    /// The plugin that takes `component`'s `import`, if any. This and
    /// [`Inner::in_process_target`] are the whole precedence, for an import that is neither
    /// WASI baseline nor `wasmcloud:bus/lattice`:
    /// 1. a `default` link whose target is served by the plugins here (a built-in provider
    ///    started on this host) → the plugin serving the interface;
    /// 2. any other `default` link → its target: composed in-process when it is a component
    ///    running here that exports the interface and has no WASI grants of its own (volumes,
    ///    environment: composed, it would run with its importer's), else the forwarding plugin
    ///    for the interface (the lattice stand-in, e.g. `wasi:keyvalue` as `wrpc:keyvalue`),
    ///    else wRPC;
    /// 3. no link → the plugin serving the interface, else the forwarding one;
    /// 4. then a member of the same workload exporting it, in-process;
    /// 5. then the embedder's fallback, then wRPC (which fails the call for want of a link).
    ///
    /// So an explicit link always wins over a built-in, and a built-in over implicit routes. A
    /// plugin's interfaces move together: a link for one of them (`wasi:keyvalue/store`, say)
    /// takes its siblings (`atomics`, `batch`) off the serving plugin too, since they share
    /// resources and per-call state that one plugin must hold.
    pub fn plugin_for(&self, component: &str, import: &InterfaceName) -> Option<Arc<dyn Plugin>> {
        let covering = |forwards: bool| {
            self.plugins
                .iter()
                .find(|p| {
                    p.forwards() == forwards
                        && p.imports().iter().any(|pattern| pattern.covers(import))
                })
                .cloned()
        };
        let links = self.links.source();
        let linked_away = |interface: &InterfaceName| {
            links
                .target(component, &interface.unversioned())
                .is_some_and(|target| !links.served_by_plugins(&target))
        };
        if let Some(serving) = covering(false)
            && !linked_away(import)
            && !serving.imports().iter().any(linked_away)
        {
            return Some(serving);
        }
        covering(true)
    }
}

/// Builds the linking `plan` describes: composes and compiles when exporters are plugged in,
/// then links every remaining import. CPU-bound; runs on a blocking thread.
pub(crate) async fn build(
    inner: &Arc<Inner>,
    id: &str,
    loaded: &LoadedComponent,
    plan: LinkPlan,
) -> Result<Linked, StartError> {
    let (inner, id, loaded) = (inner.clone(), id.to_string(), loaded.clone());
    tokio::task::spawn_blocking(move || link(&inner, &id, &loaded, plan))
        .await
        .map_err(|e| StartError::Invalid(format!("linking task failed: {e}")))?
}

fn link(
    inner: &Inner,
    id: &str,
    loaded: &LoadedComponent,
    plan: LinkPlan,
) -> Result<Linked, StartError> {
    let engine = &inner.engine;
    let load_error = |source: anyhow::Error| StartError::Load {
        component: id.to_string(),
        source,
    };
    let LinkPlan { plugs, mut routes } = plan;
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
        .map(|(name, item)| (name.to_string(), item.ty))
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
            Some(name) if let Some(plugin) = inner.plugin_for(id, name) => {
                plugin.add_to_linker(&mut linker, name).map_err(|e| {
                    load_error(e.context(format!("plugin `{}` linking `{import}`", plugin.id())))
                })?;
                if !plugins.iter().any(|p| Arc::ptr_eq(p, &plugin)) {
                    plugins.push(plugin.clone());
                }
                ImportRoute::Plugin(plugin.id().to_string())
            }
            _ => link_elsewhere(inner, &mut linker, id, import, item)?,
        };
        if !routes.iter().any(|(name, _)| name == import) {
            routes.push((import.clone(), route));
        }
    }
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| load_error(e.into()))?;
    Ok(Linked {
        loaded: loaded.clone(),
        pre,
        component,
        bytes,
        routes,
        plugins,
    })
}

/// Routes an import nothing on this runtime provides: the embedder's fallback first, then the
/// lattice over wRPC. Neither → the start fails naming the import.
fn link_elsewhere(
    inner: &Inner,
    linker: &mut Linker<InvocationCtx>,
    id: &str,
    import: &str,
    item: &ComponentItem,
) -> Result<ImportRoute, StartError> {
    let engine = inner.engine.wasmtime();
    let fail = |e: anyhow::Error, how: &str| StartError::Load {
        component: id.to_string(),
        source: e.context(format!("linking `{import}` {how}")),
    };
    if let Some(fallback) = &inner.fallback
        && fallback
            .link(engine, linker, id, import, item)
            .map_err(|e| fail(e, "through the fallback"))?
    {
        return Ok(ImportRoute::Fallback);
    }
    if inner.remote.is_some()
        && let ComponentItem::ComponentInstance(instance) = item
    {
        polyfill::link(engine, linker, import, instance).map_err(|e| fail(e, "to the lattice"))?;
        return Ok(ImportRoute::Remote);
    }
    Err(StartError::UnresolvedImport {
        component: id.to_string(),
        import: import.to_string(),
    })
}
