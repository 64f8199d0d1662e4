//! Watching a project's sources for `trellis dev`: file events from `notify`, debounced (an
//! editor's save is several events: the batch ends after a quiet interval), keeping only
//! writes, creations, renames and removals (a build opens and reads every source, which
//! inotify reports too) outside what builds and editors write: `target/` and the build's output
//! directories, `.git/`, and swap and backup files.
//!
//! Build output directories are never watched at all, not just filtered: a cargo target
//! directory holds thousands of directories, each of which would cost an inotify watch.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

pub struct Watcher {
    root: PathBuf,
    ignored: Vec<PathBuf>,
    debounce: Duration,
    watcher: RecommendedWatcher,
    events: mpsc::UnboundedReceiver<notify::Result<Event>>,
}

impl Watcher {
    /// Watches `root`, except `ignored` (absolute paths) and the usual build and editor files,
    /// batching events that come within `debounce` of each other.
    pub fn start(root: &Path, ignored: Vec<PathBuf>, debounce: Duration) -> anyhow::Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let notifier = notify::recommended_watcher(move |result| {
            let _ = tx.send(result);
        })
        .context("starting the file watcher")?;
        let mut watcher = Self {
            root: root.to_path_buf(),
            ignored,
            debounce,
            watcher: notifier,
            events,
        };
        watcher.watch(root, RecursiveMode::NonRecursive)?;
        for entry in
            std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))?
        {
            let path = entry?.path();
            if path.is_dir() && watcher.relevant(&path) {
                watcher.watch(&path, RecursiveMode::Recursive)?;
            }
        }
        Ok(watcher)
    }

    fn watch(&mut self, path: &Path, mode: RecursiveMode) -> anyhow::Result<()> {
        self.watcher
            .watch(path, mode)
            .with_context(|| format!("watching {}", path.display()))
    }

    /// Waits for the next change to a source file and the quiet interval after it; returns
    /// the changed paths (relative to the root).
    pub async fn changed(&mut self) -> anyhow::Result<Vec<PathBuf>> {
        let mut changed = Vec::new();
        while changed.is_empty() {
            let event = self
                .events
                .recv()
                .await
                .context("the file watcher stopped")?;
            self.gather(event, &mut changed);
        }
        // Only changes extend the batch: the build's reads must not keep it open.
        let mut quiet_from = tokio::time::Instant::now() + self.debounce;
        loop {
            match tokio::time::timeout_at(quiet_from, self.events.recv()).await {
                Ok(Some(event)) => {
                    let before = changed.len();
                    self.gather(event, &mut changed);
                    if changed.len() > before {
                        quiet_from = tokio::time::Instant::now() + self.debounce;
                    }
                }
                Ok(None) => anyhow::bail!("the file watcher stopped"),
                Err(_) => return Ok(changed),
            }
        }
    }

    /// Adds the sources `event` changed to `changed`.
    fn gather(&mut self, event: notify::Result<Event>, changed: &mut Vec<PathBuf>) {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!("file watcher: {error}");
                return;
            }
        };
        let is_change = match event.kind {
            EventKind::Create(_) | EventKind::Remove(_) => true,
            EventKind::Modify(ModifyKind::Metadata(_)) => false,
            EventKind::Modify(_) => true,
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            _ => false,
        };
        if !is_change {
            return;
        }
        for path in event.paths {
            if !self.relevant(&path) {
                continue;
            }
            // A directory made at the top level: the recursive watches are per directory.
            if path.parent() == Some(self.root.as_path()) && path.is_dir() {
                let _ = self.watch(&path, RecursiveMode::Recursive);
            }
            let relative = path.strip_prefix(&self.root).unwrap_or(&path).to_path_buf();
            tracing::debug!(path = %relative.display(), kind = ?event.kind, "source changed");
            if !changed.contains(&relative) {
                changed.push(relative);
            }
        }
    }

    /// Whether a change to `path` is a change to the sources.
    fn relevant(&self, path: &Path) -> bool {
        if self.ignored.iter().any(|ignored| {
            path.starts_with(ignored)
                || (path.parent() == ignored.parent()
                    && ignored.file_name().is_some_and(|dir| staging(path, dir)))
        }) {
            return false;
        }
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        let build_or_vcs = relative.components().any(|c| {
            matches!(c, Component::Normal(name)
                if name == "target" || name == ".git" || staging(Path::new(name), "target".as_ref()))
        });
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        // Vim's swap files and write test, Emacs's lock and backup files.
        let editor = name.ends_with('~')
            || name.ends_with(".swp")
            || name.ends_with(".swx")
            || name.starts_with(".#")
            || name == "4913";
        !build_or_vcs && !editor
    }
}

/// Whether `path` is where cargo stages the output directory `dir` before its first build: it
/// makes `{dir}XXXXXX` (six random characters, `tempfile`'s default) next to it, writes
/// `CACHEDIR.TAG` there and renames it to `dir`.
fn staging(path: &Path, dir: &std::ffi::OsStr) -> bool {
    let (Some(name), Some(dir)) = (path.file_name().and_then(|n| n.to_str()), dir.to_str()) else {
        return false;
    };
    name.strip_prefix(dir)
        .is_some_and(|rest| rest.len() == 6 && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_source_change_is_reported_and_build_output_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for sub in ["src", "target/debug", "out"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let mut watcher =
            Watcher::start(&root, vec![root.join("out")], Duration::from_millis(50)).unwrap();
        std::fs::write(root.join("target/debug/x.wasm"), "built").unwrap();
        // Cargo's first build stages the target directory (here `target` or `out`) under a
        // name of its own, then renames it into place.
        for staged in ["targetgcNxAV", "outAb12Cd"] {
            std::fs::create_dir(root.join(staged)).unwrap();
            std::fs::write(root.join(staged).join("CACHEDIR.TAG"), "tag").unwrap();
            std::fs::remove_dir_all(root.join(staged)).unwrap();
        }
        std::fs::write(root.join("out/y.wasm"), "built").unwrap();
        std::fs::write(root.join("src/.lib.rs.swp"), "swap").unwrap();
        std::fs::write(root.join("src/lib.rs"), "edited").unwrap();
        let changed = tokio::time::timeout(Duration::from_secs(10), watcher.changed())
            .await
            .expect("a change within 10 s")
            .unwrap();
        assert_eq!(changed, [PathBuf::from("src/lib.rs")]);
        // Reading the sources (as a build does) is no change.
        std::fs::read(root.join("src/lib.rs")).unwrap();
        let read = tokio::time::timeout(Duration::from_millis(500), watcher.changed()).await;
        assert!(read.is_err(), "a read was reported: {read:?}");
    }
}
