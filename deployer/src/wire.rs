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
