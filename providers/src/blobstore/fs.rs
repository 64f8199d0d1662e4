//! The filesystem blobstore backend: containers are directories under a root, objects are files.
//!
//! Names were already checked to be plain relative paths; on top of that every path is resolved
//! here (following symlinks) and refused unless it stays inside the canonical root, so a symlink
//! planted in the tree cannot lead reads, writes or deletes outside it. (A symlink swapped in
//! between the check and the use is not defended against.)

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::builtin::BlobConfigError;
use super::{BlobError, Meta, seconds};

/// At most this many entries are listed from one container.
const MAX_LISTED: usize = 100_000;
/// Deepest directory nesting walked when listing.
const MAX_DEPTH: usize = 32;

pub(super) struct FsStore {
    root: PathBuf,
}

fn io(error: std::io::Error) -> BlobError {
    BlobError::Io(error.to_string())
}

impl FsStore {
    /// Creates `root` if missing and remembers its canonical path.
    pub async fn open(root: &Path) -> Result<Self, BlobConfigError> {
        let failed = |e: std::io::Error| BlobConfigError::Root {
            path: root.display().to_string(),
            message: e.to_string(),
        };
        tokio::fs::create_dir_all(root).await.map_err(failed)?;
        let root = tokio::fs::canonicalize(root).await.map_err(failed)?;
        Ok(Self { root })
    }

    /// The canonical form of `path` (which must exist), if it is inside the root.
    async fn confined(&self, path: &Path, name: &str) -> Result<PathBuf, BlobError> {
        let resolved = tokio::fs::canonicalize(path).await.map_err(io)?;
        if resolved.starts_with(&self.root) && resolved != self.root {
            Ok(resolved)
        } else {
            Err(BlobError::Escape(name.to_string()))
        }
    }

    /// The container's directory, resolved; `NoSuchContainer` when it does not exist.
    async fn container_dir(&self, container: &str) -> Result<PathBuf, BlobError> {
        let path = self.root.join(container);
        match tokio::fs::symlink_metadata(&path).await {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(BlobError::NoSuchContainer(container.to_string()));
            }
            Err(e) => return Err(io(e)),
            Ok(_) => {}
        }
        let dir = self.confined(&path, container).await?;
        if dir.parent() != Some(&self.root) || !dir.is_dir() {
            return Err(BlobError::Escape(container.to_string()));
        }
        Ok(dir)
    }

    /// An existing object's file, resolved.
    async fn object_file(&self, container: &str, object: &str) -> Result<PathBuf, BlobError> {
        let dir = self.container_dir(container).await?;
        let path = dir.join(object);
        match tokio::fs::symlink_metadata(&path).await {
            Err(e) if e.kind() == ErrorKind::NotFound => Err(BlobError::NoSuchObject {
                container: container.to_string(),
                object: object.to_string(),
            }),
            Err(e) => Err(io(e)),
            Ok(_) => {
                let file = self.confined(&path, object).await?;
                if file.starts_with(&dir) {
                    Ok(file)
                } else {
                    Err(BlobError::Escape(object.to_string()))
                }
            }
        }
    }

    pub async fn create_container(&self, name: &str) -> Result<(), BlobError> {
        match tokio::fs::create_dir(self.root.join(name)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Err(BlobError::ContainerExists(name.to_string()))
            }
            Err(e) => Err(io(e)),
        }
    }

    pub async fn delete_container(&self, name: &str) -> Result<(), BlobError> {
        let dir = self.container_dir(name).await?;
        tokio::fs::remove_dir_all(dir).await.map_err(io)
    }

    pub async fn container_info(&self, name: &str) -> Result<Meta, BlobError> {
        let dir = self.container_dir(name).await?;
        let meta = tokio::fs::metadata(dir).await.map_err(io)?;
        Ok(Meta {
            created_at: seconds(meta.created().or_else(|_| meta.modified()).map_err(io)?),
            size: 0,
        })
    }

    pub async fn write(&self, container: &str, object: &str, data: Bytes) -> Result<(), BlobError> {
        let dir = self.container_dir(container).await?;
        let path = dir.join(object);
        // Create the object's parent directories one level at a time, checking each level
        // before going below it, so no directory is ever created outside the container.
        let mut parent = dir.clone();
        if let Some(relative_parent) = Path::new(object).parent() {
            for segment in relative_parent.iter() {
                parent.push(segment);
                match tokio::fs::create_dir(&parent).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io(e)),
                }
                let resolved = self.confined(&parent, object).await?;
                if !resolved.starts_with(&dir) || !resolved.is_dir() {
                    return Err(BlobError::Escape(object.to_string()));
                }
            }
        }
        if tokio::fs::symlink_metadata(&path).await.is_ok() {
            let existing = self.confined(&path, object).await?;
            if !existing.starts_with(&dir) {
                return Err(BlobError::Escape(object.to_string()));
            }
        }
        tokio::fs::write(&path, &data).await.map_err(io)
    }

    pub async fn read(&self, container: &str, object: &str) -> Result<Bytes, BlobError> {
        let file = self.object_file(container, object).await?;
        Ok(tokio::fs::read(file).await.map_err(io)?.into())
    }

    pub async fn object_info(&self, container: &str, object: &str) -> Result<Meta, BlobError> {
        let file = self.object_file(container, object).await?;
        let meta = tokio::fs::metadata(file).await.map_err(io)?;
        if !meta.is_file() {
            return Err(BlobError::NoSuchObject {
                container: container.to_string(),
                object: object.to_string(),
            });
        }
        Ok(Meta {
            created_at: seconds(meta.created().or_else(|_| meta.modified()).map_err(io)?),
            size: meta.len(),
        })
    }

    pub async fn delete_object(&self, container: &str, object: &str) -> Result<(), BlobError> {
        match self.object_file(container, object).await {
            Ok(file) => tokio::fs::remove_file(file).await.map_err(io),
            // Deleting what is not there is not an error.
            Err(BlobError::NoSuchObject { .. }) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Regular files under the container (symlinks are not followed nor listed), sorted.
    pub async fn list(&self, container: &str) -> Result<Vec<String>, BlobError> {
        let dir = self.container_dir(container).await?;
        let mut names = Vec::new();
        let mut pending = vec![(dir.clone(), 0usize)];
        while let Some((current, depth)) = pending.pop() {
            let mut entries = tokio::fs::read_dir(&current).await.map_err(io)?;
            while let Some(entry) = entries.next_entry().await.map_err(io)? {
                if names.len() >= MAX_LISTED {
                    break;
                }
                let kind = entry.file_type().await.map_err(io)?;
                let path = entry.path();
                if kind.is_dir() && depth + 1 < MAX_DEPTH {
                    pending.push((path, depth + 1));
                } else if kind.is_file()
                    && let Ok(relative) = path.strip_prefix(&dir)
                    && let Some(name) = relative.to_str()
                {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }
}
