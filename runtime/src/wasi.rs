//! The WASI baseline: deny by default, with explicit grants and volumes (as in wash-runtime).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use crate::interface::InterfaceName;
use crate::stdio::{LogStream, Stdio};

/// The WASI packages every component gets (still subject to the grants below).
const BASELINE_PACKAGES: &[&str] = &["cli", "clocks", "filesystem", "io", "random", "sockets"];

/// Whether an import is part of the WASI baseline that wasmtime-wasi implements.
pub(crate) fn is_baseline(import: &InterfaceName) -> bool {
    import.namespace == "wasi" && BASELINE_PACKAGES.contains(&import.package.as_str())
}

/// What a workload lets its components see. Everything is off unless granted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WasiGrants {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub inherit_stdout: bool,
    pub inherit_stderr: bool,
    /// Stdout and stderr go to the host's log, a line per event with the component's id
    /// (instead of the host's own streams).
    pub stdio_to_log: bool,
    /// Outbound and inbound sockets to any address.
    pub network: bool,
}

/// A named source of files for a workload.
#[derive(Clone, Debug)]
pub struct Volume {
    pub name: String,
    pub kind: VolumeKind,
}

#[derive(Clone, Debug)]
pub enum VolumeKind {
    /// A directory of the host.
    HostPath(PathBuf),
    /// A fresh temporary directory that lives and dies with the workload.
    EmptyDir,
}

/// Where a component sees a volume.
#[derive(Clone, Debug)]
pub struct VolumeMount {
    pub volume: String,
    pub guest_path: String,
    pub read_only: bool,
}

/// A mount resolved to a host directory.
#[derive(Clone, Debug)]
pub(crate) struct ResolvedMount {
    pub host_path: PathBuf,
    pub guest_path: String,
    pub read_only: bool,
}

/// Builds the WASI context of one invocation of `component` from the grants and mounts.
pub(crate) fn build_ctx(
    component: &Arc<str>,
    grants: &WasiGrants,
    mounts: &[ResolvedMount],
) -> anyhow::Result<WasiCtx> {
    let mut builder = base_builder(component, grants, mounts)?;
    Ok(builder.build())
}

/// Builds a preview-1 context (for core-module services) from the same grants and mounts.
pub(crate) fn build_p1_ctx(
    component: &Arc<str>,
    grants: &WasiGrants,
    mounts: &[ResolvedMount],
) -> anyhow::Result<wasmtime_wasi::p1::WasiP1Ctx> {
    let mut builder = base_builder(component, grants, mounts)?;
    Ok(builder.build_p1())
}

fn base_builder(
    component: &Arc<str>,
    grants: &WasiGrants,
    mounts: &[ResolvedMount],
) -> anyhow::Result<WasiCtxBuilder> {
    let mut builder = WasiCtxBuilder::new();
    builder.envs(&grants.env).args(&grants.args);
    if grants.stdio_to_log {
        let logged = |stream| LogStream {
            component: component.clone(),
            stream,
        };
        builder
            .stdout(logged(Stdio::Stdout))
            .stderr(logged(Stdio::Stderr));
    } else {
        if grants.inherit_stdout {
            builder.inherit_stdout();
        }
        if grants.inherit_stderr {
            builder.inherit_stderr();
        }
    }
    if grants.network {
        builder
            .inherit_network()
            .allow_ip_name_lookup(true)
            .allow_tcp(true)
            .allow_udp(true);
    }
    for mount in mounts {
        let perms = if mount.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&mount.host_path, &mount.guest_path, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "mounting {} at {}",
                    mount.host_path.display(),
                    mount.guest_path
                )
            })?;
    }
    Ok(builder)
}

/// A workload's volumes made real: host paths checked, empty dirs created (and removed on drop).
#[derive(Debug, Default)]
pub(crate) struct MaterializedVolumes {
    paths: Vec<(String, PathBuf)>,
    _empty_dirs: Vec<tempfile::TempDir>,
}

impl MaterializedVolumes {
    pub fn create(volumes: &[Volume]) -> anyhow::Result<Self> {
        let mut made = Self::default();
        for volume in volumes {
            let path = match &volume.kind {
                VolumeKind::HostPath(path) => {
                    anyhow::ensure!(
                        path.is_dir(),
                        "volume `{}`: {} is not a directory",
                        volume.name,
                        path.display()
                    );
                    path.clone()
                }
                VolumeKind::EmptyDir => {
                    let dir = tempfile::Builder::new()
                        .prefix("trellis-emptydir-")
                        .tempdir()
                        .with_context(|| {
                            format!("creating empty dir for volume `{}`", volume.name)
                        })?;
                    let path = dir.path().to_path_buf();
                    made._empty_dirs.push(dir);
                    path
                }
            };
            made.paths.push((volume.name.clone(), path));
        }
        Ok(made)
    }

    pub fn resolve(&self, mounts: &[VolumeMount]) -> anyhow::Result<Vec<ResolvedMount>> {
        mounts
            .iter()
            .map(|mount| {
                let host_path = self.host_path(&mount.volume).with_context(|| {
                    format!(
                        "mount at {} names unknown volume `{}`",
                        mount.guest_path, mount.volume
                    )
                })?;
                Ok(ResolvedMount {
                    host_path: host_path.to_path_buf(),
                    guest_path: mount.guest_path.clone(),
                    read_only: mount.read_only,
                })
            })
            .collect()
    }

    pub fn host_path(&self, volume: &str) -> Option<&Path> {
        self.paths
            .iter()
            .find(|(name, _)| name == volume)
            .map(|(_, path)| path.as_path())
    }
}
