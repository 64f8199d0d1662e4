//! The `trellis deployer` and `trellis app …` commands (their arguments and what they do), so
//! that the binary's `main.rs` only routes to them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::client::WadmClient;
use crate::connect::NatsAuth;
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
    /// NATS credentials file (user JWT and seed, as `nsc` writes them).
    #[arg(long, env = "TRELLIS_NATS_CREDS", conflicts_with = "nats_nkey")]
    pub nats_creds: Option<std::path::PathBuf>,
    /// NATS user nkey seed (`SU…`).
    #[arg(long, env = "TRELLIS_NATS_NKEY")]
    pub nats_nkey: Option<String>,
    /// PEM file of CA certificates to trust; makes TLS required.
    #[arg(long, env = "TRELLIS_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
}

impl LatticeArgs {
    /// The lattice `nats_url` at, as anonymous plain clients reach it.
    pub fn new(nats_url: &str, lattice: &str) -> Self {
        Self {
            nats_url: nats_url.to_string(),
            lattice: lattice.to_string(),
            nats_creds: None,
            nats_nkey: None,
            tls_ca: None,
        }
    }

    pub fn auth(&self) -> NatsAuth {
        NatsAuth {
            creds_file: self.nats_creds.clone(),
            nkey_seed: self.nats_nkey.clone(),
            tls_ca: self.tls_ca.clone(),
        }
    }
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
        nats_auth: lattice.auth(),
        lattice: lattice.lattice.clone(),
        reconcile_interval: Duration::from_secs(reconcile_secs.max(1)),
        ..DeployerConfig::default()
    }
}

/// `-o/--output` of `trellis app …` and `trellis ctl …`: a human table (the default) or JSON
/// for scripts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

/// The output flag, flattened into every command that prints an answer.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct OutputArgs {
    /// Output: a human table or JSON for scripts.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Renders `rows` under `headers` as plain aligned text (like `kubectl get`): columns as wide
/// as their widest cell, two spaces apart, no borders, no trailing spaces.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            let pad = width - cell.chars().count();
            line.extend(std::iter::repeat_n(' ', pad + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `trellis app …`: manage applications through the wadm API.
#[derive(clap::Args, Debug)]
pub struct AppArgs {
    #[command(subcommand)]
    pub command: AppCommand,
}

/// Where the deployer is and how to print its answers: on every `trellis app` command that
/// talks to the lattice.
#[derive(clap::Args, Debug)]
pub struct AppCommon {
    #[command(flatten)]
    pub lattice: LatticeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
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
        common: AppCommon,
    },
    /// List applications and their status.
    List {
        #[command(flatten)]
        common: AppCommon,
    },
    /// Show an application's status, per component, link and provider (with the reasons of
    /// failures).
    Status {
        name: String,
        #[command(flatten)]
        common: AppCommon,
    },
    /// Remove an application from the lattice (its versions stay stored).
    Undeploy {
        name: String,
        #[command(flatten)]
        common: AppCommon,
    },
    /// Delete an application's stored versions (undeploying it if deployed).
    Delete {
        name: String,
        #[command(flatten)]
        common: AppCommon,
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

/// Parses and validates `file`, printing warnings on stderr; fails naming every error's field
/// (on one line when there is one error).
pub fn load(file: &Path) -> anyhow::Result<manifest::Parsed> {
    let parsed = manifest::parse(&read(file)?).map_err(|rejection| {
        let errors: Vec<String> = rejection
            .errors()
            .map(|p| match p.path.as_str() {
                "" => p.reason.clone(),
                path => format!("{path}: {}", p.reason),
            })
            .collect();
        match errors.as_slice() {
            [one] => anyhow::anyhow!("{} is not a valid manifest: {one}", file.display()),
            many => anyhow::anyhow!(
                "{} is not a valid manifest ({} errors):\n  {}",
                file.display(),
                many.len(),
                many.join("\n  ")
            ),
        }
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

/// The directories of a manifest's `file://` images, with relative references resolved under
/// `base` as [`deploy_file`] resolves them: what a host must be allowed to load it from.
pub fn file_image_dirs(file: &Path, base: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut parsed = load(file)?;
    absolutize_file_refs(&mut parsed.document, base);
    let mut dirs: Vec<std::path::PathBuf> = parsed.document["spec"]["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|component| component["properties"]["image"].as_str())
        .filter_map(|image| image.strip_prefix("file://"))
        .filter_map(|path| Path::new(path).parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    Ok(dirs)
}

/// What [`deploy_file`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    pub name: String,
    pub version: String,
    /// Whether a stored copy of the same version was replaced (`--replace`).
    pub replaced: bool,
    /// The deployer's answer to the deploy request.
    pub message: String,
}

/// Validates `file`, makes its relative `file://` references absolute under `base`, stores it
/// (with `replace`, over an existing copy of the same version) and deploys it.
pub async fn deploy_file(
    client: &WadmClient,
    file: &Path,
    base: &Path,
    replace: bool,
) -> anyhow::Result<Deployed> {
    let parsed = load(file)?;
    deploy_parsed(client, parsed, base, replace).await
}

async fn deploy_parsed(
    client: &WadmClient,
    mut parsed: manifest::Parsed,
    base: &Path,
    replace: bool,
) -> anyhow::Result<Deployed> {
    absolutize_file_refs(&mut parsed.document, base);
    let name = parsed.manifest.name.as_str();
    let mut put = client.put(&parsed.document).await?;
    let mut replaced = false;
    if result(&put) == "error"
        && replace
        && let Some(version) = parsed.manifest.version()
        && message(&put).contains("already exists")
    {
        client.delete(name, Some(version)).await?;
        put = client.put(&parsed.document).await?;
        replaced = true;
    }
    if result(&put) == "error" {
        let hint = if message(&put).contains("already exists") {
            " (--replace overwrites it, or raise metadata.annotations.version)"
        } else {
            ""
        };
        bail!("storing {name}: {}{hint}", message(&put));
    }
    let version = put["current_version"].as_str().map(str::to_string);
    let deployed = client.deploy(name, version.as_deref()).await?;
    if result(&deployed) != "acknowledged" {
        bail!("deploying {name}: {}", message(&deployed));
    }
    Ok(Deployed {
        name: name.to_string(),
        version: version.unwrap_or_else(|| "?".into()),
        replaced,
        message: message(&deployed).to_string(),
    })
}

fn result(reply: &Value) -> &str {
    reply["result"].as_str().unwrap_or_default()
}

fn message(reply: &Value) -> &str {
    reply["message"].as_str().unwrap_or_default()
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A cell: the text, or `-` when it is empty.
fn cell(text: &str) -> String {
    if text.is_empty() { "-" } else { text }.to_string()
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn connect(lattice: &LatticeArgs) -> anyhow::Result<WadmClient> {
    Ok(WadmClient::connect(&lattice.nats_url, &lattice.lattice, &lattice.auth()).await?)
}

fn not_found(name: &str, lattice: &LatticeArgs) -> anyhow::Error {
    anyhow::anyhow!(
        "no application named `{name}` on lattice `{}` (`trellis app list` lists them)",
        lattice.lattice
    )
}

/// Runs one `trellis app` command. With `-o json` each prints one JSON document on stdout:
///
/// - `deploy`: `{"success", "name", "version", "replaced", "message"}`;
/// - `list`: the wadm `models` array (`name`, `version`, `description`, `deployed_version`,
///   `status`, `status_message`, `detailed_status`);
/// - `status`: wadm's status object (`status {type, message}`, `scalers [{id, kind, name,
///   status}]`, …) with the application's `name`;
/// - `undeploy`: `{"success", "name", "message"}`;
/// - `delete`: `{"success", "name", "deleted", "undeployed", "message"}`.
///
/// Failures print one line (with a hint where one helps) on stderr and exit non-zero.
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
            common,
        } => {
            // A bad manifest is refused before anything is sent (or NATS is needed).
            let parsed = load(&file)?;
            let client = connect(&common.lattice).await?;
            let cwd = std::env::current_dir().context("finding the current directory")?;
            let deployed = deploy_parsed(&client, parsed, &cwd, replace).await?;
            match common.output.output {
                Output::Json => print_json(&json!({
                    "success": true,
                    "name": deployed.name,
                    "version": deployed.version,
                    "replaced": deployed.replaced,
                    "message": deployed.message,
                })),
                Output::Table => {
                    let replaced = if deployed.replaced { " (replaced)" } else { "" };
                    println!(
                        "deployed {} version {}{replaced}",
                        deployed.name, deployed.version
                    );
                    Ok(())
                }
            }
        }
        AppCommand::List { common } => {
            let client = connect(&common.lattice).await?;
            let reply = client.list().await?;
            if result(&reply) == "error" {
                bail!("listing applications: {}", message(&reply));
            }
            let mut models = reply["models"].as_array().cloned().unwrap_or_default();
            models.sort_by(|a, b| text(a, "/name").cmp(text(b, "/name")));
            if common.output.output == Output::Json {
                return print_json(&Value::Array(models));
            }
            let rows: Vec<Vec<String>> = models
                .iter()
                .map(|model| {
                    vec![
                        cell(text(model, "/name")),
                        cell(text(model, "/version")),
                        cell(text(model, "/deployed_version")),
                        cell(text(model, "/detailed_status/status/type")),
                        cell(text(model, "/description")),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(
                    &["NAME", "LATEST", "DEPLOYED", "STATUS", "DESCRIPTION"],
                    &rows
                )
            );
            Ok(())
        }
        AppCommand::Status { name, common } => {
            let client = connect(&common.lattice).await?;
            let reply = client.status(&name).await?;
            match result(&reply) {
                "notfound" => return Err(not_found(&name, &common.lattice)),
                "error" => bail!("status of {name}: {}", message(&reply)),
                _ => {}
            }
            let mut status = reply["status"].clone();
            let scalers = status["scalers"].as_array().cloned().unwrap_or_default();
            // An unknown name has no status of its own: tell it from an undeployed app.
            if scalers.is_empty()
                && text(&status, "/status/type") == "undeployed"
                && result(&client.get(&name).await?) == "notfound"
            {
                return Err(not_found(&name, &common.lattice));
            }
            if common.output.output == Output::Json {
                if let Value::Object(fields) = &mut status {
                    fields.insert("name".into(), Value::String(name));
                }
                return print_json(&status);
            }
            let kind = text(&status, "/status/type");
            match text(&status, "/status/message") {
                "" => println!("{name}: {kind}"),
                reason => println!("{name}: {kind}: {reason}"),
            }
            if !scalers.is_empty() {
                let rows: Vec<Vec<String>> = scalers
                    .iter()
                    .map(|scaler| {
                        vec![
                            cell(text(scaler, "/kind")),
                            cell(text(scaler, "/name")),
                            cell(text(scaler, "/status/type")),
                            cell(text(scaler, "/status/message")),
                        ]
                    })
                    .collect();
                print!(
                    "\n{}",
                    render_table(&["KIND", "NAME", "STATUS", "MESSAGE"], &rows)
                );
            }
            Ok(())
        }
        AppCommand::Undeploy { name, common } => {
            let client = connect(&common.lattice).await?;
            let reply = client.undeploy(&name).await?;
            match result(&reply) {
                "acknowledged" => {}
                "notfound" => return Err(not_found(&name, &common.lattice)),
                _ => bail!("undeploying {name}: {}", message(&reply)),
            }
            match common.output.output {
                Output::Json => print_json(&json!({
                    "success": true,
                    "name": name,
                    "message": message(&reply),
                })),
                Output::Table => {
                    println!("undeployed {name}");
                    Ok(())
                }
            }
        }
        AppCommand::Delete { name, common } => {
            let client = connect(&common.lattice).await?;
            let reply = client.delete(&name, None).await?;
            let deleted = match result(&reply) {
                "deleted" => true,
                "noop" => false,
                _ => bail!("deleting {name}: {}", message(&reply)),
            };
            match common.output.output {
                Output::Json => print_json(&json!({
                    "success": true,
                    "name": name,
                    "deleted": deleted,
                    "undeployed": reply["undeploy"].as_bool().unwrap_or(false),
                    "message": message(&reply),
                })),
                Output::Table if deleted => {
                    println!("deleted {name}");
                    Ok(())
                }
                Output::Table => {
                    println!("{name} was not stored");
                    Ok(())
                }
            }
        }
    }
}
