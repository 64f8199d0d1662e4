//! wRPC between `trellis host` processes, side by side with a baseline build in one run: the
//! bench calls `front.{add, echo, echo-bytes}` of an importer on one host over wRPC, and the
//! importer calls the exporter on a second host over wRPC, so each sample crosses both halves
//! of the value bridge twice (parameters and results, encoded and decoded, caller and served
//! side). Sequential latency (p50/p99) and calls/s with 32 concurrent callers, three alternating
//! rounds.
//!
//! `TRELLIS_BASELINE=/path/to/old/trellis cargo bench -p trellis-host --bench wrpc_peers`
//! (needs `nats-server` on PATH and the guest components: `bash tests/components/build.sh`);
//! see BENCHMARKS.md.

mod peers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use peers::{Build, client, ctl, percentiles, scale, start_host};
use serde_json::json;
use trellis_tests::nats::NatsServer;
use wrpc_transport::InvokeExt as _;

const FRONT: &str = "trellis:example/front@0.1.0";
const CALLS: usize = 2000;
const TIME_CAP: Duration = Duration::from_secs(20);
const ROUNDS: usize = 3;

type Stats = (Duration, Duration, Duration);

struct Row {
    build: String,
    add: Stats,
    echo: Stats,
    bytes: Stats,
    rate: f64,
}

async fn add(front: &wrpc_transport_nats::Client) {
    let (sum,): (u32,) = front
        .invoke_values_blocking(None, FRONT, "add", (1u32, 2u32), &[[None::<usize>; 0]; 0])
        .await
        .expect("add");
    assert_eq!(sum, 3);
}

async fn echo(front: &wrpc_transport_nats::Client, text: &str) {
    let (back,): (String,) = front
        .invoke_values_blocking(None, FRONT, "echo", (text,), &[[None::<usize>; 0]; 0])
        .await
        .expect("echo");
    assert_eq!(back.len(), text.len());
}

async fn echo_bytes(front: &wrpc_transport_nats::Client, bytes: &Bytes) {
    let (back,): (Bytes,) = front
        .invoke_values_blocking(
            None,
            FRONT,
            "echo-bytes",
            (bytes,),
            &[[None::<usize>; 0]; 0],
        )
        .await
        .expect("echo-bytes");
    assert_eq!(back.len(), bytes.len());
}

/// Latency of `call`, sequentially.
async fn latency<F: Future<Output = ()>>(mut call: impl FnMut() -> F) -> Stats {
    let started = Instant::now();
    let mut samples = Vec::with_capacity(CALLS);
    while samples.len() < CALLS && started.elapsed() < TIME_CAP {
        let call_started = Instant::now();
        call().await;
        samples.push(call_started.elapsed());
    }
    percentiles(&mut samples)
}

async fn measure(build: &Build, server: &NatsServer, lattice: &str) -> Row {
    let nats = async_nats::connect(server.url()).await.unwrap();
    let caller_host = start_host(build, &nats, &server.url(), lattice, "caller").await;
    let callee_host = start_host(build, &nats, &server.url(), lattice, "callee").await;
    let (importer, exporter) = (
        trellis_tests::component_ref("importer"),
        trellis_tests::component_ref("exporter"),
    );
    scale(&nats, lattice, &callee_host.id, "callee", &exporter, 64).await;
    scale(&nats, lattice, &caller_host.id, "caller", &importer, 64).await;
    let link = json!({"source_id": "caller", "target": "callee", "name": "default",
        "wit_namespace": "trellis", "wit_package": "example", "interfaces": ["adder", "greeter"],
        "source_config": [], "target_config": []});
    ctl(&nats, format!("wasmbus.ctl.v1.{lattice}.link.put"), link).await;
    let front = Arc::new(client(&nats, lattice, "caller").await);
    // The link reaches the caller's host a moment after the put.
    let started = Instant::now();
    loop {
        let (sum,): (u32,) = front
            .invoke_values_blocking(None, FRONT, "add", (1u32, 2u32), &[[None::<usize>; 0]; 0])
            .await
            .unwrap_or_default();
        if sum == 3 {
            break;
        }
        assert!(
            started.elapsed() < peers::WAIT,
            "the link never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..200 {
        add(&front).await;
    }

    let text = "x".repeat(1024);
    let bytes = Bytes::from(vec![7u8; 1024]);
    let add_stats = latency(|| add(&front)).await;
    let echo_stats = latency(|| echo(&front, &text)).await;
    let bytes_stats = latency(|| echo_bytes(&front, &bytes)).await;

    let window = Duration::from_secs(3);
    let started = Instant::now();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let front = front.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while started.elapsed() < window && done < 100_000 {
                    add(&front).await;
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    Row {
        build: build.name.clone(),
        add: add_stats,
        echo: echo_stats,
        bytes: bytes_stats,
        rate,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = NatsServer::start();
    let builds = peers::builds();
    let mut rows = Vec::new();
    for round in 0..ROUNDS {
        for (i, build) in builds.iter().enumerate() {
            rows.push(measure(build, &server, &format!("peers{round}x{i}")).await);
        }
    }
    println!(
        "| build | add p50 | add p99 | echo 1 KiB string p50 | p99 | echo 1 KiB bytes p50 | p99 | add calls/s, 32 callers |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let us = |d: Duration| format!("{} µs", d.as_micros());
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            row.build,
            us(row.add.0),
            us(row.add.1),
            us(row.echo.0),
            us(row.echo.1),
            us(row.bytes.0),
            us(row.bytes.1),
            row.rate
        );
    }
}
