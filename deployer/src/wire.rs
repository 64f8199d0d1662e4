//! The control interface's wire types (`wasmbus.ctl.v1.{lattice}.…`): request and reply bodies
//! with the JSON field names and defaults of `wasmcloud-control-interface` 3.0.1 (see the
//! lattice protocol reference, 2.3). One definition for both ends: the host that answers them
//! and the deployer that sends them. Fields neither end uses are left out; serde ignores them,
//! and every field a peer may omit has its default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Annotations = BTreeMap<String, String>;

/// The link name a link has unless it names another, and the one calls follow unless a
/// component chooses another (`wasmcloud:bus/lattice`).
pub const DEFAULT_LINK_NAME: &str = "default";

fn default_link_name() -> String {
    DEFAULT_LINK_NAME.to_string()
}

/// A name refused where it enters (a control request, a manifest, the CLI): names become NATS
/// subject tokens (`{lattice}.{id}.wrpc.…`) and JetStream KV keys, where a `.`, `*`, `>` or a
/// space would mean another subject or a wildcard subscription.
#[derive(Debug, thiserror::Error)]
#[error("{field} `{value}` is invalid: {rule}")]
pub struct InvalidName {
    pub field: String,
    pub value: String,
    pub rule: &'static str,
}

const ID_RULE: &str = "use 1 to 255 letters, digits, `-` or `_` (it becomes a NATS subject token)";
const CONFIG_RULE: &str = "use 1 to 255 letters, digits, `-`, `_`, `=`, `/` or `.` (not first or \
     last): it becomes a JetStream KV key";
const WIT_RULE: &str = "use 1 to 255 letters, digits and `-` (a WIT name; it becomes part of NATS \
     subjects)";

fn check(
    field: impl Into<String>,
    value: &str,
    rule: &'static str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), InvalidName> {
    let ok = (1..=255).contains(&value.len()) && value.chars().all(allowed);
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            field: field.into(),
            value: value.to_string(),
            rule,
        })
    }
}

/// A component or provider id, or a link name.
pub fn check_id(field: impl Into<String>, value: &str) -> Result<(), InvalidName> {
    check(field, value, ID_RULE, |c| {
        c.is_ascii_alphanumeric() || c == '-' || c == '_'
    })
}

/// A named config (a CONFIGDATA key).
pub fn check_config_name(field: impl Into<String>, value: &str) -> Result<(), InvalidName> {
    let field = field.into();
    check(field.clone(), value, CONFIG_RULE, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '/' | '.')
    })?;
    if value.starts_with('.') || value.ends_with('.') {
        return check(field, "", CONFIG_RULE, |_| false).map_err(|e| InvalidName {
            value: value.to_string(),
            ..e
        });
    }
    Ok(())
}

/// A WIT namespace, package or interface name of a link.
pub fn check_wit_name(field: impl Into<String>, value: &str) -> Result<(), InvalidName> {
    check(field, value, WIT_RULE, |c| {
        c.is_ascii_alphanumeric() || c == '-'
    })
}

fn check_config_names(field: &str, names: &[String]) -> Result<(), InvalidName> {
    for (i, name) in names.iter().enumerate() {
        check_config_name(format!("{field}[{i}]"), name)?;
    }
    Ok(())
}

/// Request bodies whose names are checked where they enter the host.
pub trait CheckedNames {
    fn check_names(&self) -> Result<(), InvalidName> {
        Ok(())
    }
}

/// The `{success, message, response}` envelope of every reply.
#[derive(Debug, Serialize, Deserialize)]
pub struct CtlResponse<T> {
    pub success: bool,
    #[serde(default)]
    pub message: String,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub response: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

/// `host.ping` answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HostSummary {
    pub ctl_host: String,
    pub rpc_host: String,
    pub friendly_name: String,
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub lattice: String,
    pub uptime_human: String,
    pub uptime_seconds: u64,
    pub version: String,
}

/// `host.get` answer and `host_heartbeat` data.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HostInventory {
    pub components: Vec<ComponentDescription>,
    pub providers: Vec<ProviderDescription>,
    pub host_id: String,
    pub friendly_name: String,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub uptime_human: String,
    pub uptime_seconds: u64,
}

impl HostInventory {
    pub fn component(&self, id: &str) -> Option<&ComponentDescription> {
        self.components.iter().find(|c| c.id == id)
    }

    pub fn provider(&self, id: &str) -> Option<&ProviderDescription> {
        self.providers.iter().find(|p| p.id == id)
    }
}

/// A component in the inventory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComponentDescription {
    pub id: String,
    pub image_ref: String,
    pub annotations: Annotations,
    pub revision: i32,
    pub max_instances: u32,
    pub limits: Option<BTreeMap<String, String>>,
    /// Trellis: how a component that runs as a service (it exports `wasi:cli/run`) is doing:
    /// `running`, `exited with code 0`, `failed: …` or `restarting (N): …`. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// A provider in the inventory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderDescription {
    pub id: String,
    pub image_ref: String,
    /// From the provider archive's claims.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub revision: i32,
    pub annotations: Annotations,
}

/// What components and providers share in an inventory: the annotations their owner set.
pub trait Annotated {
    fn id(&self) -> &str;
    fn annotations(&self) -> &Annotations;

    fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations().get(key).map(String::as_str)
    }
}

impl Annotated for ComponentDescription {
    fn id(&self) -> &str {
        &self.id
    }
    fn annotations(&self) -> &Annotations {
        &self.annotations
    }
}

impl Annotated for ProviderDescription {
    fn id(&self) -> &str {
        &self.id
    }
    fn annotations(&self) -> &Annotations {
        &self.annotations
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StopHostCommand {
    #[serde(default)]
    pub host_id: String,
    /// Milliseconds the host may take to stop.
    pub timeout: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HostLabel {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HostLabelIdentifier {
    pub key: String,
}

/// `component.scale`: note the JSON key of the instance count is `count`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleComponentCommand {
    #[serde(default)]
    pub component_ref: String,
    pub component_id: String,
    #[serde(default)]
    pub host_id: String,
    pub annotations: Option<Annotations>,
    #[serde(default, rename = "count")]
    pub max_instances: u32,
    #[serde(default)]
    pub config: Vec<String>,
    #[serde(default)]
    pub allow_update: bool,
    /// Control interface 3.x: the component's own limits (`max_memory_limit` bytes,
    /// `max_execution_time` seconds); absent from older clients and from wadm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_limits: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UpdateComponentCommand {
    #[serde(default)]
    pub component_id: String,
    pub annotations: Option<Annotations>,
    #[serde(default)]
    pub new_component_ref: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartProviderCommand {
    pub provider_id: String,
    #[serde(default)]
    pub provider_ref: String,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub config: Vec<String>,
    pub annotations: Option<Annotations>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopProviderCommand {
    #[serde(default, alias = "provider_ref")]
    pub provider_id: String,
    #[serde(default)]
    pub host_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ComponentAuctionRequest {
    #[serde(default)]
    pub component_ref: String,
    pub component_id: String,
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ComponentAuctionAck {
    pub component_ref: String,
    pub component_id: String,
    pub host_id: String,
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProviderAuctionAck {
    pub host_id: String,
    pub provider_ref: String,
    pub provider_id: String,
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProviderAuctionRequest {
    #[serde(default)]
    pub provider_ref: String,
    pub provider_id: String,
    pub constraints: BTreeMap<String, String>,
}

/// A link between two lattice IDs, as stored in `LATTICEDATA` and carried by `link.put` and
/// `link.get`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub source_id: String,
    pub target: String,
    #[serde(default = "default_link_name")]
    pub name: String,
    pub wit_namespace: String,
    pub wit_package: String,
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub source_config: Vec<String>,
    #[serde(default)]
    pub target_config: Vec<String>,
}

impl Link {
    /// `ns:pkg/iface` for one of the link's interfaces.
    pub fn interface_name(&self, interface: &str) -> String {
        format!("{}:{}/{interface}", self.wit_namespace, self.wit_package)
    }

    /// Whether the link covers interface `interface` of `namespace:package`.
    pub fn covers(&self, namespace: &str, package: &str, interface: &str) -> bool {
        self.wit_namespace == namespace
            && self.wit_package == package
            && self.interfaces.iter().any(|i| i == interface)
    }

    /// The same link identity, target and settings (interface order does not matter).
    pub fn same_as(&self, other: &Link) -> bool {
        let sorted = |l: &Link| {
            let mut i = l.interfaces.clone();
            i.sort();
            i
        };
        self.source_id == other.source_id
            && self.target == other.target
            && self.name == other.name
            && self.wit_namespace == other.wit_namespace
            && self.wit_package == other.wit_package
            && sorted(self) == sorted(other)
            && self.source_config == other.source_config
            && self.target_config == other.target_config
    }

    /// (source, name, namespace, package): what identifies a link on the lattice.
    pub fn identity(&self) -> (&str, &str, &str, &str) {
        (
            &self.source_id,
            &self.name,
            &self.wit_namespace,
            &self.wit_package,
        )
    }
}

/// `link.del` request.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteLinkRequest {
    pub source_id: String,
    #[serde(default = "default_link_name")]
    pub name: String,
    pub wit_namespace: String,
    pub wit_package: String,
}

impl CheckedNames for StopHostCommand {}
impl CheckedNames for HostLabel {}
impl CheckedNames for HostLabelIdentifier {}

impl CheckedNames for ScaleComponentCommand {
    fn check_names(&self) -> Result<(), InvalidName> {
        check_id("component_id", &self.component_id)?;
        check_config_names("config", &self.config)
    }
}

impl CheckedNames for UpdateComponentCommand {
    fn check_names(&self) -> Result<(), InvalidName> {
        check_id("component_id", &self.component_id)
    }
}

impl CheckedNames for StartProviderCommand {
    fn check_names(&self) -> Result<(), InvalidName> {
        check_id("provider_id", &self.provider_id)?;
        check_config_names("config", &self.config)
    }
}

impl CheckedNames for StopProviderCommand {
    fn check_names(&self) -> Result<(), InvalidName> {
        check_id("provider_id", &self.provider_id)
    }
}

impl CheckedNames for ComponentAuctionRequest {
    fn check_names(&self) -> Result<(), InvalidName> {
        check_id("component_id", &self.component_id)
    }
}

impl CheckedNames for ProviderAuctionRequest {
    fn check_names(&self) -> Result<(), InvalidName> {
        check_id("provider_id", &self.provider_id)
    }
}

impl CheckedNames for Link {
    fn check_names(&self) -> Result<(), InvalidName> {
        check_id("source_id", &self.source_id)?;
        check_id("target", &self.target)?;
        check_id("name", &self.name)?;
        check_wit_name("wit_namespace", &self.wit_namespace)?;
        check_wit_name("wit_package", &self.wit_package)?;
        for (i, interface) in self.interfaces.iter().enumerate() {
            check_wit_name(format!("interfaces[{i}]"), interface)?;
        }
        check_config_names("source_config", &self.source_config)?;
        check_config_names("target_config", &self.target_config)
    }
}

impl CheckedNames for DeleteLinkRequest {
    fn check_names(&self) -> Result<(), InvalidName> {
        check_id("source_id", &self.source_id)?;
        check_id("name", &self.name)?;
        check_wit_name("wit_namespace", &self.wit_namespace)?;
        check_wit_name("wit_package", &self.wit_package)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_count_is_the_wire_key() {
        let scale: ScaleComponentCommand =
            serde_json::from_str(r#"{"component_id":"c","count":3,"component_ref":"file:///x"}"#)
                .unwrap();
        assert_eq!(scale.max_instances, 3);
        assert!(scale.annotations.is_none() && scale.config.is_empty() && !scale.allow_update);
        let missing = serde_json::from_str::<ScaleComponentCommand>(r#"{"count":3}"#).unwrap_err();
        assert!(missing.to_string().contains("component_id"), "{missing}");
        let sent = serde_json::to_value(&scale).unwrap();
        assert_eq!(sent["count"], 3);
    }

    #[test]
    fn envelope_omits_absent_response_but_keeps_message() {
        let body = serde_json::to_string(&CtlResponse::<()> {
            success: false,
            message: "no".into(),
            response: None,
        })
        .unwrap();
        assert_eq!(body, r#"{"success":false,"message":"no"}"#);
        let read: CtlResponse<serde_json::Value> =
            serde_json::from_str(r#"{"success":true}"#).unwrap();
        assert!(read.success && read.message.is_empty() && read.response.is_none());
    }

    #[test]
    fn names_that_could_become_wildcards_are_refused() {
        assert!(check_id("component_id", "adder-1_x").is_ok());
        for bad in ["*", "x.*", "a b", "", ">", "a.b", &"x".repeat(256)] {
            let error = check_id("component_id", bad).unwrap_err();
            assert!(error.to_string().starts_with("component_id `"), "{error}");
            assert!(error.to_string().contains("subject token"), "{error}");
        }
        assert!(check_config_name("config[0]", "app-web.http=1/a").is_ok());
        assert!(check_config_name("config[0]", "a*").is_err());
        assert!(check_config_name("config[0]", ".hidden").is_err());
        assert!(check_wit_name("wit_namespace", "wasi").is_ok());
        assert!(check_wit_name("wit_namespace", "wa.si").is_err());
    }

    #[test]
    fn link_defaults() {
        let link: Link = serde_json::from_str(
            r#"{"source_id":"a","target":"b","wit_namespace":"wasi","wit_package":"kv","interfaces":["store"]}"#,
        )
        .unwrap();
        assert_eq!(link.name, "default");
        assert!(link.source_config.is_empty() && link.target_config.is_empty());
        assert!(link.covers("wasi", "kv", "store") && !link.covers("wasi", "kv", "atomics"));
    }

    #[test]
    fn an_inventory_from_any_host_reads_with_defaults() {
        let inventory: HostInventory = serde_json::from_str(
            r#"{"host_id":"N1","components":[{"id":"c","max_instances":2}],"providers":[{"id":"p"}]}"#,
        )
        .unwrap();
        assert_eq!(inventory.component("c").unwrap().max_instances, 2);
        assert!(inventory.provider("p").unwrap().annotation("x").is_none());
    }
}
