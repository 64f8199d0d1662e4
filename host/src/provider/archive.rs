//! Finding a provider's executable from its `provider.start` reference.
//!
//! A `file://` reference names either a provider archive (PAR: a tar, optionally gzipped, with a
//! signed `claims.jwt` and one `{arch}-{os}.bin` per target), read with the `provider-archive`
//! crate, or — an extension over the reference host — a plain executable run in place. The
//! archive's claims are validated (signature, validity window, binary hashes) and the binary for
//! this machine is extracted to a cache directory with mode 0755. An OCI reference is pulled
//! through [`crate::oci`] and must be a provider archive, as in wasmCloud.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use provider_archive::ProviderArchive;
use serde::Serialize;
use wascap::jwt::{CapabilityProvider, validate_token};

use crate::oci::{ArtifactKind, Oci, OciError};

use crate::store::{StoredClaims, StoredProviderClaims};

/// The claims of a provider archive, as events and the inventory report them.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderClaims {
    pub issuer: String,
    pub name: String,
    pub version: String,
    #[serde(skip)]
    pub revision: i32,
    /// Tags are not part of provider claims; kept for the event shape.
    pub tags: Option<Vec<String>>,
    pub not_before_human: String,
    pub expires_human: String,
    /// The provider's own key (`V…`), the claims' subject.
    #[serde(skip)]
    pub subject: String,
    /// The JSON schema of the provider's configuration, as JSON text.
    #[serde(skip)]
    pub config_schema: Option<String>,
    /// The claims token itself: the provider's identity towards secrets backends.
    #[serde(skip)]
    pub jwt: String,
}

impl ProviderClaims {
    /// What is stored under `CLAIMS_{subject}` for `claims.get`.
    pub fn stored(&self) -> StoredClaims {
        StoredClaims::Provider(StoredProviderClaims {
            issuer: self.issuer.clone(),
            name: self.name.clone(),
            revision: self.revision.to_string(),
            subject: self.subject.clone(),
            version: self.version.clone(),
            config_schema: self.config_schema.clone(),
        })
    }
}

/// A runnable provider binary and, for archives, its claims.
#[derive(Clone, Debug)]
pub struct Executable {
    pub path: PathBuf,
    pub claims: Option<ProviderClaims>,
}

/// Why a reference does not give a runnable provider.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "provider reference `{0}` is not supported: use file:///path/to/provider.par.gz (a \
         provider archive), file:///path/to/executable, or an OCI reference to a provider archive"
    )]
    Unsupported(String),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error("`{0}` is not a provider archive (OCI references must name one)")]
    NotAnArchive(String),
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is neither a provider archive (tar or tar.gz) nor an executable")]
    UnknownFormat { path: PathBuf },
    #[error("{path} is not executable (set its execute permission)")]
    NotExecutable { path: PathBuf },
    #[error("provider archive {path} is invalid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("provider archive {path} has no binary for {target}")]
    NoTarget { path: PathBuf, target: String },
    #[error("provider archive {path} has invalid claims: {reason}")]
    Claims { path: PathBuf, reason: String },
    #[error("extracting the provider binary to {path}: {source}")]
    Extract { path: PathBuf, source: io::Error },
}

/// This machine's archive target, `{arch}-{os}` (e.g. `x86_64-linux`).
pub fn target() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// The local path of a `file://` reference.
fn file_path(reference: &str) -> Result<PathBuf, ArchiveError> {
    reference
        .strip_prefix("file://")
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .ok_or_else(|| ArchiveError::Unsupported(reference.to_string()))
}

/// Resolves `reference` to an executable; archives are extracted under `cache_dir`.
pub async fn resolve(
    reference: &str,
    cache_dir: &Path,
    oci: &Oci,
) -> Result<Executable, ArchiveError> {
    if !reference.starts_with("file://") {
        let artifact = oci.pull(reference, ArtifactKind::ProviderArchive).await?;
        if !is_archive(&artifact.bytes[..artifact.bytes.len().min(512)]) {
            return Err(ArchiveError::NotAnArchive(reference.to_string()));
        }
        return extract(&artifact.path, reference, cache_dir).await;
    }
    let path = file_path(reference)?;
    let io_error = |source| ArchiveError::Io {
        path: path.clone(),
        source,
    };
    let head = read_head(&path).await.map_err(io_error)?;
    if is_archive(&head) {
        return extract(&path, reference, cache_dir).await;
    }
    if !(head.starts_with(b"\x7fELF") || head.starts_with(b"#!")) {
        return Err(ArchiveError::UnknownFormat { path });
    }
    let mode = tokio::fs::metadata(&path)
        .await
        .map_err(io_error)?
        .permissions()
        .mode();
    if mode & 0o111 == 0 {
        return Err(ArchiveError::NotExecutable { path });
    }
    Ok(Executable { path, claims: None })
}

/// The first 512 bytes (a tar header's size) of `path`, or fewer for a shorter file.
async fn read_head(path: &Path) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::with_capacity(512);
    tokio::fs::File::open(path)
        .await?
        .take(512)
        .read_to_end(&mut head)
        .await?;
    Ok(head)
}

/// Gzip magic, or the POSIX tar magic at offset 257.
fn is_archive(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b]) || head.get(257..262) == Some(b"ustar".as_slice())
}

async fn extract(
    path: &Path,
    reference: &str,
    cache_dir: &Path,
) -> Result<Executable, ArchiveError> {
    let target = target();
    let par = ProviderArchive::try_load_target_from_file(path, &target)
        .await
        .map_err(|e| ArchiveError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let claims = claims(&par).map_err(|reason| ArchiveError::Claims {
        path: path.to_path_buf(),
        reason,
    })?;
    let bytes = par
        .target_bytes(&target)
        .ok_or_else(|| ArchiveError::NoTarget {
            path: path.to_path_buf(),
            target: target.clone(),
        })?;
    let file = cache_dir.join(cache_name(reference));
    write_executable(&file, &bytes)
        .await
        .map_err(|source| ArchiveError::Extract {
            path: file.clone(),
            source,
        })?;
    Ok(Executable {
        path: file,
        claims: Some(claims),
    })
}

/// Validates the archive's claims token: signature, validity window, and that it is present.
fn claims(par: &ProviderArchive) -> Result<ProviderClaims, String> {
    let token = par.claims_token().ok_or("no claims.jwt")?;
    let validation = validate_token::<CapabilityProvider>(&token.jwt).map_err(|e| e.to_string())?;
    if !validation.signature_valid {
        return Err("the claims signature does not verify".into());
    }
    if validation.expired {
        return Err(format!("the claims expired ({})", validation.expires_human));
    }
    if validation.cannot_use_yet {
        return Err(format!(
            "the claims are not valid yet ({})",
            validation.not_before_human
        ));
    }
    let metadata = token.claims.metadata.as_ref();
    Ok(ProviderClaims {
        issuer: token.claims.issuer.clone(),
        name: token.claims.name(),
        version: metadata.and_then(|m| m.ver.clone()).unwrap_or_default(),
        revision: metadata.and_then(|m| m.rev).unwrap_or_default(),
        tags: None,
        not_before_human: validation.not_before_human,
        expires_human: validation.expires_human,
        subject: token.claims.subject.clone(),
        config_schema: metadata
            .and_then(|m| m.config_schema.as_ref())
            .map(ToString::to_string),
        jwt: token.jwt.clone(),
    })
}

/// The cache file name of a reference: lowercased, non-alphanumerics replaced by `_`.
fn cache_name(reference: &str) -> String {
    reference
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes through a temporary file and renames it into place, so that a binary still running
/// from an earlier extraction is replaced rather than overwritten (which Linux refuses).
async fn write_executable(file: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = file.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let temporary = file.with_extension(format!("tmp{}", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&temporary, bytes).await?;
    tokio::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o755)).await?;
    tokio::fs::rename(&temporary, file).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_names() {
        assert_eq!(
            file_path("file:///srv/p.par.gz").unwrap(),
            PathBuf::from("/srv/p.par.gz")
        );
        assert!(matches!(
            file_path("ghcr.io/wasmcloud/http-server:0.27.0"),
            Err(ArchiveError::Unsupported(_))
        ));
        assert!(file_path("file://relative").is_err());
        assert_eq!(cache_name("file:///A/b.par.gz"), "file____a_b_par_gz");
        assert!(is_archive(&[0x1f, 0x8b, 8]));
        assert!(!is_archive(b"\x7fELF"));
    }
}
