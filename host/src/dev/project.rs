//! The project `trellis dev` develops: its directory, how it is built, where the build writes
//! the component, and running that build with its output kept to show when it fails.
//!
//! A Rust crate (a `Cargo.toml` in the directory) is built with `cargo build --release --target
//! wasm32-wasip2` and writes `{target dir}/wasm32-wasip2/release/{lib name}.wasm`; any other
//! project names its build command (`--build`, run by `sh -c`) and the `.wasm` it writes
//! (`--wasm`).

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use serde_json::Value;

/// How a project is built.
pub enum Build {
    /// `cargo ARGS` in the project directory.
    Cargo(Vec<String>),
    /// A command line for `sh -c`.
    Shell(String),
}

pub struct Project {
    pub dir: PathBuf,
    /// The crate's name, or the directory's.
    pub name: String,
    pub build: Build,
    /// The component the build writes (absolute).
    pub wasm: PathBuf,
    /// Where build output goes, never watched (the cargo target directory).
    pub output_dirs: Vec<PathBuf>,
}

/// How a build ended.
pub enum Built {
    Ok,
    /// What the build printed, stdout and stderr as they came.
    Failed(String),
}

impl Project {
    /// Finds out how to build the project in `dir`: `build` and `wasm` as given, else from its
    /// `Cargo.toml`.
    pub fn find(dir: &Path, build: Option<String>, wasm: Option<PathBuf>) -> anyhow::Result<Self> {
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("{} is not a directory", dir.display()))?;
        let dir_name = dir
            .file_name()
            .map_or("component".into(), |n| n.to_string_lossy().into_owned());
        let absolute = |path: PathBuf| {
            if path.is_absolute() {
                path
            } else {
                dir.join(path)
            }
        };
        if !dir.join("Cargo.toml").exists() {
            let (Some(build), Some(wasm)) = (build, wasm) else {
                anyhow::bail!(
                    "{} has no Cargo.toml: for a project in another language, pass its build \
                     command with --build \"…\" and the .wasm it writes with --wasm PATH",
                    dir.display()
                );
            };
            let wasm = absolute(wasm);
            let output_dirs = wasm.parent().map(Path::to_path_buf).into_iter().collect();
            return Ok(Self {
                dir,
                name: dir_name,
                build: Build::Shell(build),
                wasm,
                output_dirs,
            });
        }
        let crate_info = cargo_crate(&dir)?;
        let wasm = wasm.map(absolute).unwrap_or_else(|| {
            crate_info
                .target_dir
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", crate_info.lib_name))
        });
        let build = match build {
            Some(command) => Build::Shell(command),
            None => {
                check_wasip2_target()?;
                Build::Cargo(
                    ["build", "--release", "--target", "wasm32-wasip2"]
                        .map(String::from)
                        .to_vec(),
                )
            }
        };
        Ok(Self {
            dir,
            name: crate_info.name,
            build,
            wasm,
            output_dirs: vec![crate_info.target_dir],
        })
    }

    /// The build command as a person would type it.
    pub fn build_command(&self) -> String {
        match &self.build {
            Build::Cargo(args) => format!("cargo {}", args.join(" ")),
            Build::Shell(command) => command.clone(),
        }
    }

    /// Runs the build to its end, its output gathered (in colour when `color`). Dropping the
    /// future (Ctrl-C) kills the build and everything it started.
    pub async fn build(&self, color: bool) -> anyhow::Result<Built> {
        let (mut reader, writer) = std::io::pipe().context("creating a pipe for the build")?;
        let mut command = match &self.build {
            Build::Cargo(args) => {
                let mut command = Command::new("cargo");
                command.args(args);
                if color {
                    command.arg("--color=always");
                }
                command
            }
            Build::Shell(line) => {
                let mut command = Command::new("sh");
                command.args(["-c", line]);
                if color {
                    command.env("CARGO_TERM_COLOR", "always");
                }
                command
            }
        };
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            // Its own process group, so that stopping it stops the compilers it runs too.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("running `{}`", self.build_command()))?;
        // The command holds the pipe's write ends: the output ends only once it is dropped.
        drop(command);
        let group = Group(child.id() as i32);
        let output = tokio::task::spawn_blocking(move || {
            let mut output = Vec::new();
            let _ = reader.read_to_end(&mut output);
            output
        });
        let status = tokio::task::spawn_blocking(move || {
            let mut child = child;
            child.wait()
        });
        let status = status.await??;
        let output = String::from_utf8_lossy(&output.await?).into_owned();
        // The build ended and was reaped: its group ID may be reused, so it must not be killed.
        std::mem::forget(group);
        Ok(if status.success() {
            Built::Ok
        } else {
            Built::Failed(output)
        })
    }
}

/// A build's process group, killed when dropped before the build ends.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: a plain system call; a group that is already gone only gives ESRCH.
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
    }
}

/// What `cargo metadata` says about the crate in `dir`.
struct CrateInfo {
    name: String,
    /// The name of the `.wasm` file: the library's name, `-` made `_`.
    lib_name: String,
    target_dir: PathBuf,
}

fn cargo_crate(dir: &Path) -> anyhow::Result<CrateInfo> {
    let output = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running `cargo metadata` (is cargo installed?)")?;
    if !output.status.success() {
        anyhow::bail!(
            "cargo cannot read {}: {}",
            dir.join("Cargo.toml").display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata")?;
    let manifest = dir.join("Cargo.toml");
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .with_context(|| {
            format!(
                "{} is a workspace: run `trellis dev` in the directory of the component's crate",
                dir.display()
            )
        })?;
    let name = package["name"].as_str().unwrap_or_default().to_string();
    let lib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k == "cdylib")
        })
        .with_context(|| {
            format!(
                "crate `{name}` builds no component: add `[lib] crate-type = [\"cdylib\"]` to its \
                 Cargo.toml"
            )
        })?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata names no target directory")?;
    Ok(CrateInfo {
        lib_name: lib["name"].as_str().unwrap_or(&name).replace('-', "_"),
        name,
        target_dir,
    })
}

/// Fails with the command to run when rustup knows the toolchain lacks wasm32-wasip2 (without
/// rustup, the build's own error says it).
fn check_wasip2_target() -> anyhow::Result<()> {
    let Ok(output) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        !output.status.success() || installed.lines().any(|l| l.trim() == "wasm32-wasip2"),
        "the Rust target wasm32-wasip2 is not installed: run `rustup target add wasm32-wasip2`"
    );
    Ok(())
}
