//! What a provider process is handed on stdin: the `HostData` JSON the wasmCloud provider SDK
//! (0.17, wasmcloud-core 0.21) expects, base64-encoded (standard, padded) and ended by `\r\n`;
//! and the `InterfaceLinkDefinition`s it receives at start and on every link change.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use super::credentials::RpcCredentials;
use crate::secrets::SecretMap;
use crate::store::ConfigStore;
use crate::telemetry::OtelConfig;
use trellis_deployer::wire::{DEFAULT_LINK_NAME, Link};

/// A link as providers see it: configuration names resolved to merged maps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterfaceLinkDefinition {
    pub source_id: String,
    pub target: String,
    pub name: String,
    pub wit_namespace: String,
    pub wit_package: String,
    pub interfaces: Vec<String>,
    pub source_config: BTreeMap<String, String>,
    pub target_config: BTreeMap<String, String>,
    /// The sides' secrets (name → value JSON), sealed by the host's XKey for the provider's;
    /// `null` when a side has none. Filled in at delivery ([`Self::secret_names`]).
    pub source_secrets: Option<Vec<u8>>,
    pub target_secrets: Option<Vec<u8>>,
    /// The secret references in each side's config list (source, target).
    #[serde(skip)]
    pub secret_names: (Vec<String>, Vec<String>),
}

/// What identifies a link for a provider: the SDK treats puts with the same key as duplicates.
pub type LinkKey = (String, String, String, String, String);

impl InterfaceLinkDefinition {
    pub fn resolve(link: &Link, config: &ConfigStore) -> Self {
        Self {
            source_id: link.source_id.clone(),
            target: link.target.clone(),
            name: link.name.clone(),
            wit_namespace: link.wit_namespace.clone(),
            wit_package: link.wit_package.clone(),
            interfaces: link.interfaces.clone(),
            source_config: merged_config(&link.source_config, config),
            target_config: merged_config(&link.target_config, config),
            source_secrets: None,
            target_secrets: None,
            secret_names: (
                secret_names(&link.source_config),
                secret_names(&link.target_config),
            ),
        }
    }

    pub fn key(&self) -> LinkKey {
        (
            self.source_id.clone(),
            self.target.clone(),
            self.name.clone(),
            self.wit_namespace.clone(),
            self.wit_package.clone(),
        )
    }
}

/// Every current link whose source or target is `provider_id`, by key.
pub fn provider_links(
    provider_id: &str,
    links: &[Link],
    config: &ConfigStore,
) -> BTreeMap<LinkKey, InterfaceLinkDefinition> {
    links
        .iter()
        .filter(|l| l.source_id == provider_id || l.target == provider_id)
        .map(|l| {
            let link = InterfaceLinkDefinition::resolve(l, config);
            (link.key(), link)
        })
        .collect()
}

fn secret_names(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|name| crate::secrets::is_secret(name))
        .cloned()
        .collect()
}

/// Named configurations merged in order (later names win); missing names count as empty.
/// Secret references are left out: providers get their values sealed, apart.
pub fn merged_config(names: &[String], config: &ConfigStore) -> BTreeMap<String, String> {
    names
        .iter()
        .filter(|name| !crate::secrets::is_secret(name))
        .filter_map(|name| config.get(name))
        .flatten()
        .collect()
}

/// Where the host logs the lines its providers print (see `process`).
pub const OUTPUT_TARGET: &str = "trellis_host::provider::output";

/// The host's log level for provider output, from its `tracing` subscriber (`RUST_LOG`): the
/// most detailed level it records for [`OUTPUT_TARGET`]; `None` when it records nothing there.
pub fn log_level() -> Option<&'static str> {
    use tracing::{Level, enabled};
    if enabled!(target: OUTPUT_TARGET, Level::TRACE) {
        Some("trace")
    } else if enabled!(target: OUTPUT_TARGET, Level::DEBUG) {
        Some("debug")
    } else if enabled!(target: OUTPUT_TARGET, Level::INFO) {
        Some("info")
    } else if enabled!(target: OUTPUT_TARGET, Level::WARN) {
        Some("warn")
    } else if enabled!(target: OUTPUT_TARGET, Level::ERROR) {
        Some("error")
    } else {
        None
    }
}

/// The `HostData` of wasmcloud-core 0.21.1, every field.
#[derive(Debug, Serialize)]
pub struct HostData {
    pub host_id: String,
    pub lattice_rpc_prefix: String,
    pub link_name: String,
    pub lattice_rpc_user_jwt: String,
    pub lattice_rpc_user_seed: String,
    pub lattice_rpc_url: String,
    pub provider_key: String,
    pub env_values: BTreeMap<String, String>,
    pub instance_id: String,
    pub link_definitions: Vec<InterfaceLinkDefinition>,
    pub cluster_issuers: Vec<String>,
    pub config: BTreeMap<String, String>,
    /// Name → `{"kind": "String"|"Bytes", "value": …}`, from the secret references in the
    /// provider's config list.
    pub secrets: SecretMap,
    pub host_xkey_public_key: String,
    pub provider_xkey_private_key: String,
    pub default_rpc_timeout_ms: Option<u64>,
    pub structured_logging: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    otel_config: OtelConfig,
}

/// The per-start inputs of [`HostData::new`].
pub struct HostDataParts {
    pub host_id: String,
    pub lattice: String,
    pub nats_url: String,
    pub provider_id: String,
    pub links: Vec<InterfaceLinkDefinition>,
    pub config: BTreeMap<String, String>,
    pub secrets: SecretMap,
    pub host_xkey_public_key: String,
    pub provider_xkey_seed: String,
    pub rpc_timeout_ms: u64,
    pub credentials: RpcCredentials,
    /// `error`…`trace`; `None` leaves the provider at its own default.
    pub log_level: Option<&'static str>,
    /// The host's telemetry settings.
    pub otel_config: OtelConfig,
}

impl HostData {
    /// A fresh instance ID; `secrets` is an empty map when there are none (the SDK refuses
    /// `null`).
    pub fn new(parts: HostDataParts) -> Self {
        Self {
            host_id: parts.host_id,
            lattice_rpc_prefix: parts.lattice,
            link_name: DEFAULT_LINK_NAME.into(),
            lattice_rpc_user_jwt: parts.credentials.jwt,
            lattice_rpc_user_seed: parts.credentials.seed,
            lattice_rpc_url: parts.nats_url,
            provider_key: parts.provider_id,
            env_values: BTreeMap::new(),
            instance_id: uuid::Uuid::new_v4().to_string(),
            link_definitions: parts.links,
            cluster_issuers: Vec::new(),
            config: parts.config,
            secrets: parts.secrets,
            host_xkey_public_key: parts.host_xkey_public_key,
            provider_xkey_private_key: parts.provider_xkey_seed,
            default_rpc_timeout_ms: Some(parts.rpc_timeout_ms),
            structured_logging: false,
            log_level: parts.log_level.map(String::from),
            otel_config: parts.otel_config,
        }
    }

    /// The stdin line: base64 of the JSON, then `\r\n`. The JSON, which may hold secrets, is
    /// zeroed once encoded.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut json = serde_json::to_vec(self)?;
        let mut line = base64::engine::general_purpose::STANDARD
            .encode(&json)
            .into_bytes();
        zeroize::Zeroize::zeroize(&mut json);
        line.extend_from_slice(b"\r\n");
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_line_is_padded_base64_json_with_crlf() {
        let data = HostData::new(HostDataParts {
            host_id: "NHOST".into(),
            lattice: "default".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            provider_id: "p".into(),
            links: Vec::new(),
            config: BTreeMap::from([("k".into(), "v".into())]),
            secrets: SecretMap::new(),
            host_xkey_public_key: "XHOST".into(),
            provider_xkey_seed: "SXP".into(),
            rpc_timeout_ms: 2000,
            credentials: RpcCredentials {
                jwt: "eyJ.jwt".into(),
                seed: "SUSEED".into(),
            },
            log_level: Some("debug"),
            otel_config: crate::telemetry::Observability::default().otel_config(),
        });
        let line = data.encode().unwrap();
        assert!(line.ends_with(b"\r\n"));
        let json = base64::engine::general_purpose::STANDARD
            .decode(&line[..line.len() - 2])
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        for field in [
            "host_id",
            "lattice_rpc_prefix",
            "link_name",
            "lattice_rpc_user_jwt",
            "lattice_rpc_user_seed",
            "lattice_rpc_url",
            "provider_key",
            "env_values",
            "instance_id",
            "link_definitions",
            "cluster_issuers",
            "config",
            "secrets",
            "host_xkey_public_key",
            "provider_xkey_private_key",
            "default_rpc_timeout_ms",
            "structured_logging",
            "otel_config",
        ] {
            assert!(value.get(field).is_some(), "missing {field}");
        }
        assert_eq!(value["provider_key"], "p");
        assert_eq!(value["config"]["k"], "v");
        assert_eq!(value["otel_config"]["protocol"], "Http");
        assert_eq!(value["lattice_rpc_user_jwt"], "eyJ.jwt");
        assert_eq!(value["lattice_rpc_user_seed"], "SUSEED");
        assert_eq!(value["log_level"], "debug");
        assert_eq!(value["secrets"], serde_json::json!({}));
    }
}
