//! The `trellis deployer` and `trellis app …` commands (their arguments and what they do), so
//! that the binary's `main.rs` only routes to them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::client::WadmClient;
use crate::manifest::{self, Level};
use crate::{Deployer, DeployerConfig};

/// Where the lattice is.
#[derive(clap::Args, Clone, Debug)]
pub struct LatticeArgs {
    /// NATS server of the lattice.
    #[arg(
        long,
        env = "TRELLIS_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Lattice name.
    #[arg(long, env = "TRELLIS_LATTICE", default_value = "default")]
    pub lattice: String,
}

/// `trellis deployer`: run the deployer alone.
#[derive(clap::Args, Debug)]
pub struct DeployerArgs {
    #[command(flatten)]
    pub lattice: LatticeArgs,
    /// Seconds between reconcile passes when nothing happens on the lattice.
    #[arg(long, env = "TRELLIS_RECONCILE_SECS", default_value_t = 10)]
    pub reconcile_secs: u64,
}

impl DeployerArgs {
    pub fn config(&self) -> DeployerConfig {
        deployer_config(&self.lattice, self.reconcile_secs)
    }
}

pub fn deployer_config(lattice: &LatticeArgs, reconcile_secs: u64) -> DeployerConfig {
    DeployerConfig {
        nats_url: lattice.nats_url.clone(),
        lattice: lattice.lattice.clone(),
        reconcile_interval: Duration::from_secs(reconcile_secs.max(1)),
        ..DeployerConfig::default()
    }
}

/// `trellis app …`: manage applications through the wadm API.
#[derive(clap::Args, Debug)]
pub struct AppArgs {
    #[command(subcommand)]
    pub command: AppCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum AppCommand {
    /// Store a manifest and deploy it.
    Deploy {
        file: PathBuf,
        /// Replace the stored version of the same number instead of failing.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        lattice: LatticeArgs,
    },
    /// List applications and their status.
    List {
        #[command(flatten)]
        lattice: LatticeArgs,
    },
    /// Show an application's status, per scaler.
    Status {
        name: String,
        #[command(flatten)]
        lattice: LatticeArgs,
    },
    /// Remove an application from the lattice (its versions stay stored).
    Undeploy {
        name: String,
        #[command(flatten)]
        lattice: LatticeArgs,
    },
    /// Delete an application's stored versions (undeploying it if deployed).
    Delete {
        name: String,
        #[command(flatten)]
        lattice: LatticeArgs,
    },
    /// Check a manifest offline.
    Validate { file: PathBuf },
}

/// Runs the deployer until SIGINT/SIGTERM-like `shutdown` resolves.
pub async fn run_deployer(
    args: DeployerArgs,
    shutdown: impl Future<Output = &'static str>,
) -> anyhow::Result<()> {
    let deployer = Deployer::start(args.config()).await?;
    let signal = shutdown.await;
    tracing::info!("received {signal}, stopping the deployer");
    deployer.stop().await;
    Ok(())
}

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

/// Parses and validates `file`, printing warnings; fails with every error.
fn load(file: &Path) -> anyhow::Result<manifest::Parsed> {
    let parsed = manifest::parse(&read(file)?).map_err(|rejection| {
        let lines: Vec<String> = rejection.0.iter().map(|p| format!("  {p}")).collect();
        anyhow::anyhow!(
            "{} is not a valid manifest:\n{}",
            file.display(),
            lines.join("\n")
        )
    })?;
    for warning in &parsed.warnings {
        eprintln!("{warning}");
    }
    Ok(parsed)
}

/// Rewrites relative `file://./x` image references to absolute ones under `base`, as `wash`
/// does before sending a manifest (hosts only load absolute `file:///` paths).
pub fn absolutize_file_refs(document: &mut Value, base: &Path) {
    let Some(components) = document["spec"]["components"].as_array_mut() else {
        return;
    };
    for component in components {
        let image = &mut component["properties"]["image"];
        if let Some(path) = image.as_str().and_then(|i| i.strip_prefix("file://"))
            && !path.starts_with('/')
        {
            let absolute = base.join(path.trim_start_matches("./"));
            *image = Value::String(format!("file://{}", absolute.display()));
        }
    }
}

/// Validates `file`, makes its relative `file://` references absolute under `base`, stores it
/// (with `replace`, over an existing copy of the same version) and deploys it. Returns the
/// application's name and deployed version.
pub async fn deploy_file(
    client: &WadmClient,
    file: &Path,
    base: &Path,
    replace: bool,
) -> anyhow::Result<(String, String)> {
    let mut parsed = load(file)?;
    absolutize_file_refs(&mut parsed.document, base);
    let name = parsed.manifest.name.as_str();
    let mut put = client.put(&parsed.document).await?;
    if result(&put) == "error"
        && replace
        && let Some(version) = parsed.manifest.version()
        && message(&put).contains("already exists")
    {
        client.delete(name, Some(version)).await?;
        put = client.put(&parsed.document).await?;
    }
    if result(&put) == "error" {
        bail!("storing {name}: {}", message(&put));
    }
    let version = put["current_version"].as_str().map(str::to_string);
    let deployed = client.deploy(name, version.as_deref()).await?;
    if result(&deployed) != "acknowledged" {
        bail!("deploying {name}: {}", message(&deployed));
    }
    Ok((name.to_string(), version.unwrap_or_else(|| "?".into())))
}

fn result(reply: &Value) -> &str {
    reply["result"].as_str().unwrap_or_default()
}

fn message(reply: &Value) -> &str {
    reply["message"].as_str().unwrap_or_default()
}

/// Runs one `trellis app` command.
pub async fn run_app(args: AppArgs) -> anyhow::Result<()> {
    match args.command {
        AppCommand::Validate { file } => {
            let parsed = load(&file)?;
            let warnings = parsed
                .warnings
                .iter()
                .filter(|p| p.level == Level::Warning)
                .count();
            println!(
                "{}: valid manifest `{}` ({warnings} warning(s))",
                file.display(),
                parsed.manifest.name
            );
            Ok(())
        }
        AppCommand::Deploy {
            file,
            replace,
            lattice,
        } => {
            let client = WadmClient::connect(&lattice.nats_url, &lattice.lattice).await?;
            let cwd = std::env::current_dir().context("finding the current directory")?;
            let (name, version) = deploy_file(&client, &file, &cwd, replace).await?;
            println!("deployed {name} version {version}");
            Ok(())
        }
        AppCommand::List { lattice } => {
            let client = WadmClient::connect(&lattice.nats_url, &lattice.lattice).await?;
            let reply = client.list().await?;
            if result(&reply) == "error" {
                bail!("{}", message(&reply));
            }
            println!("{:<30} {:<20} {:<20} STATUS", "NAME", "LATEST", "DEPLOYED");
            for model in reply["models"].as_array().into_iter().flatten() {
                println!(
                    "{:<30} {:<20} {:<20} {}",
                    model["name"].as_str().unwrap_or_default(),
                    model["version"].as_str().unwrap_or_default(),
                    model["deployed_version"].as_str().unwrap_or("-"),
                    model["detailed_status"]["status"]["type"]
                        .as_str()
                        .unwrap_or_default(),
                );
            }
            Ok(())
        }
        AppCommand::Status { name, lattice } => {
            let client = WadmClient::connect(&lattice.nats_url, &lattice.lattice).await?;
            let reply = client.status(&name).await?;
            if result(&reply) == "error" {
                bail!("{}", message(&reply));
            }
            let status = &reply["status"];
            println!(
                "{name}: {} {}",
                status["status"]["type"].as_str().unwrap_or_default(),
                status["status"]["message"].as_str().unwrap_or_default()
            );
            for scaler in status["scalers"].as_array().into_iter().flatten() {
                println!(
                    "  {:<14} {:<50} {} {}",
                    scaler["kind"].as_str().unwrap_or_default(),
                    scaler["name"].as_str().unwrap_or_default(),
                    scaler["status"]["type"].as_str().unwrap_or_default(),
                    scaler["status"]["message"].as_str().unwrap_or_default(),
                );
            }
            Ok(())
        }
        AppCommand::Undeploy { name, lattice } => {
            let client = WadmClient::connect(&lattice.nats_url, &lattice.lattice).await?;
            let reply = client.undeploy(&name).await?;
            if result(&reply) != "acknowledged" {
                bail!("undeploying {name}: {}", message(&reply));
            }
            println!("undeployed {name}");
            Ok(())
        }
        AppCommand::Delete { name, lattice } => {
            let client = WadmClient::connect(&lattice.nats_url, &lattice.lattice).await?;
            let reply = client.delete(&name, None).await?;
            match result(&reply) {
                "deleted" => println!("deleted {name}"),
                "noop" => println!("{name} was not stored"),
                _ => bail!("deleting {name}: {}", message(&reply)),
            }
            Ok(())
        }
    }
}
