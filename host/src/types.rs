//! Wire types of the control interface: request and response bodies with the JSON field names
//! and defaults of `wasmcloud-control-interface` 3.0.1 (see the lattice protocol reference, 2.3).
//! Fields this host does not use (e.g. the `host_id` echoed in commands) are left out; serde
//! ignores them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Annotations = BTreeMap<String, String>;

/// The `{success, message, response}` envelope of every reply.
#[derive(Debug, Serialize)]
pub struct CtlResponse<T> {
    pub success: bool,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<T>,
}

/// `host.ping` answer.
#[derive(Debug, Serialize)]
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
#[derive(Clone, Debug, Serialize)]
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

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ComponentDescription {
    pub id: String,
    pub image_ref: String,
    pub annotations: Annotations,
    pub revision: i32,
    pub max_instances: u32,
    pub limits: Option<BTreeMap<String, String>>,
}

/// A provider in the inventory: built-in providers and provider processes started here.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProviderDescription {
    pub id: String,
    pub image_ref: String,
    /// From the provider archive's claims.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub revision: i32,
    pub annotations: Annotations,
}

#[derive(Debug, Default, Deserialize)]
pub struct StopHostCommand {
    #[serde(default)]
    pub host_id: String,
    /// Milliseconds the host may take to stop.
    pub timeout: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct HostLabel {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
pub struct HostLabelIdentifier {
    pub key: String,
}

/// `component.scale`: note the JSON key of the instance count is `count`.
#[derive(Debug, Deserialize)]
pub struct ScaleComponentCommand {
    #[serde(default)]
    pub component_ref: String,
    pub component_id: String,
    pub annotations: Option<Annotations>,
    #[serde(default, rename = "count")]
    pub max_instances: u32,
    #[serde(default)]
    pub config: Vec<String>,
    #[serde(default)]
    pub allow_update: bool,
}

#[derive(Debug, Deserialize)]
pub struct UpdateComponentCommand {
    #[serde(default)]
    pub component_id: String,
    pub annotations: Option<Annotations>,
    #[serde(default)]
    pub new_component_ref: String,
}

#[derive(Debug, Deserialize)]
pub struct StartProviderCommand {
    pub provider_id: String,
    #[serde(default)]
    pub provider_ref: String,
    #[serde(default)]
    pub config: Vec<String>,
    pub annotations: Option<Annotations>,
}

#[derive(Debug, Deserialize)]
pub struct StopProviderCommand {
    #[serde(default, alias = "provider_ref")]
    pub provider_id: String,
}

#[derive(Debug, Deserialize)]
pub struct ComponentAuctionRequest {
    #[serde(default)]
    pub component_ref: String,
    pub component_id: String,
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct ComponentAuctionAck {
    pub component_ref: String,
    pub component_id: String,
    pub host_id: String,
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct ProviderAuctionAck {
    pub host_id: String,
    pub provider_ref: String,
    pub provider_id: String,
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct ProviderAuctionRequest {
    #[serde(default)]
    pub provider_ref: String,
    pub provider_id: String,
    pub constraints: BTreeMap<String, String>,
}

/// The link name a link has unless it names another, and the one calls follow unless a
/// component chooses another (`wasmcloud:bus/lattice`).
pub const DEFAULT_LINK_NAME: &str = "default";

fn default_link_name() -> String {
    DEFAULT_LINK_NAME.to_string()
}

/// A link between two lattice IDs, as stored in `LATTICEDATA` and sent by `link.put`.
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

    /// Whether the link covers `interface` (`ns:pkg/iface`, with or without a version).
    pub fn covers(&self, interface: &trellis_runtime::InterfaceName) -> bool {
        self.wit_namespace == interface.namespace
            && self.wit_package == interface.package
            && self.interfaces.contains(&interface.interface)
    }
}

/// `link.del` request.
#[derive(Debug, Deserialize)]
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
    }

    #[test]
    fn link_defaults() {
        let link: Link = serde_json::from_str(
            r#"{"source_id":"a","target":"b","wit_namespace":"wasi","wit_package":"kv","interfaces":["store"]}"#,
        )
        .unwrap();
        assert_eq!(link.name, "default");
        assert!(link.source_config.is_empty() && link.target_config.is_empty());
    }
}
