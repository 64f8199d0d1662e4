//! Semantic rules over a parsed manifest: wadm's `validate_manifest` rules (names, versions,
//! label keys, duplicates, dangling links, secrets and policies, shared references, duplicate
//! links and link config names, known interfaces) plus checks wadm lacks (IDs usable as NATS
//! subject tokens, spread names and weights, provider-to-provider links). Every finding names
//! its field.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    Component, ConfigRef, Kind, LinkTrait, Manifest, Problem, SECRET_POLICY_TYPE,
    SHARED_ANNOTATION, ScalerKind, SecretRef, Source, VERSION_ANNOTATION,
};
use crate::wire::{check_config_name, check_id, check_wit_name};

/// Runs every rule; errors reject the manifest, warnings are reported only.
pub fn validate(m: &Manifest) -> Vec<Problem> {
    let mut out = Vec::new();
    if !is_valid_app_name(&m.name) {
        out.push(Problem::error(
            "metadata.name",
            format!(
                "`{}` is not allowed: use only letters, digits, `_` and `-` (it becomes a NATS \
                 subject token)",
                m.name
            ),
        ));
    }
    if m.version() == Some("latest") {
        out.push(Problem::error(
            format!("metadata.annotations.{VERSION_ANNOTATION}"),
            "`latest` is not allowed as a version",
        ));
    }
    if let Some(shared) = m.annotations.get(SHARED_ANNOTATION)
        && shared != "true"
        && shared != "false"
    {
        out.push(Problem::error(
            format!("metadata.annotations.{SHARED_ANNOTATION}"),
            "must be `true` or `false`",
        ));
    }
    for (section, map) in [("annotations", &m.annotations), ("labels", &m.labels)] {
        for key in map.keys().filter(|k| !is_valid_label_key(k)) {
            out.push(Problem::error(
                format!("metadata.{section}.{key}"),
                "is not a valid OAM key ([prefix/]name: a DNS subdomain prefix, a name of 1-63 \
                 letters, digits, `-`, `_` or `.` starting and ending with a letter or digit)",
            ));
        }
    }
    let mut names = BTreeMap::new();
    let mut ids = BTreeMap::new();
    for c in &m.components {
        if let Some(first) = names.insert(c.name.as_str(), c.index) {
            out.push(Problem::error(
                format!("{}.name", c.path()),
                format!(
                    "duplicate component name `{}` (also spec.components[{first}])",
                    c.name
                ),
            ));
        }
        if let Some(id) = &c.id {
            let path = format!("{}.properties.id", c.path());
            if let Some(first) = ids.insert(id.as_str(), c.index) {
                out.push(Problem::error(
                    &path,
                    format!("duplicate component id `{id}` (also spec.components[{first}])"),
                ));
            }
            if let Err(invalid) = check_id("id", id) {
                out.push(Problem::error(path, format!("`{id}`: {}", invalid.rule)));
            }
        }
    }
    let mut link_configs = BTreeMap::new();
    for c in &m.components {
        component_rules(m, c, &mut out);
        link_rules(m, c, &mut link_configs, &mut out);
    }
    out
}

/// Named configs (written as is, or derived from an inline config's name) become KV keys.
fn config_name_rules(configs: &[ConfigRef], path: &str, out: &mut Vec<Problem>) {
    for (i, config) in configs.iter().enumerate() {
        let checked = match config.properties {
            // Inline config is stored as `<app>-<name>`, sanitized: any name will do.
            Some(_) => Ok(()),
            None => check_config_name("name", &config.name),
        };
        if let Err(invalid) = checked {
            out.push(Problem::error(
                format!("{path}[{i}].name"),
                format!("`{}`: {}", config.name, invalid.rule),
            ));
        }
    }
}

fn component_rules(m: &Manifest, c: &Component, out: &mut Vec<Problem>) {
    let props = format!("{}.properties", c.path());
    config_name_rules(&c.config, &format!("{props}.config"), out);
    if let Source::Application { name, .. } = &c.source {
        if !c.config.is_empty() {
            out.push(Problem::error(
                format!("{props}.config"),
                format!("shared component `{name}` cannot specify additional config"),
            ));
        }
        if !c.secrets.is_empty() {
            out.push(Problem::error(
                format!("{props}.secrets"),
                format!("shared component `{name}` cannot specify additional secrets"),
            ));
        }
        if let Some(s) = &c.scaler {
            out.push(Problem::error(
                format!("{}.traits[{}]", c.path(), s.trait_index),
                format!("shared component `{name}` cannot include a scaler trait"),
            ));
        }
    }
    for (i, secret) in c.secrets.iter().enumerate() {
        secret_rules(m, secret, &format!("{props}.secrets[{i}]"), out);
    }
    if let Some(s) = &c.scaler {
        let path = format!("{}.traits[{}].properties", c.path(), s.trait_index);
        let mut seen = BTreeSet::new();
        for (i, spread) in s.spreads.iter().enumerate() {
            if !seen.insert(spread.name.as_str()) {
                out.push(Problem::error(
                    format!("{path}.spread[{i}].name"),
                    format!("duplicate spread name `{}`", spread.name),
                ));
            }
        }
        if s.kind == ScalerKind::Spread
            && s.instances > 0
            && !s.spreads.is_empty()
            && s.spreads.iter().all(|sp| sp.weight == 0)
        {
            out.push(Problem::error(
                format!("{path}.spread"),
                "every spread has weight 0, so no instance can be placed",
            ));
        }
    }
}

fn secret_rules(m: &Manifest, secret: &SecretRef, path: &str, out: &mut Vec<Problem>) {
    let policy_path = format!("{path}.properties.policy");
    match m.policies.iter().find(|p| p.name == secret.policy) {
        None => out.push(Problem::error(
            policy_path,
            format!(
                "secret `{}` is mapped to unknown policy `{}`",
                secret.name, secret.policy
            ),
        )),
        Some(p) if p.kind != SECRET_POLICY_TYPE => out.push(Problem::error(
            policy_path,
            format!(
                "policy `{}` is not a secret policy (expected type `{SECRET_POLICY_TYPE}`)",
                p.name
            ),
        )),
        Some(p) if !p.properties.contains_key("backend") => out.push(Problem::error(
            policy_path,
            format!("policy `{}` has no `backend` property", p.name),
        )),
        Some(_) => {}
    }
}

fn link_rules(
    m: &Manifest,
    c: &Component,
    link_configs: &mut BTreeMap<String, String>,
    out: &mut Vec<Problem>,
) {
    let mut seen = BTreeSet::new();
    for link in &c.links {
        let path = format!("{}.traits[{}].properties", c.path(), link.trait_index);
        match m.component(&link.target) {
            None => out.push(Problem::error(
                format!("{path}.target"),
                format!(
                    "link target `{}` is not a component of this manifest",
                    link.target
                ),
            )),
            Some(target) if target.kind == Kind::Capability && c.kind == Kind::Capability => out
                .push(Problem::error(
                    format!("{path}.target"),
                    format!(
                        "links between two capability providers are not supported (`{}` -> `{}`)",
                        c.name, target.name
                    ),
                )),
            Some(_) => {}
        }
        for (i, interface) in link.interfaces.iter().enumerate() {
            if !seen.insert((&link.name, &link.namespace, &link.package, interface)) {
                out.push(Problem::error(
                    format!("{path}.interfaces[{i}]"),
                    format!(
                        "duplicate link in component `{}`: {} ({}:{}/{interface}); give one of \
                         them another link `name`",
                        c.name, link.name, link.namespace, link.package
                    ),
                ));
            }
            if let Some(known) = known_interfaces(&link.namespace, &link.package)
                && !known.contains(&interface.as_str())
            {
                out.push(Problem::warning(
                    format!("{path}.interfaces[{i}]"),
                    format!(
                        "unrecognized interface {}:{}/{interface}",
                        link.namespace, link.package
                    ),
                ));
            }
        }
        if is_known_namespace(&link.namespace)
            && known_interfaces(&link.namespace, &link.package).is_none()
        {
            out.push(Problem::warning(
                format!("{path}.package"),
                format!("unrecognized package {}:{}", link.namespace, link.package),
            ));
        }
        if let Err(invalid) = check_id("name", &link.name) {
            out.push(Problem::error(
                format!("{path}.name"),
                format!("link name `{}`: {}", link.name, invalid.rule),
            ));
        }
        for (field, value) in [("namespace", &link.namespace), ("package", &link.package)] {
            if let Err(invalid) = check_wit_name(field, value) {
                out.push(Problem::error(
                    format!("{path}.{field}"),
                    format!("`{value}`: {}", invalid.rule),
                ));
            }
        }
        config_name_rules(&link.source_config, &format!("{path}.source.config"), out);
        config_name_rules(&link.target_config, &format!("{path}.target.config"), out);
        link_config_rules(link, &path, link_configs, out);
        for (side, secrets) in [
            ("source.secrets", &link.source_secrets),
            ("target.secrets", &link.target_secrets),
        ] {
            for (i, secret) in secrets.iter().enumerate() {
                secret_rules(m, secret, &format!("{path}.{side}[{i}]"), out);
            }
        }
    }
}

/// Inline link configs (with properties) need unique names across the whole manifest.
fn link_config_rules(
    link: &LinkTrait,
    path: &str,
    seen: &mut BTreeMap<String, String>,
    out: &mut Vec<Problem>,
) {
    for (side, configs) in [
        ("source.config", &link.source_config),
        ("target.config", &link.target_config),
    ] {
        for (i, config) in configs.iter().enumerate() {
            if config.properties.is_none() {
                continue;
            }
            let here = format!("{path}.{side}[{i}].name");
            if let Some(first) = seen.insert(config.name.clone(), here.clone()) {
                out.push(Problem::error(
                    here,
                    format!(
                        "duplicate link config name `{}` (also {first})",
                        config.name
                    ),
                ));
            }
        }
    }
}

fn is_known_namespace(namespace: &str) -> bool {
    matches!(namespace, "wasi" | "wrpc" | "wasmcloud")
}

/// wadm's table of well-known interfaces.
fn known_interfaces(namespace: &str, package: &str) -> Option<&'static [&'static str]> {
    Some(match (namespace, package) {
        ("wasi" | "wrpc", "blobstore") => &["blobstore"],
        ("wasi", "config") => &["runtime"],
        ("wasi", "keyvalue") => &["atomics", "store", "batch", "watch"],
        ("wrpc", "keyvalue") => &["atomics", "store"],
        ("wasi" | "wrpc", "http") => &["incoming-handler", "outgoing-handler"],
        ("wasi", "logging") => &["logging"],
        ("wasmcloud", "messaging") => &["consumer", "handler"],
        _ => return None,
    })
}

/// wadm's deploy-time check of shared references (`properties.application`): each must name
/// a component of the same type in another deployed application marked
/// `experimental.wasmcloud.dev/shared: "true"`. `deployed` holds the deployed manifest of every
/// application the references name that is deployed. (wadm compares with the shared app's
/// latest stored version; the deployed one is what actually runs.)
pub fn shared_references(m: &Manifest, deployed: &BTreeMap<String, Manifest>) -> Vec<Problem> {
    let mut out = Vec::new();
    for c in &m.components {
        let Source::Application { name, component } = &c.source else {
            continue;
        };
        let path = format!("{}.properties.application", c.path());
        let Some(shared) = deployed.get(name).filter(|_| name != &m.name) else {
            out.push(Problem::error(
                path,
                format!("application `{name}` is not deployed"),
            ));
            continue;
        };
        if shared
            .annotations
            .get(SHARED_ANNOTATION)
            .map(String::as_str)
            != Some("true")
        {
            out.push(Problem::error(
                path,
                format!(
                    "application `{name}` is not shared (it needs the annotation `{SHARED_ANNOTATION}: \"true\"`)"
                ),
            ));
            continue;
        }
        match shared.component(component) {
            None => out.push(Problem::error(
                path,
                format!("shared application `{name}` has no component `{component}`"),
            )),
            Some(found) if found.kind != c.kind => out.push(Problem::error(
                path,
                format!(
                    "`{component}` in shared application `{name}` is a {}, not a {}",
                    kind_name(found.kind),
                    kind_name(c.kind)
                ),
            )),
            Some(_) => {}
        }
    }
    out
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Component => "component",
        Kind::Capability => "capability",
    }
}

/// `^[-\w]+$` (Unicode word characters).
pub fn is_valid_app_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// OAM label and annotation keys: an optional DNS-subdomain `prefix/` and a name.
pub fn is_valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let name_ok = (1..=63).contains(&name.len())
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && name
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'));
    let prefix_ok = prefix.is_none_or(|p| {
        p.len() <= 253
            && p.split('.').all(|part| {
                (1..=63).contains(&part.len())
                    && part.starts_with(|c: char| c.is_ascii_alphabetic())
                    && part.ends_with(alnum)
                    && part.chars().all(|c| alnum(c) || c == '-')
            })
    });
    name_ok && prefix_ok
}
