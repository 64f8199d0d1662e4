//! `trellis up`: everything on one machine with no set-up. A private nats-server (unless
//! `--nats-url` joins a lattice), a host with the built-in providers, the deployer, and one
//! manifest deployed; Ctrl-C stops all of it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;
use trellis_deployer::client::WadmClient;
use trellis_deployer::{Deployer, DeployerConfig};
use trellis_host::{EmbeddedNats, FilePolicy, HostConfig, HostError, LatticeHost, NatsAuth};

/// Prints a progress line on stdout, ignoring a closed stdout (`trellis up | head` must still
/// stop cleanly on Ctrl-C rather than panic on its last lines).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// How long `up` waits for the application to report `deployed`.
const DEPLOY_WAIT: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct UpArgs {
    /// The wadm manifest to deploy.
    #[arg(default_value = "wadm-manifests/hello.yaml")]
    manifest: PathBuf,
    /// Join this lattice instead of starting a private nats-server.
    #[arg(long, env = "TRELLIS_NATS_URL")]
    nats_url: Option<String>,
    /// The nats-server binary to run (default: `nats-server` on PATH).
    #[arg(long, env = "TRELLIS_NATS_SERVER")]
    nats_server: Option<PathBuf>,
    /// Where the private nats-server keeps JetStream data (lattice state, key-value buckets).
    #[arg(long, env = "TRELLIS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "TRELLIS_LATTICE", default_value = "default")]
    lattice: String,
}

/// `$XDG_DATA_HOME/trellis` or `~/.local/share/trellis`, else a directory under the temp dir.
fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("trellis")
}

pub async fn run(args: UpArgs, shutdown: impl Future<Output = &'static str>) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.manifest.exists(),
        "{} not found: run `trellis up` from the repository root, or name a manifest",
        args.manifest.display()
    );
    let (nats, nats_url) = match args.nats_url {
        Some(url) => {
            say!("trellis up: joining the lattice at {url}");
            (None, url)
        }
        None => {
            let data_dir = args.data_dir.unwrap_or_else(default_data_dir).join("nats");
            let nats = EmbeddedNats::start(args.nats_server.as_deref(), &data_dir)?;
            let url = nats.url();
            say!(
                "trellis up: started nats-server on {url} (JetStream data in {})",
                data_dir.display()
            );
            (Some(nats), url)
        }
    };
    let joining = nats.is_none();
    // The host may load files from where `up` deploys from: the directories of the
    // manifest's own `file://` images, and no others.
    let cwd = std::env::current_dir().context("finding the current directory")?;
    let files = FilePolicy {
        allow_all: false,
        roots: trellis_deployer::cli::file_image_dirs(&args.manifest, &cwd)?,
    };
    let host = LatticeHost::start(HostConfig {
        nats_url: nats_url.clone(),
        lattice: args.lattice.clone(),
        files,
        ..HostConfig::default()
    })
    .await
    .map_err(|error| match error {
        HostError::Connect { .. } if joining => anyhow::anyhow!(
            "{error}; is nats-server running there? (without --nats-url or TRELLIS_NATS_URL, \
             `trellis up` starts its own)"
        ),
        error => error.into(),
    })?;
    say!(
        "trellis up: host {} ({}) on lattice `{}` with the built-in providers",
        host.host_id(),
        host.friendly_name(),
        args.lattice
    );
    let deployer = Deployer::start(DeployerConfig {
        nats_url: nats_url.clone(),
        lattice: args.lattice.clone(),
        ..DeployerConfig::default()
    })
    .await?;
    let deployed = deploy(&nats_url, &args.lattice, &args.manifest).await;
    if let Err(error) = &deployed {
        eprintln!("trellis up: {error:#}");
    } else {
        say!("trellis up: press Ctrl-C to stop");
        let signal = shutdown.await;
        say!("trellis up: received {signal}, stopping");
    }
    deployer.stop().await;
    host.stop(None).await?;
    drop(nats);
    deployed
}

/// Deploys the manifest, waits for `deployed`, and says where it is served.
async fn deploy(nats_url: &str, lattice: &str, manifest: &std::path::Path) -> anyhow::Result<()> {
    let client = WadmClient::connect(nats_url, lattice, &NatsAuth::default()).await?;
    let cwd = std::env::current_dir().context("finding the current directory")?;
    let deployed = trellis_deployer::cli::deploy_file(&client, manifest, &cwd, true).await?;
    let (name, version) = (deployed.name, deployed.version);
    say!(
        "trellis up: deploying {name} {version} from {}",
        manifest.display()
    );
    let started = Instant::now();
    loop {
        let reply = client.status(&name).await?;
        let status = &reply["status"]["status"];
        match status["type"].as_str().unwrap_or_default() {
            "deployed" => break,
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
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    say!("trellis up: {name} is deployed");
    for address in http_addresses(&std::fs::read_to_string(manifest)?) {
        say!("  serving http://{address}");
    }
    Ok(())
}

/// The `address` of every link source config in the manifest: where HTTP servers listen.
fn http_addresses(manifest: &str) -> Vec<String> {
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
