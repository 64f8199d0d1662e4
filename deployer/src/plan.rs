//! Placement: given an app's workloads and the hosts' inventories, which control commands
//! bring the lattice to the manifest. Pure and deterministic, so it is tested without NATS.
//!
//! Rules follow wadm's scalers: a component spread puts the spread's whole count on one
//! eligible host; a daemonscaler runs on every eligible host; a provider's `instances` is a
//! number of hosts. Instances are recognized by this app's annotations, and only those are
//! scaled down. Beyond wadm, when the manifest allows it (the default), a component is placed
//! next to the components it is linked with, so their calls stay in-process.

use std::collections::{BTreeMap, BTreeSet};

use crate::manifest::{Kind, ScalerKind, Spread};
use crate::spec::{APPSPEC, AppSpec, MANAGED_BY, MANAGER, SCALER, SPREAD_NAME, Workload, split};
use crate::wire::{
    Annotated, ComponentDescription, HostInventory, ScaleComponentCommand, StartProviderCommand,
    StopProviderCommand,
};

/// One control command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Scale(ScaleComponentCommand),
    StartProvider(StartProviderCommand),
    StopProvider(StopProviderCommand),
}

impl Action {
    /// `host/id`: what the command acts on (failures and backoff are kept per target).
    pub fn target(&self) -> String {
        match self {
            Self::Scale(c) => format!("{}/{}", c.host_id, c.component_id),
            Self::StartProvider(c) => format!("{}/{}", c.host_id, c.provider_id),
            Self::StopProvider(c) => format!("{}/{}", c.host_id, c.provider_id),
        }
    }
}

/// What one workload needs now.
#[derive(Debug, Default)]
pub struct WorkloadPlan {
    pub actions: Vec<Action>,
    /// Why it cannot be satisfied (then the status is `failed`).
    pub problem: Option<String>,
}

pub type Hosts = BTreeMap<String, HostInventory>;

fn eligible(host: &HostInventory, spread: &Spread) -> bool {
    spread
        .requirements
        .iter()
        .all(|(k, v)| host.labels.get(k) == Some(v))
}

fn owned_by(instance: &impl Annotated, app: &str) -> bool {
    instance.annotation(APPSPEC) == Some(app) && instance.annotation(MANAGED_BY) == Some(MANAGER)
}

/// The spread name if `instance` was started by this workload's scaler.
fn mine<'a>(instance: &'a impl Annotated, w: &Workload, app: &str) -> Option<&'a str> {
    (owned_by(instance, app) && instance.annotation(SCALER) == Some(w.scaler_id.as_str()))
        .then(|| instance.annotation(SPREAD_NAME))
        .flatten()
}

fn scale(w: &Workload, app: &str, host: &str, count: u32, spread: &str) -> Action {
    let annotations = if count == 0 {
        BTreeMap::from([
            (MANAGED_BY.to_string(), MANAGER.to_string()),
            (APPSPEC.to_string(), app.to_string()),
        ])
    } else {
        w.annotations(app, spread)
    };
    Action::Scale(ScaleComponentCommand {
        component_ref: w.image.clone(),
        component_id: w.id.clone(),
        host_id: host.to_string(),
        max_instances: count,
        annotations: Some(annotations),
        config: w.config.clone(),
        // Lets a host that runs an older version of this ID swap the code in place.
        allow_update: true,
        component_limits: None,
    })
}

/// Plans every workload of `app`. `link_targets`: the IDs some link on the lattice targets,
/// when known; a component that stops when unlinked keeps running while they are unknown.
pub fn plan_app(
    app: &AppSpec,
    hosts: &Hosts,
    link_targets: Option<&BTreeSet<&str>>,
) -> Vec<(usize, WorkloadPlan)> {
    let mut neighbours: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for l in &app.links {
        neighbours
            .entry(&l.link.source_id)
            .or_default()
            .insert(&l.link.target);
        neighbours
            .entry(&l.link.target)
            .or_default()
            .insert(&l.link.source_id);
    }
    // Where each ID is (or is about to be) placed, for co-location.
    let mut placed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (host_id, inv) in hosts {
        let components = inv.components.iter().map(|c| &c.id);
        for id in components.chain(inv.providers.iter().map(|p| &p.id)) {
            placed
                .entry(id.clone())
                .or_default()
                .insert(host_id.clone());
        }
    }
    // Components per host, counting the placements planned in this pass.
    let mut load: BTreeMap<String, usize> = hosts
        .iter()
        .map(|(id, h)| (id.clone(), h.components.len()))
        .collect();
    let mut out = Vec::new();
    for (i, w) in app.workloads.iter().enumerate() {
        // Lower is better: most linked neighbours already there, then least loaded.
        let preference = |host: &str| {
            let affinity = if app.colocate {
                neighbours.get(w.id.as_str()).map_or(0, |ids| {
                    ids.iter()
                        .filter(|id| placed.get(**id).is_some_and(|h| h.contains(host)))
                        .count()
                })
            } else {
                0
            };
            (
                std::cmp::Reverse(affinity),
                load.get(host).copied().unwrap_or_default(),
            )
        };
        let unlinked = link_targets.is_some_and(|targets| !targets.contains(w.id.as_str()));
        let plan = match (w.kind, w.scaler) {
            (Kind::Component, _) if w.stop_when_unlinked && unlinked => {
                stop_everywhere(&app.name, w, hosts)
            }
            (Kind::Component, ScalerKind::Spread) => {
                component_spread(&app.name, w, hosts, preference)
            }
            (Kind::Component, ScalerKind::Daemon) => component_daemon(&app.name, w, hosts),
            (Kind::Capability, scaler) => provider(&app.name, w, hosts, scaler, preference),
        };
        for action in &plan.actions {
            match action {
                Action::Scale(c) if c.max_instances > 0 => {
                    placed
                        .entry(c.component_id.clone())
                        .or_default()
                        .insert(c.host_id.clone());
                    *load.entry(c.host_id.clone()).or_default() += 1;
                }
                Action::StartProvider(p) => {
                    placed
                        .entry(p.provider_id.clone())
                        .or_default()
                        .insert(p.host_id.clone());
                }
                _ => {}
            }
        }
        out.push((i, plan));
    }
    out
}

fn component_spread(
    app: &str,
    w: &Workload,
    hosts: &Hosts,
    preference: impl Fn(&str) -> (std::cmp::Reverse<usize>, usize),
) -> WorkloadPlan {
    let mut plan = WorkloadPlan::default();
    let targets = split(w.instances, &w.spreads);
    let mut problems = Vec::new();
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    // Instances of this scaler whose spread is gone or whose host no longer matches it.
    for (host_id, inv) in hosts {
        if let Some(spread) = inv.component(&w.id).and_then(|c| mine(c, w, app)) {
            match w.spreads.iter().find(|s| s.name == spread) {
                Some(s) if eligible(inv, s) => {}
                _ => plan.actions.push(scale(w, app, host_id, 0, spread)),
            }
        }
    }
    for (spread, &target) in w.spreads.iter().zip(&targets) {
        let eligible_hosts: Vec<(&String, &HostInventory)> =
            hosts.iter().filter(|(_, h)| eligible(h, spread)).collect();
        let mut holders: Vec<(&String, &ComponentDescription)> = eligible_hosts
            .iter()
            .filter_map(|(id, h)| {
                let c = h.component(&w.id)?;
                (mine(c, w, app) == Some(spread.name.as_str())).then_some((*id, c))
            })
            .collect();
        if target == 0 {
            for (host, _) in holders {
                plan.actions.push(scale(w, app, host, 0, &spread.name));
            }
            continue;
        }
        // Keep the holder that is already right, if any.
        holders.sort_by_key(|(_, c)| !(c.max_instances == target && c.image_ref == w.image));
        if let Some((keep, c)) = holders.first() {
            taken.insert(keep);
            if c.max_instances != target || c.image_ref != w.image {
                plan.actions.push(scale(w, app, keep, target, &spread.name));
            }
            for (extra, _) in &holders[1..] {
                plan.actions.push(scale(w, app, extra, 0, &spread.name));
            }
            continue;
        }
        // Free hosts: not running this ID, or running an older version of it from this app.
        let mut candidates: Vec<&String> = eligible_hosts
            .iter()
            .filter(|(id, h)| {
                !taken.contains(id.as_str())
                    && h.component(&w.id).is_none_or(|c| {
                        owned_by(c, app)
                            && !w.spreads.iter().any(|s| mine(c, w, app) == Some(&s.name))
                    })
            })
            .map(|(id, _)| *id)
            .collect();
        candidates.sort_by_key(|id| {
            let h = &hosts[*id];
            let upgrade = h.component(&w.id).is_some();
            (!upgrade, preference(id), (*id).clone())
        });
        match candidates.first() {
            Some(host) => {
                taken.insert(host);
                plan.actions.push(scale(w, app, host, target, &spread.name));
            }
            // wadm's wording: no host found of the one needed.
            None => problems.push(format!(
                "Could not satisfy spread {} for {}, 0/1 eligible hosts found.",
                spread.name, w.image
            )),
        }
    }
    if !problems.is_empty() {
        plan.problem = Some(problems.join(" "));
    }
    plan
}

/// Scales this app's instances of `w` to zero wherever they run.
fn stop_everywhere(app: &str, w: &Workload, hosts: &Hosts) -> WorkloadPlan {
    let mut plan = WorkloadPlan::default();
    for (host_id, inv) in hosts {
        if let Some(spread) = inv.component(&w.id).and_then(|c| mine(c, w, app)) {
            plan.actions.push(scale(w, app, host_id, 0, spread));
        }
    }
    plan
}

fn component_daemon(app: &str, w: &Workload, hosts: &Hosts) -> WorkloadPlan {
    let mut plan = WorkloadPlan::default();
    let mut eligible_count = 0;
    for (host_id, inv) in hosts {
        let spread = w.spreads.iter().find(|s| eligible(inv, s));
        let current = inv.component(&w.id);
        match (spread, current) {
            (None, Some(c)) if mine(c, w, app).is_some() => {
                plan.actions.push(scale(w, app, host_id, 0, ""));
            }
            (None, _) => {}
            (Some(s), current) => {
                eligible_count += 1;
                let satisfied = current.is_some_and(|c| {
                    mine(c, w, app) == Some(s.name.as_str())
                        && c.max_instances == w.instances
                        && c.image_ref == w.image
                });
                let foreign = current.is_some_and(|c| !owned_by(c, app));
                if foreign {
                    plan.problem = Some(format!(
                        "component {} on host {host_id} belongs to another application",
                        w.id
                    ));
                } else if !satisfied {
                    plan.actions
                        .push(scale(w, app, host_id, w.instances, &s.name));
                }
            }
        }
    }
    if eligible_count == 0 && w.instances > 0 {
        plan.problem = Some(format!(
            "Could not satisfy daemonscaler {} for {}, 0 eligible hosts found.",
            w.spreads
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            w.image
        ));
    }
    plan
}

fn provider(
    app: &str,
    w: &Workload,
    hosts: &Hosts,
    scaler: ScalerKind,
    preference: impl Fn(&str) -> (std::cmp::Reverse<usize>, usize),
) -> WorkloadPlan {
    let mut plan = WorkloadPlan::default();
    let start = |host: &str, spread: &str| {
        Action::StartProvider(StartProviderCommand {
            provider_id: w.id.clone(),
            provider_ref: w.image.clone(),
            host_id: host.to_string(),
            config: w.config.clone(),
            annotations: Some(w.annotations(app, spread)),
        })
    };
    let stop = |host: &str| {
        Action::StopProvider(StopProviderCommand {
            provider_id: w.id.clone(),
            host_id: host.to_string(),
        })
    };
    // Stop this scaler's copies on hosts that match none of its spreads.
    for (host_id, inv) in hosts {
        if let Some(p) = inv.provider(&w.id)
            && mine(p, w, app).is_some()
            && !w.spreads.iter().any(|s| eligible(inv, s))
        {
            plan.actions.push(stop(host_id));
        }
    }
    let targets = match scaler {
        ScalerKind::Spread => split(w.instances, &w.spreads),
        ScalerKind::Daemon => vec![u32::MAX; w.spreads.len()],
    };
    let mut problems = Vec::new();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for (spread, &target) in w.spreads.iter().zip(&targets) {
        let eligible_hosts: Vec<&String> = hosts
            .iter()
            .filter(|(id, h)| eligible(h, spread) && !used.contains(id.as_str()))
            .map(|(id, _)| id)
            .collect();
        let (running, mut free): (Vec<&String>, Vec<&String>) = eligible_hosts
            .iter()
            .partition(|id| hosts[id.as_str()].provider(&w.id).is_some());
        // Next to the components it is linked with: a built-in key-value provider only
        // configures components on its own host, and a built-in HTTP server reaches components
        // on other hosts only over wRPC.
        free.sort_by_key(|id| (preference(id), (*id).clone()));
        let target_hosts = if scaler == ScalerKind::Daemon {
            eligible_hosts.len()
        } else {
            target as usize
        };
        used.extend(running.iter().take(target_hosts).map(|s| s.as_str()));
        if running.len() < target_hosts {
            let missing = target_hosts - running.len();
            for host in free.iter().take(missing) {
                used.insert(host);
                plan.actions.push(start(host, &spread.name));
            }
            if free.len() < missing {
                problems.push(format!(
                    "Could not satisfy spread {} for {}, {}/{} eligible hosts found.",
                    spread.name,
                    w.image,
                    eligible_hosts.len(),
                    target_hosts
                ));
            }
        } else {
            let surplus = running.len() - target_hosts;
            let ours = running.iter().filter(|id| {
                hosts[id.as_str()]
                    .provider(&w.id)
                    .is_some_and(|p| mine(p, w, app) == Some(spread.name.as_str()))
            });
            for host in ours.take(surplus) {
                plan.actions.push(stop(host));
            }
        }
    }
    if !problems.is_empty() {
        plan.problem = Some(problems.join(" "));
    }
    plan
}

/// Instances this app started that no current workload accounts for (an older version's, or
/// everything once the app is undeployed): scale them to 0 / stop them. IDs in `busy` are
/// being placed right now and are left until that settles, so an upgrade never leaves a gap.
pub fn leftovers(
    app: &str,
    spec: Option<&AppSpec>,
    hosts: &Hosts,
    busy: &BTreeSet<String>,
) -> Vec<Action> {
    let current = |id: &str, scaler: Option<&str>| {
        spec.is_some_and(|s| {
            s.workloads
                .iter()
                .any(|w| w.id == id && Some(w.scaler_id.as_str()) == scaler)
        })
    };
    let mut actions = Vec::new();
    for (host_id, inv) in hosts {
        for c in &inv.components {
            if owned_by(c, app)
                && c.max_instances > 0
                && !current(&c.id, c.annotation(SCALER))
                && !busy.contains(&c.id)
            {
                actions.push(Action::Scale(ScaleComponentCommand {
                    component_ref: c.image_ref.clone(),
                    component_id: c.id.clone(),
                    host_id: host_id.clone(),
                    max_instances: 0,
                    annotations: Some(BTreeMap::from([
                        (MANAGED_BY.to_string(), MANAGER.to_string()),
                        (APPSPEC.to_string(), app.to_string()),
                    ])),
                    config: Vec::new(),
                    allow_update: false,
                    component_limits: None,
                }));
            }
        }
        for p in &inv.providers {
            if owned_by(p, app) && !current(&p.id, p.annotation(SCALER)) && !busy.contains(&p.id) {
                actions.push(Action::StopProvider(StopProviderCommand {
                    provider_id: p.id.clone(),
                    host_id: host_id.clone(),
                }));
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

    fn host(labels: &[(&str, &str)]) -> HostInventory {
        HostInventory {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn app(colocate: bool) -> AppSpec {
        let yaml = format!(
            r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: pair
  annotations: {{ "trellis.dev/co-locate": "{colocate}" }}
spec:
  components:
    - name: front
      type: component
      properties: {{ image: "file:///front.wasm" }}
      traits:
        - type: spreadscaler
          properties: {{ instances: 1 }}
        - type: link
          properties: {{ target: {{ name: back }}, namespace: a, package: b, interfaces: [c] }}
    - name: back
      type: component
      properties: {{ image: "file:///back.wasm" }}
      traits:
        - type: spreadscaler
          properties: {{ instances: 1 }}
    - name: cache
      type: capability
      properties: {{ image: "file:///cache" }}
      traits:
        - type: spreadscaler
          properties: {{ instances: 2 }}
"#
        );
        let parsed = manifest::parse(yaml.as_bytes()).unwrap();
        AppSpec::new(&parsed.manifest, "v1")
    }

    /// `w` as app `app` placed it, in the default spread.
    fn running(w: &Workload, app: &str, max_instances: u32) -> ComponentDescription {
        ComponentDescription {
            id: w.id.clone(),
            image_ref: w.image.clone(),
            annotations: w.annotations(app, crate::spec::DEFAULT_SPREAD),
            max_instances,
            ..Default::default()
        }
    }

    fn hosts_of(plans: &[(usize, WorkloadPlan)], i: usize) -> Vec<String> {
        plans[i]
            .1
            .actions
            .iter()
            .map(|a| a.target().split('/').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn linked_components_share_a_host_unless_turned_off() {
        let mut hosts = Hosts::new();
        // h1 is busier, so `front` goes to h2; `back` follows it only with co-location.
        hosts.insert("h1".into(), host(&[]));
        hosts.insert("h2".into(), host(&[]));
        let mut busy = host(&[]);
        busy.components.push(ComponentDescription {
            id: "other".into(),
            ..Default::default()
        });
        hosts.insert("h1".into(), busy);
        let plans = plan_app(&app(true), &hosts, None);
        assert_eq!(hosts_of(&plans, 0), ["h2"]);
        assert_eq!(hosts_of(&plans, 1), ["h2"]);

        // Off: `back` goes to the least loaded host, counting `front` just planned on h2.
        let plans = plan_app(&app(false), &hosts, None);
        assert_eq!(hosts_of(&plans, 0), ["h2"]);
        assert_eq!(hosts_of(&plans, 1), ["h1"]);
    }

    #[test]
    fn a_provider_starts_next_to_the_component_it_links_to() {
        let yaml = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: { name: web, annotations: {} }
spec:
  components:
    - name: site
      type: component
      properties: { image: "file:///site.wasm" }
      traits:
        - type: spreadscaler
          properties: { instances: 1 }
    - name: server
      type: capability
      properties: { image: "trellis+builtin://http-server" }
      traits:
        - type: link
          properties: { target: { name: site }, namespace: wasi, package: http, interfaces: [incoming-handler] }
"#;
        let spec = AppSpec::new(&manifest::parse(yaml.as_bytes()).unwrap().manifest, "v1");
        // `site` already runs on h2 as planned, which makes h2 the busier host.
        let site = &spec.workloads[0];
        let mut h2 = host(&[]);
        h2.components.push(running(site, "web", 1));
        let hosts = Hosts::from([("h1".to_string(), host(&[])), ("h2".to_string(), h2)]);
        let plans = plan_app(&spec, &hosts, None);
        assert_eq!(hosts_of(&plans, 1), ["h2"]);
    }

    #[test]
    fn a_component_that_stops_when_unlinked_runs_only_while_a_link_targets_it() {
        let yaml = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: { name: kv, annotations: {} }
spec:
  components:
    - name: store
      type: component
      properties:
        image: "file:///kv-store.wasm"
        config: [{ name: scale, properties: { trellis.scale.when_unlinked: zero } }]
      traits:
        - type: spreadscaler
          properties: { instances: 3 }
"#;
        let spec = AppSpec::new(&manifest::parse(yaml.as_bytes()).unwrap().manifest, "v1");
        let store = &spec.workloads[0];
        assert!(store.stop_when_unlinked);
        let counts = |plans: &[(usize, WorkloadPlan)]| -> Vec<u32> {
            plans[0]
                .1
                .actions
                .iter()
                .map(|action| match action {
                    Action::Scale(c) => c.max_instances,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let empty = Hosts::from([("h1".to_string(), host(&[]))]);
        let nobody = BTreeSet::new();
        let linked = BTreeSet::from([store.id.as_str()]);
        // Links unknown (no answer to link.get): it runs, as the manifest says.
        assert_eq!(counts(&plan_app(&spec, &empty, None)), [3]);
        assert_eq!(
            counts(&plan_app(&spec, &empty, Some(&nobody))),
            [] as [u32; 0]
        );
        assert_eq!(counts(&plan_app(&spec, &empty, Some(&linked))), [3]);

        let mut h1 = host(&[]);
        h1.components.push(running(store, "kv", 3));
        let running = Hosts::from([("h1".to_string(), h1)]);
        assert_eq!(counts(&plan_app(&spec, &running, Some(&nobody))), [0]);
        assert_eq!(
            counts(&plan_app(&spec, &running, Some(&linked))),
            [] as [u32; 0]
        );
    }

    #[test]
    fn providers_count_hosts_and_report_too_few() {
        let hosts = Hosts::from([("h1".to_string(), host(&[]))]);
        let plans = plan_app(&app(true), &hosts, None);
        let (_, cache) = &plans[2];
        assert_eq!(cache.actions.len(), 1);
        assert!(matches!(&cache.actions[0], Action::StartProvider(s)
            if s.annotations.as_ref().unwrap()[SPREAD_NAME] == "default"
                && s.annotations.as_ref().unwrap()[APPSPEC] == "pair"));
        assert!(
            cache
                .problem
                .as_deref()
                .unwrap()
                .contains("1/2 eligible hosts"),
            "{:?}",
            cache.problem
        );
    }
}
