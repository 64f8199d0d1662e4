//! What a component may see of the host through WASI: environment variables and volumes, from
//! its named config (the one channel a wadm manifest has to the host; wadm passes named config
//! through unread). Keys, hidden from what `wasi:config` serves:
//!
//! | key | meaning |
//! |---|---|
//! | `trellis.env.NAME` | environment variable `NAME` |
//! | `trellis.volume.V.path` | where the component sees volume `V` (required) |
//! | `trellis.volume.V.host_path` | a host directory, under a root the operator allowed (`--allow-volume-root`) |
//! | `trellis.volume.V.empty_dir` | `true`: a fresh directory that lives as long as the component |
//! | `trellis.volume.V.read_only` | `true` or `false` (default) |
//! | `trellis.service.restart` | a component exporting `wasi:cli/run` runs as a service, restarted `never`, `on-failure` (default) or `always` |
//! | `trellis.scale.*` | for the deployer (`trellis.scale.when_unlinked`), ignored here |
//!
//! Deny by default: no root allowed, no host path. Applied when the component starts (a change
//! takes effect at its next start). A key this module cannot honour refuses the start, naming
//! the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use trellis_runtime::{RestartPolicy, Volume, VolumeKind, VolumeMount, WasiGrants};

const ENV_PREFIX: &str = "trellis.env.";
const VOLUME_PREFIX: &str = "trellis.volume.";
const RESTART: &str = "trellis.service.restart";
const SCALE_PREFIX: &str = "trellis.scale.";

/// Whether a named config key grants something or says how the component runs (and so is not
/// served by `wasi:config`).
pub fn is_grant_key(key: &str) -> bool {
    key.starts_with(ENV_PREFIX)
        || key.starts_with(VOLUME_PREFIX)
        || key == RESTART
        || key.starts_with(SCALE_PREFIX)
}

/// Why a component's grants cannot be given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("named config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error(
        "named config key `{key}`: `{path}` is not under a directory this host allows volumes \
         from (--allow-volume-root; none allowed: {none})"
    )]
    OutsideRoots {
        key: String,
        path: String,
        none: bool,
    },
}

/// Where a volume's files come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSource {
    HostPath(PathBuf),
    EmptyDir,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeGrant {
    pub name: String,
    pub guest_path: String,
    pub source: VolumeSource,
    pub read_only: bool,
}

/// A component's environment and volumes, as its named config asks, and how it restarts when it
/// runs as a service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ComponentGrants {
    pub env: Vec<(String, String)>,
    pub volumes: Vec<VolumeGrant>,
    pub restart: RestartPolicy,
}

#[derive(Default)]
struct VolumeKeys {
    path: Option<String>,
    host_path: Option<String>,
    empty_dir: bool,
    read_only: bool,
}

impl ComponentGrants {
    /// Reads the grant keys of merged named `config`.
    pub fn from_config(config: &BTreeMap<String, String>) -> Result<Self, GrantError> {
        let invalid = |key: &str, reason: &str| GrantError::Invalid {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        let flag = |key: &str, value: &str| match value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid(key, "expected `true` or `false`")),
        };
        let mut grants = ComponentGrants {
            restart: RestartPolicy::OnFailure,
            ..ComponentGrants::default()
        };
        let mut volumes: BTreeMap<&str, VolumeKeys> = BTreeMap::new();
        for (key, value) in config {
            if key == RESTART {
                grants.restart = match value.as_str() {
                    "never" => RestartPolicy::Never,
                    "on-failure" => RestartPolicy::OnFailure,
                    "always" => RestartPolicy::Always,
                    _ => return Err(invalid(key, "expected never, on-failure or always")),
                };
            } else if let Some(name) = key.strip_prefix(ENV_PREFIX) {
                if name.is_empty() || name.contains('=') {
                    return Err(invalid(key, "not an environment variable name"));
                }
                grants.env.push((name.to_string(), value.clone()));
            } else if let Some(rest) = key.strip_prefix(VOLUME_PREFIX) {
                let (name, field) = rest
                    .rsplit_once('.')
                    .filter(|(name, _)| !name.is_empty())
                    .ok_or_else(|| invalid(key, "expected trellis.volume.NAME.FIELD"))?;
                let volume = volumes.entry(name).or_default();
                match field {
                    "path" => volume.path = Some(value.clone()),
                    "host_path" => volume.host_path = Some(value.clone()),
                    "empty_dir" => volume.empty_dir = flag(key, value)?,
                    "read_only" => volume.read_only = flag(key, value)?,
                    _ => {
                        return Err(invalid(
                            key,
                            "unknown field (known: path, host_path, empty_dir, read_only)",
                        ));
                    }
                }
            }
        }
        for (name, keys) in volumes {
            let key = |field: &str| format!("{VOLUME_PREFIX}{name}.{field}");
            let guest_path = keys
                .path
                .filter(|path| path.starts_with('/'))
                .ok_or_else(|| invalid(&key("path"), "required: an absolute path in the guest"))?;
            let source = match (keys.host_path, keys.empty_dir) {
                (Some(_), true) => {
                    return Err(invalid(
                        &key("empty_dir"),
                        "a volume is either a host_path or an empty_dir",
                    ));
                }
                (Some(path), false) if Path::new(&path).is_absolute() => {
                    VolumeSource::HostPath(PathBuf::from(path))
                }
                (Some(_), false) => {
                    return Err(invalid(&key("host_path"), "not an absolute path"));
                }
                (None, true) => VolumeSource::EmptyDir,
                (None, false) => {
                    return Err(invalid(&key("host_path"), "required (or empty_dir = true)"));
                }
            };
            grants.volumes.push(VolumeGrant {
                name: name.to_string(),
                guest_path,
                source,
                read_only: keys.read_only,
            });
        }
        Ok(grants)
    }

    /// Refuses host paths outside `roots` (after resolving symbolic links and `..`, so that
    /// neither leads out). A path that does not exist is refused too.
    pub fn check(&self, roots: &[PathBuf]) -> Result<(), GrantError> {
        let roots: Vec<PathBuf> = roots
            .iter()
            .filter_map(|root| root.canonicalize().ok())
            .collect();
        for volume in &self.volumes {
            let VolumeSource::HostPath(path) = &volume.source else {
                continue;
            };
            let key = format!("{VOLUME_PREFIX}{}.host_path", volume.name);
            let resolved = path.canonicalize().map_err(|error| GrantError::Invalid {
                key: key.clone(),
                reason: format!("`{}`: {error}", path.display()),
            })?;
            if !roots.iter().any(|root| resolved.starts_with(root)) {
                return Err(GrantError::OutsideRoots {
                    key,
                    path: path.display().to_string(),
                    none: roots.is_empty(),
                });
            }
        }
        Ok(())
    }

    /// What the runtime takes: grants (stdout and stderr always to the host's log), the
    /// workload's volumes, the component's mounts.
    pub fn to_runtime(&self) -> (WasiGrants, Vec<Volume>, Vec<VolumeMount>) {
        let grants = WasiGrants {
            env: self.env.clone(),
            stdio_to_log: true,
            ..WasiGrants::default()
        };
        let volumes = self
            .volumes
            .iter()
            .map(|v| Volume {
                name: v.name.clone(),
                kind: match &v.source {
                    VolumeSource::HostPath(path) => VolumeKind::HostPath(path.clone()),
                    VolumeSource::EmptyDir => VolumeKind::EmptyDir,
                },
            })
            .collect();
        let mounts = self
            .volumes
            .iter()
            .map(|v| VolumeMount {
                volume: v.name.clone(),
                guest_path: v.guest_path.clone(),
                read_only: v.read_only,
            })
            .collect();
        (grants, volumes, mounts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_and_volumes_are_read_from_their_keys() {
        let grants = ComponentGrants::from_config(&config(&[
            ("trellis.env.GREETING", "hello"),
            ("trellis.volume.data.path", "/data"),
            ("trellis.volume.data.host_path", "/srv/kv"),
            ("trellis.volume.data.read_only", "true"),
            ("trellis.volume.scratch.path", "/tmp"),
            ("trellis.volume.scratch.empty_dir", "true"),
            ("greeting", "not a grant"),
        ]))
        .unwrap();
        assert_eq!(grants.env, [("GREETING".to_string(), "hello".to_string())]);
        assert_eq!(grants.restart, RestartPolicy::OnFailure);
        assert_eq!(
            grants.volumes,
            [
                VolumeGrant {
                    name: "data".into(),
                    guest_path: "/data".into(),
                    source: VolumeSource::HostPath("/srv/kv".into()),
                    read_only: true,
                },
                VolumeGrant {
                    name: "scratch".into(),
                    guest_path: "/tmp".into(),
                    source: VolumeSource::EmptyDir,
                    read_only: false,
                },
            ]
        );
        assert!(is_grant_key("trellis.env.X") && !is_grant_key("trellis.limits.max_fuel"));
        assert!(is_grant_key("trellis.scale.when_unlinked"));
    }

    #[test]
    fn a_bad_key_is_named() {
        let refused =
            |entries: &[(&str, &str)]| match ComponentGrants::from_config(&config(entries)) {
                Err(GrantError::Invalid { key, .. }) => key,
                other => panic!("{other:?}"),
            };
        assert_eq!(
            refused(&[("trellis.volume.data.host_path", "/srv")]),
            "trellis.volume.data.path"
        );
        assert_eq!(
            refused(&[("trellis.volume.data.path", "/data")]),
            "trellis.volume.data.host_path"
        );
        assert_eq!(
            refused(&[
                ("trellis.volume.data.path", "/data"),
                ("trellis.volume.data.host_path", "relative")
            ]),
            "trellis.volume.data.host_path"
        );
        assert_eq!(
            refused(&[("trellis.volume.data.mode", "rw")]),
            "trellis.volume.data.mode"
        );
        assert_eq!(
            refused(&[("trellis.volume.data.read_only", "yes")]),
            "trellis.volume.data.read_only"
        );
        assert_eq!(
            refused(&[("trellis.service.restart", "sometimes")]),
            "trellis.service.restart"
        );
    }

    #[test]
    fn host_paths_must_lie_under_an_allowed_root() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("kv");
        std::fs::create_dir(&inside).unwrap();
        let grants = |path: &Path| ComponentGrants {
            env: Vec::new(),
            restart: RestartPolicy::OnFailure,
            volumes: vec![VolumeGrant {
                name: "data".into(),
                guest_path: "/data".into(),
                source: VolumeSource::HostPath(path.to_path_buf()),
                read_only: false,
            }],
        };
        let roots = [root.path().to_path_buf()];
        assert_eq!(grants(&inside).check(&roots), Ok(()));
        // `..` leads out of the root: refused, as with no root at all.
        let escape = inside.join("..").join("..");
        assert!(matches!(
            grants(&escape).check(&roots),
            Err(GrantError::OutsideRoots { key, none: false, .. }) if key == "trellis.volume.data.host_path"
        ));
        assert!(matches!(
            grants(&inside).check(&[]),
            Err(GrantError::OutsideRoots { none: true, .. })
        ));
    }
}
