//! Hosts as processes, for benchmarks that compare builds side by side in one run: the
//! `trellis` binary of this checkout, the binary of another build (`TRELLIS_BASELINE`, e.g. an
//! older commit built in a temporary worktree), each driven only through NATS (the control
//! interface and wRPC), so any host that speaks the lattice protocol can stand in.

#![allow(dead_code)] // each bench uses part of it

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};
use wrpc_transport::InvokeExt as _;

/// The longest any wait for the lattice may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// A host build to run: a name for the tables, its binary, and what its `host` command needs
/// to load the benchmark's `file://` components.
#[derive(Clone, Debug)]
pub struct Build {
    pub name: String,
    pub binary: PathBuf,
    pub extra_args: Vec<String>,
    /// Environment variables for its hosts, besides `RUST_LOG=warn`.
    pub env: Vec<(String, String)>,
}

/// This checkout's `trellis`, and the baseline build when `TRELLIS_BASELINE` names one (with
/// `TRELLIS_BASELINE_ARGS`, space-separated, for its `host` command: builds before file
/// loading had to be allowed take none).
pub fn builds() -> Vec<Build> {
    let mut builds = vec![Build {
        name: "this build".into(),
        binary: env!("CARGO_BIN_EXE_trellis").into(),
        extra_args: vec!["--allow-file-load".into()],
        env: Vec::new(),
    }];
    match std::env::var_os("TRELLIS_BASELINE") {
        Some(path) => builds.push(Build {
            name: "baseline".into(),
            binary: path.into(),
            extra_args: std::env::var("TRELLIS_BASELINE_ARGS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            env: Vec::new(),
        }),
        None => eprintln!(
            "TRELLIS_BASELINE is not set: measuring this build alone (point it at another \
             build's `trellis` binary to compare)"
        ),
    }
    builds
}

/// A `trellis host` process, killed on drop.
pub struct HostProcess {
    child: Child,
    pub id: String,
}

impl HostProcess {
    /// Its resident set in bytes, from `/proc` (Linux).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading the host's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("a VmRSS line")
            * 1024
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a host of `build` on `lattice` with label `role=…`, and waits for it to answer.
pub async fn start_host(
    build: &Build,
    nats: &async_nats::Client,
    url: &str,
    lattice: &str,
    role: &str,
) -> HostProcess {
    let child = Command::new(&build.binary)
        .args(["host", "--nats-url", url, "--lattice", lattice])
        .args(["--label", &format!("role={role}")])
        .args(build.extra_args.iter())
        .env("RUST_LOG", "warn")
        .envs(build.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", build.binary.display()));
    // Owned from here on: whatever happens, the process is killed and reaped.
    let mut host = HostProcess {
        child,
        id: String::new(),
    };
    let started = Instant::now();
    loop {
        if let Some(id) = ping(nats, lattice)
            .await
            .into_iter()
            .find_map(|(id, labels)| {
                (labels.get("role").map(String::as_str) == Some(role)).then_some(id)
            })
        {
            host.id = id;
            return host;
        }
        assert!(started.elapsed() < WAIT, "the {role} host never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The lattice's hosts and their labels.
pub async fn ping(
    nats: &async_nats::Client,
    lattice: &str,
) -> Vec<(String, BTreeMap<String, String>)> {
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.unwrap();
    nats.publish_with_reply(
        format!("wasmbus.ctl.v1.{lattice}.host.ping"),
        inbox,
        "".into(),
    )
    .await
    .unwrap();
    let mut hosts = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_millis(500));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return hosts,
            reply = replies.next() => {
                let Some(reply) = reply else { return hosts };
                let reply: Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
                let response = &reply["response"];
                if let Some(id) = response["id"].as_str() {
                    let labels = serde_json::from_value(response["labels"].clone()).unwrap_or_default();
                    hosts.push((id.to_string(), labels));
                }
            }
        }
    }
}

/// A control request that must succeed.
pub async fn ctl(nats: &async_nats::Client, subject: String, body: Value) -> Value {
    let reply = nats
        .request(subject, serde_json::to_vec(&body).unwrap().into())
        .await
        .unwrap();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["success"], true, "{reply}");
    reply
}

/// Scales `id` from `reference` on `host` and waits until its inventory lists it.
pub async fn scale(
    nats: &async_nats::Client,
    lattice: &str,
    host: &str,
    id: &str,
    reference: &str,
    count: u32,
) {
    let body = json!({"component_ref": reference, "component_id": id, "count": count});
    ctl(
        nats,
        format!("wasmbus.ctl.v1.{lattice}.component.scale.{host}"),
        body,
    )
    .await;
    let started = Instant::now();
    loop {
        let inventory = ctl(
            nats,
            format!("wasmbus.ctl.v1.{lattice}.host.get.{host}"),
            json!({}),
        )
        .await;
        let listed = inventory["response"]["components"]
            .as_array()
            .is_some_and(|components| components.iter().any(|c| c["id"] == id));
        if listed == (count > 0) {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "{id} never reached {count} on {host}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One wRPC call of `trellis:example/adder.add(2, 3)` on `target`, timed.
pub async fn call_add(client: &wrpc_transport_nats::Client) -> Duration {
    let started = Instant::now();
    let (sum,): (u32,) = client
        .invoke_values_blocking(
            None,
            "trellis:example/adder@0.1.0",
            "add",
            (2u32, 3u32),
            &[[None::<usize>; 0]; 0],
        )
        .await
        .expect("add over wRPC");
    assert_eq!(sum, 5);
    started.elapsed()
}

/// A wRPC client of lattice id `target`.
pub async fn client(
    nats: &async_nats::Client,
    lattice: &str,
    target: &str,
) -> wrpc_transport_nats::Client {
    wrpc_transport_nats::Client::new(nats.clone(), format!("{lattice}.{target}"), None)
        .await
        .unwrap()
}

/// p50, p99 and max of `samples`.
pub fn percentiles(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.5), at(0.99), samples[samples.len() - 1])
}

/// `bytes` with a custom section appended: the same code under another digest, so a host
/// compiles it again instead of finding it in its cache.
pub fn distinct(bytes: &[u8], tag: usize) -> Vec<u8> {
    let name = format!("trellis-bench-{tag}");
    let mut payload = Vec::new();
    leb128(&mut payload, name.len() as u64);
    payload.extend_from_slice(name.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    leb128(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    out
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
