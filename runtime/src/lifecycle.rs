//! Starting, stopping and re-linking workloads without stalling anything else.
//!
//! Each change is prepared with no lock held (reading and compiling code, composing exporters
//! in, binding plugins) and committed under the lifecycle lock in one short synchronous step.
//! Commits bump a generation; a commit whose plan was made at an older generation (a component
//! arrived or left, something was re-linked) plans again from the new state instead. Ids being
//! started or stopped are reserved, so a second start of the same id is refused while the first
//! one runs, and a stop's unbinds finish before the id can start again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use crate::component::{ComponentSource, LoadedComponent};
use crate::error::{StartError, StopError};
use crate::interface::InterfaceName;
use crate::plugin::{Binding, Plugin};
use crate::resolve::{self, Subject};
use crate::running::{ComponentHandle, Linked, RunningComponent};
use crate::runtime::Inner;
use crate::service::ServiceHandle;
use crate::wasi::MaterializedVolumes;
use crate::workload::{
    ComponentState, HostInterface, Workload, WorkloadComponent, WorkloadState, WorkloadStatus,
};

/// What the lifecycle lock guards.
#[derive(Default)]
pub(crate) struct Lifecycle {
    workloads: BTreeMap<String, RunningWorkload>,
    reserved_workloads: HashSet<String>,
    reserved_components: HashSet<String>,
    /// Bumped by every commit that changes what linking depends on.
    generation: u64,
}

struct RunningWorkload {
    component_ids: Vec<String>,
    /// The plugin configuration the components are bound with.
    host_interfaces: Vec<HostInterface>,
    /// Its services by id: the standalone one and its components that run as services.
    services: Vec<(String, ServiceHandle)>,
    /// Kept for as long as the workload runs: empty dirs are removed on drop.
    volumes: MaterializedVolumes,
}

impl Lifecycle {
    pub fn workload_ids(&self) -> Vec<String> {
        self.workloads.keys().cloned().collect()
    }

    pub fn statuses(&self) -> Vec<WorkloadStatus> {
        self.workloads
            .keys()
            .filter_map(|id| self.status(id))
            .collect()
    }

    /// The state of service `id` (a component that runs as a service, or a standalone one).
    pub fn service_state(&self, id: &str) -> Option<ComponentState> {
        self.workloads
            .values()
            .flat_map(|w| &w.services)
            .find(|(service, _)| service == id)
            .map(|(_, handle)| handle.state())
    }

    pub fn status(&self, id: &str) -> Option<WorkloadStatus> {
        let workload = self.workloads.get(id)?;
        let mut components: BTreeMap<String, ComponentState> = workload
            .component_ids
            .iter()
            .map(|c| (c.clone(), ComponentState::Running))
            .collect();
        let mut overall = WorkloadState::Running;
        for (service_id, service) in &workload.services {
            let service_state = service.state();
            match &service_state {
                ComponentState::Failed(reason) => {
                    overall = WorkloadState::Failed(reason.clone());
                }
                ComponentState::Exited if overall == WorkloadState::Running => {
                    overall = WorkloadState::Completed;
                }
                _ => {}
            }
            components.insert(service_id.clone(), service_state);
        }
        Some(WorkloadStatus {
            id: id.to_string(),
            state: overall,
            components,
        })
    }
}

/// Ids taken by a start or stop in progress; released on drop.
struct Reservation {
    inner: Arc<Inner>,
    workload: String,
    components: Vec<String>,
}

impl Reservation {
    /// Releases the ids under a lifecycle lock the caller already holds.
    fn release(mut self, lifecycle: &mut Lifecycle) {
        lifecycle.reserved_workloads.remove(&self.workload);
        for id in self.components.drain(..) {
            lifecycle.reserved_components.remove(&id);
        }
        self.workload.clear();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.workload.is_empty() && self.components.is_empty() {
            return;
        }
        let mut lifecycle = self.inner.lifecycle.lock().unwrap();
        lifecycle.reserved_workloads.remove(&self.workload);
        for id in &self.components {
            lifecycle.reserved_components.remove(id);
        }
    }
}

/// Refuses ids that run or are being started or stopped, then takes them.
fn reserve(inner: &Arc<Inner>, workload: &Workload) -> Result<Reservation, StartError> {
    let workload_id = workload.id();
    let mut lifecycle = inner.lifecycle.lock().unwrap();
    if lifecycle.workloads.contains_key(&workload_id)
        || lifecycle.reserved_workloads.contains(&workload_id)
    {
        return Err(StartError::WorkloadExists(workload_id));
    }
    for component in &workload.components {
        let duplicate = workload
            .components
            .iter()
            .filter(|c| c.id == component.id)
            .count()
            > 1;
        if duplicate
            || inner.running(&component.id).is_some()
            || lifecycle.reserved_components.contains(&component.id)
        {
            return Err(StartError::ComponentExists(component.id.clone()));
        }
        if component.budget.fuel.is_some() && !inner.engine.config().fuel_metering {
            return Err(StartError::Invalid(format!(
                "component `{}`: {}",
                component.id,
                crate::budget::FuelMeteringOff
            )));
        }
    }
    let components: Vec<String> = workload.components.iter().map(|c| c.id.clone()).collect();
    lifecycle.reserved_workloads.insert(workload_id.clone());
    lifecycle
        .reserved_components
        .extend(components.iter().cloned());
    Ok(Reservation {
        inner: inner.clone(),
        workload: workload_id,
        components,
    })
}

/// Reads and compiles a component's code on a blocking thread (the engine caches by digest).
async fn load(inner: &Inner, component: &WorkloadComponent) -> Result<LoadedComponent, StartError> {
    let load_error = |source| StartError::Load {
        component: component.id.clone(),
        source,
    };
    let bytes = component.source.read().await.map_err(load_error)?;
    let engine = inner.engine.clone();
    tokio::task::spawn_blocking(move || LoadedComponent::compile(&engine, bytes))
        .await
        .map_err(|e| load_error(anyhow::anyhow!("compile task failed: {e}")))?
        .map_err(load_error)
}

pub(crate) async fn start(
    inner: &Arc<Inner>,
    workload: Workload,
) -> Result<WorkloadStatus, StartError> {
    let workload_id = workload.id();
    let reservation = reserve(inner, &workload)?;
    let volumes = MaterializedVolumes::create(&workload.volumes)
        .map_err(|e| StartError::Invalid(format!("{e:#}")))?;
    let mut members = Vec::new();
    for component in &workload.components {
        members.push((component.id.clone(), load(inner, component).await?));
    }

    let (linked, mut generation) = link_members(inner, &members).await?;
    let mut running = Vec::new();
    for (spec, linked) in workload.components.iter().zip(linked) {
        let mounts = volumes
            .resolve(&spec.mounts)
            .map_err(|source| StartError::Load {
                component: spec.id.clone(),
                source,
            })?;
        running.push(Arc::new(RunningComponent::new(
            spec,
            &workload_id,
            linked,
            mounts,
            inner.engine.clone(),
            inner.remote.clone(),
            inner.call_observer.clone(),
        )));
    }
    bind_all(inner, &workload_id, &workload.host_interfaces, &running).await?;

    // Publish the components, planning again first if something committed since the plan.
    loop {
        {
            let mut lifecycle = inner.lifecycle.lock().unwrap();
            if lifecycle.generation == generation {
                let mut components = inner.components.write().unwrap();
                for component in &running {
                    components.insert(component.id.to_string(), component.clone());
                }
                drop(components);
                lifecycle.workloads.insert(
                    workload_id.clone(),
                    RunningWorkload {
                        component_ids: members.iter().map(|(id, _)| id.clone()).collect(),
                        host_interfaces: workload.host_interfaces.clone(),
                        services: Vec::new(),
                        volumes,
                    },
                );
                lifecycle.generation += 1;
                reservation.release(&mut lifecycle);
                break;
            }
        }
        let relinked = match link_members(inner, &members).await {
            Ok(relinked) => relinked,
            Err(error) => {
                unbind_all(inner, &running).await;
                return Err(error);
            }
        };
        for (component, linked) in running.iter().zip(relinked.0) {
            component.relinked(linked);
        }
        generation = relinked.1;
    }

    if let Some(service) = &workload.service {
        let started = async {
            let mounts = {
                let lifecycle = inner.lifecycle.lock().unwrap();
                let running = lifecycle.workloads.get(&workload_id);
                running
                    .map(|w| w.volumes.resolve(&service.mounts))
                    .transpose()?
                    .unwrap_or_default()
            };
            let bytes = service.source.read().await?;
            let (engine, id, grants, restart) = (
                inner.engine.clone(),
                service.id.clone(),
                service.grants.clone(),
                service.restart,
            );
            tokio::task::spawn_blocking(move || {
                ServiceHandle::start(&engine, &id, bytes, &grants, &mounts, restart)
            })
            .await?
        };
        match started.await {
            Ok(handle) => {
                let mut lifecycle = inner.lifecycle.lock().unwrap();
                match lifecycle.workloads.get_mut(&workload_id) {
                    Some(running) => running.services.push((service.id.clone(), handle)),
                    None => handle.stop(),
                }
            }
            Err(source) => {
                let _ = stop(inner, &workload_id, true).await;
                return Err(StartError::Load {
                    component: service.id.clone(),
                    source,
                });
            }
        }
    }

    // Components that are services too start running once linked and published.
    for (spec, component) in workload.components.iter().zip(&running) {
        if let Some(policy) = spec.run
            && component.current().loaded.exports_run()
        {
            let handle = ServiceHandle::of_component(component.clone(), policy);
            let mut lifecycle = inner.lifecycle.lock().unwrap();
            match lifecycle.workloads.get_mut(&workload_id) {
                Some(workload) => workload.services.push((spec.id.clone(), handle)),
                None => handle.stop(),
            }
        }
    }

    // Components elsewhere on this runtime that link to the newcomers now call them in-process
    // instead of over the lattice.
    let started: Vec<String> = workload.components.iter().map(|c| c.id.clone()).collect();
    for source in inner.links.source().sources_linking_to(&started) {
        if !started.contains(&source)
            && let Err(error) = relink(inner, &source).await
        {
            tracing::warn!(component = %source, "re-linking to a new local target: {error}");
        }
    }
    tracing::info!(workload = %workload_id, components = workload.components.len(), "workload started");
    let status = inner.lifecycle.lock().unwrap().status(&workload_id);
    status.ok_or_else(|| StartError::Invalid(format!("workload `{workload_id}` stopped meanwhile")))
}

/// Links the members of a workload, exporters before their importers (what never becomes
/// linkable is a cycle). Returns each member's linking, in member order, and the generation the
/// plans were made at.
async fn link_members(
    inner: &Arc<Inner>,
    members: &[(String, LoadedComponent)],
) -> Result<(Vec<Linked>, u64), StartError> {
    loop {
        if let Some(linked) = try_link_members(inner, members).await? {
            return Ok(linked);
        }
    }
}

/// One attempt of [`link_members`]: `None` when something committed between two plans, so the
/// plans may not fit together.
async fn try_link_members(
    inner: &Arc<Inner>,
    members: &[(String, LoadedComponent)],
) -> Result<Option<(Vec<Linked>, u64)>, StartError> {
    let mut built: HashMap<String, Arc<[u8]>> = HashMap::new();
    let mut linked: Vec<Option<Linked>> = members.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..members.len()).collect();
    let generation = inner.lifecycle.lock().unwrap().generation;
    while !pending.is_empty() {
        let (index, plan) = {
            let lifecycle = inner.lifecycle.lock().unwrap();
            if lifecycle.generation != generation {
                return Ok(None);
            }
            let subject = |i: usize| Subject {
                id: &members[i].0,
                loaded: &members[i].1,
                members,
                built: &built,
            };
            let Some(position) = pending
                .iter()
                .position(|&i| inner.ready_to_plan(&subject(i)))
            else {
                return Err(StartError::LinkCycle(
                    pending.iter().map(|&i| members[i].0.clone()).collect(),
                ));
            };
            let index = pending.remove(position);
            (index, inner.plan(&subject(index))?)
        };
        let (id, loaded) = &members[index];
        let member = resolve::build(inner, id, loaded, plan).await?;
        built.insert(id.clone(), member.bytes.clone());
        linked[index] = Some(member);
    }
    let linked = linked
        .into_iter()
        .map(|l| l.expect("every member linked"))
        .collect();
    Ok(Some((linked, generation)))
}

/// Stops a workload: its components leave the call path at once; plugins are unbound and
/// in-process dependents re-linked after.
pub(crate) async fn stop(
    inner: &Arc<Inner>,
    workload_id: &str,
    force: bool,
) -> Result<(), StopError> {
    let (workload, dependents, reservation) = {
        let mut lifecycle = inner.lifecycle.lock().unwrap();
        let members = match lifecycle.workloads.get(workload_id) {
            Some(workload) => workload.component_ids.clone(),
            None => return Err(StopError::NotFound(workload_id.to_string())),
        };
        let dependents = dependents(inner, &members);
        if !dependents.is_empty() && !force {
            return Err(StopError::HasDependents {
                workload: workload_id.to_string(),
                dependents,
            });
        }
        let workload = lifecycle
            .workloads
            .remove(workload_id)
            .expect("found above");
        let mut components = inner.components.write().unwrap();
        let stopped: Vec<Arc<RunningComponent>> = members
            .iter()
            .filter_map(|id| components.remove(id))
            .collect();
        drop(components);
        lifecycle.generation += 1;
        lifecycle.reserved_workloads.insert(workload_id.to_string());
        lifecycle
            .reserved_components
            .extend(members.iter().cloned());
        let reservation = Reservation {
            inner: inner.clone(),
            workload: workload_id.to_string(),
            components: members,
        };
        ((workload, stopped), dependents, reservation)
    };
    let (workload, stopped) = workload;
    for (_, service) in workload.services {
        service.stop();
    }
    unbind_all(inner, &stopped).await;
    drop(reservation);
    for dependent in dependents {
        // Their imports now go to the fallback; if nothing provides them, the dependent keeps
        // its last composition (it holds its own copy of the exporter) and we say so.
        if let Err(error) = relink(inner, &dependent).await {
            tracing::warn!(component = %dependent, "kept previous in-process link after forced stop: {error}");
        }
    }
    tracing::info!(workload = %workload_id, force, "workload stopped");
    Ok(())
}

/// Re-links `id` (if it runs here) and, after it, every component composed with it.
pub(crate) fn relink<'a>(
    inner: &'a Arc<Inner>,
    id: &'a str,
) -> Pin<Box<dyn Future<Output = Result<(), StartError>> + Send + 'a>> {
    Box::pin(async move {
        let dependents = match swap_linking(inner, id, None).await? {
            Some((replaced, dependents)) => {
                bind_if_plugins_changed(inner, id, &replaced).await?;
                dependents
            }
            None => return Ok(()),
        };
        for dependent in dependents {
            relink(inner, &dependent).await?;
        }
        Ok(())
    })
}

/// Resolves `id`'s imports again and swaps the result in: with `code`, for new code, else for
/// the code it runs. Returns the linking replaced and the components composed with `id`;
/// `None` when `id` does not run here. The caller binds the plugins the new linking uses.
async fn swap_linking(
    inner: &Arc<Inner>,
    id: &str,
    code: Option<&LoadedComponent>,
) -> Result<Option<(Arc<Linked>, Vec<String>)>, StartError> {
    loop {
        let (component, current, plan, generation) = {
            let lifecycle = inner.lifecycle.lock().unwrap();
            let Some(component) = inner.running(id) else {
                return Ok(None);
            };
            let current = component.current();
            let loaded = code.unwrap_or(&current.loaded);
            let mut members = workload_members(&lifecycle, inner, &component.workload);
            for (member, member_code) in &mut members {
                if member == id {
                    *member_code = loaded.clone();
                }
            }
            let plan = inner.plan(&Subject {
                id,
                loaded,
                members: &members,
                built: &HashMap::new(),
            })?;
            (component, current, plan, lifecycle.generation)
        };
        let loaded = code.unwrap_or(&current.loaded);
        let linked = resolve::build(inner, id, loaded, plan).await?;
        let mut lifecycle = inner.lifecycle.lock().unwrap();
        if lifecycle.generation != generation {
            continue;
        }
        if !inner
            .running(id)
            .is_some_and(|running| Arc::ptr_eq(&running, &component))
        {
            return Ok(None);
        }
        let replaced = component.relinked(linked);
        lifecycle.generation += 1;
        return Ok(Some((replaced, dependents(inner, &[id.to_string()]))));
    }
}

/// Swaps the code of running component `id` for `source`'s, in place: calls under way finish on
/// the old code, new calls run the new one, and whatever holds the component's handle (the HTTP
/// server's routes, wRPC serving) keeps serving throughout. Plugins are bound again only when
/// the new code uses other interfaces; components composed with it are re-linked.
pub(crate) async fn update(
    inner: &Arc<Inner>,
    id: &str,
    source: &ComponentSource,
) -> Result<(), StartError> {
    let load_error = |source| StartError::Load {
        component: id.to_string(),
        source,
    };
    let bytes = source.read().await.map_err(load_error)?;
    let engine = inner.engine.clone();
    let code = tokio::task::spawn_blocking(move || LoadedComponent::compile(&engine, bytes))
        .await
        .map_err(|e| load_error(anyhow::anyhow!("compile task failed: {e}")))?
        .map_err(load_error)?;
    let not_running = || StartError::Invalid(format!("component `{id}` is not running"));
    let (replaced, dependents) = swap_linking(inner, id, Some(&code))
        .await?
        .ok_or_else(not_running)?;
    bind_if_plugins_changed(inner, id, &replaced).await?;
    for dependent in dependents {
        if let Err(error) = relink(inner, &dependent).await {
            tracing::warn!(component = %dependent, "re-linking to updated code: {error}");
        }
    }
    tracing::info!(component = %id, digest = %code.digest_hex(), "component code swapped in place");
    Ok(())
}

/// Binds `id` again when its linking (just swapped in for `replaced`) uses other plugins or
/// other interfaces: a link put, moved or deleted can move an import between a plugin and a
/// component, and new code can import something else.
async fn bind_if_plugins_changed(
    inner: &Arc<Inner>,
    id: &str,
    replaced: &Linked,
) -> Result<(), StartError> {
    let Some(component) = inner.running(id) else {
        return Ok(());
    };
    let now = component.current();
    let same_plugins = |a: &Linked, b: &Linked| {
        a.plugins.len() == b.plugins.len()
            && a.plugins
                .iter()
                .zip(&b.plugins)
                .all(|(x, y)| Arc::ptr_eq(x, y))
    };
    if replaced.loaded.imports == now.loaded.imports
        && replaced.loaded.exports == now.loaded.exports
        && same_plugins(replaced, &now)
    {
        return Ok(());
    }
    let _order = inner.binding.lock().await;
    let host_interfaces = inner
        .lifecycle
        .lock()
        .unwrap()
        .workloads
        .get(&component.workload)
        .map(|w| w.host_interfaces.clone())
        .unwrap_or_default();
    let plugins = now.plugins.clone();
    bind(
        inner,
        &component.workload,
        &host_interfaces,
        &component,
        &plugins,
        true,
    )
    .await
}

/// Rebinds every component of a running workload with new plugin configuration.
pub(crate) async fn rebind(
    inner: &Arc<Inner>,
    workload_id: &str,
    host_interfaces: &[HostInterface],
) -> Result<(), StartError> {
    let _order = inner.binding.lock().await;
    let components: Vec<Arc<RunningComponent>> = {
        let mut lifecycle = inner.lifecycle.lock().unwrap();
        let Some(workload) = lifecycle.workloads.get_mut(workload_id) else {
            return Err(StartError::Invalid(format!(
                "workload `{workload_id}` is not running"
            )));
        };
        workload.host_interfaces = host_interfaces.to_vec();
        workload
            .component_ids
            .iter()
            .filter_map(|id| inner.running(id))
            .collect()
    };
    for running in &components {
        let plugins = running.current().plugins.clone();
        bind(inner, workload_id, host_interfaces, running, &plugins, true).await?;
    }
    Ok(())
}

/// The components of `workload`, with their loaded code.
fn workload_members(
    lifecycle: &Lifecycle,
    inner: &Inner,
    workload: &str,
) -> Vec<(String, LoadedComponent)> {
    lifecycle
        .workloads
        .get(workload)
        .map(|w| {
            w.component_ids
                .iter()
                .filter_map(|id| {
                    inner
                        .running(id)
                        .map(|c| (id.clone(), c.current().loaded.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Components (outside `targets`) whose current linking composes any of `targets` in.
fn dependents(inner: &Inner, targets: &[String]) -> Vec<String> {
    inner
        .components
        .read()
        .unwrap()
        .values()
        .filter(|c| !targets.iter().any(|t| **t == *c.id))
        .filter(|c| {
            c.current()
                .in_process_targets()
                .any(|t| targets.iter().any(|x| x == t))
        })
        .map(|c| c.id.to_string())
        .collect()
}

/// Binds each of `running` to its plugins; on a refusal, unbinds those bound so far.
async fn bind_all(
    inner: &Arc<Inner>,
    workload_id: &str,
    host_interfaces: &[HostInterface],
    running: &[Arc<RunningComponent>],
) -> Result<(), StartError> {
    let order = inner.binding.lock().await;
    for (i, component) in running.iter().enumerate() {
        let plugins = component.current().plugins.clone();
        if let Err(error) = bind(
            inner,
            workload_id,
            host_interfaces,
            component,
            &plugins,
            false,
        )
        .await
        {
            drop(order);
            unbind_all(inner, &running[..=i]).await;
            return Err(error);
        }
    }
    Ok(())
}

async fn unbind_all(inner: &Inner, running: &[Arc<RunningComponent>]) {
    let _order = inner.binding.lock().await;
    for component in running {
        for plugin in &inner.plugins {
            plugin.unbind(&component.id).await;
        }
    }
}

/// Binds `running` to every plugin it imports from or whose consumed exports it has (with
/// `again`, rebinds it to them and unbinds it from the others).
async fn bind(
    inner: &Inner,
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
    let export_names: Vec<InterfaceName> = linked
        .loaded
        .exports
        .iter()
        .filter_map(|(name, _)| InterfaceName::parse(name))
        .collect();
    for plugin in &inner.plugins {
        let imports: Vec<InterfaceName> = if imported_from.iter().any(|p| Arc::ptr_eq(p, plugin)) {
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
