//! `trellis-test-wadm`: the real wadm, started in-process with `wadm::start_wadm`, for tests that
//! check Trellis hosts can be managed by it.
//!
//! Usage: `trellis-test-wadm --nats-url URL`. Everything else keeps the defaults of the `wadm`
//! binary (stream, bucket and API-prefix names, file-backed streams); like that binary, it serves
//! every lattice on the NATS server. Logs go to stderr, filtered by `RUST_LOG` (default `info`).

use anyhow::{Context, bail};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let config = wadm::config::WadmConfig {
        nats_server: nats_url_from_args()?,
        ..Default::default()
    };
    let mut tasks = wadm::start_wadm(config).await.context("starting wadm")?;
    tokio::select! {
        // Either task ending (API server or observer) means wadm stopped working.
        ended = tasks.join_next() => match ended {
            Some(Ok(Ok(()))) | None => bail!("wadm stopped"),
            Some(Ok(Err(error))) => Err(error.context("wadm failed")),
            Some(Err(join)) => Err(anyhow::Error::new(join).context("wadm task panicked")),
        },
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

fn nats_url_from_args() -> anyhow::Result<String> {
    let mut args = std::env::args().skip(1);
    let mut nats_url = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--nats-url" => nats_url = Some(args.next().context("--nats-url needs a value")?),
            other => bail!("unknown argument {other:?}; usage: trellis-test-wadm --nats-url URL"),
        }
    }
    nats_url.context("--nats-url URL is required")
}
