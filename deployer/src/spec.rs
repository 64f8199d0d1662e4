//! What a manifest asks of the lattice, in lattice terms: wadm's identifier derivation
//! (component IDs, owned config and secret names, scaler IDs) and the list of workloads,
//! links and configs the reconciler converges to. Pure; no I/O.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::manifest::{
    Component, ConfigRef, Kind, Manifest, Policy, ScalerKind, SecretRef, Source, Spread,
};
use crate::wire::Link;

pub const MANAGED_BY: &str = "wasmcloud.dev/managed-by";
pub const APPSPEC: &str = "wasmcloud.dev/appspec";
pub const SCALER: &str = "wasmcloud.dev/scaler";
pub const SPREAD_NAME: &str = "wasmcloud.dev/spread_name";
pub const MANAGER: &str = "wadm";
pub const DEFAULT_SPREAD: &str = "default";
/// A component's inline config property: `zero` stops the component while no link on the
/// lattice targets it (a provider component nobody uses), and starts it again when one does.
pub const WHEN_UNLINKED: &str = "trellis.scale.when_unlinked";

/// Lower-cases and replaces every character that is not ASCII alphanumeric with `_`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `<app>-<component>`, both sanitized: the ID of a component or provider without `id`.
pub fn component_id(app: &str, component: &Component) -> String {
    match (&component.id, &component.source) {
        (Some(id), _) => id.clone(),
        (None, Source::Application { name, component }) => {
            format!("{}-{}", sanitize(name), sanitize(component))
        }
        (None, Source::Image(_)) => format!("{}-{}", sanitize(app), sanitize(&component.name)),
    }
}

/// The lattice name of a config: `<app>-<name>` when the app owns it, else the name as written.
pub fn config_name(app: &str, config: &ConfigRef) -> String {
    match config.properties {
        Some(_) => format!("{}-{}", sanitize(app), sanitize(&config.name)),
        None => config.name.clone(),
    }
}

pub fn secret_name(app: &str, secret: &SecretRef) -> String {
    format!("SECRET_{}-{}", sanitize(app), sanitize(&secret.name))
}

/// A scaler's id as wadm computes it: the SHA-256 of its parts run together, so that the
/// `wasmcloud.dev/scaler` annotation on what a scaler started, and the ids in an app's status,
/// are the ones wadm would give (a lattice can move between wadm and this deployer).
fn scaler_id<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// A component or provider to run, with how many and where.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub scaler_id: String,
    pub kind: Kind,
    pub scaler: ScalerKind,
    pub id: String,
    pub image: String,
    /// Configs (then secrets) by lattice name, in manifest order.
    pub config: Vec<String>,
    /// Components: max instances per placement; providers: number of hosts.
    pub instances: u32,
    /// Never empty: a scaler without spreads gets one `default` spread matching every host.
    pub spreads: Vec<Spread>,
    /// Components: stopped while no link targets them ([`WHEN_UNLINKED`]).
    pub stop_when_unlinked: bool,
    /// Where wadm lists this scaler in a status: (component, trait) in the manifest.
    pub order: (usize, usize),
}

impl Workload {
    pub fn annotations(&self, app: &str, spread: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.to_string(), MANAGER.to_string()),
            (APPSPEC.to_string(), app.to_string()),
            (SCALER.to_string(), self.scaler_id.clone()),
            (SPREAD_NAME.to_string(), spread.to_string()),
        ])
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LinkSpec {
    pub scaler_id: String,
    pub link: Link,
    /// Where wadm lists this scaler in a status: (component, trait) in the manifest.
    pub order: (usize, usize),
}

impl LinkSpec {
    /// The status name wadm gives a link scaler.
    pub fn display(&self) -> String {
        format!(
            "{} -({}:{})-> {}",
            self.link.source_id, self.link.wit_namespace, self.link.wit_package, self.link.target
        )
    }
}

/// Everything a deployed manifest wants on the lattice.
#[derive(Clone, Debug, PartialEq)]
pub struct AppSpec {
    pub name: String,
    pub version: String,
    pub workloads: Vec<Workload>,
    pub links: Vec<LinkSpec>,
    /// Configs (inline ones and secrets) the app creates, owns and deletes.
    pub owned_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Configs named without properties: managed by someone else, must exist.
    pub external_configs: Vec<String>,
    pub colocate: bool,
}

impl AppSpec {
    pub fn new(manifest: &Manifest, version: &str) -> Self {
        let app = manifest.name.as_str();
        let mut spec = AppSpec {
            name: app.to_string(),
            version: version.to_string(),
            workloads: Vec::new(),
            links: Vec::new(),
            owned_configs: BTreeMap::new(),
            external_configs: Vec::new(),
            colocate: manifest.colocate(),
        };
        for component in &manifest.components {
            let config = spec.configs(
                app,
                &manifest.policies,
                &component.config,
                &component.secrets,
            );
            if let Source::Image(image) = &component.source
                && let Some(workload) = workload(app, component, image, config)
            {
                spec.workloads.push(workload);
            }
            let source_id = component_id(app, component);
            for link in &component.links {
                let Some(target) = manifest.component(&link.target) else {
                    continue;
                };
                let order = (component.index, link.trait_index);
                let source_config = spec.configs(
                    app,
                    &manifest.policies,
                    &link.source_config,
                    &link.source_secrets,
                );
                let target_config = spec.configs(
                    app,
                    &manifest.policies,
                    &link.target_config,
                    &link.target_secrets,
                );
                let link = Link {
                    source_id: source_id.clone(),
                    target: component_id(app, target),
                    name: link.name.clone(),
                    wit_namespace: link.namespace.clone(),
                    wit_package: link.package.clone(),
                    interfaces: link.interfaces.clone(),
                    source_config,
                    target_config,
                };
                let scaler_id = scaler_id(
                    [
                        "LinkScaler",
                        app,
                        &link.name,
                        &link.source_id,
                        &link.target,
                        &link.wit_namespace,
                        &link.wit_package,
                    ]
                    .into_iter()
                    .chain(link.interfaces.iter().map(String::as_str))
                    .chain(link.source_config.iter().map(String::as_str))
                    .chain(link.target_config.iter().map(String::as_str)),
                );
                spec.links.push(LinkSpec {
                    scaler_id,
                    link,
                    order,
                });
            }
        }
        spec
    }

    /// Registers configs and secrets and returns their lattice names (configs, then secrets).
    fn configs(
        &mut self,
        app: &str,
        policies: &[Policy],
        configs: &[ConfigRef],
        secrets: &[SecretRef],
    ) -> Vec<String> {
        let mut names = Vec::new();
        for config in configs {
            let name = config_name(app, config);
            match &config.properties {
                Some(values) => {
                    self.owned_configs.insert(name.clone(), values.clone());
                }
                None if !self.external_configs.contains(&name) => {
                    self.external_configs.push(name.clone())
                }
                None => {}
            }
            names.push(name);
        }
        for secret in secrets {
            let name = secret_name(app, secret);
            self.owned_configs
                .insert(name.clone(), secret_config(secret, policies));
            names.push(name);
        }
        names
    }
}

/// The config wadm stores for a secret reference, for the host to resolve via the backend.
fn secret_config(secret: &SecretRef, policies: &[Policy]) -> BTreeMap<String, String> {
    let policy = policies.iter().find(|p| p.name == secret.policy);
    let backend = policy
        .and_then(|p| p.properties.get("backend"))
        .cloned()
        .unwrap_or_default();
    let properties: BTreeMap<&String, &String> = policy
        .map(|p| {
            p.properties
                .iter()
                .filter(|(k, _)| *k != "backend")
                .collect()
        })
        .unwrap_or_default();
    let policy_json = serde_json::json!({
        "type": "properties.secret.wasmcloud.dev/v1alpha1",
        "properties": properties,
    });
    let mut map = BTreeMap::from([
        ("name".to_string(), secret.name.clone()),
        (
            "type".to_string(),
            "secret.wasmcloud.dev/v1alpha1".to_string(),
        ),
        ("backend".to_string(), backend),
        ("key".to_string(), secret.key.clone()),
        ("policy".to_string(), policy_json.to_string()),
    ]);
    if let Some(field) = &secret.field {
        map.insert("field".into(), field.clone());
    }
    if let Some(version) = &secret.version {
        map.insert("version".into(), version.clone());
    }
    map
}

fn workload(app: &str, c: &Component, image: &str, config: Vec<String>) -> Option<Workload> {
    let (scaler, instances, mut spreads) = match (&c.scaler, c.kind) {
        (Some(s), _) => (s.kind, s.instances, s.spreads.clone()),
        // A provider without a scaler gets one instance; a component is never started.
        (None, Kind::Capability) => (ScalerKind::Spread, 1, Vec::new()),
        (None, Kind::Component) => return None,
    };
    if spreads.is_empty() {
        spreads.push(Spread {
            name: DEFAULT_SPREAD.into(),
            requirements: BTreeMap::new(),
            weight: crate::manifest::DEFAULT_SPREAD_WEIGHT,
        });
    }
    let id = component_id(app, c);
    let kind_name = match scaler {
        ScalerKind::Spread => "SpreadScaler",
        ScalerKind::Daemon => "DaemonScaler",
    };
    let scaler_id = scaler_id(
        [kind_name, app, &c.name, &id, image]
            .into_iter()
            .chain(config.iter().map(String::as_str)),
    );
    // A provider without a scaler trait gets one after its traits, as in wadm.
    let order = (
        c.index,
        c.scaler.as_ref().map_or(usize::MAX, |s| s.trait_index),
    );
    let stop_when_unlinked = c.kind == Kind::Component
        && c.config
            .iter()
            .filter_map(|config| config.properties.as_ref())
            .any(|properties| properties.get(WHEN_UNLINKED).is_some_and(|v| v == "zero"));
    Some(Workload {
        scaler_id,
        kind: c.kind,
        scaler,
        id,
        image: image.to_string(),
        config,
        instances,
        spreads,
        stop_when_unlinked,
        order,
    })
}

/// Splits `instances` over spreads by weight: floors first, then the remainder one at a time
/// to the heaviest spreads. Returned in the spreads' original order.
pub fn split(instances: u32, spreads: &[Spread]) -> Vec<u32> {
    let total: u64 = spreads.iter().map(|s| u64::from(s.weight)).sum();
    if total == 0 {
        return vec![0; spreads.len()];
    }
    let mut shares: Vec<u32> = spreads
        .iter()
        .map(|s| (u64::from(instances) * u64::from(s.weight) / total) as u32)
        .collect();
    let mut order: Vec<usize> = (0..spreads.len())
        .filter(|&i| spreads[i].weight > 0)
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(spreads[i].weight));
    let mut left = instances - shares.iter().sum::<u32>();
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        shares[i] += 1;
        left -= 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(name: &str, weight: u32) -> Spread {
        Spread {
            name: name.into(),
            requirements: BTreeMap::new(),
            weight,
        }
    }

    #[test]
    fn sanitizes_like_wadm() {
        assert_eq!(sanitize("rust-hello-world"), "rust_hello_world");
        assert_eq!(sanitize("Http.Component"), "http_component");
    }

    #[test]
    fn splits_by_weight_with_remainder_to_the_heaviest() {
        assert_eq!(split(4, &[spread("a", 80), spread("b", 20)]), vec![4, 0]);
        assert_eq!(
            split(5, &[spread("a", 40), spread("b", 40), spread("c", 20)]),
            vec![2, 2, 1]
        );
        assert_eq!(split(3, &[spread("a", 20), spread("b", 80)]), vec![0, 3]);
        assert_eq!(split(3, &[spread("a", 0)]), vec![0]);
    }
}
