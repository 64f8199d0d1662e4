//! The reconciler: one task that owns the deployer's view of the lattice and converges every
//! deployed app to its manifest. A pass runs after each deploy/undeploy, after lattice events
//! (heartbeats, host_started/stopped, component_scaled, …; debounced) and on a periodic tick.
//!
//! A pass refreshes each known host's inventory (`host.get`), plans (see [`crate::plan`]) and
//! sends the commands. Against thrashing: a sent command is not repeated while it is in flight
//! (until the lattice shows its effect or a timeout), and a command that fails is retried with
//! exponential backoff, at most [`MAX_ATTEMPTS`] times until the lattice changes (a host joins
//! or leaves) or the app is deployed again.
//!
//! An undeploy is finished when the lattice shows nothing of the app any more; only then is
//! its stored intent cleared, so a deployer that takes over after a failover finishes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::lattice::Ctl;
use crate::manifest::ScalerKind;
use crate::plan::{self, Action, Hosts};
use crate::spec::AppSpec;
use crate::status::{ScalerStatus, Status, StatusInfo, StatusType};
use crate::store::{ManifestStore, StoredApp};
use crate::wire::{HostInventory, Link};

pub const MAX_ATTEMPTS: u32 = 5;
const IN_FLIGHT: Duration = Duration::from_secs(10);
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A host that misses this many inventory requests in a row is dropped from the view.
const MAX_MISSES: u32 = 2;

pub type Statuses = Arc<RwLock<BTreeMap<String, Status>>>;

/// Input to the reconciler.
#[derive(Debug)]
pub enum Msg {
    Deploy(Box<AppSpec>),
    /// `last` is the last deployed version, for cleanup when this worker never ran it.
    Undeploy {
        name: String,
        last: Option<Box<AppSpec>>,
    },
    Event {
        name: String,
        source: String,
        data: Value,
    },
}

struct Failure {
    attempts: u32,
    next_try: Instant,
    message: String,
}

#[derive(Default)]
struct App {
    /// `None`: undeployed, being cleaned up.
    spec: Option<AppSpec>,
    /// Owned configs already checked and written for this deployment.
    configs_ready: BTreeSet<String>,
    /// Links and owned configs of replaced versions still to delete.
    stale_links: Vec<Link>,
    stale_configs: Vec<String>,
    /// The undeployed version whose stored intent is cleared once its cleanup is done.
    undeploying: Option<String>,
    /// Undeployed, and the last pass still found instances of it to stop.
    cleaning: bool,
}

struct HostEntry {
    labels: BTreeMap<String, String>,
    misses: u32,
}

pub struct Worker {
    ctl: Ctl,
    store: ManifestStore,
    nats: async_nats::Client,
    lattice: String,
    hosts: BTreeMap<String, HostEntry>,
    apps: BTreeMap<String, App>,
    in_flight: HashMap<String, (Instant, Action)>,
    failures: HashMap<String, Failure>,
    statuses: Statuses,
    interval: Duration,
}

impl Worker {
    pub fn new(
        ctl: Ctl,
        store: ManifestStore,
        nats: async_nats::Client,
        lattice: &str,
        statuses: Statuses,
        interval: Duration,
    ) -> Self {
        Self {
            ctl,
            store,
            nats,
            lattice: lattice.to_string(),
            hosts: BTreeMap::new(),
            apps: BTreeMap::new(),
            in_flight: HashMap::new(),
            failures: HashMap::new(),
            statuses,
            interval,
        }
    }

    /// Runs until `inbox` closes. Works only while `active` (this deployer holds the lattice
    /// lease): on activation it discovers the hosts and loads every deployed app (and every
    /// unfinished undeploy) from the store, then reconciles on input and on every tick; on
    /// deactivation it forgets its state.
    pub async fn run(mut self, mut inbox: mpsc::Receiver<Msg>, mut active: watch::Receiver<bool>) {
        loop {
            while !*active.borrow_and_update() {
                tokio::select! {
                    changed = active.changed() => if changed.is_err() { return },
                    // The store is the truth while another deployer is active.
                    msg = inbox.recv() => if msg.is_none() { return },
                }
            }
            self.activate().await;
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = active.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if !*active.borrow() {
                            break;
                        }
                    }
                    msg = inbox.recv() => {
                        let Some(msg) = msg else { return };
                        self.handle(msg).await;
                        // Gather whatever else arrives right now into the same pass.
                        let until = tokio::time::Instant::now() + DEBOUNCE;
                        while let Ok(Some(msg)) = tokio::time::timeout_at(until, inbox.recv()).await {
                            self.handle(msg).await;
                        }
                    }
                }
                self.pass().await;
            }
            tracing::info!("deployer is standing by");
            self.apps.clear();
            self.hosts.clear();
            self.in_flight.clear();
            self.failures.clear();
        }
    }

    async fn activate(&mut self) {
        tracing::info!(lattice = %self.lattice, "deployer is active");
        for host in self.ctl.ping(Duration::from_millis(500)).await {
            self.add_host(&host.id, host.labels);
        }
        // Undeploys first: a later deploy of the same app keeps what it still wants.
        match crate::api::pending_undeploys(&self.store).await {
            Ok(pending) => {
                for (name, last) in pending {
                    tracing::info!(app = name, "resuming an unfinished undeploy");
                    let last = last.map(Box::new);
                    self.handle(Msg::Undeploy { name, last }).await;
                }
            }
            Err(e) => tracing::error!("loading unfinished undeploys: {e}"),
        }
        match crate::api::deployed_apps(&self.store).await {
            Ok(specs) => {
                for spec in specs {
                    self.handle(Msg::Deploy(Box::new(spec))).await;
                }
            }
            Err(e) => tracing::error!("loading deployed apps: {e}"),
        }
    }

    fn add_host(&mut self, id: &str, labels: BTreeMap<String, String>) {
        match self.hosts.get_mut(id) {
            Some(h) => {
                h.labels = labels;
                h.misses = 0;
            }
            None => {
                tracing::info!(host = id, "host joined");
                self.hosts
                    .insert(id.to_string(), HostEntry { labels, misses: 0 });
                // The lattice changed: give up-to-now failures a fresh set of attempts.
                self.failures.clear();
            }
        }
    }

    fn remove_host(&mut self, id: &str) {
        if self.hosts.remove(id).is_some() {
            tracing::info!(host = id, "host left");
            self.failures.clear();
            self.in_flight.retain(|k, _| !k.starts_with(id));
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Deploy(spec) => {
                let app = self.apps.entry(spec.name.clone()).or_default();
                if let Some(old) = app.spec.take() {
                    retire(app, &old, Some(&spec));
                }
                // Left from an undeploy just before: keep what this version wants.
                app.stale_links
                    .retain(|l| !spec.links.iter().any(|k| k.link.identity() == l.identity()));
                app.stale_configs
                    .retain(|c| !spec.owned_configs.contains_key(c));
                app.configs_ready.clear();
                app.spec = Some(*spec);
                self.failures.clear();
            }
            Msg::Undeploy { name, last } => {
                let app = self.apps.entry(name.clone()).or_default();
                if let Some(old) = app.spec.take().or(last.map(|b| *b)) {
                    retire(app, &old, None);
                    app.undeploying = Some(old.version.clone());
                }
                self.publish(&name, Status::undeployed("Manifest has been undeployed"))
                    .await;
            }
            Msg::Event { name, source, data } => self.event(&name, &source, &data),
        }
    }

    fn event(&mut self, name: &str, source: &str, data: &Value) {
        let labels = || -> BTreeMap<String, String> {
            serde_json::from_value(data["labels"].clone()).unwrap_or_default()
        };
        let str_field = |key: &str| data[key].as_str().unwrap_or_default().to_string();
        match name {
            "host_started" | "host_heartbeat" => self.add_host(source, labels()),
            "host_stopped" => self.remove_host(source),
            "component_scaled" | "provider_started" | "provider_stopped" => {
                let id = match name {
                    "component_scaled" => str_field("component_id"),
                    _ => str_field("provider_id"),
                };
                let target = format!("{source}/{id}");
                self.in_flight.remove(&target);
                self.failures.remove(&target);
            }
            "component_scale_failed" | "provider_start_failed" => {
                let id = match name {
                    "component_scale_failed" => str_field("component_id"),
                    _ => str_field("provider_id"),
                };
                let target = format!("{source}/{id}");
                self.in_flight.remove(&target);
                self.fail(&target, str_field("error"));
            }
            _ => {}
        }
    }

    fn fail(&mut self, target: &str, message: String) {
        let failure = self.failures.entry(target.to_string()).or_insert(Failure {
            attempts: 0,
            next_try: Instant::now(),
            message: String::new(),
        });
        failure.attempts += 1;
        let backoff = Duration::from_millis(500 * 2u64.pow(failure.attempts.min(6)));
        failure.next_try = Instant::now() + backoff.min(Duration::from_secs(30));
        failure.message = message;
    }

    /// Refreshes every known host's inventory; hosts that stop answering are dropped.
    async fn inventories(&mut self) -> Hosts {
        let requests = self.hosts.keys().map(|id| {
            let ctl = self.ctl.clone();
            let id = id.clone();
            async move { (id.clone(), ctl.inventory(&id).await) }
        });
        let mut hosts = Hosts::new();
        for (id, result) in futures::future::join_all(requests).await {
            match result {
                Ok(mut inventory) => {
                    if let Some(h) = self.hosts.get_mut(&id) {
                        h.misses = 0;
                        h.labels = inventory.labels.clone();
                    }
                    inventory.host_id = id.clone();
                    hosts.insert(id, inventory);
                }
                Err(error) => {
                    let gone = self.hosts.get_mut(&id).is_some_and(|h| {
                        h.misses += 1;
                        h.misses >= MAX_MISSES
                    });
                    tracing::debug!(host = %id, "inventory: {error}");
                    if gone {
                        self.remove_host(&id);
                    } else if let Some(h) = self.hosts.get(&id) {
                        // Plan with what we last knew rather than forgetting the host at once.
                        hosts.insert(
                            id.clone(),
                            HostInventory {
                                host_id: id,
                                labels: h.labels.clone(),
                                ..Default::default()
                            },
                        );
                    }
                }
            }
        }
        hosts
    }

    async fn pass(&mut self) {
        let now = Instant::now();
        self.in_flight
            .retain(|_, (sent, _)| now.duration_since(*sent) < IN_FLIGHT);
        if self.apps.is_empty() {
            return;
        }
        let hosts = self.inventories().await;
        let links = if hosts.is_empty() {
            None
        } else {
            self.ctl.links().await.ok()
        };
        let names: Vec<String> = self.apps.keys().cloned().collect();
        for name in names {
            let Some(mut app) = self.apps.remove(&name) else {
                continue;
            };
            let status = self
                .reconcile(&name, &mut app, &hosts, links.as_deref())
                .await;
            let cleaned = app.stale_links.is_empty()
                && app.stale_configs.is_empty()
                && (app.spec.is_some() || !app.cleaning);
            if cleaned && let Some(version) = app.undeploying.clone() {
                match self.undeploy_done(&name, &version).await {
                    Ok(()) => app.undeploying = None,
                    Err(e) => tracing::warn!(app = name, "clearing the undeploy record: {e}"),
                }
            }
            let finished = app.spec.is_none() && cleaned && app.undeploying.is_none();
            if let Some(status) = status {
                self.publish(&name, status).await;
            }
            if !finished {
                self.apps.insert(name, app);
            }
        }
    }

    /// One app's pass. `None` for an undeployed app with nothing left to clean up.
    async fn reconcile(
        &mut self,
        name: &str,
        app: &mut App,
        hosts: &Hosts,
        links: Option<&[Link]>,
    ) -> Option<Status> {
        // Cleanup of replaced versions and undeployed apps.
        if let Some(links) = links {
            let mut kept = Vec::new();
            for stale in std::mem::take(&mut app.stale_links) {
                let present = links
                    .iter()
                    .any(|l| l.identity() == stale.identity() && l.target == stale.target);
                if present && let Err(e) = self.ctl.delete_link(&stale).await {
                    tracing::warn!(app = name, "deleting link: {e}");
                    kept.push(stale);
                }
            }
            app.stale_links = kept;
        }
        let mut kept = Vec::new();
        for config in std::mem::take(&mut app.stale_configs) {
            // Only a host answers `config.del`: with none around, keep it for later.
            if hosts.is_empty() {
                kept.push(config);
            } else if let Err(e) = self.ctl.delete_config(&config).await {
                tracing::warn!(app = name, config, "deleting config: {e}");
                kept.push(config);
            }
        }
        app.stale_configs = kept;

        let Some(spec) = &app.spec else {
            let leftovers = plan::leftovers(name, None, hosts, &BTreeSet::new());
            app.cleaning = !leftovers.is_empty();
            for action in leftovers {
                self.execute(action).await;
            }
            return None;
        };

        let mut scalers = Vec::new();
        // Configs first: a component must not start before its config exists.
        let mut missing_configs = BTreeSet::new();
        if !hosts.is_empty() {
            for (config, values) in &spec.owned_configs {
                if app.configs_ready.contains(config) {
                    continue;
                }
                let ready = match self.ctl.config(config).await {
                    Ok(Some(current)) if &current == values => Ok(()),
                    Ok(_) => self.ctl.put_config(config, values).await,
                    Err(e) => Err(e),
                };
                match ready {
                    Ok(()) => {
                        app.configs_ready.insert(config.clone());
                    }
                    Err(e) => {
                        tracing::warn!(app = name, config, "writing config: {e}");
                        missing_configs.insert(config.clone());
                    }
                }
            }
            for config in &spec.external_configs {
                if !matches!(self.ctl.config(config).await, Ok(Some(_))) {
                    missing_configs.insert(config.clone());
                }
            }
        }

        let mut busy = BTreeSet::new();
        let link_targets: Option<BTreeSet<&str>> =
            links.map(|links| links.iter().map(|l| l.target.as_str()).collect());
        let plans = plan::plan_app(spec, hosts, link_targets.as_ref());
        for (i, plan) in plans {
            let w = &spec.workloads[i];
            let kind = match w.scaler {
                ScalerKind::Spread => "SpreadScaler",
                ScalerKind::Daemon => "DaemonScaler",
            };
            let missing: Vec<&String> = w
                .config
                .iter()
                .filter(|c| missing_configs.contains(*c))
                .collect();
            let mut info = StatusInfo::new(StatusType::Deployed, "");
            if !missing.is_empty() {
                info = StatusInfo::new(
                    StatusType::Failed,
                    format!(
                        "{}: config {} does not exist",
                        w.id,
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                busy.insert(w.id.clone());
            } else {
                if !plan.actions.is_empty() {
                    busy.insert(w.id.clone());
                }
                let mut messages = Vec::new();
                let mut failed = false;
                for action in plan.actions {
                    match self.execute(action).await {
                        Outcome::Sent | Outcome::Waiting => {}
                        Outcome::Failed(m) => {
                            failed = true;
                            messages.push(m);
                        }
                    }
                    if info.status_type == StatusType::Deployed {
                        info.status_type = StatusType::Reconciling;
                    }
                }
                if let Some(problem) = plan.problem {
                    failed = true;
                    messages.push(problem);
                }
                if failed {
                    info = StatusInfo::new(StatusType::Failed, messages.join("; "));
                } else {
                    service_status(&mut info, &w.id, hosts);
                }
            }
            scalers.push((
                w.order,
                ScalerStatus {
                    id: w.scaler_id.clone(),
                    kind: kind.into(),
                    name: w.id.clone(),
                    status: info,
                },
            ));
        }
        for action in plan::leftovers(name, Some(spec), hosts, &busy) {
            self.execute(action).await;
        }

        for l in &spec.links {
            let status = match links {
                None => StatusInfo::new(StatusType::Reconciling, "no host answers link.get"),
                Some(current) if current.iter().any(|c| c.same_as(&l.link)) => {
                    StatusInfo::new(StatusType::Deployed, "")
                }
                Some(_) => {
                    let missing: Vec<&String> = l
                        .link
                        .source_config
                        .iter()
                        .chain(&l.link.target_config)
                        .filter(|c| missing_configs.contains(*c))
                        .collect();
                    if missing.is_empty() {
                        match self.ctl.put_link(&l.link).await {
                            Ok(()) => StatusInfo::new(StatusType::Reconciling, ""),
                            Err(e) => StatusInfo::new(
                                StatusType::Failed,
                                format!("link {}: {e}", l.display()),
                            ),
                        }
                    } else {
                        StatusInfo::new(
                            StatusType::Failed,
                            format!("link {}: config does not exist", l.display()),
                        )
                    }
                }
            };
            scalers.push((
                l.order,
                ScalerStatus {
                    id: l.scaler_id.clone(),
                    kind: "LinkScaler".into(),
                    name: l.display(),
                    status,
                },
            ));
        }
        // In manifest order, as wadm lists its scalers.
        scalers.sort_by_key(|(order, _)| *order);
        Some(Status::from_scalers(
            scalers.into_iter().map(|(_, scaler)| scaler).collect(),
        ))
    }

    /// Sends `action` unless it is in flight or backing off after failures.
    async fn execute(&mut self, action: Action) -> Outcome {
        let target = action.target();
        if let Some((_, sent)) = self.in_flight.get(&target)
            && *sent == action
        {
            return Outcome::Waiting;
        }
        if let Some(f) = self.failures.get(&target) {
            if f.attempts >= MAX_ATTEMPTS {
                return Outcome::Failed(format!(
                    "{target}: gave up after {} attempts: {}",
                    f.attempts, f.message
                ));
            }
            if Instant::now() < f.next_try {
                return Outcome::Failed(format!("{target}: {} (retrying)", f.message));
            }
        }
        let sent = match &action {
            Action::Scale(c) => self.ctl.scale(c).await,
            Action::StartProvider(c) => self.ctl.start_provider(c).await,
            Action::StopProvider(c) => self.ctl.stop_provider(c).await,
        };
        match sent {
            Ok(()) => {
                self.in_flight.insert(target, (Instant::now(), action));
                Outcome::Sent
            }
            Err(e) => {
                tracing::warn!(target, "command failed: {e}");
                self.fail(&target, e.to_string());
                Outcome::Failed(format!("{target}: {e}"))
            }
        }
    }

    /// Clears the stored undeploy intent for `version` of `app` (unless it changed since).
    async fn undeploy_done(
        &self,
        app: &str,
        version: &str,
    ) -> Result<(), crate::store::StoreError> {
        self.store
            .update_app(app, |s: &mut StoredApp| {
                s.undeploying.take_if(|u| u.version == version).map(drop)
            })
            .await?;
        tracing::info!(app, version, "undeploy finished");
        Ok(())
    }

    /// Records and publishes an app's status when it changed.
    async fn publish(&self, app: &str, status: Status) {
        let changed = {
            let mut statuses = self.statuses.write().unwrap_or_else(|e| e.into_inner());
            let changed = statuses.get(app) != Some(&status);
            statuses.insert(app.to_string(), status.clone());
            changed
        };
        if changed {
            publish_status(&self.nats, &self.lattice, app, &status).await;
        }
    }
}

/// What happened to one command.
enum Outcome {
    Sent,
    Waiting,
    Failed(String),
}

/// Queues the links and owned configs of `old` that `new` does not keep for deletion.
fn retire(app: &mut App, old: &AppSpec, new: Option<&AppSpec>) {
    for l in &old.links {
        let kept = new.is_some_and(|n| {
            n.links
                .iter()
                .any(|k| k.link.identity() == l.link.identity())
        });
        if !kept {
            app.stale_links.push(l.link.clone());
        }
    }
    for config in old.owned_configs.keys() {
        if !new.is_some_and(|n| n.owned_configs.contains_key(config)) {
            app.stale_configs.push(config.clone());
        }
    }
}

/// Publishes `status` on `wadm.status.{lattice}.{app}`.
pub async fn publish_status(nats: &async_nats::Client, lattice: &str, app: &str, status: &Status) {
    let subject = format!("wadm.status.{lattice}.{app}");
    match serde_json::to_vec(status) {
        Ok(body) => {
            if let Err(e) = nats.publish(subject, body.into()).await {
                tracing::warn!(app, "publishing status: {e}");
            }
        }
        Err(e) => tracing::error!(app, "encoding status: {e}"),
    }
}

/// A Trellis service's state (`running`, `exited with code N`, `restarting (N): …`,
/// `failed: …`) on each host, in the status message of its scaler; a failed one fails it.
fn service_status(info: &mut StatusInfo, id: &str, hosts: &Hosts) {
    let states: Vec<String> = hosts
        .iter()
        .filter_map(|(host, inventory)| {
            let state = inventory.component(id)?.state.as_ref()?;
            Some(format!("{id} on {host}: {state}"))
        })
        .collect();
    if states.is_empty() {
        return;
    }
    if states.iter().any(|s| s.contains(": failed: ")) {
        info.status_type = StatusType::Failed;
    }
    info.message = states.join("; ");
}
