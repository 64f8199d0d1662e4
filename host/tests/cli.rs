//! The `trellis host` process: joins a real NATS server, stops on SIGTERM with `host_stopped`
//! and exit 0, and fails with a one-line reason when NATS is unreachable; `--log-format json`
//! gives one JSON object a line with the component id on component lines and the provider id
//! on a provider's output; an OCI pull logs a line at its start and end off a terminal and draws
//! a progress bar on one; `trellis completions` prints a script for each shell.

use std::process::{Command, Stdio};

use futures::StreamExt as _;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use trellis_tests::nats::NatsServer;

mod common;
use common::{Cli, WAIT};

/// A `trellis` process whose logs (warnings and up) the test reads from stderr.
fn trellis() -> tokio::process::Command {
    let mut command = common::trellis();
    command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
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
            "--allow-file-load",
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

/// The next JSON log line whose `message` starts with `message` (waits at most `WAIT`); every
/// line before it must be JSON too.
async fn next_log(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    message: &str,
) -> Value {
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let entry: Value = serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("not a JSON log line ({error}): {line}"));
            if entry["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
            {
                return entry;
            }
        }
        panic!("stderr closed before `{message}`");
    })
    .await
    .unwrap_or_else(|_| panic!("no `{message}` log line within {WAIT:?}"))
}

#[tokio::test]
async fn json_logs_carry_component_and_provider_ids() {
    let server = NatsServer::start();
    let mut host = trellis()
        .args(["host", "--lattice", "logs", "--log-format", "json"])
        .arg("--allow-file-load")
        .env("TRELLIS_NATS_URL", server.url())
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(host.stderr.take().unwrap()).lines();
    let started = next_log(&mut lines, "host started").await;
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["target"], "trellis_host");
    let host_id = started["host_id"].as_str().unwrap().to_string();

    let ctl = Cli::new(&server.url(), "logs", &["ctl"]);
    let reference = trellis_tests::component_ref("exporter");
    ctl.stdout(&["scale", &host_id, "adder", &reference]).await;
    let entry = next_log(&mut lines, "component scaled").await;
    assert_eq!(entry["component"], "adder");
    assert_eq!(entry["image_ref"], reference.as_str());

    let args = [
        "scale", &host_id, "broken", &reference, "--config", "absent",
    ];
    // Acknowledged before the start fails.
    ctl.stdout(&args).await;
    let entry = next_log(&mut lines, "scale failed").await;
    assert_eq!(entry["level"], "WARN");
    let message = entry["message"].as_str().unwrap();
    assert!(message.contains("absent"), "{message}");
    assert_eq!(entry["component"], "broken");

    // A provider's own output is logged line by line, tagged with its ID and stream.
    let archive = trellis_tests::provider_archive("greeter");
    let reference = format!("file://{}", archive.display());
    let args = ["provider", "start", &host_id, "greeter", &reference];
    ctl.stdout(&args).await;
    let entry = next_log(&mut lines, "test-provider: init greeter").await;
    assert_eq!(entry["target"], "trellis_host::provider::output");
    assert_eq!(entry["provider"], "greeter");
    assert_eq!(entry["stream"], "stderr");

    let pid = host.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    next_log(&mut lines, "host stopped").await;
    let status = tokio::time::timeout(WAIT, host.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _trellis"),
        ("zsh", "#compdef trellis"),
        ("fish", "complete -c trellis"),
    ] {
        let output = trellis()
            .args(["completions", shell])
            .stdout(Stdio::piped())
            .output();
        let output = tokio::time::timeout(WAIT, output).await.unwrap().unwrap();
        assert!(output.status.success(), "{shell}: {output:?}");
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: no `{marker}`");
        for word in ["ctl", "inventory", "log-format", "nats-url"] {
            assert!(script.contains(word), "{shell}: no `{word}`");
        }
    }
    let output = trellis().args(["completions", "tcsh"]).output();
    let output = tokio::time::timeout(WAIT, output).await.unwrap().unwrap();
    assert!(!output.status.success());
}

#[tokio::test]
async fn oci_pulls_log_lines_off_a_terminal_and_draw_a_bar_on_one() {
    let server = NatsServer::start();
    let registry = trellis_tests::registry::Registry::start();
    let address = registry.address();
    let reference = format!("{address}/trellis/exporter:1");
    let options = trellis_host::oci::PushOptions {
        allowed_insecure: vec![address.clone()],
        credential: None,
    };
    let exporter = trellis_tests::component_path("exporter");
    trellis_host::oci::push(&exporter, &reference, &options)
        .await
        .unwrap();

    // Off a terminal (stderr is a pipe): one line when the pull starts, one when it is done.
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().join("piped");
    let mut host = trellis()
        .args(["host", "--lattice", "pull-lines", "--log-format", "json"])
        .args(["--allowed-insecure", &address, "--oci-cache"])
        .arg(&cache_arg)
        .env("TRELLIS_NATS_URL", server.url())
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(host.stderr.take().unwrap()).lines();
    let started = next_log(&mut lines, "host started").await;
    let host_id = started["host_id"].as_str().unwrap().to_string();
    let ctl = Cli::new(&server.url(), "pull-lines", &["ctl"]);
    ctl.stdout(&["scale", &host_id, "adder", &reference]).await;
    let pulling = next_log(&mut lines, "pulling OCI layer").await;
    assert_eq!(pulling["reference"], reference.as_str());
    let size = std::fs::metadata(&exporter).unwrap().len();
    assert_eq!(pulling["bytes"], size);
    let pulled = next_log(&mut lines, "pulled OCI layer").await;
    assert_eq!(pulled["digest"], pulling["digest"]);
    ctl.stdout(&["host", "stop", &host_id]).await;
    next_log(&mut lines, "host stopped").await;
    assert!(host.wait().await.unwrap().success());

    // On a terminal (`script` gives the host a pseudo-terminal): a progress bar.
    let command = format!(
        "{} host --lattice pull-bar --allowed-insecure {address} --oci-cache {}",
        env!("CARGO_BIN_EXE_trellis"),
        cache.path().join("terminal").display()
    );
    let mut host = tokio::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("TRELLIS_NATS_URL", server.url())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running `script` (util-linux)");
    let mut terminal = BufReader::new(host.stdout.take().unwrap());
    let mut seen = String::new();
    let mut until = async |wanted: &str| {
        tokio::time::timeout(WAIT, async {
            let mut buffer = Vec::new();
            while !seen.contains(wanted) {
                buffer.clear();
                let read = terminal.read_until(b'\n', &mut buffer).await.unwrap();
                assert!(read > 0, "the terminal closed before `{wanted}`: {seen}");
                seen.push_str(&String::from_utf8_lossy(&buffer));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no `{wanted}` on the terminal within {WAIT:?}: {seen}"));
        seen.clone()
    };
    until("host started").await;
    let ctl = Cli::new(&server.url(), "pull-bar", &["ctl"]);
    let hosts = ctl.json(&["hosts"]).await;
    let host_id = hosts[0]["id"].as_str().unwrap().to_string();
    ctl.stdout(&["scale", &host_id, "adder", &reference]).await;
    let shown = until("pulled OCI layer").await;
    assert!(shown.contains(&format!("pulling {reference} [")), "{shown}");
    assert!(shown.contains(" KiB/"), "no byte count on the bar: {shown}");
    assert!(
        !shown.contains("pulling OCI layer"),
        "a log line instead of the bar: {shown}"
    );
    ctl.stdout(&["host", "stop", &host_id]).await;
    let status = tokio::time::timeout(WAIT, host.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
