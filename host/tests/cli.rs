//! The `trellis host` process: joins a real NATS server, stops on SIGTERM with `host_stopped`
//! and exit 0, and fails with a one-line reason when NATS is unreachable.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;
use trellis_tests::nats::NatsServer;

const WAIT: Duration = Duration::from_secs(20);

fn trellis() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_trellis"));
    command
        .env_remove("TRELLIS_NATS_URL")
        .env_remove("TRELLIS_LATTICE")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn next_event(events: &mut async_nats::Subscriber, name: &str) -> Value {
    let wanted = format!("com.wasmcloud.lattice.{name}");
    tokio::time::timeout(WAIT, async {
        while let Some(message) = events.next().await {
            let event: Value = serde_json::from_slice(&message.payload).unwrap();
            if event["type"] == wanted.as_str() {
                return event;
            }
        }
        panic!("event subscription ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no `{name}` event within {WAIT:?}"))
}

#[tokio::test]
async fn sigterm_publishes_host_stopped_and_exits_zero() {
    let server = NatsServer::start();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let mut events = nc.subscribe("wasmbus.evt.cli.>").await.unwrap();
    nc.flush().await.unwrap();

    let mut host = trellis()
        .args([
            "host",
            "--lattice",
            "cli",
            "--label",
            "zone=z1",
            "--name",
            "cli-host-0001",
        ])
        .env("TRELLIS_NATS_URL", server.url())
        .spawn()
        .unwrap();
    let started = next_event(&mut events, "host_started").await;
    assert_eq!(started["data"]["friendly_name"], "cli-host-0001");
    assert_eq!(started["data"]["labels"]["zone"], "z1");
    let host_id = started["source"].as_str().unwrap().to_string();

    let pid = host.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let stopped = next_event(&mut events, "host_stopped").await;
    assert_eq!(stopped["source"], host_id.as_str());
    let status = tokio::time::timeout(WAIT, host.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn unreachable_nats_fails_with_one_line() {
    // A port nobody listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = trellis()
        .args(["host", "--nats-url", &format!("nats://127.0.0.1:{port}")])
        .output();
    let output = tokio::time::timeout(WAIT, output).await.unwrap().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("cannot connect to NATS"), "{stderr}");
}
