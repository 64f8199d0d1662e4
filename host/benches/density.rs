//! How many components a host holds ready, and what each costs: one `trellis host` process
//! (and the baseline build's, when `TRELLIS_BASELINE` names one) is asked over the control
//! interface for N components (`DENSITY_COMPONENTS`, default 10,000) under distinct ids, all
//! from the same `exporter` guest, 32 requests in flight; the clock stops when the host has
//! announced all N (`component_scaled`). Then a sample of them is called over wRPC, which
//! proves they serve, and the host's resident memory growth is divided by N. Bounded: 10
//! minutes per build.
//!
//! `cargo bench -p trellis-host --bench density` (needs `nats-server` on PATH and the guest
//! components: `bash tests/components/build.sh`); see BENCHMARKS.md.

mod peers;

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use peers::{Build, call_add, client, ctl, percentiles, start_host};
use serde_json::json;
use trellis_tests::nats::NatsServer;

const IN_FLIGHT: usize = 32;
const TIME_CAP: Duration = Duration::from_secs(600);
/// Components called after the start, spread over the ids.
const SAMPLE: usize = 100;

struct Row {
    build: String,
    components: usize,
    ready_after: Duration,
    rss_before: u64,
    rss_after: u64,
    call_p50: Duration,
    call_p99: Duration,
}

async fn measure(build: &Build, server: &NatsServer, lattice: &str, components: usize) -> Row {
    let nats = async_nats::connect(server.url()).await.unwrap();
    let host = start_host(build, &nats, &server.url(), lattice, "dense").await;
    // Let the host settle (heartbeat, subscriptions) before the baseline memory figure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = host.rss_bytes();
    let mut scaled = nats
        .subscribe(format!("wasmbus.evt.{lattice}.component_scaled"))
        .await
        .unwrap();
    let reference = trellis_tests::component_ref("exporter");
    let scale_subject = format!("wasmbus.ctl.v1.{lattice}.component.scale.{}", host.id);
    let began = Instant::now();
    futures::stream::iter(0..components)
        .for_each_concurrent(IN_FLIGHT, |k| {
            let body =
                json!({"component_ref": reference, "component_id": format!("c{k}"), "count": 1});
            let (nats, subject) = (&nats, scale_subject.clone());
            async move {
                ctl(nats, subject, body).await;
            }
        })
        .await;
    // Ready when its `component_scaled` event is out (what wadm waits for): the inventory of
    // thousands of components is larger than a NATS message may be.
    let mut ready = 0;
    while ready < components {
        let left = TIME_CAP.saturating_sub(began.elapsed());
        match tokio::time::timeout(left, scaled.next()).await {
            Ok(Some(_)) => ready += 1,
            _ => panic!(
                "{}: {ready} of {components} components ready after {TIME_CAP:?}",
                build.name
            ),
        }
    }
    let ready_after = began.elapsed();
    let mut calls = Vec::with_capacity(SAMPLE);
    for k in (0..components).step_by(components.div_ceil(SAMPLE).max(1)) {
        let target = client(&nats, lattice, &format!("c{k}")).await;
        calls.push(call_add(&target).await);
    }
    let rss_after = host.rss_bytes();
    let (call_p50, call_p99, _) = percentiles(&mut calls);
    Row {
        build: build.name.clone(),
        components,
        ready_after,
        rss_before,
        rss_after,
        call_p50,
        call_p99,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let components = std::env::var("DENSITY_COMPONENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let server = NatsServer::start();
    let mut rows = Vec::new();
    for (i, build) in peers::builds().iter().enumerate() {
        rows.push(measure(build, &server, &format!("dense{i}"), components).await);
    }
    println!(
        "| build | components | all ready after | per component | RSS before → after | call p50 (100 of them) | p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
        let per_component = row.rss_after.saturating_sub(row.rss_before) / row.components as u64;
        println!(
            "| {} | {} | {:.2?} | {:.0} KiB | {:.0} → {:.0} MiB | {:.2?} | {:.2?} |",
            row.build,
            row.components,
            row.ready_after,
            per_component as f64 / 1024.0,
            mib(row.rss_before),
            mib(row.rss_after),
            row.call_p50,
            row.call_p99,
        );
    }
}
