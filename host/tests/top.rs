//! `trellis ctl top -o json` against a loaded lattice: the calls a load generator made are the
//! calls it reports, and its calls per second over an interval of steady load are within 10%
//! of the rate the generator kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use trellis_host::{HostConfig, LatticeHost};
use trellis_tests::lattice::{ctl_client, run_component};
use trellis_tests::nats::NatsServer;

mod common;
use common::Cli;

const LATTICE: &str = "top";
const PROBE: &str = "trellis:example/probe@0.1.0";

async fn top(url: &str, interval_ms: u64) -> Value {
    let rows = Cli::new(url, LATTICE, &["ctl", "top"])
        .json(&["--interval-ms", &interval_ms.to_string()])
        .await;
    let rows = rows.as_array().expect("rows").clone();
    rows.into_iter()
        .find(|row| row["component_id"] == "probe")
        .expect("a row for the probe")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_reports_what_the_load_generator_counted() {
    let server = NatsServer::start();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let host = Arc::new(
        LatticeHost::start(HostConfig {
            files: trellis_host::FilePolicy::allow_all(),
            nats_url: server.url(),
            lattice: LATTICE.into(),
            ..HostConfig::default()
        })
        .await
        .expect("starting the host"),
    );
    run_component(&client, host.host_id(), "probe", "prober", 4, &[]).await;

    // Paced load: one call every 10 ms for 6 s, counted as they end.
    let counted = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn({
        let (host, counted) = (host.clone(), counted.clone());
        async move {
            let started = Instant::now();
            let mut ticks = tokio::time::interval(Duration::from_millis(10));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while started.elapsed() < Duration::from_secs(6) {
                ticks.tick().await;
                host.runtime()
                    .invoke("probe", PROBE, "ok", &[], None)
                    .await
                    .expect("an ok call");
                counted.fetch_add(1, Ordering::Relaxed);
            }
            counted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = top(&server.url(), 3000).await;
    let rate = load.await.unwrap();
    let reported = during["calls_per_second"].as_f64().unwrap();
    assert!(
        (reported - rate).abs() <= rate * 0.10,
        "top reported {reported:.1} calls/s, the generator kept {rate:.1}"
    );
    assert!(during["p50_ms"].as_f64().is_some(), "{during}");
    assert!(during["p99_ms"].as_f64().unwrap() >= during["p50_ms"].as_f64().unwrap());

    // Idle: every call counted, none in the interval.
    let after = top(&server.url(), 500).await;
    assert_eq!(after["calls"], counted.load(Ordering::Relaxed));
    assert_eq!(after["errors"], 0);
    assert_eq!(after["calls_per_second"], 0.0);
    assert_eq!(after["p50_ms"], Value::Null);
    assert_eq!(after["max_instances"], 4);
    assert_eq!(after["host_id"], host.host_id());
    Arc::into_inner(host).unwrap().stop(None).await.unwrap();
}
