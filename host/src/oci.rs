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

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciEnvelope, OciErrorCode};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

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

/// Why an artifact could not be pulled or pushed. Each names the reference.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("`{reference}` is not a valid OCI reference: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error(
        "`{0}` uses the `latest` tag (implied when no tag is given), which this host refuses: \
         pin a version or a digest, or start the host with --allow-latest"
    )]
    Latest(String),
    #[error("`{reference}`: not found in the registry ({detail})")]
    NotFound { reference: String, detail: String },
    #[error("`{reference}`: registry {registry} is unreachable ({detail}){hint}")]
    Unreachable {
        reference: String,
        registry: String,
        detail: String,
        /// How to reach a plain-HTTP registry, when that may be the cause.
        hint: String,
    },
    #[error("`{reference}`: the registry refused access ({detail}); check the credentials")]
    Unauthorized { reference: String, detail: String },
    #[error(
        "`{reference}`: layer {expected} does not match its digest (the content hashes to {actual})"
    )]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("`{reference}`: {detail}")]
    Unusable { reference: String, detail: String },
    #[error("`{reference}`: the registry answered with an error: {detail}")]
    Registry { reference: String, detail: String },
    #[error("OCI cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// Suggests `--allowed-insecure` for an unreachable registry that is spoken to over HTTPS: a
/// plain-HTTP registry (the usual local one) looks unreachable then.
fn with_insecure_hint(error: OciError, allowed_insecure: &[String]) -> OciError {
    match error {
        OciError::Unreachable {
            reference,
            registry,
            detail,
            hint,
        } if hint.is_empty() && !allowed_insecure.contains(&registry) => OciError::Unreachable {
            hint: format!(
                "; for a plain-HTTP registry, use --allowed-insecure {registry} (or --insecure \
                 with trellis push)"
            ),
            reference,
            registry,
            detail,
        },
        other => other,
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

fn is_digest_error(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<DigestError>().is_some())
}

/// Turns an oci-client error into the one-line reason operators act on.
fn classify(raw: &str, reference: &Reference, error: OciDistributionError) -> OciError {
    let reference_text = raw.to_string();
    match error {
        OciDistributionError::RegistryError { envelope, .. } => {
            let detail = envelope_text(&envelope);
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                OciError::NotFound {
                    reference: reference_text,
                    detail,
                }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                OciError::Unauthorized {
                    reference: reference_text,
                    detail,
                }
            } else {
                OciError::Registry {
                    reference: reference_text,
                    detail,
                }
            }
        }
        OciDistributionError::ImageManifestNotFoundError(detail) => OciError::NotFound {
            reference: reference_text,
            detail,
        },
        OciDistributionError::ServerError {
            code: 404, message, ..
        } => OciError::NotFound {
            reference: reference_text,
            detail: server_text(404, &message),
        },
        OciDistributionError::ServerError {
            code: code @ (401 | 403),
            message,
            ..
        } => OciError::Unauthorized {
            reference: reference_text,
            detail: server_text(code, &message),
        },
        OciDistributionError::AuthenticationFailure(message) => OciError::Unauthorized {
            reference: reference_text,
            detail: message.trim().to_string(),
        },
        OciDistributionError::UnauthorizedError { url } => OciError::Unauthorized {
            reference: reference_text,
            detail: format!("401 from {url}"),
        },
        OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) => {
            OciError::DigestMismatch {
                reference: reference_text,
                expected,
                actual,
            }
        }
        OciDistributionError::RequestError(error)
            if error.is_connect() || error.is_timeout() || error.is_request() =>
        {
            OciError::Unreachable {
                reference: reference_text,
                registry: reference.registry().to_string(),
                detail: error_chain(&error),
                hint: String::new(),
            }
        }
        other => OciError::Registry {
            reference: reference_text,
            detail: error_chain(&other),
        },
    }
}

fn envelope_text(envelope: &OciEnvelope) -> String {
    envelope
        .errors
        .iter()
        .map(|e| format!("{:?}: {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An HTTP error body on one line: its OCI error envelope's messages, or the text itself.
fn server_text(code: u16, body: &str) -> String {
    match serde_json::from_str::<OciEnvelope>(body) {
        Ok(envelope) if !envelope.errors.is_empty() => {
            format!("HTTP {code}, {}", envelope_text(&envelope))
        }
        _ if body.trim().is_empty() => format!("HTTP {code}"),
        _ => format!("HTTP {code}, {}", body.trim()),
    }
}

/// An error and its sources on one line (reqwest hides the useful part in the sources).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The on-disk cache (see the module docs for the layout).
struct Cache {
    root: PathBuf,
}

impl Cache {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
        move |source| OciError::Cache {
            path: path.to_path_buf(),
            source,
        }
    }

    /// `{kind}/sha256/{hex}`; `None` for digests that are not well-formed sha256.
    fn path(&self, kind: &str, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.root.join(kind).join("sha256").join(hex))
    }

    /// The content stored under `digest`, if it is there and still matches it; a damaged
    /// entry is removed so that it is fetched again.
    async fn verified(
        &self,
        kind: &str,
        digest: &str,
    ) -> Result<Option<(PathBuf, Vec<u8>)>, OciError> {
        let Some(path) = self.path(kind, digest) else {
            return Ok(None);
        };
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io(&path)(e)),
        };
        if format!("sha256:{:x}", Sha256::digest(&bytes)) != digest {
            tracing::warn!(path = %path.display(), "cached OCI content does not match its digest; fetching it again");
            tokio::fs::remove_file(&path)
                .await
                .map_err(Self::io(&path))?;
            return Ok(None);
        }
        Ok(Some((path, bytes)))
    }

    async fn manifest(&self, digest: &str) -> Result<Option<Vec<u8>>, OciError> {
        Ok(self
            .verified("manifests", digest)
            .await?
            .map(|(_, bytes)| bytes))
    }

    async fn blob(&self, digest: &str) -> Result<Option<(PathBuf, Arc<[u8]>)>, OciError> {
        Ok(self
            .verified("blobs", digest)
            .await?
            .map(|(path, bytes)| (path, Arc::from(bytes))))
    }

    async fn put_manifest(&self, digest: &str, bytes: &[u8]) -> Result<(), OciError> {
        match self.path("manifests", digest) {
            Some(path) => write_atomically(&path, bytes).await.map(drop),
            None => Ok(()),
        }
    }

    async fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, OciError> {
        let path = self.path("blobs", digest).ok_or_else(|| OciError::Cache {
            path: self.root.join("blobs"),
            source: std::io::Error::other(format!("unsupported digest {digest}")),
        })?;
        write_atomically(&path, bytes).await
    }

    fn tag_path(&self, reference: &Reference, tag: &str) -> PathBuf {
        let safe = |s: &str| s.replace(['/', ':', '\\'], "_");
        self.root
            .join("tags")
            .join(safe(reference.registry()))
            .join(safe(reference.repository()))
            .join(safe(tag))
    }

    async fn tag(&self, reference: &Reference, tag: &str) -> Option<String> {
        let digest = tokio::fs::read_to_string(self.tag_path(reference, tag))
            .await
            .ok()?;
        let digest = digest.trim().to_string();
        self.path("manifests", &digest).is_some().then_some(digest)
    }

    async fn remember_tag(
        &self,
        reference: &Reference,
        tag: &str,
        digest: &str,
    ) -> Result<(), OciError> {
        write_atomically(&self.tag_path(reference, tag), digest.as_bytes())
            .await
            .map(drop)
    }
}

/// Writes through a temporary file and a rename, so concurrent pulls never see half a file.
async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<PathBuf, OciError> {
    let io = Cache::io(path);
    let written = async {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let temporary = path.with_extension(format!("tmp{}", uuid::Uuid::new_v4().simple()));
        let mut file = tokio::fs::File::create(&temporary).await?;
        file.write_all(bytes).await?;
        file.flush().await?;
        drop(file);
        tokio::fs::rename(&temporary, path).await
    };
    written.await.map_err(io)?;
    Ok(path.to_path_buf())
}

/// Download progress: a bar when stderr is a terminal, log lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    reference: String,
    digest: String,
    started: Instant,
}

impl Progress {
    fn start(reference: &str, digest: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("pulling {reference}"));
            bar
        });
        if bar.is_none() {
            tracing::info!(reference, digest, bytes = total, "pulling OCI layer");
        }
        Self {
            bar,
            reference: reference.to_string(),
            digest: digest.to_string(),
            started: Instant::now(),
        }
    }

    fn advance(&self, bytes: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes as u64);
        }
    }

    fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::info!(
            reference = %self.reference,
            digest = %self.digest,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "pulled OCI layer"
        );
    }
}

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
