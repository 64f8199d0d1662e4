//! OCI artifacts: components and provider archives pulled from registries into an on-disk cache
//! keyed by digest, and pushed to registries (`trellis push`).
//!
//! Cache layout (under [`OciSettings::cache_dir`]):
//! - `blobs/sha256/{hex}`: layer contents, checked against their digest when written and read;
//! - `manifests/sha256/{hex}`: raw manifests, checked likewise;
//! - `tags/{registry}/{repository}/{tag}`: the manifest digest a tag last resolved to.
//!
//! A reference by digest whose manifest and layer are cached is served with no network call.
//! A tag is resolved to its manifest digest on every pull (one HEAD request), so a moved tag is
//! followed, and the layers still come from the cache. When the registry cannot be reached and
//! the tag was resolved before, its last digest is used with a warning. `latest` (also implied
//! by a reference without tag or digest) is refused unless allowed, as wasmCloud does: it
//! would make what runs depend on when it was pulled.
//!
//! The `oci-wasm` crate is not used: its only release for oci-client 0.15 (0.3.0) brings
//! wit-component/wit-parser 0.230, a fifth copy of the wasm tooling in the lock, for a config
//! blob (exports/imports listing) that is optional in the Wasm OCI artifact format.
//!
//! - `cache`: the on-disk cache and its atomic writes.
//! - `error`: [`OciError`], and how oci-client's errors are sorted into it.
//! - `progress`: the progress bar or log lines of a download.
//! - `push`: `trellis push`.

mod cache;
mod error;
mod progress;
mod push;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use error::OciError;
pub use push::{PushOptions, push};

use cache::Cache;
use error::{classify, is_digest_error, with_insecure_hint};
use progress::Progress;

/// Layer of a wasmCloud provider archive.
pub const PROVIDER_ARCHIVE_LAYER: &str = "application/vnd.wasmcloud.provider.archive.layer.v1+par";
/// Config blob of a wasmCloud provider archive.
pub const PROVIDER_ARCHIVE_CONFIG: &str = "application/vnd.wasmcloud.provider.archive.config";
/// wasmCloud's older component layer.
pub const WASMCLOUD_WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The generic OCI layer, accepted for both kinds as wasmCloud does.
pub const OCI_TAR_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// The Wasm OCI artifact layer (CNCF TAG Runtime format).
pub const WASM_LAYER: &str = "application/wasm";
/// The Wasm OCI artifact config blob.
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";

/// What an artifact is, which decides the layer types accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactKind {
    Component,
    ProviderArchive,
}

impl ArtifactKind {
    fn layer_types(self) -> &'static [&'static str] {
        match self {
            Self::Component => &[WASM_LAYER, WASMCLOUD_WASM_LAYER, OCI_TAR_LAYER],
            Self::ProviderArchive => &[PROVIDER_ARCHIVE_LAYER, OCI_TAR_LAYER],
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Component => "component",
            Self::ProviderArchive => "provider archive",
        }
    }
}

/// Where and how artifacts are pulled.
#[derive(Clone, Debug)]
pub struct OciSettings {
    pub cache_dir: PathBuf,
    /// Registries (`host[:port]`) spoken to over plain HTTP, e.g. `localhost:5000`.
    pub allowed_insecure: Vec<String>,
    /// Whether `latest` tags (and references without tag) may be pulled.
    pub allow_latest: bool,
}

impl Default for OciSettings {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            allowed_insecure: Vec::new(),
            allow_latest: false,
        }
    }
}

/// `$XDG_CACHE_HOME/trellis/oci`, `~/.cache/trellis/oci`, or under the temp dir.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("trellis").join("oci")
}

/// Credentials for one registry, as `registry.put` carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredential {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(rename = "registryType", default = "oci_type")]
    pub registry_type: String,
}

fn oci_type() -> String {
    "oci".into()
}

impl RegistryCredential {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: Some(username.into()),
            password: Some(password.into()),
            token: None,
            registry_type: oci_type(),
        }
    }

    fn auth(&self) -> RegistryAuth {
        match (&self.token, &self.username, &self.password) {
            (Some(token), _, _) => RegistryAuth::Bearer(token.clone()),
            (None, Some(user), Some(password)) => {
                RegistryAuth::Basic(user.clone(), password.clone())
            }
            _ => RegistryAuth::Anonymous,
        }
    }
}

/// A pulled artifact: its layer in the cache, and its bytes.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub path: PathBuf,
    pub bytes: Arc<[u8]>,
}

/// Whether a reference names an OCI artifact (`oci://…` or a bare `registry/repo:tag`).
pub fn is_oci_reference(reference: &str) -> bool {
    parse_reference(reference).is_ok()
}

/// Parses `oci://REF` or `REF`; any other scheme is not OCI.
pub fn parse_reference(raw: &str) -> Result<Reference, OciError> {
    let invalid = |reason: &str| OciError::InvalidReference {
        reference: raw.to_string(),
        reason: reason.to_string(),
    };
    let bare = raw.strip_prefix("oci://").unwrap_or(raw);
    if bare.contains("://") {
        return Err(invalid(
            "only oci:// or bare registry/repository:tag references",
        ));
    }
    Reference::try_from(bare).map_err(|e| invalid(&e.to_string()))
}

/// Pulls artifacts through the cache; holds the credentials `registry.put` delivered.
pub struct Oci {
    settings: OciSettings,
    credentials: RwLock<BTreeMap<String, RegistryCredential>>,
}

impl Oci {
    pub fn new(settings: OciSettings) -> Self {
        Self {
            settings,
            credentials: RwLock::default(),
        }
    }

    /// Merges credentials by registry host (`registry.put`); later ones replace earlier.
    pub fn put_credentials(&self, credentials: BTreeMap<String, RegistryCredential>) {
        self.credentials
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(credentials);
    }

    fn auth_for(&self, reference: &Reference) -> RegistryAuth {
        let credentials = self.credentials.read().unwrap_or_else(|e| e.into_inner());
        credentials
            .get(reference.registry())
            .or_else(|| credentials.get(reference.resolve_registry()))
            .map_or(RegistryAuth::Anonymous, RegistryCredential::auth)
    }

    /// Parses `raw` and refuses what this host will not pull (`latest` unless allowed), so
    /// that a control request can be refused before any work starts.
    pub fn check(&self, raw: &str) -> Result<Reference, OciError> {
        let reference = parse_reference(raw)?;
        if !self.settings.allow_latest
            && reference.digest().is_none()
            && reference.tag() == Some("latest")
        {
            return Err(OciError::Latest(raw.to_string()));
        }
        Ok(reference)
    }

    /// Pulls `raw` (from the cache when it can) and checks it holds a `kind` layer.
    pub async fn pull(&self, raw: &str, kind: ArtifactKind) -> Result<Artifact, OciError> {
        let allowed_insecure = &self.settings.allowed_insecure;
        let pulled = self.pull_through_cache(raw, kind).await;
        pulled.map_err(|e| with_insecure_hint(e, allowed_insecure))
    }

    async fn pull_through_cache(
        &self,
        raw: &str,
        kind: ArtifactKind,
    ) -> Result<Artifact, OciError> {
        let reference = self.check(raw)?;
        let cache = Cache::new(&self.settings.cache_dir);
        let client = client(&self.settings.allowed_insecure);
        let auth = self.auth_for(&reference);
        let failed = |error| classify(raw, &reference, error);
        let digest = match reference.digest() {
            Some(digest) => digest.to_string(),
            None => {
                self.resolve_tag(&client, &cache, raw, &reference, &auth)
                    .await?
            }
        };
        let manifest = match cache.manifest(&digest).await? {
            Some(manifest) => manifest,
            None => {
                client
                    .store_auth_if_needed(reference.resolve_registry(), &auth)
                    .await;
                let by_digest = reference.clone_with_digest(digest.clone());
                let (body, _) = client
                    .pull_manifest_raw(&by_digest, &auth, &[OCI_IMAGE_MEDIA_TYPE, DOCKER_MANIFEST])
                    .await
                    .map_err(failed)?;
                cache.put_manifest(&digest, &body).await?;
                body
            }
        };
        let layer = choose_layer(raw, &manifest, kind)?;
        let (path, bytes) = match cache.blob(&layer.digest).await? {
            Some(found) => found,
            None => {
                client
                    .store_auth_if_needed(reference.resolve_registry(), &auth)
                    .await;
                download(&client, &cache, raw, &reference, &layer).await?
            }
        };
        if let Some(tag) = reference.tag().filter(|_| reference.digest().is_none()) {
            cache.remember_tag(&reference, tag, &digest).await?;
        }
        Ok(Artifact { path, bytes })
    }

    /// The manifest digest a tag names now, or, with the registry unreachable, the last one
    /// seen.
    async fn resolve_tag(
        &self,
        client: &Client,
        cache: &Cache,
        raw: &str,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<String, OciError> {
        let error = match client.fetch_manifest_digest(reference, auth).await {
            Ok(digest) => return Ok(digest),
            Err(error) => classify(raw, reference, error),
        };
        if let OciError::Unreachable { detail, .. } = &error
            && let Some(tag) = reference.tag()
            && let Some(digest) = cache.tag(reference, tag).await
        {
            tracing::warn!(reference = raw, %digest, "registry unreachable ({detail}); using the digest this tag had at its last pull");
            return Ok(digest);
        }
        Err(error)
    }
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn client(allowed_insecure: &[String]) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(allowed_insecure.to_vec()),
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        ..ClientConfig::default()
    })
}

/// The layer of `kind` in a manifest (its first of an accepted type).
fn choose_layer(raw: &str, manifest: &[u8], kind: ArtifactKind) -> Result<OciDescriptor, OciError> {
    let unusable = |detail: String| OciError::Unusable {
        reference: raw.to_string(),
        detail,
    };
    let manifest: OciImageManifest = serde_json::from_slice(manifest).map_err(|e| {
        unusable(format!(
            "not a single-artifact image manifest (an image index is not supported): {e}"
        ))
    })?;
    let accepted = kind.layer_types();
    if let Some(layer) = manifest
        .layers
        .iter()
        .find(|l| accepted.contains(&l.media_type.as_str()))
    {
        return Ok(layer.clone());
    }
    let found: Vec<&str> = manifest
        .layers
        .iter()
        .map(|l| l.media_type.as_str())
        .collect();
    Err(unusable(format!(
        "no {} layer: found [{}], expected one of [{}]",
        kind.noun(),
        found.join(", "),
        accepted.join(", ")
    )))
}

/// Streams a layer into the cache, hashing as it goes, with progress.
async fn download(
    client: &Client,
    cache: &Cache,
    raw: &str,
    reference: &Reference,
    layer: &OciDescriptor,
) -> Result<(PathBuf, Arc<[u8]>), OciError> {
    let mut stream = client
        .pull_blob_stream(reference, layer)
        .await
        .map_err(|e| classify(raw, reference, e))?;
    let total = stream
        .content_length
        .unwrap_or(u64::try_from(layer.size).unwrap_or(0));
    let progress = Progress::start(raw, &layer.digest, total);
    let mut bytes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.stream.next().await {
        match chunk {
            Ok(chunk) => {
                hasher.update(&chunk);
                bytes.extend_from_slice(&chunk);
                progress.advance(chunk.len());
            }
            // oci-client checks the digest at the end of the stream; its verdict and ours agree.
            Err(error) if is_digest_error(&error) => break,
            Err(error) => {
                progress.abandon();
                return Err(OciError::Unreachable {
                    reference: raw.to_string(),
                    registry: reference.registry().to_string(),
                    detail: format!("download interrupted: {error}"),
                    hint: String::new(),
                });
            }
        }
    }
    let actual = format!("sha256:{:x}", hasher.finalize());
    if actual != layer.digest {
        progress.abandon();
        return Err(OciError::DigestMismatch {
            reference: raw.to_string(),
            expected: layer.digest.clone(),
            actual,
        });
    }
    progress.finish();
    let path = cache.put_blob(&layer.digest, &bytes).await?;
    Ok((path, Arc::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert!(is_oci_reference("ghcr.io/wasmcloud/http-server:0.27.0"));
        assert!(is_oci_reference("oci://localhost:5000/a/b:1"));
        assert!(!is_oci_reference("file:///a/b.wasm"));
        assert!(!is_oci_reference("wasmcloud+builtin://http-server"));
        let latest = parse_reference("localhost:5000/a").unwrap();
        assert_eq!(latest.tag(), Some("latest"));
        assert_eq!(latest.registry(), "localhost:5000");
    }

    fn manifest(layer_type: &str) -> Vec<u8> {
        let manifest = OciImageManifest {
            layers: vec![OciDescriptor {
                media_type: layer_type.into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                size: 1,
                ..OciDescriptor::default()
            }],
            ..OciImageManifest::default()
        };
        serde_json::to_vec(&manifest).unwrap()
    }

    #[test]
    fn wasmcloud_layer_types_are_accepted_per_kind() {
        use ArtifactKind::{Component, ProviderArchive};
        for (layer, kind) in [
            (WASM_LAYER, Component),
            (WASMCLOUD_WASM_LAYER, Component),
            (OCI_TAR_LAYER, Component),
            (PROVIDER_ARCHIVE_LAYER, ProviderArchive),
            (OCI_TAR_LAYER, ProviderArchive),
        ] {
            assert!(choose_layer("r", &manifest(layer), kind).is_ok(), "{layer}");
        }
        let refused = choose_layer("r", &manifest(WASM_LAYER), ProviderArchive).unwrap_err();
        assert!(
            refused.to_string().contains("no provider archive layer"),
            "{refused}"
        );
    }

    #[test]
    fn credentials_decode_as_wasmcloud_sends_them() {
        let decoded: BTreeMap<String, RegistryCredential> = serde_json::from_str(
            r#"{"localhost:5000":{"username":"u","password":"p","registryType":"oci"}}"#,
        )
        .unwrap();
        assert_eq!(
            decoded["localhost:5000"],
            RegistryCredential::basic("u", "p")
        );
    }
}
