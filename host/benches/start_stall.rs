//! Whether starting components stalls the calls a host serves: wRPC `add` calls to one component
//! of a `trellis host` process, first alone, then while 40 distinct components (the same guest
//! under 40 digests, so each one compiles) start on that host one after another. Side by side
//! with a baseline build in the same run, two alternating rounds.
//!
//! `TRELLIS_BASELINE=/path/to/old/trellis cargo bench -p trellis-host --bench start_stall`
//! (needs `nats-server` on PATH and the guest components: `bash tests/components/build.sh`);
//! see BENCHMARKS.md.

mod peers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use peers::{Build, call_add, client, percentiles, scale, start_host};
use trellis_tests::nats::NatsServer;

/// Calls per measurement at most, and the longest one may take.
const CALLS: usize = 100_000;
const TIME_CAP: Duration = Duration::from_secs(120);
const STARTS: usize = 40;
const ROUNDS: usize = 2;

struct Row {
    build: String,
    alone: (Duration, Duration, Duration),
    during: (Duration, Duration, Duration),
    calls_during: usize,
    starts_took: Duration,
}

async fn measure(build: &Build, server: &NatsServer, lattice: &str, guest: &[u8]) -> Row {
    let nats = async_nats::connect(server.url()).await.unwrap();
    let host = start_host(build, &nats, &server.url(), lattice, "serving").await;
    let exporter = trellis_tests::component_ref("exporter");
    scale(&nats, lattice, &host.id, "callee", &exporter, 16).await;
    let callee = client(&nats, lattice, "callee").await;
    for _ in 0..200 {
        call_add(&callee).await;
    }

    let mut alone = Vec::new();
    let started = Instant::now();
    while alone.len() < 2000 && started.elapsed() < TIME_CAP {
        alone.push(call_add(&callee).await);
    }

    let dir = tempfile::tempdir().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let starts = tokio::spawn({
        let (nats, lattice, host_id, done) = (
            nats.clone(),
            lattice.to_string(),
            host.id.clone(),
            done.clone(),
        );
        let files: Vec<String> = (0..STARTS)
            .map(|k| {
                let path = dir.path().join(format!("gen-{k}.wasm"));
                std::fs::write(&path, peers::distinct(guest, k)).unwrap();
                format!("file://{}", path.display())
            })
            .collect();
        async move {
            let began = Instant::now();
            for (k, reference) in files.iter().enumerate() {
                scale(&nats, &lattice, &host_id, &format!("gen-{k}"), reference, 1).await;
            }
            done.store(true, Ordering::SeqCst);
            began.elapsed()
        }
    });
    let mut during = Vec::new();
    let started = Instant::now();
    while !done.load(Ordering::SeqCst) && during.len() < CALLS && started.elapsed() < TIME_CAP {
        during.push(call_add(&callee).await);
    }
    let starts_took = starts.await.unwrap();
    let calls_during = during.len();
    Row {
        build: build.name.clone(),
        alone: percentiles(&mut alone),
        during: percentiles(&mut during),
        calls_during,
        starts_took,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = NatsServer::start();
    let guest = std::fs::read(trellis_tests::component_path("http_server")).unwrap();
    let builds = peers::builds();
    let mut rows = Vec::new();
    for round in 0..ROUNDS {
        for (i, build) in builds.iter().enumerate() {
            rows.push(measure(build, &server, &format!("stall{round}x{i}"), &guest).await);
        }
    }
    println!(
        "| build | alone p50 | alone p99 | during starts p50 | during p99 | during max | p99 ratio | calls during | {STARTS} starts took |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        let ratio = row.during.1.as_secs_f64() / row.alone.1.as_secs_f64();
        println!(
            "| {} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {ratio:.1}x | {} | {:.2?} |",
            row.build,
            row.alone.0,
            row.alone.1,
            row.during.0,
            row.during.1,
            row.during.2,
            row.calls_during,
            row.starts_took
        );
    }
}
