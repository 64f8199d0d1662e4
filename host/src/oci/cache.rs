//! The on-disk cache of pulled manifests, layers and tag resolutions. Entries are checked
//! against their digest on every read, so that a damaged one is fetched again rather than run,
//! and written through a rename, so that concurrent pulls never see half of one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_client::Reference;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::OciError;

/// The on-disk cache (see the [`oci`](super) module docs for the layout).
pub(super) struct Cache {
    root: PathBuf,
}

impl Cache {
    pub(super) fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
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

    pub(super) async fn manifest(&self, digest: &str) -> Result<Option<Vec<u8>>, OciError> {
        Ok(self
            .verified("manifests", digest)
            .await?
            .map(|(_, bytes)| bytes))
    }

    pub(super) async fn blob(
        &self,
        digest: &str,
    ) -> Result<Option<(PathBuf, Arc<[u8]>)>, OciError> {
        Ok(self
            .verified("blobs", digest)
            .await?
            .map(|(path, bytes)| (path, Arc::from(bytes))))
    }

    pub(super) async fn put_manifest(&self, digest: &str, bytes: &[u8]) -> Result<(), OciError> {
        match self.path("manifests", digest) {
            Some(path) => write_atomically(&path, bytes).await.map(drop),
            None => Ok(()),
        }
    }

    pub(super) async fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, OciError> {
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

    pub(super) async fn tag(&self, reference: &Reference, tag: &str) -> Option<String> {
        let digest = tokio::fs::read_to_string(self.tag_path(reference, tag))
            .await
            .ok()?;
        let digest = digest.trim().to_string();
        self.path("manifests", &digest).is_some().then_some(digest)
    }

    pub(super) async fn remember_tag(
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
