//! `trellis push FILE REF` and `trellis ctl registry put` as a user runs them: the real binary
//! against a real registry (Debian's `docker-registry`) on loopback. A push prints the
//! manifest digest the registry then serves; a registry that requires basic auth refuses an
//! anonymous push with one line and a hint, and takes the push with `--user`/`--password`;
//! `ctl registry put` gives a host the same credentials, and `ctl scale` then starts the
//! component from the registry by reference.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use trellis_host::oci::OciSettings;
use trellis_host::{HostConfig, LatticeHost};
use trellis_tests::component_path;
use trellis_tests::lattice::{EventLog, ctl_client};
use trellis_tests::nats::NatsServer;
use trellis_tests::registry::{Registry, TEST_PASSWORD, TEST_USER};

mod common;
use common::{Cli, WAIT};

const LATTICE: &str = "push";

/// `trellis …` against `url`, with no credentials or lattice from the test's environment.
fn cli(url: &str) -> Cli {
    Cli::new(url, LATTICE, &[])
}

async fn stdout(url: &str, args: &[&str]) -> String {
    cli(url).stdout(args).await
}

async fn error_line(url: &str, args: &[&str]) -> String {
    cli(url).error_line(args).await
}

/// The digest `trellis push` printed: its whole stdout, `sha256:` and 64 hex digits.
fn digest(stdout: &str) -> String {
    let digest = stdout.strip_suffix('\n').unwrap_or(stdout);
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "push printed {stdout:?}"
    );
    digest.to_string()
}

/// The `Docker-Content-Digest` the registry at `address` answers for `repository:tag` (an
/// anonymous `HEAD` of the OCI manifest over plain HTTP), or the status line when not 200.
fn served_digest(address: &str, repository: &str, tag: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "HEAD /v2/{repository}/manifests/{tag} HTTP/1.0\r\nHost: {address}\r\n\
         Accept: application/vnd.oci.image.manifest.v1+json\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(stream).lines().map_while(Result::ok);
    let status = lines.next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(status);
    }
    Ok(lines
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("docker-content-digest")
                .then(|| value.trim().to_string())
        })
        .expect("a Docker-Content-Digest header"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_prints_the_digest_the_registry_serves() {
    let exporter = component_path("exporter");
    let exporter = exporter.to_str().unwrap();
    let registry = Registry::start();
    let address = registry.address();
    // No NATS is involved.
    let url = "nats://127.0.0.1:1";
    let reference = format!("{address}/trellis/exporter:0.1.0");

    // Plain HTTP must be asked for.
    let line = error_line(url, &["push", exporter, &reference]).await;
    assert!(
        line.starts_with(&format!(
            "trellis push: `{reference}`: registry {address} is unreachable"
        )) && line.ends_with("(or --insecure with trellis push)"),
        "{line}"
    );
    assert_eq!(
        served_digest(&address, "trellis/exporter", "0.1.0"),
        Err("HTTP/1.0 404 Not Found".to_string())
    );

    let pushed = digest(&stdout(url, &["push", exporter, &reference, "--insecure"]).await);
    assert_eq!(
        served_digest(&address, "trellis/exporter", "0.1.0"),
        Ok(pushed)
    );
    // `oci://` references and --allowed-insecure work too.
    let other = format!("oci://{address}/trellis/exporter:0.2.0");
    let pushed = digest(
        &stdout(
            url,
            &["push", exporter, &other, "--allowed-insecure", &address],
        )
        .await,
    );
    assert_eq!(
        served_digest(&address, "trellis/exporter", "0.2.0"),
        Ok(pushed)
    );

    // A missing file is named.
    let line = error_line(
        url,
        &["push", "/nonexistent/x.wasm", &reference, "--insecure"],
    )
    .await;
    assert_eq!(
        line,
        "trellis push: cannot read /nonexistent/x.wasm: No such file or directory (os error 2)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_push_and_registry_put_let_a_host_start_the_component() {
    let exporter = component_path("exporter");
    let exporter = exporter.to_str().unwrap();
    let registry = Registry::start_with_basic_auth();
    let address = registry.address();
    let server = NatsServer::start();
    let url = server.url();
    let reference = format!("{address}/trellis/private:1");

    // Without credentials: one line saying what to pass.
    let line = error_line(&url, &["push", exporter, &reference, "--insecure"]).await;
    assert!(
        line.starts_with(&format!(
            "trellis push: `{reference}`: the registry requires credentials ("
        )) && line.ends_with(
            "; pass --user and --password (or set TRELLIS_OCI_USER and TRELLIS_OCI_PASSWORD)"
        ),
        "{line}"
    );
    // Wrong ones: one line saying which to check.
    let line = error_line(
        &url,
        &[
            "push",
            exporter,
            &reference,
            "--insecure",
            "--user",
            TEST_USER,
            "--password",
            "wrong",
        ],
    )
    .await;
    assert!(
        line.starts_with(&format!(
            "trellis push: `{reference}`: the registry refused these credentials ("
        )) && line.ends_with("; check --user and --password"),
        "{line}"
    );
    let pushed = stdout(
        &url,
        &[
            "push",
            exporter,
            &reference,
            "--insecure",
            "--user",
            TEST_USER,
            "--password",
            TEST_PASSWORD,
        ],
    )
    .await;
    digest(&pushed);

    // A host that may pull from the registry over plain HTTP, but has no credentials yet.
    let cache = tempfile::tempdir().unwrap();
    let host = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: url.clone(),
        lattice: LATTICE.into(),
        heartbeat_interval: Duration::from_secs(5),
        oci: OciSettings {
            cache_dir: cache.path().join("oci"),
            allowed_insecure: vec![address.clone()],
            allow_latest: false,
        },
        ..HostConfig::default()
    })
    .await
    .expect("starting the host");
    let host_id = host.host_id().to_string();
    let (_client, nc) = ctl_client(&server, LATTICE).await;
    let events = EventLog::record(&nc, LATTICE).await;
    let ack = json!({ "success": true, "message": "" });
    let scale = |id: String| {
        let (url, host_id, reference) = (url.clone(), host_id.clone(), reference.clone());
        async move {
            let out = stdout(
                &url,
                &["ctl", "scale", &host_id, &id, &reference, "-o", "json"],
            )
            .await;
            serde_json::from_str::<Value>(&out).unwrap()
        }
    };

    assert_eq!(scale("anonymous".into()).await, ack);
    let (outcome, data) = events
        .outcome(
            &["component_scaled", "component_scale_failed"],
            "anonymous",
            &reference,
        )
        .await;
    assert_eq!(outcome, "component_scale_failed", "{data}");
    assert!(
        data["error"]
            .as_str()
            .is_some_and(|e| e.contains("refused access")),
        "{data}"
    );

    let put = stdout(
        &url,
        &[
            "ctl",
            "registry",
            "put",
            &address,
            "--user",
            TEST_USER,
            "--password",
            TEST_PASSWORD,
            "-o",
            "json",
        ],
    )
    .await;
    // A plain publish that no host answers: the acknowledgement is the client's own.
    assert_eq!(
        serde_json::from_str::<Value>(&put).unwrap(),
        json!({ "success": true, "message": "successfully added registries" })
    );
    // `registry.put` is a plain publish: retry until the host has applied it (bounded).
    let mut attempt = 0;
    let id = loop {
        let id = format!("private-{attempt}");
        assert_eq!(scale(id.clone()).await, ack);
        let (outcome, data) = events
            .outcome(
                &["component_scaled", "component_scale_failed"],
                &id,
                &reference,
            )
            .await;
        if outcome == "component_scaled" {
            break id;
        }
        attempt += 1;
        assert!(attempt < 20, "credentials never applied: {data}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The inventory lists it once the host serves it on the lattice (bounded).
    let deadline = std::time::Instant::now() + WAIT;
    let running = loop {
        let inventory = stdout(&url, &["ctl", "inventory", &host_id, "-o", "json"]).await;
        let inventory: Value = serde_json::from_str(&inventory).unwrap();
        let listed = inventory["components"]
            .as_array()
            .and_then(|components| components.iter().find(|c| c["id"] == id.as_str()).cloned());
        if let Some(component) = listed {
            break component;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never in the inventory: {inventory:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(running["image_ref"], reference.as_str());
    assert_eq!(running["max_instances"], 1);
    host.stop(None).await.unwrap();
}
