//! Which `file://` references a host loads. Any control client can name a path, so by default
//! none is read (as wasmCloud's `--allow-file-load` defaults to off): the operator allows all of
//! them, or the directories under which they may lie (`trellis up` and `trellis dev` allow the
//! directories they deploy from).

use std::path::{Path, PathBuf};

/// The host's file policy.
#[derive(Clone, Debug, Default)]
pub struct FilePolicy {
    /// Load any `file://` reference (`--allow-file-load`).
    pub allow_all: bool,
    /// Load `file://` references under these directories (`--allow-file-root`).
    pub roots: Vec<PathBuf>,
}

/// Why a `file://` reference was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileRefused {
    #[error(
        "loading `{reference}` is refused: this host loads files only when started with \
         --allow-file-load, or under a --allow-file-root directory{roots}"
    )]
    NotAllowed { reference: String, roots: String },
    #[error("`{reference}` is not an absolute file:///path")]
    NotAbsolute { reference: String },
}

impl FilePolicy {
    /// Anything may be loaded: for embedders (tests, `trellis up`) that trust their callers.
    pub fn allow_all() -> Self {
        Self {
            allow_all: true,
            roots: Vec::new(),
        }
    }

    /// Checks a `file://` reference: its path must be absolute and, unless all files are
    /// allowed, lie under an allowed root once symbolic links are resolved (a link cannot lead
    /// out of a root). A path that does not exist passes here and fails when it is read.
    pub fn check(&self, reference: &str) -> Result<(), FileRefused> {
        let path = reference
            .strip_prefix("file://")
            .filter(|path| path.starts_with('/'))
            .map(Path::new)
            .ok_or_else(|| FileRefused::NotAbsolute {
                reference: reference.to_string(),
            })?;
        if self.allow_all {
            return Ok(());
        }
        let resolved = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let allowed = self.roots.iter().any(|root| {
            let root = root.canonicalize().unwrap_or_else(|_| root.clone());
            resolved.starts_with(&root)
        });
        if allowed {
            return Ok(());
        }
        let roots = match self.roots.as_slice() {
            [] => " (none is allowed)".to_string(),
            roots => format!(
                " ({})",
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Err(FileRefused::NotAllowed {
            reference: reference.to_string(),
            roots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_load_only_where_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("c.wasm");
        std::fs::write(&inside, b"").unwrap();
        let reference = format!("file://{}", inside.display());

        let denied = FilePolicy::default().check(&reference).unwrap_err();
        assert!(denied.to_string().contains("--allow-file-load"), "{denied}");
        assert!(FilePolicy::allow_all().check(&reference).is_ok());
        let rooted = FilePolicy {
            allow_all: false,
            roots: vec![dir.path().to_path_buf()],
        };
        assert!(rooted.check(&reference).is_ok());
        assert!(rooted.check("file:///etc/shadow").is_err());

        // A symbolic link inside the root does not lead out of it.
        let link = dir.path().join("escape.wasm");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        assert!(rooted.check(&format!("file://{}", link.display())).is_err());
        assert!(rooted.check("file://relative.wasm").is_err());
    }
}
