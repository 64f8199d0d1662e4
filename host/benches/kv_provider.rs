//! `wasi:keyvalue` `increment` from the unchanged `kv` guest, three ways in one run: the
//! built-in (memory), the `kv-store` provider component composed in-process, and the same
//! component on another host over wRPC (`wrpc:keyvalue`). Each sample is a whole invocation of
//! the guest (fresh instance, open, increment).
//!
//! `cargo bench -p trellis-host --bench kv_provider` (needs `nats-server` on PATH and the guest
//! components); see BENCHMARKS.md.

use std::time::{Duration, Instant};

use serde_json::json;
use trellis_host::{HostConfig, LatticeHost};
use trellis_runtime::{ImportRoute, Runtime, Val};
use trellis_tests::nats::NatsServer;

const LATTICE: &str = "bench-kv";
const KV_PROBE: &str = "trellis:providers/kv-probe@0.1.0";
/// Calls per latency sample set, and the cap on any one measurement.
const CALLS: usize = 2000;
const TIME_CAP: Duration = Duration::from_secs(20);
const CONCURRENCY: usize = 16;
const WINDOW: Duration = Duration::from_secs(3);

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

async fn scale(nats: &async_nats::Client, host: &LatticeHost, id: &str, guest: &str) {
    let subject = format!(
        "wasmbus.ctl.v1.{LATTICE}.component.scale.{}",
        host.host_id()
    );
    let body = json!({"component_ref": trellis_tests::component_ref(guest), "component_id": id, "count": 64});
    ctl(nats, subject, body).await;
    wait(|| async { host.runtime().component(id).is_some() }).await;
}

async fn link(nats: &async_nats::Client, source: &str, target: &str) {
    let link = json!({"source_id": source, "target": target, "name": "default", "wit_namespace": "wasi",
        "wit_package": "keyvalue", "interfaces": ["store", "atomics", "batch"], "source_config": [], "target_config": []});
    ctl(nats, format!("wasmbus.ctl.v1.{LATTICE}.link.put"), link).await;
}

async fn wait<F: Future<Output = bool>>(mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn routed(runtime: &Runtime, id: &str, route: ImportRoute) {
    wait(|| async {
        runtime.routes(id).await.is_some_and(|routes| {
            routes
                .iter()
                .filter(|(import, _)| import.starts_with("wasi:keyvalue/"))
                .all(|(_, r)| *r == route)
        })
    })
    .await;
}

async fn increment(runtime: &Runtime, id: &str) {
    let params = [
        Val::String("default".into()),
        Val::String("hits".into()),
        Val::U64(1),
    ];
    let out = runtime
        .invoke(id, KV_PROBE, "increment", &params, None)
        .await
        .unwrap();
    assert!(matches!(&out[0], Val::Result(Ok(_))), "{out:?}");
}

/// p50 and p99 of one invocation at a time.
async fn latency(runtime: &Runtime, id: &str) -> (Duration, Duration) {
    let started = Instant::now();
    let mut samples = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let call = Instant::now();
        increment(runtime, id).await;
        samples.push(call.elapsed());
        if started.elapsed() > TIME_CAP {
            break;
        }
    }
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// Invocations per second with `CONCURRENCY` callers, for at most `WINDOW`.
async fn throughput(runtime: &Runtime, id: &str) -> f64 {
    let started = Instant::now();
    let mut joins = Vec::new();
    for _ in 0..CONCURRENCY {
        let (runtime, id) = (runtime.clone(), id.to_string());
        joins.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < WINDOW && done < 200_000 {
                increment(&runtime, &id).await;
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = NatsServer::start();
    let nats = async_nats::connect(server.url()).await.unwrap();
    let (home, away) = (host(&server).await, host(&server).await);
    scale(&nats, &home, "builtin", "kv").await;
    scale(&nats, &home, "store", "kv_store").await;
    scale(&nats, &home, "local", "kv").await;
    scale(&nats, &away, "store-away", "kv_store").await;
    scale(&nats, &home, "remote", "kv").await;
    link(&nats, "local", "store").await;
    link(&nats, "remote", "store-away").await;
    let runtime = home.runtime().clone();
    routed(&runtime, "builtin", ImportRoute::Plugin("keyvalue".into())).await;
    routed(&runtime, "local", ImportRoute::InProcess("store".into())).await;
    let forwarding = ImportRoute::Plugin("keyvalue-over-lattice".into());
    routed(&runtime, "remote", forwarding).await;

    let ways = [
        ("built-in (memory)", "builtin"),
        ("provider component, in-process", "local"),
        ("provider component, other host over wRPC", "remote"),
    ];
    let mut rows = Vec::new();
    for (label, id) in ways {
        increment(&runtime, id).await;
        let (p50, p99) = latency(&runtime, id).await;
        let rate = throughput(&runtime, id).await;
        rows.push((label, p50, p99, rate));
    }
    println!(
        "| `increment`, one guest invocation | p50 | p99 | calls/s ({CONCURRENCY} callers, {WINDOW:?}) |"
    );
    println!("|---|---|---|---|");
    for (label, p50, p99, rate) in &rows {
        println!("| {label} | {p50:.1?} | {p99:.1?} | {rate:.0} |");
    }
    let ratio = |i: usize| rows[i].1.as_secs_f64() / rows[0].1.as_secs_f64();
    println!(
        "\np50 relative to the built-in: in-process component {:.2}x, over wRPC {:.2}x; \
         throughput relative to the built-in: {:.2}x, {:.2}x",
        ratio(1),
        ratio(2),
        rows[1].3 / rows[0].3,
        rows[2].3 / rows[0].3
    );
    home.stop(None).await.unwrap();
    away.stop(None).await.unwrap();
}
