//! Golden tests of `trellis ctl`: a real nats-server, an in-process `LatticeHost`, and the real
//! `trellis` binary for every subcommand, checking the `-o json` shapes and values, human
//! tables, and the one-line errors.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trellis_host::{HostConfig, LatticeHost, ProviderSettings};
use trellis_tests::component_ref;
use trellis_tests::nats::NatsServer;

mod common;
use common::{Cli, WAIT};

const LATTICE: &str = "ctl";

async fn start_host(server: &NatsServer) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        labels: [("zone".to_string(), "a".to_string())].into(),
        name: Some("ctl-host-0001".into()),
        heartbeat_interval: Duration::from_secs(1),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

fn cli(url: &str) -> Cli {
    Cli::new(url, LATTICE, &["ctl"])
}

async fn ctl(url: &str, args: &[&str]) -> Output {
    cli(url).run(args).await
}

async fn json(url: &str, args: &[&str]) -> Value {
    cli(url).json(args).await
}

async fn error_line(url: &str, args: &[&str]) -> String {
    cli(url).error_line(args).await
}

/// Polls `trellis ctl inventory HOST -o json` until `check` holds (at most `WAIT`).
async fn inventory_until(url: &str, host_id: &str, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let inventory = json(url, &["inventory", host_id]).await;
        if check(&inventory) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {inventory:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The cells of a human table's lines (columns are two or more spaces apart).
fn table_cells<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<Vec<&'a str>> {
    lines
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect()
        })
        .collect()
}

/// What every acknowledged command prints with `-o json`.
fn ack() -> Value {
    json!({ "success": true, "message": "" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_prints_json() {
    let server = NatsServer::start();
    let url = server.url();
    let host = start_host(&server).await;
    let id = host.host_id().to_string();

    // hosts (ping)
    let hosts = json(&url, &["hosts"]).await;
    let hosts = hosts.as_array().expect("an array of hosts");
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["id"], id.as_str());
    assert_eq!(hosts[0]["friendly_name"], "ctl-host-0001");
    assert_eq!(hosts[0]["lattice"], LATTICE);
    assert_eq!(hosts[0]["labels"]["zone"], "a");
    assert!(hosts[0]["uptime_seconds"].is_u64());

    // inventory, empty
    let inventory = json(&url, &["inventory", &id]).await;
    assert_eq!(inventory["host_id"], id.as_str());
    assert_eq!(inventory["friendly_name"], "ctl-host-0001");
    assert_eq!(inventory["components"], json!([]));
    assert_eq!(inventory["providers"], json!([]));

    // scale, then the inventory shows the component
    let reference = component_ref("exporter");
    let scaled = json(
        &url,
        &[
            "scale",
            &id,
            "adder",
            &reference,
            "--count",
            "2",
            "--annotation",
            "team=core",
            "--limit",
            "max_execution_time_ms=1500",
        ],
    )
    .await;
    assert_eq!(scaled, ack());
    inventory_until(&url, &id, "the scaled component", |inv| {
        inv["components"].as_array().is_some_and(|c| !c.is_empty())
    })
    .await;
    let inventory = json(&url, &["inventory", &id]).await;
    let component = &inventory["components"][0];
    assert_eq!(component["id"], "adder");
    assert_eq!(component["image_ref"], reference.as_str());
    assert_eq!(component["max_instances"], 2);
    assert_eq!(component["annotations"], json!({ "team": "core" }));
    assert_eq!(component["limits"]["max_execution_time_ms"], "1500");
    assert_eq!(component["limits"]["max_execution_time"], "2");

    // update to a copy at another path
    let copy = tempfile::tempdir().unwrap();
    let path = copy.path().join("adder-v2.wasm");
    std::fs::copy(trellis_tests::component_path("exporter"), &path).unwrap();
    let new_reference = format!("file://{}", path.display());
    let updated = json(&url, &["update", &id, "adder", &new_reference]).await;
    assert_eq!(updated, ack());
    inventory_until(&url, &id, "the updated reference", |inv| {
        inv["components"][0]["image_ref"] == new_reference.as_str()
    })
    .await;

    // config put / get (del after the link that uses it)
    assert_eq!(
        json(&url, &["config", "put", "cfg", "a=1", "b=x=y"]).await,
        ack()
    );
    assert_eq!(
        json(&url, &["config", "get", "cfg"]).await,
        json!({ "a": "1", "b": "x=y" })
    );

    // link put / get / del
    let put = json(
        &url,
        &[
            "link",
            "put",
            "adder",
            "kv",
            "wasi:keyvalue",
            "--interface",
            "store",
            "--interface",
            "atomics",
            "--name",
            "cache",
            "--target-config",
            "cfg",
        ],
    )
    .await;
    assert_eq!(put, ack());
    assert_eq!(
        json(&url, &["link", "get"]).await,
        json!([{
            "source_id": "adder",
            "target": "kv",
            "name": "cache",
            "wit_namespace": "wasi",
            "wit_package": "keyvalue",
            "interfaces": ["store", "atomics"],
            "source_config": [],
            "target_config": ["cfg"],
        }])
    );
    let deleted = json(
        &url,
        &["link", "del", "adder", "wasi:keyvalue", "--name", "cache"],
    )
    .await;
    assert_eq!(deleted, ack());
    assert_eq!(json(&url, &["link", "get"]).await, json!([]));
    assert_eq!(json(&url, &["config", "del", "cfg"]).await, ack());
    let absent = error_line(&url, &["config", "get", "cfg", "-o", "json"]).await;
    assert!(absent.contains("no config named `cfg`"), "{absent}");

    // label put / del
    assert_eq!(json(&url, &["label", "put", &id, "zone=b"]).await, ack());
    let inventory = json(&url, &["inventory", &id]).await;
    assert_eq!(inventory["labels"]["zone"], "b");
    assert_eq!(json(&url, &["label", "del", &id, "zone"]).await, ack());
    let inventory = json(&url, &["inventory", &id]).await;
    assert!(inventory["labels"].get("zone").is_none(), "{inventory:#}");
    let reserved = error_line(&url, &["label", "put", &id, "hostcore.os=plan9"]).await;
    assert!(
        reserved.starts_with("trellis ctl: label put refused by the host:")
            && reserved.contains("reserved"),
        "{reserved}"
    );

    // provider start / stop (a built-in)
    let started = json(
        &url,
        &["provider", "start", &id, "kv", "trellis+builtin://keyvalue"],
    )
    .await;
    assert_eq!(started, ack());
    inventory_until(&url, &id, "the started provider", |inv| {
        inv["providers"][0]["id"] == "kv"
    })
    .await;
    let inventory = json(&url, &["inventory", &id]).await;
    assert_eq!(
        inventory["providers"][0]["image_ref"],
        "trellis+builtin://keyvalue"
    );
    assert_eq!(json(&url, &["provider", "stop", &id, "kv"]).await, ack());
    inventory_until(&url, &id, "the stopped provider", |inv| {
        inv["providers"] == json!([])
    })
    .await;

    // scale to zero
    let stopped = json(
        &url,
        &["scale", &id, "adder", &new_reference, "--count", "0"],
    )
    .await;
    assert_eq!(stopped, ack());
    inventory_until(&url, &id, "the component stopped", |inv| {
        inv["components"] == json!([])
    })
    .await;

    // host stop
    let stop = json(&url, &["host", "stop", &id, "--grace-ms", "2000"]).await;
    assert_eq!(stop["success"], true);
    let request = tokio::time::timeout(WAIT, host.stop_requested())
        .await
        .expect("the host was asked to stop");
    assert_eq!(request.timeout, Some(Duration::from_millis(2000)));
    host.stop(request.timeout).await.unwrap();
}

/// A provider archive whose binary is a shell script that idles, signed by fresh keys; returns
/// its `file://` reference and the claims' subject and issuer.
async fn idle_provider_archive(dir: &std::path::Path) -> (String, String, String) {
    let target = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);
    let mut par = provider_archive::ProviderArchive::new(
        "idle-provider",
        "trellis-tests",
        Some(4),
        Some("1.2.3".into()),
    );
    par.add_library(&target, b"#!/bin/sh\nexec sleep 120\n")
        .expect("adding the binary");
    let (issuer, subject) = (nkeys::KeyPair::new_account(), nkeys::KeyPair::new_service());
    let path = dir.join("idle.par.gz");
    par.write(&path, &issuer, &subject, true)
        .await
        .expect("writing the archive");
    (
        format!("file://{}", path.display()),
        subject.public_key(),
        issuer.public_key(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_lists_provider_archive_claims() {
    let server = NatsServer::start();
    let url = server.url();
    let cache = tempfile::tempdir().unwrap();
    let host = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: url.clone(),
        lattice: LATTICE.into(),
        providers: ProviderSettings {
            // The idle script never answers the shutdown request.
            shutdown_timeout: Duration::from_millis(300),
            cache_dir: cache.path().to_path_buf(),
            ..ProviderSettings::default()
        },
        ..HostConfig::default()
    })
    .await
    .expect("starting the host");
    let id = host.host_id().to_string();
    assert_eq!(json(&url, &["claims"]).await, json!([]));

    let (reference, subject, issuer) = idle_provider_archive(cache.path()).await;
    let started = json(&url, &["provider", "start", &id, "idle", &reference]).await;
    assert_eq!(started, ack());
    inventory_until(&url, &id, "the provider named from its claims", |inv| {
        inv["providers"][0]["name"] == "idle-provider"
    })
    .await;
    // Every key wasmCloud answers, short JWT names included.
    assert_eq!(
        json(&url, &["claims"]).await,
        json!([{
            "config_schema": "",
            "iss": issuer,
            "issuer": issuer,
            "name": "idle-provider",
            "rev": "4",
            "revision": "4",
            "sub": subject,
            "subject": subject,
            "version": "1.2.3",
        }])
    );
    let output = ctl(&url, &["claims"]).await;
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["SUBJECT", "NAME", "VERSION", "REVISION", "ISSUER"],
            vec![&subject, "idle-provider", "1.2.3", "4", &issuer],
        ],
        "{stdout}"
    );

    // Claims live in the lattice: a host that starts later answers them alone.
    let claims = json(&url, &["claims"]).await;
    host.stop(None).await.unwrap();
    let later = start_host(&server).await;
    assert_eq!(json(&url, &["claims"]).await, claims);
    later.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_prints_a_table_by_default() {
    let server = NatsServer::start();
    let host = start_host(&server).await;
    let output = ctl(&server.url(), &["hosts", "--timeout-ms", "500"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines = table_cells(stdout.lines());
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(
        lines[0],
        ["HOST ID", "NAME", "UPTIME", "VERSION", "LABELS"],
        "{stdout}"
    );
    assert_eq!(lines[1][0], host.host_id(), "{stdout}");
    assert_eq!(lines[1][1], "ctl-host-0001", "{stdout}");
    assert_eq!(lines[1][4], "zone=a", "{stdout}");
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_table_shows_a_services_state() {
    let server = NatsServer::start();
    let url = server.url();
    let host = start_host(&server).await;
    let id = host.host_id().to_string();
    // A WASI preview-1 module with `_start` is a service that prints a line and exits 0.
    let dir = tempfile::tempdir().unwrap();
    let source =
        std::fs::read_to_string(trellis_tests::components_dir().join("p1-start.wat")).unwrap();
    let module = dir.path().join("hello-p1.wasm");
    std::fs::write(&module, wat::parse_str(&source).unwrap()).unwrap();
    let module = format!("file://{}", module.display());
    let adder = component_ref("exporter");
    for (component, reference) in [("weft", &module), ("adder", &adder)] {
        let scaled = json(&url, &["scale", &id, component, reference]).await;
        assert_eq!(scaled, ack());
    }
    inventory_until(&url, &id, "the service to run to its end", |inv| {
        let components = inv["components"].as_array();
        components.is_some_and(|c| c.len() == 2 && c.iter().any(|c| c["state"].is_string()))
    })
    .await;
    let output = ctl(&url, &["inventory", &id]).await;
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let rows = table_cells(
        stdout
            .lines()
            .skip_while(|line| !line.starts_with("COMPONENT ID"))
            .take_while(|line| !line.is_empty()),
    );
    assert_eq!(
        rows,
        [
            vec!["COMPONENT ID", "REFERENCE", "MAX", "REVISION", "SERVICE"],
            vec!["adder", &adder, "1", "0", "-"],
            vec!["weft", &module, "1", "0", "exited with code 0"],
        ],
        "{stdout}"
    );

    // `trellis ctl` starts a long-running service, linked in-process to `adder`, and stops it.
    let ticker = component_ref("ticker");
    let linked = json(
        &url,
        &[
            "link",
            "put",
            "ticker",
            "adder",
            "trellis:example",
            "--interface",
            "adder",
        ],
    )
    .await;
    assert_eq!(linked, ack());
    assert_eq!(json(&url, &["scale", &id, "ticker", &ticker]).await, ack());
    let state_of_ticker = |inv: &Value| {
        let ticker = inv["components"]
            .as_array()?
            .iter()
            .find(|c| c["id"] == "ticker")?;
        ticker["state"].as_str().map(str::to_owned)
    };
    inventory_until(&url, &id, "the ticker to run", |inv| {
        state_of_ticker(inv).as_deref() == Some("running")
    })
    .await;
    let stopped = json(&url, &["scale", &id, "ticker", &ticker, "--count", "0"]).await;
    assert_eq!(stopped, ack());
    inventory_until(&url, &id, "the ticker to be stopped", |inv| {
        let components = inv["components"].as_array().into_iter().flatten();
        let ids: BTreeSet<&str> = components.filter_map(|c| c["id"].as_str()).collect();
        ids == BTreeSet::from(["adder", "weft"])
    })
    .await;
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_one_line_with_a_hint() {
    // NATS but no host on the lattice.
    let server = NatsServer::start();
    let url = server.url();
    let line = error_line(&url, &["hosts", "--timeout-ms", "300"]).await;
    assert_eq!(
        line,
        format!(
            "trellis ctl: no host answered on lattice `{LATTICE}` at {url}; is a host running? (trellis host / trellis up)"
        )
    );
    let line = error_line(&url, &["config", "get", "cfg", "-o", "json"]).await;
    assert!(line.contains("no host answered"), "{line}");

    // A host, but not the one asked for.
    let host = start_host(&server).await;
    let line = error_line(&url, &["inventory", "NOSUCHHOST"]).await;
    assert!(
        line.starts_with("trellis ctl: host NOSUCHHOST did not answer")
            && line.contains("trellis ctl hosts"),
        "{line}"
    );
    host.stop(None).await.unwrap();

    // Nobody listens on the NATS URL: bind a port, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bad = format!("nats://127.0.0.1:{port}");
    let line = error_line(&bad, &["hosts", "-o", "json"]).await;
    assert!(
        line.starts_with(&format!("trellis ctl: cannot connect to NATS at {bad}"))
            && line.contains("is nats-server running there?"),
        "{line}"
    );

    // Arguments are checked before anything is sent.
    let output = ctl(&url, &["link", "del", "a", "wasi:keyvalue/store"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expected NAMESPACE:PACKAGE"), "{stderr}");
}
