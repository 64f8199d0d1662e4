//! wadm (OAM) application manifests: the typed model, and reading it from YAML or JSON.
//!
//! The schema mirrors `wadm-types` 0.8.3 (same keys, aliases, defaults and required keys), read
//! by hand from a JSON tree so that every problem carries the path of its field and no input can
//! panic the reader. [`validate`] adds wadm's semantic rules and a few of our own.

mod read;
pub mod validate;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use read::{Keys, Reader, join};

/// The version annotation, and the other annotation keys wadm interprets.
pub const VERSION_ANNOTATION: &str = "version";
pub const DESCRIPTION_ANNOTATION: &str = "description";
pub const SHARED_ANNOTATION: &str = "experimental.wasmcloud.dev/shared";
/// Trellis policy (beyond wadm): `"false"` turns off placing linked components together.
pub const COLOCATE_ANNOTATION: &str = "trellis.dev/co-locate";
pub const DEFAULT_SPREAD_WEIGHT: u32 = 100;
pub const SECRET_POLICY_TYPE: &str = "policy.secret.wasmcloud.dev/v1alpha1";

/// How serious a [`Problem`] is: errors reject the manifest, warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// One finding about a manifest: the field it concerns and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub level: Level,
    /// Dotted path from the document root, e.g. `spec.components[0].properties.image`.
    pub path: String,
    pub reason: String,
}

impl Problem {
    pub fn error(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            level: Level::Error,
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub fn warning(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            level: Level::Warning,
            ..Self::error(path, reason)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        if self.path.is_empty() {
            write!(f, "{level}: {}", self.reason)
        } else {
            write!(f, "{level}: {}: {}", self.path, self.reason)
        }
    }
}

/// Why a manifest was refused: every error found (and the warnings beside them).
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.0))]
pub struct Rejection(pub Vec<Problem>);

impl Rejection {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.level == Level::Error)
    }
}

fn render(problems: &[Problem]) -> String {
    let errors: Vec<String> = problems
        .iter()
        .filter(|p| p.level == Level::Error)
        .map(|p| p.to_string())
        .collect();
    format!("invalid manifest: {}", errors.join("; "))
}

/// A manifest that parsed and passed validation.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub manifest: Manifest,
    /// The document as JSON (what is stored and returned by `model.get`).
    pub document: Value,
    pub warnings: Vec<Problem>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub components: Vec<Component>,
    pub policies: Vec<Policy>,
}

impl Manifest {
    pub fn version(&self) -> Option<&str> {
        self.annotations.get(VERSION_ANNOTATION).map(String::as_str)
    }

    pub fn description(&self) -> Option<&str> {
        self.annotations
            .get(DESCRIPTION_ANNOTATION)
            .map(String::as_str)
    }

    /// Whether linked components should be placed on the same host when the spreads allow.
    pub fn colocate(&self) -> bool {
        self.annotations
            .get(COLOCATE_ANNOTATION)
            .map(String::as_str)
            != Some("false")
    }

    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }
}

/// `type: component` (alias `actor`) runs a Wasm component; `capability` a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Component,
    Capability,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Image(String),
    /// A component of another, shared app.
    Application {
        name: String,
        component: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    pub name: String,
    pub kind: Kind,
    pub source: Source,
    pub id: Option<String>,
    pub config: Vec<ConfigRef>,
    pub secrets: Vec<SecretRef>,
    pub scaler: Option<Scaler>,
    pub links: Vec<LinkTrait>,
    /// Position in `spec.components`, for messages.
    pub index: usize,
}

impl Component {
    pub fn path(&self) -> String {
        format!("spec.components[{}]", self.index)
    }
}

/// A named config: `properties` present means the app owns it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigRef {
    pub name: String,
    pub properties: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SecretRef {
    pub name: String,
    pub policy: String,
    pub key: String,
    pub field: Option<String>,
    pub version: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub name: String,
    pub kind: String,
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalerKind {
    Spread,
    Daemon,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scaler {
    pub kind: ScalerKind,
    pub instances: u32,
    pub spreads: Vec<Spread>,
    /// Index of the trait in the component's `traits`.
    pub trait_index: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Spread {
    pub name: String,
    pub requirements: BTreeMap<String, String>,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LinkTrait {
    pub target: String,
    pub target_config: Vec<ConfigRef>,
    pub target_secrets: Vec<SecretRef>,
    pub namespace: String,
    pub package: String,
    pub interfaces: Vec<String>,
    pub name: String,
    pub source_config: Vec<ConfigRef>,
    pub source_secrets: Vec<SecretRef>,
    pub trait_index: usize,
}

/// Parses a YAML or JSON document into a JSON tree. YAML is a superset of JSON, so one parser
/// reads both and reports YAML syntax errors with their line and column.
pub fn document(bytes: &[u8]) -> Result<Value, Rejection> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Rejection(vec![Problem::error("", format!("not UTF-8 text: {e}"))]))?;
    let value: Value = serde_yaml::from_str(text).map_err(|e| {
        Rejection(vec![Problem::error(
            "",
            format!("not a YAML or JSON document: {e}"),
        )])
    })?;
    Ok(value)
}

/// Parses and validates a manifest. A rejection lists every error found.
pub fn parse(bytes: &[u8]) -> Result<Parsed, Rejection> {
    let document = document(bytes)?;
    from_document(document)
}

/// Reads and validates an already parsed document.
pub fn from_document(document: Value) -> Result<Parsed, Rejection> {
    let mut reader = Reader::default();
    let manifest = read_manifest(&mut reader, &document);
    let mut problems = reader.problems;
    if let Some(manifest) = &manifest
        && !problems.iter().any(|p| p.level == Level::Error)
    {
        problems.extend(validate::validate(manifest));
    }
    match manifest {
        Some(manifest) if !problems.iter().any(|p| p.level == Level::Error) => Ok(Parsed {
            manifest,
            document,
            warnings: problems,
        }),
        _ => Err(Rejection(problems)),
    }
}

fn read_manifest(r: &mut Reader, doc: &Value) -> Option<Manifest> {
    let top = r.object(
        doc,
        "",
        Keys::Only(&["apiVersion", "kind", "metadata", "spec"]),
    )?;
    for key in ["apiVersion", "kind"] {
        if let Some(value) = r.required(top, "", key) {
            r.string(value, key);
        }
    }
    let metadata = r
        .required(top, "", "metadata")
        .and_then(|m| r.object(m, "metadata", Keys::Any));
    let spec = r
        .required(top, "", "spec")
        .and_then(|s| r.object(s, "spec", Keys::Any));
    let (metadata, spec) = (metadata?, spec?);
    let name = r.required_text(metadata, "metadata", "name");
    // wadm requires the key even when the map is empty.
    let annotations = match r.required(metadata, "metadata", "annotations") {
        Some(value) => r.text_map(value, "metadata.annotations"),
        None => BTreeMap::new(),
    };
    let labels = match metadata.get("labels") {
        Some(value) => r.text_map(value, "metadata.labels"),
        None => BTreeMap::new(),
    };
    let components = match r.required(spec, "spec", "components") {
        Some(value) => r
            .list(value, "spec.components")
            .iter()
            .enumerate()
            .filter_map(|(i, c)| read_component(r, c, i))
            .collect(),
        None => Vec::new(),
    };
    let policies = match spec.get("policies") {
        Some(value) => r
            .list(value, "spec.policies")
            .iter()
            .enumerate()
            .filter_map(|(i, p)| read_policy(r, p, &format!("spec.policies[{i}]")))
            .collect(),
        None => Vec::new(),
    };
    Some(Manifest {
        name: name?,
        annotations,
        labels,
        components,
        policies,
    })
}

fn read_policy(r: &mut Reader, value: &Value, path: &str) -> Option<Policy> {
    let map = r.object(value, path, Keys::Any)?;
    let name = r.required_text(map, path, "name");
    let kind = r.required_text(map, path, "type");
    let properties = r
        .required(map, path, "properties")
        .map(|p| r.text_map(p, &join(path, "properties")))
        .unwrap_or_default();
    Some(Policy {
        name: name?,
        kind: kind?,
        properties,
    })
}

fn read_component(r: &mut Reader, value: &Value, index: usize) -> Option<Component> {
    let path = format!("spec.components[{index}]");
    // wadm ignores unknown keys here; a warning at least shows a typo like `trait:`.
    let map = r.object(
        value,
        &path,
        Keys::Known(&["name", "type", "properties", "traits"]),
    )?;
    let name = r.required_string(map, &path, "name");
    let kind = match r.required_string(map, &path, "type").as_deref() {
        Some("component" | "actor") => Some(Kind::Component),
        Some("capability") => Some(Kind::Capability),
        Some(other) => {
            r.error(
                join(&path, "type"),
                format!("unknown component type `{other}`, expected `component` or `capability`"),
            );
            None
        }
        None => None,
    };
    let props_path = join(&path, "properties");
    let props = r.required(map, &path, "properties").and_then(|p| {
        r.object(
            p,
            &props_path,
            Keys::Only(&["image", "application", "id", "config", "secrets"]),
        )
    });
    let mut source = None;
    let mut id = None;
    let mut config = Vec::new();
    let mut secrets = Vec::new();
    if let Some(props) = props {
        let image = r.optional_string(props, &props_path, "image");
        let application = match props.get("application") {
            None | Some(Value::Null) => Ok(None),
            Some(value) => {
                let app_path = join(&props_path, "application");
                r.object(value, &app_path, Keys::Known(&["name", "component"]))
                    .map(|m| {
                        let name = r.required_string(m, &app_path, "name");
                        let component = r.required_string(m, &app_path, "component");
                        name.zip(component)
                    })
                    .and_then(|x| x)
                    .map(Some)
                    .ok_or(())
            }
        };
        source = match (image, application) {
            (Ok(Some(_)), Ok(Some(_))) => {
                r.error(
                    &props_path,
                    "cannot have both 'image' and 'application' properties",
                );
                None
            }
            (Ok(None), Ok(None)) => {
                r.error(
                    &props_path,
                    "must have either an 'image' or an 'application' property",
                );
                None
            }
            (Ok(Some(image)), Ok(None)) => Some(Source::Image(image)),
            (Ok(None), Ok(Some((name, component)))) => {
                Some(Source::Application { name, component })
            }
            _ => None,
        };
        id = r.optional_string(props, &props_path, "id").ok().flatten();
        if let Some(value) = props.get("config") {
            config = read_configs(r, value, &join(&props_path, "config"));
        }
        if let Some(value) = props.get("secrets") {
            secrets = read_secrets(r, value, &join(&props_path, "secrets"));
        }
    }
    let mut scaler = None;
    let mut links = Vec::new();
    if let Some(traits) = map.get("traits") {
        let traits_path = join(&path, "traits");
        for (i, t) in r.list(traits, &traits_path).iter().enumerate() {
            let trait_path = format!("{traits_path}[{i}]");
            match read_trait(r, t, &trait_path, i) {
                Some(Trait::Scaler(_)) if scaler.is_some() => {
                    r.error(
                        join(&trait_path, "type"),
                        "a component can have only one scaler trait (spreadscaler or daemonscaler)",
                    );
                }
                Some(Trait::Scaler(s)) => scaler = Some(s),
                Some(Trait::Link(l)) => links.push(l),
                None => {}
            }
        }
    }
    Some(Component {
        name: name?,
        kind: kind?,
        source: source?,
        id,
        config,
        secrets,
        scaler,
        links,
        index,
    })
}

enum Trait {
    Scaler(Scaler),
    Link(LinkTrait),
}

fn read_trait(r: &mut Reader, value: &Value, path: &str, index: usize) -> Option<Trait> {
    let map = r.object(value, path, Keys::Only(&["type", "properties"]))?;
    let kind = r.required_string(map, path, "type")?;
    let props_path = join(path, "properties");
    let props = r.required(map, path, "properties")?;
    match kind.as_str() {
        "spreadscaler" | "daemonscaler" => {
            let scaler_kind = if kind == "spreadscaler" {
                ScalerKind::Spread
            } else {
                ScalerKind::Daemon
            };
            read_scaler(r, props, &props_path, scaler_kind, index).map(Trait::Scaler)
        }
        "link" => read_link(r, props, &props_path, index).map(Trait::Link),
        other => {
            r.warn(
                join(path, "type"),
                format!("trait type `{other}` is not supported and is ignored"),
            );
            None
        }
    }
}

fn read_scaler(
    r: &mut Reader,
    value: &Value,
    path: &str,
    kind: ScalerKind,
    trait_index: usize,
) -> Option<Scaler> {
    let map = r.object(
        value,
        path,
        Keys::Only(&["instances", "replicas", "spread"]),
    )?;
    let instances = match (map.get("instances"), map.get("replicas")) {
        (Some(_), Some(_)) => {
            r.error(
                join(path, "replicas"),
                "`replicas` is an alias of `instances`; give only one",
            );
            None
        }
        (Some(v), None) => r.count(v, &join(path, "instances")),
        (None, Some(v)) => r.count(v, &join(path, "replicas")),
        (None, None) => {
            r.error(join(path, "instances"), "is required");
            None
        }
    };
    let mut spreads = Vec::new();
    let mut ok = true;
    if let Some(value) = map.get("spread") {
        let spread_path = join(path, "spread");
        for (i, s) in r.list(value, &spread_path).iter().enumerate() {
            let p = format!("{spread_path}[{i}]");
            match read_spread(r, s, &p) {
                Some(s) => spreads.push(s),
                None => ok = false,
            }
        }
    }
    ok.then_some(())?;
    Some(Scaler {
        kind,
        instances: instances?,
        spreads,
        trait_index,
    })
}

fn read_spread(r: &mut Reader, value: &Value, path: &str) -> Option<Spread> {
    let map = r.object(value, path, Keys::Only(&["name", "requirements", "weight"]))?;
    let name = r.required_string(map, path, "name");
    // wadm requires the key even when empty.
    let requirements = r
        .required(map, path, "requirements")
        .map(|v| r.string_map(v, &join(path, "requirements")));
    let weight = match map.get("weight") {
        None | Some(Value::Null) => Some(DEFAULT_SPREAD_WEIGHT),
        Some(v) => r.count(v, &join(path, "weight")),
    };
    Some(Spread {
        name: name?,
        requirements: requirements?,
        weight: weight?,
    })
}

fn read_link(r: &mut Reader, value: &Value, path: &str, trait_index: usize) -> Option<LinkTrait> {
    // wadm reads link properties through a JSON value and ignores keys it does not know.
    let map = r.object(
        value,
        path,
        Keys::Known(&[
            "target",
            "namespace",
            "package",
            "interfaces",
            "source",
            "name",
            "source_config",
            "target_config",
        ]),
    )?;
    let target_path = join(path, "target");
    let (target, mut target_config, target_secrets) = match r.required(map, path, "target") {
        Some(value @ Value::Object(_)) => {
            let t = r.object(
                value,
                &target_path,
                Keys::Known(&["name", "config", "secrets"]),
            )?;
            let name = r.required_string(t, &target_path, "name");
            let config = t
                .get("config")
                .map(|c| read_configs(r, c, &join(&target_path, "config")))
                .unwrap_or_default();
            let secrets = t
                .get("secrets")
                .map(|s| read_secrets(r, s, &join(&target_path, "secrets")))
                .unwrap_or_default();
            (name, config, secrets)
        }
        Some(other) => (r.string(other, &target_path), Vec::new(), Vec::new()),
        None => (None, Vec::new(), Vec::new()),
    };
    if let Some(legacy) = map.get("target_config") {
        let legacy_path = join(path, "target_config");
        if matches!(map.get("target"), Some(Value::String(_))) {
            target_config = read_configs(r, legacy, &legacy_path);
            r.warn(legacy_path, "deprecated: use target.config");
        } else {
            r.error(
                legacy_path,
                "is only read with a plain string `target`; use target.config",
            );
        }
    }
    let namespace = r.required_string(map, path, "namespace");
    let package = r.required_string(map, path, "package");
    let interfaces = r.required(map, path, "interfaces").map(|v| {
        let list_path = join(path, "interfaces");
        let items: Vec<Option<String>> = r
            .list(v, &list_path)
            .iter()
            .enumerate()
            .map(|(i, item)| r.string(item, &format!("{list_path}[{i}]")))
            .collect();
        if matches!(v, Value::Array(a) if a.is_empty()) {
            r.error(&list_path, "must name at least one interface");
        }
        items
    });
    let name = r
        .optional_string(map, path, "name")
        .map(|n| n.unwrap_or_else(|| "default".to_string()));
    let (mut source_config, mut source_secrets) = (Vec::new(), Vec::new());
    if let Some(source) = map.get("source").filter(|s| !s.is_null()) {
        let source_path = join(path, "source");
        if let Some(s) = r.object(source, &source_path, Keys::Known(&["config", "secrets"])) {
            if let Some(c) = s.get("config") {
                source_config = read_configs(r, c, &join(&source_path, "config"));
            }
            if let Some(c) = s.get("secrets") {
                source_secrets = read_secrets(r, c, &join(&source_path, "secrets"));
            }
        }
        if map.contains_key("source_config") {
            r.warn(
                join(path, "source_config"),
                "ignored because `source` is given (deprecated: use source.config)",
            );
        }
    } else if let Some(legacy) = map.get("source_config") {
        source_config = read_configs(r, legacy, &join(path, "source_config"));
        r.warn(join(path, "source_config"), "deprecated: use source.config");
    }
    let interfaces: Option<Vec<String>> = interfaces?.into_iter().collect();
    Some(LinkTrait {
        target: target?,
        target_config,
        target_secrets,
        namespace: namespace?,
        package: package?,
        interfaces: interfaces?,
        name: name.ok()?,
        source_config,
        source_secrets,
        trait_index,
    })
}

fn read_configs(r: &mut Reader, value: &Value, path: &str) -> Vec<ConfigRef> {
    let items = r.list(value, path);
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let p = format!("{path}[{i}]");
            let map = r.object(item, &p, Keys::Only(&["name", "properties"]))?;
            let name = r.required_string(map, &p, "name");
            let properties = map
                .get("properties")
                .filter(|v| !v.is_null())
                .map(|v| r.string_map(v, &join(&p, "properties")));
            Some(ConfigRef {
                name: name?,
                properties,
            })
        })
        .collect()
}

fn read_secrets(r: &mut Reader, value: &Value, path: &str) -> Vec<SecretRef> {
    let items = r.list(value, path);
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let p = format!("{path}[{i}]");
            let map = r.object(item, &p, Keys::Known(&["name", "properties"]))?;
            let name = r.required_string(map, &p, "name");
            let props_path = join(&p, "properties");
            let props: Option<&Map<String, Value>> =
                r.required(map, &p, "properties").and_then(|v| {
                    r.object(
                        v,
                        &props_path,
                        Keys::Known(&["policy", "key", "field", "version"]),
                    )
                });
            let props = props?;
            let policy = r.required_string(props, &props_path, "policy");
            let key = r.required_string(props, &props_path, "key");
            let field = r.optional_string(props, &props_path, "field").ok()?;
            let version = r.optional_string(props, &props_path, "version").ok()?;
            Some(SecretRef {
                name: name?,
                policy: policy?,
                key: key?,
                field,
                version,
            })
        })
        .collect()
}
