//! wasmCloud 1.x's host on a lattice, for side-by-side benchmarks:
//! `trellis-bench-wasmcloud NATS_URL LATTICE` runs `wasmcloud_host::wasmbus::Host` (0.27.1, the
//! host of wasmCloud 1.9) with its built-in HTTP server and client switched on (providers
//! `wasmcloud+builtin://http-server` / `http-client`), file loading allowed (`file://`
//! components, as `WASMCLOUD_ALLOW_FILE_LOAD`) and every other setting at the library's default,
//! which is the `wasmcloud` binary's default. Stops on SIGINT or SIGTERM, within 5 s.

use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use wasmcloud_host::url::Url;
use wasmcloud_host::wasmbus::{Features, Host, HostConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let (Some(nats_url), Some(lattice), None) = (args.next(), args.next(), args.next()) else {
        anyhow::bail!("usage: trellis-bench-wasmcloud NATS_URL LATTICE");
    };
    let nats_url = Url::parse(&nats_url).context("NATS_URL")?;
    let config = HostConfig {
        ctl_nats_url: nats_url.clone(),
        rpc_nats_url: nats_url,
        lattice: lattice.into(),
        allow_file_load: true,
        experimental_features: Features::new()
            .enable_builtin_http_server()
            .enable_builtin_http_client(),
        ..HostConfig::default()
    };
    let (_host, shutdown) = Host::new(config)
        .await
        .context("starting the wasmCloud host")?;
    eprintln!("wasmCloud host started");
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    // The host's shutdown publishes `host_stopped` and flushes NATS, which waits forever once
    // the nats-server is gone (a benchmark stops both at once).
    match tokio::time::timeout(Duration::from_secs(5), shutdown).await {
        Ok(stopped) => stopped.context("stopping the wasmCloud host"),
        Err(_) => anyhow::bail!("the wasmCloud host did not stop within 5 s"),
    }
}
