//! `trellis push`: a component or provider archive published as a single-layer OCI artifact,
//! with the media types pulls accept, so that what is pushed can be pulled back.

use std::path::Path;

use oci_client::RegistryOperation;
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};

use super::cache::Cache;
use super::error::{classify, with_insecure_hint};
use super::{
    OciError, PROVIDER_ARCHIVE_CONFIG, PROVIDER_ARCHIVE_LAYER, RegistryCredential, WASM_CONFIG,
    WASM_LAYER, client, parse_reference,
};

/// How `trellis push` reaches the registry.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// Registries spoken to over plain HTTP.
    pub allowed_insecure: Vec<String>,
    pub credential: Option<RegistryCredential>,
}

/// Publishes a component (`.wasm`, Wasm OCI artifact types) or a provider archive (tar or
/// tar.gz, wasmCloud's provider types) under `raw`; returns the manifest digest.
pub async fn push(file: &Path, raw: &str, options: &PushOptions) -> Result<String, OciError> {
    let pushed = push_manifest_and_blobs(file, raw, options).await;
    pushed.map_err(|e| with_insecure_hint(e, &options.allowed_insecure))
}

async fn push_manifest_and_blobs(
    file: &Path,
    raw: &str,
    options: &PushOptions,
) -> Result<String, OciError> {
    let reference = parse_reference(raw)?;
    let data = tokio::fs::read(file).await.map_err(Cache::io(file))?;
    let (layer_type, config_type, config) = describe(raw, &data)?;
    let layer_digest = format!("sha256:{:x}", Sha256::digest(&data));
    let config = match config {
        Some(mut config) => {
            config["layerDigests"] = serde_json::json!([layer_digest]);
            serde_json::to_vec(&config).expect("a JSON value serializes")
        }
        None => b"{}".to_vec(),
    };
    let config_digest = format!("sha256:{:x}", Sha256::digest(&config));
    let manifest = OciImageManifest {
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
        config: OciDescriptor {
            media_type: config_type.into(),
            digest: config_digest.clone(),
            size: config.len() as i64,
            ..OciDescriptor::default()
        },
        layers: vec![OciDescriptor {
            media_type: layer_type.into(),
            digest: layer_digest.clone(),
            size: data.len() as i64,
            ..OciDescriptor::default()
        }],
        ..OciImageManifest::default()
    };
    let body = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let digest = format!("sha256:{:x}", Sha256::digest(&body));
    let client = client(&options.allowed_insecure);
    let auth = options
        .credential
        .as_ref()
        .map_or(RegistryAuth::Anonymous, RegistryCredential::auth);
    let failed = |error| classify(raw, &reference, error);
    client
        .auth(&reference, &auth, RegistryOperation::Push)
        .await
        .map_err(failed)?;
    tracing::info!(reference = raw, bytes = data.len(), "pushing");
    client
        .push_blob(&reference, &data, &layer_digest)
        .await
        .map_err(failed)?;
    client
        .push_blob(&reference, &config, &config_digest)
        .await
        .map_err(failed)?;
    let content_type = OCI_IMAGE_MEDIA_TYPE.parse().expect("a valid header value");
    client
        .push_manifest_raw(&reference, body, content_type)
        .await
        .map_err(failed)?;
    Ok(digest)
}

/// The layer type, config type and (for components) config of a file to push.
fn describe(
    raw: &str,
    data: &[u8],
) -> Result<(&'static str, &'static str, Option<serde_json::Value>), OciError> {
    if let Some(version) = data.strip_prefix(b"\0asm").and_then(|rest| rest.get(..4)) {
        // Core modules are version 1; components carry layer 1 in the upper half.
        let os = if version == [1, 0, 0, 0] {
            "wasip1"
        } else {
            "wasip2"
        };
        let created = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let config = serde_json::json!({
            "created": created,
            "architecture": "wasm",
            "os": os,
            "layerDigests": [],
        });
        return Ok((WASM_LAYER, WASM_CONFIG, Some(config)));
    }
    let gzip = data.starts_with(&[0x1f, 0x8b]);
    let tar = data.get(257..262) == Some(b"ustar".as_slice());
    if gzip || tar {
        return Ok((PROVIDER_ARCHIVE_LAYER, PROVIDER_ARCHIVE_CONFIG, None));
    }
    Err(OciError::Unusable {
        reference: raw.to_string(),
        detail: "the file is neither a WebAssembly component or module nor a provider archive \
                 (tar or tar.gz)"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_files_are_told_apart() {
        let component = describe("r", b"\0asm\x0d\0\x01\0rest").unwrap();
        assert_eq!(
            (component.0, component.2.unwrap()["os"].as_str()),
            (WASM_LAYER, Some("wasip2"))
        );
        let module = describe("r", b"\0asm\x01\0\0\0rest").unwrap();
        assert_eq!(module.2.unwrap()["os"], "wasip1");
        assert_eq!(
            describe("r", &[0x1f, 0x8b, 8, 0]).unwrap().0,
            PROVIDER_ARCHIVE_LAYER
        );
        assert!(describe("r", b"#!/bin/sh").is_err());
    }
}
