//! `trellis`: the command line. `trellis host` joins a lattice and runs until SIGINT/SIGTERM
//! or a `host.stop` request, then stops gracefully; `trellis deployer` and `trellis app …` are
//! the wadm-compatible deployer and its client (in `trellis-deployer`); `trellis up` and
//! `trellis dev` run everything on one machine ([`platform`]), `dev` for a component's
//! edit → build → try loop; `trellis new` writes a component project.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory as _, Parser, Subcommand};

mod cli;
mod dev;
mod example;
mod platform;
mod up;
use trellis_host::oci::{self, OciSettings};
use trellis_host::telemetry::Observability;
use trellis_host::{
    BuiltinAlias, FilePolicy, HostConfig, HostLimits, LatticeHost, NatsAuth, parse_switches,
};

#[derive(Parser)]
#[command(
    name = "trellis",
    version,
    about = "Run WebAssembly components on a wasmCloud lattice"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log output on stderr: `text`, or `json` (one object a line); levels per module via
    /// RUST_LOG.
    #[arg(
        long,
        global = true,
        env = "TRELLIS_LOG_FORMAT",
        value_enum,
        default_value_t = cli::logs::LogFormat::Text
    )]
    log_format: cli::logs::LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything on this machine: a private nats-server, a host with the built-in
    /// providers and the deployer, then deploy a manifest (default: the built-in HTTP hello
    /// example).
    Up(up::UpArgs),
    /// Develop a component: build it, run it as `up` would, and rebuild and swap it in (with
    /// no failed request) on every change to its sources.
    Dev(dev::DevArgs),
    /// Write a minimal HTTP component project that `trellis dev` runs.
    New(cli::new::NewArgs),
    /// Join a lattice as a host.
    Host(HostArgs),
    /// Run the wadm-compatible deployer alone.
    Deployer(trellis_deployer::cli::DeployerArgs),
    /// Manage wadm applications (a client of the wadm API).
    App(trellis_deployer::cli::AppArgs),
    /// Drive hosts through the wasmCloud control interface.
    Ctl(cli::ctl::CtlArgs),
    /// Publish a component (.wasm) or provider archive (.par.gz) to an OCI registry; prints
    /// the digest.
    Push(cli::push::PushArgs),
    /// Embed signed claims in a component (as `wash claims sign`), so secrets backends can
    /// tell which component asks; prints its key.
    Sign(cli::sign::SignArgs),
    /// Make key pairs (e.g. `trellis keys gen curve` for a secrets backend's XKeys).
    Keys(cli::keys::KeysArgs),
    /// Print the shell completion script, e.g. `source <(trellis completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct HostArgs {
    /// NATS server to join the lattice through.
    #[arg(
        long,
        env = "TRELLIS_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// Lattice name.
    #[arg(long, env = "TRELLIS_LATTICE", default_value = "default")]
    lattice: String,
    /// NATS credentials file (user JWT and seed).
    #[arg(long, env = "TRELLIS_NATS_CREDS", conflicts_with = "nats_nkey")]
    nats_creds: Option<std::path::PathBuf>,
    /// NATS user nkey seed (`SU…`).
    #[arg(long, env = "TRELLIS_NATS_NKEY", hide_env_values = true)]
    nats_nkey: Option<String>,
    /// PEM file of CA certificates to trust for a TLS connection to NATS (TLS is then required).
    #[arg(long, env = "TRELLIS_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// A host label `key=value` (repeatable; `hostcore.*` keys are reserved).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// nkeys server seed (`SN…`) giving the host ID; a fresh one is made when absent.
    #[arg(long, env = "TRELLIS_HOST_SEED", hide_env_values = true)]
    host_seed: Option<String>,
    /// Friendly name; random `adjective-noun-NNNN` when absent.
    #[arg(long, env = "TRELLIS_HOST_NAME")]
    name: Option<String>,
    /// Seconds between heartbeats.
    #[arg(long, env = "TRELLIS_HEARTBEAT_SECS", default_value_t = 30)]
    heartbeat_secs: u64,
    /// Send every link over wRPC, even to components on this host (for comparison/debugging).
    #[arg(long, env = "TRELLIS_NO_IN_PROCESS_LINKS")]
    no_in_process_links: bool,
    /// Milliseconds a component's call to the lattice may take.
    #[arg(long, env = "TRELLIS_RPC_TIMEOUT_MS", default_value_t = 10_000)]
    rpc_timeout_ms: u64,
    /// Switch built-in providers on or off: `NAME=on|off`, comma-separated or repeated, applied
    /// to the default set (all on: http-server, http-client, keyvalue, blobstore, config,
    /// logging, messaging).
    #[arg(
        long = "builtin",
        env = "TRELLIS_BUILTINS",
        value_name = "NAME=on|off",
        value_delimiter = ','
    )]
    builtins: Vec<String>,
    /// Treat provider references matching PATTERN (exact, or a prefix ending in `*`) as a
    /// built-in, e.g. `ghcr.io/wasmcloud/http-server:*=http-server`; `wasmcloud` adds the
    /// well-known wasmCloud provider images (repeatable).
    #[arg(
        long = "builtin-alias",
        env = "TRELLIS_BUILTIN_ALIASES",
        value_name = "PATTERN=BUILTIN",
        value_delimiter = ','
    )]
    builtin_aliases: Vec<String>,
    /// Also run the wadm-compatible deployer in this process.
    #[arg(long, env = "TRELLIS_DEPLOYER")]
    deployer: bool,
    /// Where pulled OCI artifacts are cached, by digest.
    #[arg(long, env = "TRELLIS_OCI_CACHE", default_value_os_t = oci::default_cache_dir())]
    oci_cache: std::path::PathBuf,
    /// A registry (`host[:port]`) pulled from over plain HTTP (repeatable, or comma-separated).
    #[arg(long, env = "TRELLIS_ALLOWED_INSECURE", value_delimiter = ',')]
    allowed_insecure: Vec<String>,
    /// Allow pulling `latest` tags (and references without a tag).
    #[arg(long, env = "TRELLIS_ALLOW_LATEST")]
    allow_latest: bool,
    /// Load components and providers from any `file://` reference (off: none, as wasmCloud).
    #[arg(long, env = "TRELLIS_ALLOW_FILE_LOAD")]
    allow_file_load: bool,
    /// Load `file://` references under this directory (repeatable, or comma-separated).
    #[arg(
        long = "allow-file-root",
        env = "TRELLIS_ALLOW_FILE_ROOTS",
        value_name = "DIR",
        value_delimiter = ','
    )]
    allow_file_roots: Vec<std::path::PathBuf>,
    /// Let components have host directories under DIR as volumes (`trellis.volume.*` keys in
    /// their named config; repeatable, or comma-separated). None by default.
    #[arg(
        long = "allow-volume-root",
        env = "TRELLIS_ALLOW_VOLUME_ROOTS",
        value_name = "DIR",
        value_delimiter = ','
    )]
    allow_volume_roots: Vec<std::path::PathBuf>,
    /// Wall time of one component call, in milliseconds (wasmCloud's flag; components may set
    /// less with `max_execution_time` limits).
    #[arg(long, env = "TRELLIS_MAX_EXECUTION_TIME_MS", default_value_t = 600_000)]
    max_execution_time_ms: u64,
    /// Bytes a component's linear memory may grow to (wasmCloud's flag).
    #[arg(long, env = "TRELLIS_MAX_LINEAR_MEMORY", default_value_t = 256 << 20)]
    max_linear_memory_bytes: usize,
    /// The largest component artifact this host starts, in bytes (wasmCloud's flag).
    #[arg(long, env = "TRELLIS_MAX_COMPONENT_SIZE", default_value_t = 50 << 20)]
    max_component_size_bytes: u64,
    /// Live component instances (calls in flight) across the host; the pool is sized for them.
    #[arg(long, env = "TRELLIS_MAX_COMPONENTS", default_value_t = 1000)]
    max_components: u32,
    /// Fuel (wasm instructions) per call; turns fuel metering on, which costs speed.
    #[arg(long, env = "TRELLIS_MAX_FUEL")]
    max_fuel: Option<u64>,
    /// The share of a core, in percent, a call keeps once it has computed for 100 ms, so an
    /// endless loop leaves room for the calls beside it (100: never slowed).
    #[arg(long, env = "TRELLIS_BUSY_CALL_CPU_PERCENT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    busy_call_cpu_percent: u32,
    /// Bytes at the start of each pooled linear memory and table kept mapped when an instance
    /// ends and reset in place for the next one: fewer page faults and TLB shootdowns per
    /// instance, for more resident memory (0: hand every page back to the kernel).
    #[arg(long, env = "TRELLIS_POOL_KEEP_RESIDENT_BYTES",
          default_value_t = trellis_runtime::DEFAULT_KEEP_RESIDENT_BYTES)]
    pool_keep_resident_bytes: usize,
    /// Run components built for the component model's async ABI (WASI 0.3). Off, wasmtime
    /// keeps no task state: every instance and cross-component call of WASI 0.2 components
    /// (all that wasmCloud 1.x runs) is cheaper, and a WASI 0.3 component fails to start.
    #[arg(long, env = "TRELLIS_COMPONENT_MODEL_ASYNC")]
    component_model_async: bool,
    /// Subject prefix of the lattice's secrets backends (wasmCloud's `--secrets-topic`, e.g.
    /// `wasmcloud.secrets`). Without it, components and providers naming secrets do not start.
    #[arg(long, alias = "secrets-topic-prefix", env = "TRELLIS_SECRETS_TOPIC")]
    secrets_topic: Option<String>,
    /// Serve Prometheus metrics on `GET /metrics` at this address (e.g. 127.0.0.1:9090); off
    /// by default.
    #[arg(long, env = "TRELLIS_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    observability: trellis_host::telemetry::ObservabilityArgs,
}

fn parse_label(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{raw}`")),
    }
}

fn main() -> ExitCode {
    // wasmtime 45 builds an error while dropping every store; with library backtraces on (as
    // RUST_BACKTRACE=1 implies) each one captures a stack trace, doubling the cost of an
    // invocation. Panics keep their backtraces. Set before any thread exists.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: single-threaded here; nothing reads the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(Cli::parse())),
        Err(error) => {
            eprintln!("trellis: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    // `trellis app` is a short-lived client: only warnings unless RUST_LOG says otherwise.
    let level = match cli.command {
        Command::App(_)
        | Command::Up(_)
        | Command::Dev(_)
        | Command::New(_)
        | Command::Ctl(_)
        | Command::Push(_)
        | Command::Sign(_)
        | Command::Keys(_) => "warn",
        _ => "info",
    };
    let mut cli = cli;
    let observability = match &mut cli.command {
        // The host's key is made here rather than when it starts, so that telemetry names it.
        Command::Host(args) => {
            let seed = args.host_seed.get_or_insert_with(|| {
                nkeys::KeyPair::new_server()
                    .seed()
                    .expect("a new key has a seed")
            });
            Observability {
                host_id: nkeys::KeyPair::from_seed(seed)
                    .ok()
                    .map(|key| key.public_key()),
                lattice: Some(args.lattice.clone()),
                ..Observability::new(args.observability.clone())
            }
        }
        Command::Up(args) => args.observability(),
        Command::Dev(args) => args.observability(),
        _ => Observability::default(),
    };
    let exporters = match cli::logs::init(cli.log_format, level, &observability) {
        Ok(exporters) => exporters,
        Err(error) => {
            eprintln!("trellis: cannot set up logging and telemetry: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let (name, outcome) = match cli.command {
        Command::Up(args) => ("up", up::run(args, shutdown_signal()).await),
        Command::Dev(args) => ("dev", dev::run(args, shutdown_signal()).await),
        Command::New(args) => ("new", cli::new::run(args)),
        Command::Host(args) => ("host", run_host(args).await),
        Command::Deployer(args) => (
            "deployer",
            trellis_deployer::cli::run_deployer(args, shutdown_signal()).await,
        ),
        Command::App(args) => ("app", trellis_deployer::cli::run_app(args).await),
        Command::Ctl(args) => ("ctl", cli::ctl::run(args).await.map_err(Into::into)),
        Command::Push(args) => ("push", cli::push::run(args).await),
        Command::Sign(args) => ("sign", cli::sign::run(args)),
        Command::Keys(args) => ("keys", cli::keys::run(args)),
        Command::Completions { shell } => {
            cli::completions(shell, Cli::command());
            return ExitCode::SUCCESS;
        }
    };
    exporters.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("trellis {name}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_host(args: HostArgs) -> anyhow::Result<()> {
    let deployer = args.deployer.then(|| {
        let lattice = trellis_deployer::cli::LatticeArgs {
            nats_creds: args.nats_creds.clone(),
            nats_nkey: args.nats_nkey.clone(),
            tls_ca: args.tls_ca.clone(),
            ..trellis_deployer::cli::LatticeArgs::new(&args.nats_url, &args.lattice)
        };
        trellis_deployer::cli::deployer_config(&lattice, 10)
    });
    let builtins = parse_switches(args.builtins.iter().map(String::as_str))?;
    let mut builtin_aliases = Vec::new();
    for alias in &args.builtin_aliases {
        builtin_aliases.extend(BuiltinAlias::parse_all(alias)?);
    }
    let config = HostConfig {
        nats_url: args.nats_url,
        nats_auth: NatsAuth {
            creds_file: args.nats_creds,
            nkey_seed: args.nats_nkey,
            tls_ca: args.tls_ca,
        },
        lattice: args.lattice,
        labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
        host_seed: args.host_seed,
        name: args.name,
        heartbeat_interval: Duration::from_secs(args.heartbeat_secs.max(1)),
        in_process_links: !args.no_in_process_links,
        rpc_timeout: Duration::from_millis(args.rpc_timeout_ms),
        builtins,
        builtin_aliases,
        oci: OciSettings {
            cache_dir: args.oci_cache,
            allowed_insecure: args.allowed_insecure,
            allow_latest: args.allow_latest,
        },
        files: FilePolicy {
            allow_all: args.allow_file_load,
            roots: args.allow_file_roots,
        },
        volume_roots: args.allow_volume_roots,
        limits: HostLimits {
            max_execution_time: Duration::from_millis(args.max_execution_time_ms.max(1)),
            max_linear_memory_bytes: args.max_linear_memory_bytes,
            max_component_size_bytes: args.max_component_size_bytes,
            max_components: args.max_components,
            max_fuel: args.max_fuel,
            busy_call_cpu_percent: args.busy_call_cpu_percent,
            pool_keep_resident_bytes: args.pool_keep_resident_bytes,
        },
        component_model_async: args.component_model_async,
        secrets_topic: args.secrets_topic,
        metrics_addr: args.metrics_addr,
        observability: Observability::new(args.observability),
        ..HostConfig::default()
    };
    // Listen before joining: a SIGTERM right after `host_started` must still stop gracefully.
    let shutdown = shutdown_signal();
    let host = LatticeHost::start(config).await?;
    let deployer = match deployer {
        Some(config) => Some(trellis_deployer::Deployer::start(config).await?),
        None => None,
    };
    let deadline = tokio::select! {
        signal = shutdown => {
            tracing::info!("received {signal}, stopping");
            None
        }
        request = host.stop_requested() => request.timeout,
    };
    if let Some(deployer) = deployer {
        deployer.stop().await;
    }
    host.stop(deadline).await
}

/// Listens for SIGINT and SIGTERM from the moment it is called (a signal arriving before the
/// returned future is first polled still counts); the future names the first that arrives.
fn shutdown_signal() -> impl Future<Output = &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                },
                (int, term) => {
                    if let Err(error) = int.and(term) {
                        tracing::warn!("cannot listen for SIGINT and SIGTERM: {error}");
                    }
                    let _ = tokio::signal::ctrl_c().await;
                    "SIGINT"
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
