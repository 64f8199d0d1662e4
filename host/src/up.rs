//! `trellis up`: everything on one machine with no set-up. A private nats-server (unless
//! `--nats-url` joins a lattice), a host with the built-in providers, the deployer, and one
//! manifest deployed (by default the built-in hello example, so that it works from any
//! directory); Ctrl-C stops all of it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;
use trellis_deployer::client::WadmClient;
use trellis_host::telemetry::Observability;

use crate::cli::progress::Progress;
use crate::example;
use crate::platform::{FileFlags, LatticeFlags, Platform};

/// How long `up` waits for the application to report `deployed`.
const DEPLOY_WAIT: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
#[command(
    after_help = "With no MANIFEST, `trellis up` runs the built-in hello example: one \
    wasi:http component (written in WebAssembly text, built into this binary) \
    behind the built-in HTTP server, answering `hello from Trellis at PATH` on \
    http://127.0.0.1:8080 (--address changes it). `trellis new NAME` writes a project to \
    change it in, and `trellis dev` runs that project."
)]
pub struct UpArgs {
    /// The wadm manifest to deploy [default: the built-in hello example, see below].
    manifest: Option<PathBuf>,
    /// Where the built-in hello example listens (only without MANIFEST).
    #[arg(long, value_name = "HOST:PORT", default_value = example::ADDRESS, conflicts_with = "manifest")]
    address: String,
    #[command(flatten)]
    lattice: LatticeFlags,
    #[command(flatten)]
    files: FileFlags,
    /// Where the private nats-server keeps JetStream data (lattice state, key-value buckets).
    #[arg(long, env = "TRELLIS_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl UpArgs {
    /// The telemetry its host exports.
    pub fn observability(&self) -> Observability {
        Observability::new(self.lattice.observability.clone())
    }
}

/// `$XDG_DATA_HOME/trellis` or `~/.local/share/trellis`, else a directory under the temp dir.
pub(crate) fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("trellis")
}

pub async fn run(args: UpArgs, shutdown: impl Future<Output = &'static str>) -> anyhow::Result<()> {
    let progress = Progress::new("trellis up");
    // The built-in example lives in a temporary directory for as long as `up` runs.
    let example_dir;
    // Relative `file://./…` images resolve from the current directory, as for `trellis app
    // deploy`; the example's from its own directory.
    let (manifest, base) = match args.manifest {
        Some(manifest) => {
            anyhow::ensure!(manifest.exists(), "{} not found", manifest.display());
            let cwd = std::env::current_dir().context("finding the current directory")?;
            (manifest, cwd)
        }
        None => {
            example_dir = tempfile::Builder::new()
                .prefix("trellis-hello-")
                .tempdir()
                .context("creating a directory for the built-in example")?;
            let manifest = example::write_to(example_dir.path(), &args.address)?;
            (manifest, example_dir.path().to_path_buf())
        }
    };
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir).join("nats");
    // The host may load files from where `up` deploys from: the directories of the
    // manifest's own `file://` images, and no others.
    let deployed_from = trellis_deployer::cli::file_image_dirs(&manifest, &base)?;
    let platform = Platform::start(
        &progress,
        &args.lattice,
        &data_dir,
        &args.files,
        deployed_from,
        "up",
    )
    .await?;
    let deployed = deploy(&progress, &platform, &manifest, &base).await;
    if let Err(error) = &deployed {
        eprintln!("trellis up: {error:#}");
    } else {
        progress.say("press Ctrl-C to stop");
        let signal = shutdown.await;
        progress.say(format_args!("received {signal}, stopping"));
    }
    platform.stop().await?;
    deployed
}

/// Deploys the manifest, waits for `deployed`, and says where it is served.
async fn deploy(
    progress: &Progress,
    platform: &Platform,
    manifest: &Path,
    base: &Path,
) -> anyhow::Result<()> {
    let client = platform.wadm_client().await?;
    let phase = progress.phase(format!("deploying {}", manifest.display()));
    let deployed = trellis_deployer::cli::deploy_file(&client, manifest, base, true).await?;
    let name = deployed.name;
    wait_deployed(&client, &name).await?;
    phase.done(format_args!("{name} is deployed"));
    for address in http_addresses(&std::fs::read_to_string(manifest)?) {
        progress.say(format_args!("  serving http://{address}"));
    }
    Ok(())
}

/// Waits until application `name` reports `deployed` (bounded), or says why it did not.
pub async fn wait_deployed(client: &WadmClient, name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let reply = client.status(name).await?;
        let status = &reply["status"]["status"];
        match status["type"].as_str().unwrap_or_default() {
            "deployed" => return Ok(()),
            "failed" if started.elapsed() > Duration::from_secs(10) => {
                anyhow::bail!(
                    "{name} failed: {}",
                    status["message"].as_str().unwrap_or_default()
                )
            }
            _ if started.elapsed() > DEPLOY_WAIT => anyhow::bail!(
                "{name} was not deployed within {DEPLOY_WAIT:?}: {}",
                status["message"].as_str().unwrap_or_default()
            ),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The `address` of every link source config in the manifest: where HTTP servers listen.
pub fn http_addresses(manifest: &str) -> Vec<String> {
    let Ok(document) = serde_yaml::from_str::<Value>(manifest) else {
        return Vec::new();
    };
    let mut addresses = Vec::new();
    for component in document["spec"]["components"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for link in component["traits"].as_array().into_iter().flatten() {
            for config in link["properties"]["source"]["config"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(address) = config["properties"]["address"].as_str() {
                    addresses.push(address.to_string());
                }
            }
        }
    }
    addresses
}
