//! `trellis-test-wadm`: the real wadm, started in-process with `wadm::start_wadm`, for tests that
//! check Trellis hosts can be managed by it; and, in client mode, the real wadm client library
//! (`wadm-client`, which `wash app` uses) driving whatever serves the wadm API.
//!
//! Usage:
//!
//! - `trellis-test-wadm --nats-url URL`: runs wadm. Everything else keeps the defaults of the
//!   `wadm` binary (stream, bucket and API-prefix names, file-backed streams); like that binary,
//!   it serves every lattice on the NATS server.
//! - `trellis-test-wadm client --nats-url URL --lattice L [--timeout SECS]
//!   [--pause-before-undeploy] MANIFEST_FILE`: takes the manifest through its whole life with
//!   `wadm_client::Client`'s typed API only (see [`client`]). Each step prints one JSON line on
//!   stdout (`{"step": …, "ok": true, …}`); the first failure prints `"ok": false` with the
//!   error and exits non-zero. A reply the client cannot deserialize into wadm's types is a
//!   failure. `--pause-before-undeploy` waits for a line on stdin once the app is deployed (so
//!   that a test can look at the lattice); `--timeout` bounds each wait for a status (30 s).
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: trellis-test-wadm --nats-url URL | trellis-test-wadm client \
                     --nats-url URL --lattice L [--timeout SECS] [--pause-before-undeploy] \
                     MANIFEST_FILE";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("client") {
        args.next();
        return client::run(client_args(args)?).await;
    }
    let config = wadm::config::WadmConfig {
        nats_server: nats_url_from_args(args)?,
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

fn nats_url_from_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<String> {
    let mut nats_url = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--nats-url" => nats_url = Some(args.next().context("--nats-url needs a value")?),
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    nats_url.context("--nats-url URL is required")
}

/// What client mode was asked to do.
pub struct ClientArgs {
    nats_url: String,
    lattice: String,
    manifest: PathBuf,
    timeout: Duration,
    pause_before_undeploy: bool,
}

fn client_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<ClientArgs> {
    let (mut nats_url, mut lattice, mut manifest) = (None, None, None);
    let mut timeout = Duration::from_secs(30);
    let mut pause_before_undeploy = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--nats-url" => nats_url = Some(args.next().context("--nats-url needs a value")?),
            "--lattice" => lattice = Some(args.next().context("--lattice needs a value")?),
            "--timeout" => {
                let secs = args.next().context("--timeout needs a value")?;
                timeout = Duration::from_secs(secs.parse().context("--timeout SECS")?);
            }
            "--pause-before-undeploy" => pause_before_undeploy = true,
            other if other.starts_with("--") => bail!("unknown argument {other:?}; {USAGE}"),
            file if manifest.is_none() => manifest = Some(PathBuf::from(file)),
            other => bail!("unexpected argument {other:?}; {USAGE}"),
        }
    }
    Ok(ClientArgs {
        nats_url: nats_url.context("--nats-url URL is required")?,
        lattice: lattice.context("--lattice L is required")?,
        manifest: manifest.context("MANIFEST_FILE is required")?,
        timeout,
        pause_before_undeploy,
    })
}

mod client {
    //! The manifest's whole life through `wadm_client::Client`: put, list, get (latest and by
    //! version), versions, status subscription, deploy, typed status until `deployed` (polled,
    //! and received on the subscription), list and versions showing the deployed version,
    //! undeploy, status until `undeployed` (both ways again), delete, and the model gone.

    use std::time::Instant;

    use anyhow::{Context, anyhow, ensure};
    use futures::{Stream, StreamExt};
    use serde_json::{Value, json};
    use tokio::io::AsyncBufReadExt;
    use wadm_client::error::ClientError;
    use wadm_client::{Client, ClientConnectOptions};
    use wadm_types::api::{Status, StatusType};

    use super::ClientArgs;

    /// Prints a step's success line.
    fn ok(step: &str, details: Value) {
        let mut line = json!({"step": step, "ok": true});
        if let (Value::Object(line), Value::Object(details)) = (&mut line, details) {
            line.extend(details);
        }
        println!("{line}");
    }

    /// Runs `body` as step `step`: prints its success line, or its failure line and the error.
    async fn step<T>(
        step_name: &str,
        body: impl std::future::Future<Output = anyhow::Result<(T, Value)>>,
    ) -> anyhow::Result<T> {
        match body.await {
            Ok((value, details)) => {
                ok(step_name, details);
                Ok(value)
            }
            Err(error) => {
                println!(
                    "{}",
                    json!({"step": step_name, "ok": false, "error": format!("{error:#}")})
                );
                Err(error.context(format!("step {step_name} failed")))
            }
        }
    }

    fn status_json(status: &Status) -> Value {
        json!({
            "type": status.info.status_type,
            "message": status.info.message,
            "scalers": status.scalers.iter().map(|s| json!({
                "kind": s.kind, "name": s.name, "type": s.info.status_type,
            })).collect::<Vec<_>>(),
        })
    }

    /// Polls the typed status until it is `wanted` (any other type is waited through).
    async fn poll_status(
        client: &Client,
        name: &str,
        wanted: StatusType,
        args: &ClientArgs,
    ) -> anyhow::Result<((), Value)> {
        let start = Instant::now();
        let mut polls = 0;
        let mut seen = Vec::new();
        loop {
            let status = client
                .get_manifest_status(name)
                .await
                .context("get_manifest_status")?;
            polls += 1;
            if seen.last() != Some(&status.info.status_type) {
                seen.push(status.info.status_type);
            }
            if status.info.status_type == wanted {
                let details = json!({
                    "status": status_json(&status),
                    "polls": polls,
                    "types_seen": seen,
                    "elapsed_ms": start.elapsed().as_millis() as u64,
                });
                return Ok(((), details));
            }
            ensure!(
                start.elapsed() < args.timeout,
                "no {wanted:?} status within {:?}; types seen {seen:?}, last {}",
                args.timeout,
                status_json(&status)
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Reads status messages from the subscription, each deserialized into wadm's `Status`,
    /// until one is `wanted`.
    async fn subscribed_status(
        statuses: &mut (impl Stream<Item = async_nats::Message> + Unpin),
        wanted: StatusType,
        args: &ClientArgs,
    ) -> anyhow::Result<((), Value)> {
        let deadline = tokio::time::Instant::now() + args.timeout;
        let mut seen = Vec::new();
        loop {
            let message = tokio::time::timeout_at(deadline, statuses.next())
                .await
                .map_err(|_| {
                    anyhow!(
                        "no {wanted:?} status published within {:?}; types received {seen:?}",
                        args.timeout
                    )
                })?
                .context("the status subscription ended")?;
            let status: Status = serde_json::from_slice(&message.payload).with_context(|| {
                format!(
                    "status on {} is not a wadm Status: {}",
                    message.subject,
                    String::from_utf8_lossy(&message.payload)
                )
            })?;
            seen.push(status.info.status_type);
            if status.info.status_type == wanted {
                let details = json!({
                    "subject": message.subject.as_str(),
                    "received": seen.len(),
                    "types_received": seen,
                    "status": status_json(&status),
                });
                return Ok(((), details));
            }
        }
    }

    pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
        let local = wadm_client::loader::parse_yaml_or_json(
            tokio::fs::read(&args.manifest)
                .await
                .with_context(|| format!("reading {}", args.manifest.display()))?,
        )
        .context("the manifest file is not a wadm manifest")?;
        let client = step("connect", async {
            let options = ClientConnectOptions {
                url: Some(args.nats_url.clone()),
                ..Default::default()
            };
            let client = Client::new(&args.lattice, None, options).await?;
            Ok((client, json!({"lattice": args.lattice})))
        })
        .await?;

        let (name, version) = step("put", async {
            let (name, version) = client.put_manifest(args.manifest.as_path()).await?;
            ensure!(name == local.metadata.name, "put named the model {name:?}");
            ensure!(!version.is_empty(), "put returned no version");
            if !local.version().is_empty() {
                ensure!(
                    version == local.version(),
                    "put returned version {version:?}"
                );
            }
            let details = json!({"name": name, "version": version});
            Ok(((name, version), details))
        })
        .await?;

        step("list", async {
            let models = client.list_manifests().await?;
            let model = models
                .iter()
                .find(|m| m.name == name)
                .with_context(|| format!("{name} is not listed"))?;
            ensure!(
                model.version == version,
                "listed version {:?}",
                model.version
            );
            ensure!(
                model.deployed_version.is_none(),
                "listed as deployed ({:?}) before deploy",
                model.deployed_version
            );
            let details = json!({
                "models": models.len(),
                "description": model.description,
                "detailed_status": status_json(&model.detailed_status),
            });
            Ok(((), details))
        })
        .await?;

        step("get", async {
            let latest = client.get_manifest(&name, None).await?;
            ensure!(latest == local, "got back {latest:?}, not the manifest put");
            let by_version = client.get_manifest(&name, Some(&version)).await?;
            ensure!(
                by_version == local,
                "got version {version} back as {by_version:?}"
            );
            let details = json!({
                "components": latest.spec.components.len(),
                "links": latest.links().count(),
                "version": latest.version(),
            });
            Ok(((), details))
        })
        .await?;

        step("versions", async {
            let versions = client.list_versions(&name).await?;
            ensure!(
                versions.len() == 1 && versions[0].version == version && !versions[0].deployed,
                "versions {versions:?}"
            );
            Ok(((), json!({"versions": versions})))
        })
        .await?;

        let mut statuses = step("subscribe", async {
            let statuses = client.subscribe_to_status(&name).await?;
            Ok((Box::pin(statuses), json!({})))
        })
        .await?;

        step("deploy", async {
            let (deployed, deployed_version) =
                client.deploy_manifest(&name, Some(&version)).await?;
            ensure!(deployed == name, "deploy acknowledged {deployed:?}");
            ensure!(
                deployed_version.as_deref() == Some(version.as_str()),
                "deploy acknowledged version {deployed_version:?}"
            );
            Ok(((), json!({"name": deployed, "version": deployed_version})))
        })
        .await?;

        step(
            "status_deployed",
            poll_status(&client, &name, StatusType::Deployed, &args),
        )
        .await?;
        step(
            "subscribed_deployed",
            subscribed_status(&mut statuses, StatusType::Deployed, &args),
        )
        .await?;

        step("list_deployed", async {
            let models = client.list_manifests().await?;
            let model = models
                .iter()
                .find(|m| m.name == name)
                .with_context(|| format!("{name} is not listed"))?;
            ensure!(
                model.deployed_version.as_deref() == Some(version.as_str()),
                "listed deployed version {:?}",
                model.deployed_version
            );
            ensure!(
                model.detailed_status.info.status_type == StatusType::Deployed,
                "listed status {}",
                status_json(&model.detailed_status)
            );
            let versions = client.list_versions(&name).await?;
            ensure!(
                versions.iter().any(|v| v.version == version && v.deployed),
                "versions {versions:?}"
            );
            let details = json!({
                "deployed_version": model.deployed_version,
                "detailed_status": status_json(&model.detailed_status),
                "versions": versions,
            });
            Ok(((), details))
        })
        .await?;

        if args.pause_before_undeploy {
            ok("paused", json!({}));
            let mut line = String::new();
            tokio::io::BufReader::new(tokio::io::stdin())
                .read_line(&mut line)
                .await
                .context("reading stdin")?;
        }

        step("undeploy", async {
            let undeployed = client.undeploy_manifest(&name).await?;
            ensure!(undeployed == name, "undeploy acknowledged {undeployed:?}");
            Ok(((), json!({"name": undeployed})))
        })
        .await?;
        step(
            "status_undeployed",
            poll_status(&client, &name, StatusType::Undeployed, &args),
        )
        .await?;
        step(
            "subscribed_undeployed",
            subscribed_status(&mut statuses, StatusType::Undeployed, &args),
        )
        .await?;

        step("delete", async {
            let deleted = client.delete_manifest(&name, None).await?;
            ensure!(deleted, "delete was a no-op");
            let again = client.delete_manifest(&name, None).await?;
            ensure!(!again, "deleting again deleted something");
            Ok(((), json!({"deleted": deleted, "deleted_again": again})))
        })
        .await?;

        step("gone", async {
            match client.get_manifest(&name, None).await {
                Err(ClientError::NotFound(_)) => {}
                other => anyhow::bail!("get after delete: {other:?}"),
            }
            let models = client.list_manifests().await?;
            ensure!(
                models.iter().all(|m| m.name != name),
                "{name} is still listed"
            );
            Ok(((), json!({"models": models.len()})))
        })
        .await?;
        Ok(())
    }
}
