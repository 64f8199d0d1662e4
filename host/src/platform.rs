//! The local platform `trellis up` and `trellis dev` run: a private nats-server (or a running
//! lattice joined with `--nats-url`), a host with the built-in providers and the deployer, each
//! started as one progress phase, and all stopped again in the reverse order.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use trellis_deployer::client::WadmClient;
use trellis_deployer::{Deployer, DeployerConfig};
use trellis_host::telemetry::{Observability, ObservabilityArgs};
use trellis_host::{EmbeddedNats, FilePolicy, HostConfig, HostError, LatticeHost, NatsAuth};

use crate::cli::progress::Progress;

/// Where the platform's lattice is: flags shared by `up` and `dev`.
#[derive(clap::Args)]
pub struct LatticeFlags {
    /// Join this lattice instead of starting a private nats-server.
    #[arg(long, env = "TRELLIS_NATS_URL")]
    pub nats_url: Option<String>,
    /// The nats-server binary to run (default: `nats-server` on PATH).
    #[arg(long, env = "TRELLIS_NATS_SERVER")]
    pub nats_server: Option<PathBuf>,
    /// Lattice name.
    #[arg(long, env = "TRELLIS_LATTICE", default_value = "default")]
    pub lattice: String,
    /// NATS credentials file for `--nats-url` (user JWT and seed, as `nsc` writes them).
    #[arg(long, env = "TRELLIS_NATS_CREDS", conflicts_with = "nats_nkey")]
    pub nats_creds: Option<PathBuf>,
    /// NATS user nkey seed (`SU…`) for `--nats-url`.
    #[arg(long, env = "TRELLIS_NATS_NKEY")]
    pub nats_nkey: Option<String>,
    /// PEM file of CA certificates to trust for `--nats-url`; makes TLS required.
    #[arg(long, env = "TRELLIS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    #[command(flatten)]
    pub observability: ObservabilityArgs,
}

impl LatticeFlags {
    fn auth(&self) -> NatsAuth {
        NatsAuth {
            creds_file: self.nats_creds.clone(),
            nkey_seed: self.nats_nkey.clone(),
            tls_ca: self.tls_ca.clone(),
        }
    }
}

/// Which `file://` references the platform's host loads besides those it deploys: flags
/// shared by `up` and `dev`, with the host's names.
#[derive(clap::Args)]
pub struct FileFlags {
    /// Load components and providers from any `file://` reference.
    #[arg(long, env = "TRELLIS_ALLOW_FILE_LOAD")]
    pub allow_file_load: bool,
    /// Also load `file://` references under this directory (repeatable, or comma-separated);
    /// the directories of the manifest's own images are always allowed.
    #[arg(
        long = "allow-file-root",
        env = "TRELLIS_ALLOW_FILE_ROOTS",
        value_name = "DIR",
        value_delimiter = ','
    )]
    pub allow_file_roots: Vec<PathBuf>,
    /// Let components have host directories under DIR as volumes (`trellis.volume.*` keys in
    /// their named config; repeatable, or comma-separated). None by default.
    #[arg(
        long = "allow-volume-root",
        env = "TRELLIS_ALLOW_VOLUME_ROOTS",
        value_name = "DIR",
        value_delimiter = ','
    )]
    pub allow_volume_roots: Vec<PathBuf>,
}

impl FileFlags {
    /// The policy: these flags, plus `deployed_from` (where `up` or `dev` deploys images from).
    fn policy(&self, deployed_from: Vec<PathBuf>) -> FilePolicy {
        FilePolicy {
            allow_all: self.allow_file_load,
            roots: deployed_from
                .into_iter()
                .chain(self.allow_file_roots.iter().cloned())
                .collect(),
        }
    }
}

/// A running nats-server (unless joined), host and deployer.
pub struct Platform {
    pub nats_url: String,
    pub lattice: String,
    auth: NatsAuth,
    nats: Option<EmbeddedNats>,
    host: LatticeHost,
    deployer: Deployer,
}

impl Platform {
    /// Starts what `flags` ask for; the private nats-server keeps JetStream data in `data_dir`;
    /// the host loads the `file://` references `files` allows besides those under
    /// `deployed_from`, and gives components the volumes `files` allows. `command` (`up`, `dev`)
    /// words the hint of a failed connection.
    pub async fn start(
        progress: &Progress,
        flags: &LatticeFlags,
        data_dir: &Path,
        files: &FileFlags,
        deployed_from: Vec<PathBuf>,
        command: &str,
    ) -> anyhow::Result<Self> {
        // A private server needs no credentials; a joined lattice gets the flags'.
        let auth = match &flags.nats_url {
            Some(_) => flags.auth(),
            None => NatsAuth::default(),
        };
        let (nats, nats_url) = match &flags.nats_url {
            Some(url) => {
                progress.say(format_args!("joining the lattice at {url}"));
                (None, url.clone())
            }
            None => {
                let phase = progress.phase("starting nats-server");
                let nats = EmbeddedNats::start(flags.nats_server.as_deref(), data_dir)?;
                let url = nats.url();
                phase.done(format_args!(
                    "started nats-server on {url} (JetStream data in {})",
                    data_dir.display()
                ));
                (Some(nats), url)
            }
        };
        let joining = nats.is_none();
        let phase = progress.phase("starting the host");
        let host = LatticeHost::start(HostConfig {
            nats_url: nats_url.clone(),
            nats_auth: auth.clone(),
            lattice: flags.lattice.clone(),
            files: files.policy(deployed_from),
            volume_roots: files.allow_volume_roots.clone(),
            observability: Observability::new(flags.observability.clone()),
            ..HostConfig::default()
        })
        .await
        .map_err(|error| match error {
            HostError::Connect { .. } if joining => anyhow::anyhow!(
                "{error}; is nats-server running there? (without --nats-url or \
                 TRELLIS_NATS_URL, `trellis {command}` starts its own)"
            ),
            error => error.into(),
        })?;
        phase.done(format_args!(
            "host {} ({}) on lattice `{}` with the built-in providers",
            host.host_id(),
            host.friendly_name(),
            flags.lattice
        ));
        let phase = progress.phase("starting the deployer");
        let deployer = Deployer::start(DeployerConfig {
            nats_url: nats_url.clone(),
            nats_auth: auth.clone(),
            lattice: flags.lattice.clone(),
            ..DeployerConfig::default()
        })
        .await;
        let deployer = match deployer {
            Ok(deployer) => deployer,
            Err(error) => {
                host.stop(None).await?;
                return Err(error.into());
            }
        };
        phase.done("deployer started");
        Ok(Self {
            nats_url,
            lattice: flags.lattice.clone(),
            auth,
            nats,
            host,
            deployer,
        })
    }

    /// A wadm API client on the platform's lattice.
    pub async fn wadm_client(&self) -> anyhow::Result<WadmClient> {
        Ok(WadmClient::connect(&self.nats_url, &self.lattice, &self.auth).await?)
    }

    /// A NATS connection to the platform's lattice, with its credentials.
    pub async fn nats(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        let options = trellis_deployer::connect::options(name, &self.auth)
            .await
            .map_err(anyhow::Error::msg)?;
        options
            .connect(&self.nats_url)
            .await
            .with_context(|| format!("connecting to {}", self.nats_url))
    }

    pub fn host_id(&self) -> &str {
        self.host.host_id()
    }

    /// Whether it joined a lattice rather than running its own nats-server.
    pub fn joined(&self) -> bool {
        self.nats.is_none()
    }

    /// Stops the deployer, then the host (gracefully), then the private nats-server.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.deployer.stop().await;
        let stopped = self.host.stop(None).await;
        drop(self.nats);
        stopped
    }
}
