//! Component lifecycle on this host: scale (start, rescale, stop) and update, run through the
//! runtime's `Host` API. Every change goes through one lifecycle lock, in arrival order, and
//! ends in exactly one outcome event per affected reference.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::json;
use tokio::sync::watch;
use trellis_runtime::{
    ComponentSource, ComponentState, Host as _, HostInterface, LoadedComponent, StartError,
    Workload, WorkloadComponent, WorkloadService,
};

use crate::limits::{ComponentLimits, LimitError};
use crate::oci::{ArtifactKind, OciError};
use crate::reconcile::derive::{self, ComponentPlan};
use crate::rpc::ExportServer;
use crate::secrets::{self, Entity, ResolvedSecrets, SecretError, SecretMap};
use crate::state::HostState;
use trellis_deployer::wire::{
    Annotations, ComponentDescription, ScaleComponentCommand, UpdateComponentCommand,
};

/// Workload namespace of lattice components on the runtime.
pub(crate) const NAMESPACE: &str = "lattice";

/// Why a component could not be started or updated.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error(
        "unsupported component reference `{0}`: use file:///path/to/component.wasm or an OCI \
         reference (registry/repository:tag or …@sha256:digest)"
    )]
    UnsupportedReference(String),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    File(#[from] crate::files::FileRefused),
    #[error("{}", missing_config_message(.0))]
    MissingConfig(Vec<String>),
    #[error("loading `{reference}`: {reason}")]
    Load { reference: String, reason: String },
    #[error(
        "`{reference}` is {size} bytes, above this host's limit of {limit} \
         (--max-component-size-bytes)"
    )]
    TooLarge {
        reference: String,
        size: usize,
        limit: u64,
    },
    #[error(transparent)]
    Limits(#[from] LimitError),
    #[error(transparent)]
    Grants(#[from] crate::grants::GrantError),
    #[error(transparent)]
    Secrets(#[from] SecretError),
    #[error(transparent)]
    Start(#[from] StartError),
}

fn missing_config_message(names: &[String]) -> String {
    names
        .iter()
        .map(|name| match secrets::is_secret(name) {
            true => format!("Secret reference {name} does not exist"),
            false => format!("Config {name} does not exist"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Refuses references this host cannot load: anything but `file:///path` and OCI references,
/// and OCI references this host will not pull (`latest` unless allowed).
pub fn check_reference(state: &HostState, reference: &str) -> Result<(), ComponentError> {
    match reference.strip_prefix("file://") {
        Some(path) if path.starts_with('/') => Ok(()),
        Some(_) => Err(ComponentError::UnsupportedReference(reference.to_string())),
        None if reference.contains("://") && !reference.starts_with("oci://") => {
            Err(ComponentError::UnsupportedReference(reference.to_string()))
        }
        None => state.oci.check(reference).map(drop).map_err(Into::into),
    }
}

/// A component running here, as the lattice sees it.
#[derive(Clone)]
pub struct RunningComponent {
    pub image_ref: String,
    pub annotations: Annotations,
    pub max_instances: u32,
    pub config: Vec<String>,
    /// The limits `component.scale` gave it; its config's limits are in `plan`.
    pub limits: Option<ComponentLimits>,
    /// Its links, plugin config and config limits as last applied (see [`crate::reconcile`]).
    pub plan: ComponentPlan,
    /// The code it runs, kept so a rescale never re-reads (or re-fetches) the reference.
    bytes: Arc<[u8]>,
    /// Its exports on the lattice; dropped (unsubscribed) with the last clone.
    /// `None` for a preview-1 service, which exports nothing.
    _exports: Option<Arc<ExportServer>>,
}

impl RunningComponent {
    /// The code it runs.
    pub fn code(&self) -> &[u8] {
        &self.bytes
    }

    /// Its config's limits overridden by its command's; `None` when neither sets any (or the
    /// config's cannot be applied: the host's then stay in force).
    pub fn effective_limits(&self) -> Option<ComponentLimits> {
        let from_config = self.plan.limits.clone().unwrap_or_default();
        let effective = from_config.overridden_by(self.limits.as_ref());
        (self.limits.is_some() || !effective.is_empty()).then_some(effective)
    }
}

/// The components running here, with change notification, and the lock that orders their
/// lifecycle changes (scale, update, reconciliation).
pub struct Components {
    lifecycle: tokio::sync::Mutex<()>,
    table: RwLock<BTreeMap<String, RunningComponent>>,
    changes: watch::Sender<u64>,
}

impl Default for Components {
    fn default() -> Self {
        Self {
            lifecycle: tokio::sync::Mutex::default(),
            table: RwLock::default(),
            changes: watch::Sender::new(0),
        }
    }
}

impl Components {
    /// Orders a lifecycle change after those already under way.
    pub async fn lifecycle(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lifecycle.lock().await
    }

    /// Resolves on every start and stop after the call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every running component.
    pub fn running(&self) -> Vec<(String, RunningComponent)> {
        self.table
            .read()
            .unwrap()
            .iter()
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<RunningComponent> {
        self.table.read().unwrap().get(id).cloned()
    }

    pub fn describe(&self, runtime: &trellis_runtime::Runtime) -> Vec<ComponentDescription> {
        self.table
            .read()
            .unwrap()
            .iter()
            .map(|(id, c)| ComponentDescription {
                id: id.clone(),
                image_ref: c.image_ref.clone(),
                annotations: c.annotations.clone(),
                revision: 0,
                max_instances: c.max_instances,
                limits: c.effective_limits().map(|limits| limits.to_map()),
                state: runtime
                    .service_state(id)
                    .map(|state| describe_service(&state)),
            })
            .collect()
    }

    /// Stops every component (host shutdown).
    pub async fn stop_all(&self, state: &HostState) {
        let _order = self.lifecycle.lock().await;
        let ids: Vec<String> = self.table.read().unwrap().keys().cloned().collect();
        for id in ids {
            stop_workload(state, &id).await;
        }
    }

    /// Records what was applied to a running component.
    pub fn set_plan(&self, id: &str, plan: ComponentPlan) {
        if let Some(running) = self.table.write().unwrap().get_mut(id) {
            running.plan = plan;
        }
    }

    /// Records annotations and limits changed without a restart.
    fn changed_in_place(
        &self,
        id: &str,
        annotations: Annotations,
        limits: Option<ComponentLimits>,
    ) {
        if let Some(running) = self.table.write().unwrap().get_mut(id) {
            running.annotations = annotations;
            running.limits = limits;
        }
    }

    /// Records new code swapped into a running component.
    fn swapped(&self, id: &str, image_ref: &str, annotations: Annotations, bytes: Arc<[u8]>) {
        if let Some(running) = self.table.write().unwrap().get_mut(id) {
            running.image_ref = image_ref.to_string();
            running.annotations = annotations;
            running.bytes = bytes;
        }
    }

    fn set(&self, id: &str, running: Option<RunningComponent>) {
        {
            let mut table = self.table.write().unwrap();
            match running {
                Some(running) => table.insert(id.to_string(), running),
                None => table.remove(id),
            };
        }
        self.changes.send_modify(|count| *count += 1);
    }
}

/// Carries out a scale command (the ack was already sent, after its `component_limits` parsed
/// into `limits`) and publishes its outcome. A command without limits keeps those a running
/// component has.
pub async fn scale(
    state: &HostState,
    command: ScaleComponentCommand,
    limits: Option<ComponentLimits>,
) {
    let components = &state.components;
    let _order = components.lifecycle.lock().await;
    let id = command.component_id.as_str();
    let requested = command.annotations.clone().unwrap_or_default();
    match (components.get(id), command.max_instances) {
        (None, 0) => scaled(state, id, &command.component_ref, &requested, 0).await,
        (Some(current), 0) => {
            stop_workload(state, id).await;
            scaled(state, id, &current.image_ref, &current.annotations, 0).await;
        }
        (None, count) => {
            let reference = &command.component_ref;
            let started = async {
                check_reference(state, reference)?;
                check_config(state, &command.config)?;
                let bytes = read(state, reference).await?;
                start(
                    state,
                    id,
                    reference,
                    bytes,
                    count,
                    requested.clone(),
                    command.config.clone(),
                    limits.clone(),
                )
                .await
            };
            match started.await {
                Ok(()) => scaled(state, id, reference, &requested, count).await,
                Err(error) => scale_failed(state, id, reference, &requested, count, &error).await,
            }
        }
        (Some(current), count) => {
            let limits = limits.or_else(|| current.limits.clone());
            // Only the instance count and the config need new instances; annotations and
            // limits change in place, so a deployer's upgrade (new annotations, then the new
            // code swapped in below) never stops the component.
            let restart = current.max_instances != count || current.config != command.config;
            let rescaled = async {
                if !restart {
                    if limits != current.limits {
                        set_budget(state, id, &current.plan, limits.as_ref()).await?;
                    }
                    let (annotations, limits) = (requested.clone(), limits.clone());
                    state.components.changed_in_place(id, annotations, limits);
                } else {
                    check_config(state, &command.config)?;
                    stop_workload(state, id).await;
                    if let Err(error) = start(
                        state,
                        id,
                        &current.image_ref,
                        current.bytes.clone(),
                        count,
                        requested.clone(),
                        command.config.clone(),
                        limits.clone(),
                    )
                    .await
                    {
                        restore(state, id, &current).await;
                        return Err(error);
                    }
                }
                Ok(())
            };
            match rescaled.await {
                Ok(()) => scaled(state, id, &current.image_ref, &requested, count).await,
                Err(error) => {
                    scale_failed(state, id, &current.image_ref, &requested, count, &error).await;
                    return;
                }
            }
            if command.allow_update && command.component_ref != current.image_ref {
                update_locked(state, id, &command.component_ref, command.annotations).await;
            }
        }
    }
}

/// Carries out an update (the ack was already sent): compiles the new code first, then swaps
/// it in. Calls already running finish on the old code.
pub async fn update(state: &HostState, command: UpdateComponentCommand) {
    let _order = state.components.lifecycle.lock().await;
    update_locked(
        state,
        &command.component_id,
        &command.new_component_ref,
        command.annotations,
    )
    .await;
}

async fn update_locked(
    state: &HostState,
    id: &str,
    reference: &str,
    annotations: Option<Annotations>,
) {
    let Some(current) = state.components.get(id) else {
        return;
    };
    let annotations = annotations.unwrap_or_default();
    let count = current.max_instances;
    let swapped = async {
        check_reference(state, reference)?;
        let bytes = read(state, reference).await?;
        let code = precompile(state, reference, bytes.clone()).await?;
        // The same exports: swap the code in place, so serving never pauses.
        let running = state.runtime.component(id);
        if running.is_some_and(|running| running.exports() == code.exports) {
            // New code may be signed by someone else: its secrets are asked for again.
            let identity = SecretsIdentity::new(id, &bytes, &annotations);
            let secrets = identity.fetch(state, &current.config).await?;
            state
                .runtime
                .update(id, ComponentSource::Bytes(bytes.clone()))
                .await?;
            state.plugins.secrets.grant(id, secrets);
            state
                .components
                .swapped(id, reference, annotations.clone(), bytes);
            return Ok(());
        }
        stop_workload(state, id).await;
        if let Err(error) = start(
            state,
            id,
            reference,
            bytes,
            count,
            annotations.clone(),
            current.config.clone(),
            current.limits.clone(),
        )
        .await
        {
            restore(state, id, &current).await;
            return Err(error);
        }
        Ok(())
    };
    match swapped.await {
        Ok(()) => {
            scaled(state, id, reference, &annotations, count).await;
            scaled(state, id, &current.image_ref, &current.annotations, 0).await;
        }
        Err(error) => scale_failed(state, id, reference, &annotations, count, &error).await,
    }
}

fn check_config(state: &HostState, names: &[String]) -> Result<(), ComponentError> {
    let missing = state.config.missing(names);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ComponentError::MissingConfig(missing))
    }
}

/// The code a reference names: read from a file, or pulled through the OCI cache.
async fn read(state: &HostState, reference: &str) -> Result<Arc<[u8]>, ComponentError> {
    if !reference.starts_with("file://") {
        let artifact = state.oci.pull(reference, ArtifactKind::Component).await?;
        check_size(state, reference, &artifact.bytes)?;
        return Ok(artifact.bytes);
    }
    // Acknowledged first, refused here: the refusal is the start's outcome event, as wasmCloud.
    state.files.check(reference)?;
    let load_error = |e: anyhow::Error| ComponentError::Load {
        reference: reference.to_string(),
        reason: format!("{e:#}"),
    };
    let bytes = ComponentSource::from_reference(reference)
        .map_err(load_error)?
        .read()
        .await
        .map_err(load_error)?;
    check_size(state, reference, &bytes)?;
    Ok(bytes)
}

/// Refuses an artifact above `--max-component-size-bytes`.
fn check_size(state: &HostState, reference: &str, bytes: &[u8]) -> Result<(), ComponentError> {
    let limit = state.limits.max_component_size_bytes;
    if bytes.len() as u64 > limit {
        return Err(ComponentError::TooLarge {
            reference: reference.to_string(),
            size: bytes.len(),
            limit,
        });
    }
    Ok(())
}

/// The budget a component's calls get: the host's, lowered by its config's limits and then by
/// its command's.
fn budget(
    state: &HostState,
    plan: &ComponentPlan,
    limits: Option<&ComponentLimits>,
) -> Result<trellis_runtime::Budget, ComponentError> {
    let effective = plan.limits.clone()?.overridden_by(limits);
    state.limits.check(&effective)?;
    Ok(state.limits.budget_for(&effective))
}

/// Gives a running component's next calls the budget `plan` and `limits` make.
pub async fn set_budget(
    state: &HostState,
    id: &str,
    plan: &ComponentPlan,
    limits: Option<&ComponentLimits>,
) -> Result<(), ComponentError> {
    let budget = budget(state, plan, limits)?;
    if let Some(handle) = state.runtime.component(id) {
        handle.set_budget(budget).map_err(|_| LimitError::FuelOff)?;
    }
    Ok(())
}

/// Compiles `bytes` (cached by the engine) so a broken artifact fails before anything stops.
async fn precompile(
    state: &HostState,
    reference: &str,
    bytes: Arc<[u8]>,
) -> Result<LoadedComponent, ComponentError> {
    let engine = state.runtime.engine().clone();
    let compiled = tokio::task::spawn_blocking(move || LoadedComponent::compile(&engine, bytes))
        .await
        .map_err(|e| anyhow::anyhow!("compile task failed: {e}"))
        .and_then(|r| r);
    compiled.map_err(|e| ComponentError::Load {
        reference: reference.to_string(),
        reason: format!("{e:#}"),
    })
}

#[allow(clippy::too_many_arguments)] // each is one field of what a component runs with
async fn start(
    state: &HostState,
    id: &str,
    reference: &str,
    bytes: Arc<[u8]>,
    max_instances: u32,
    annotations: Annotations,
    config: Vec<String>,
    limits: Option<ComponentLimits>,
) -> Result<(), ComponentError> {
    let mut component = WorkloadComponent::new(id, ComponentSource::Bytes(bytes.clone()));
    component.max_instances = max_instances;
    let plan = derive::component_plan(state, id, &config);
    component.budget = budget(state, &plan, limits.as_ref())?;
    let grants = plan.grants.clone()?;
    grants.check(&state.volume_roots)?;
    let (wasi, volumes, mounts) = grants.to_runtime();
    component.grants = wasi;
    component.mounts = mounts;
    component.run = Some(grants.restart);
    // Granted before the first call can arrive; a start that fails takes them back.
    let identity = SecretsIdentity::new(id, &bytes, &annotations);
    let secrets = identity.fetch(state, &config).await?;
    let host_interfaces = identity.plugin_interfaces(state, &plan).await?;
    state.plugins.secrets.grant(id, secrets);
    // A preview-1 core module can only be a service: it has no component imports to link and
    // no exports to serve, just `_start` on the WASI baseline.
    let core_module = trellis_runtime::is_core_module(&bytes);
    let (components, service) = if core_module {
        let service = WorkloadService {
            id: id.to_string(),
            source: component.source,
            grants: component.grants,
            mounts: component.mounts,
            restart: grants.restart,
        };
        (Vec::new(), Some(service))
    } else {
        (vec![component], None)
    };
    let started = state
        .runtime
        .workload_start(Workload {
            namespace: NAMESPACE.into(),
            name: id.into(),
            annotations: annotations.clone(),
            components,
            service,
            host_interfaces,
            volumes,
        })
        .await;
    if let Err(error) = started {
        state.plugins.secrets.revoke(id);
        return Err(error.into());
    }
    // Reported running (inventory, `component_scaled`) only once the NATS server has the
    // export subscriptions: a call sent on that news must find them, not a silent gap.
    let serving = async {
        if core_module {
            return anyhow::Ok(None);
        }
        let exports = ExportServer::start(&state.rpc, &state.runtime, id).await?;
        trellis_providers::nats::registered(&state.rpc.nats)
            .await
            .map_err(anyhow::Error::msg)?;
        anyhow::Ok(Some(Arc::new(exports)))
    };
    let exports = match serving.await {
        Ok(exports) => exports,
        Err(error) => {
            stop_workload(state, id).await;
            return Err(ComponentError::Load {
                reference: reference.to_string(),
                reason: format!("serving exports on the lattice: {error:#}"),
            });
        }
    };
    if let Err(error) = state.links.ensure_spec(id, reference).await {
        tracing::warn!(component = id, "recording the component spec: {error}");
    }
    state.components.set(
        id,
        Some(RunningComponent {
            image_ref: reference.to_string(),
            annotations,
            max_instances,
            config,
            limits,
            plan,
            bytes,
            _exports: exports,
        }),
    );
    Ok(())
}

/// Brings back `previous` after a failed swap; the old code is known to start.
async fn restore(state: &HostState, id: &str, previous: &RunningComponent) {
    let restarted = start(
        state,
        id,
        &previous.image_ref,
        previous.bytes.clone(),
        previous.max_instances,
        previous.annotations.clone(),
        previous.config.clone(),
        previous.limits.clone(),
    );
    if let Err(error) = restarted.await {
        tracing::error!(
            component = id,
            "could not restore the previous instance set: {error}"
        );
    }
}

async fn stop_workload(state: &HostState, id: &str) {
    let workload = format!("{NAMESPACE}/{id}");
    if let Err(error) = state.runtime.workload_stop(&workload, true).await {
        tracing::warn!(component = id, "stopping: {error}");
    }
    state.plugins.secrets.revoke(id);
    state.components.set(id, None);
}

/// Who a component is to secrets backends: the claims embedded in its code, read the first
/// time a secret is asked for (reading them hashes the whole component, so once per start).
pub struct SecretsIdentity<'a> {
    id: &'a str,
    bytes: &'a [u8],
    annotations: &'a Annotations,
    jwt: std::sync::OnceLock<Result<Option<String>, String>>,
}

impl<'a> SecretsIdentity<'a> {
    pub fn new(id: &'a str, bytes: &'a [u8], annotations: &'a Annotations) -> Self {
        Self {
            id,
            bytes,
            annotations,
            jwt: std::sync::OnceLock::new(),
        }
    }

    fn entity(&self) -> Entity<'_> {
        let jwt = self.jwt.get_or_init(|| secrets::component_jwt(self.bytes));
        Entity {
            describe: format!("component `{}`", self.id),
            jwt: jwt.as_ref().map(Option::as_deref).map_err(Clone::clone),
            application: self.annotations.get(secrets::APPSPEC).map(String::as_str),
        }
    }

    /// The secrets `config` names, asked of their backends.
    async fn fetch(
        &self,
        state: &HostState,
        config: &[String],
    ) -> Result<SecretMap, ComponentError> {
        if !config.iter().any(|name| secrets::is_secret(name)) {
            return Ok(SecretMap::new());
        }
        Ok(state
            .secrets
            .fetch(config, &state.config, &self.entity())
            .await?)
    }

    /// What the built-in plugins are bound with for `plan`: the secrets its links to built-ins
    /// name are fetched on behalf of the component (a built-in runs for it).
    pub async fn plugin_interfaces(
        &self,
        state: &HostState,
        plan: &ComponentPlan,
    ) -> Result<Vec<HostInterface>, ComponentError> {
        let names = plan.plugins.secret_names();
        let resolved = match names.is_empty() {
            true => ResolvedSecrets::new(),
            false => {
                let entity = self.entity();
                state
                    .secrets
                    .resolve(&names, &state.config, &entity)
                    .await?
            }
        };
        Ok(plan.plugins.host_interfaces(&resolved)?)
    }
}

async fn scaled(
    state: &HostState,
    id: &str,
    image_ref: &str,
    annotations: &Annotations,
    count: u32,
) {
    tracing::info!(
        component = id,
        image_ref,
        max_instances = count,
        "component scaled"
    );
    let data = json!({
        "annotations": annotations,
        "host_id": state.host_id,
        "image_ref": image_ref,
        "max_instances": count,
        "component_id": id,
    });
    state.events.publish("component_scaled", data).await;
}

async fn scale_failed(
    state: &HostState,
    id: &str,
    image_ref: &str,
    annotations: &Annotations,
    count: u32,
    error: &ComponentError,
) {
    tracing::warn!(component = id, image_ref, "scale failed: {error}");
    let data = json!({
        "annotations": annotations,
        "host_id": state.host_id,
        "image_ref": image_ref,
        "max_instances": count,
        "component_id": id,
        "error": error.to_string(),
    });
    state.events.publish("component_scale_failed", data).await;
}

/// A service's state as the inventory words it.
fn describe_service(state: &ComponentState) -> String {
    match state {
        ComponentState::Running => "running".into(),
        ComponentState::Exited => "exited with code 0".into(),
        ComponentState::Failed(reason) => format!("failed: {reason}"),
        ComponentState::Restarting { last, restarts } => {
            format!("restarting ({restarts}): {last}")
        }
    }
}
