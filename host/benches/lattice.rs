//! Component-to-component calls over wRPC on a loopback nats-server, side by side with the same
//! calls in-process, in one run: per-call latency (p50/p99) and throughput under concurrency.
//!
//! `cargo bench -p trellis-host --bench lattice` (needs `nats-server` on PATH); see BENCHMARKS.md.

use std::time::{Duration, Instant};

use serde_json::json;
use trellis_host::{HostConfig, LatticeHost};
use trellis_runtime::{ImportRoute, Runtime, Val};
use trellis_tests::nats::NatsServer;

const LATTICE: &str = "bench";
const FRONT: &str = "trellis:example/front@0.1.0";
const ADDER: &str = "trellis:example/adder@0.1.0";
/// Calls per latency sample set, and the cap on any one measurement.
const CALLS: usize = 2000;
const TIME_CAP: Duration = Duration::from_secs(20);

async fn host(server: &NatsServer) -> LatticeHost {
    let config = HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        ..HostConfig::default()
    };
    LatticeHost::start(config).await.expect("starting a host")
}

async fn ctl(nats: &async_nats::Client, subject: String, body: serde_json::Value) {
    let reply = nats
        .request(subject, serde_json::to_vec(&body).unwrap().into())
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["success"], true, "{reply}");
}

async fn scale(nats: &async_nats::Client, host: &LatticeHost, id: &str, guest: &str, count: u32) {
    let subject = format!(
        "wasmbus.ctl.v1.{LATTICE}.component.scale.{}",
        host.host_id()
    );
    let body = json!({"component_ref": trellis_tests::component_ref(guest), "component_id": id, "count": count});
    ctl(nats, subject, body).await;
    wait(|| async { host.runtime().component(id).is_some() == (count > 0) }).await;
}

async fn wait<F: Future<Output = bool>>(mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn route(runtime: &Runtime) -> Option<ImportRoute> {
    runtime
        .routes("caller")
        .await?
        .into_iter()
        .find(|(i, _)| i == ADDER)
        .map(|(_, r)| r)
}

/// Per-invocation latency of `caller.front.{function}` (one caller instance, one linked call).
async fn latency(
    runtime: &Runtime,
    function: &str,
    params: &[Val],
) -> (Duration, Duration, Duration) {
    let started = Instant::now();
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let call = Instant::now();
        runtime
            .invoke("caller", FRONT, function, params, None)
            .await
            .unwrap();
        samples.push(call.elapsed());
        if started.elapsed() > TIME_CAP {
            break;
        }
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
        mean,
    )
}

/// Calls per second with `tasks` concurrent callers, for at most `window`.
async fn throughput(runtime: &Runtime, tasks: usize, window: Duration) -> f64 {
    let started = Instant::now();
    let mut joins = Vec::new();
    for _ in 0..tasks {
        let runtime = runtime.clone();
        joins.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < window && done < 100_000 {
                runtime
                    .invoke("caller", FRONT, "add", &[Val::U32(1), Val::U32(2)], None)
                    .await
                    .unwrap();
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for join in joins {
        total += join.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn row(label: &str, (p50, p99, mean): (Duration, Duration, Duration)) {
    println!("| {label} | {p50:.1?} | {p99:.1?} | {mean:.1?} |");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = NatsServer::start();
    let nats = async_nats::connect(server.url()).await.unwrap();
    let (home, away) = (host(&server).await, host(&server).await);
    scale(&nats, &away, "callee", "exporter", 64).await;
    scale(&nats, &home, "caller", "importer", 64).await;
    let link = json!({"source_id": "caller", "target": "callee", "name": "default", "wit_namespace": "trellis",
        "wit_package": "example", "interfaces": ["adder", "greeter"], "source_config": [], "target_config": []});
    ctl(&nats, format!("wasmbus.ctl.v1.{LATTICE}.link.put"), link).await;
    let runtime = home.runtime().clone();
    wait(|| async { route(&runtime).await == Some(ImportRoute::Remote) }).await;

    let add = [Val::U32(1), Val::U32(2)];
    let kib = [Val::String("x".repeat(1024))];
    println!("| caller invocation + one linked call | p50 | p99 | mean |\n|---|---|---|---|");
    let remote_add = latency(&runtime, "add", &add).await;
    let remote_echo = latency(&runtime, "echo", &kib).await;
    let remote_rate = throughput(&runtime, 32, Duration::from_secs(3)).await;

    scale(&nats, &home, "callee", "exporter", 64).await;
    wait(|| async { route(&runtime).await == Some(ImportRoute::InProcess("callee".into())) }).await;
    let local_add = latency(&runtime, "add", &add).await;
    let local_echo = latency(&runtime, "echo", &kib).await;
    let local_rate = throughput(&runtime, 32, Duration::from_secs(3)).await;

    row("add(u32,u32), wRPC over loopback NATS", remote_add);
    row("add(u32,u32), in-process", local_add);
    row("echo 1 KiB string, wRPC", remote_echo);
    row("echo 1 KiB string, in-process", local_echo);
    println!("\n| 32 concurrent callers, 3 s | calls/s |\n|---|---|");
    println!("| wRPC | {remote_rate:.0} |\n| in-process | {local_rate:.0} |");
    println!(
        "\nratios: add p50 wRPC/in-process = {:.0}x, throughput in-process/wRPC = {:.1}x",
        remote_add.0.as_secs_f64() / local_add.0.as_secs_f64(),
        local_rate / remote_rate
    );
    home.stop(None).await.unwrap();
    away.stop(None).await.unwrap();
}
