//! Metrics on a real lattice: `/metrics` (`--metrics-addr`) counts every call of a component
//! by outcome and times it, and Debian's real Prometheus scrapes it (its HTTP API then reports
//! the numbers of calls this test made); with metrics off, no endpoint exists. The live view
//! (`trellis ctl top`) is tested with the binary in `host/tests/top.rs`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trellis_host::{HostConfig, LatticeHost};
use trellis_runtime::Val;
use trellis_tests::http::{free_port, get};
use trellis_tests::lattice::{ctl_client, eventually, run_component};
use trellis_tests::nats::NatsServer;

const LATTICE: &str = "observed";
const PROBE: &str = "trellis:example/probe@0.1.0";

async fn start_host(server: &NatsServer, metrics_addr: Option<SocketAddr>) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        metrics_addr,
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

async fn call(host: &LatticeHost, function: &str, params: &[Val]) -> Result<(), String> {
    host.runtime()
        .invoke("probe", PROBE, function, params, None)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The value of the sample `name{labels}` in a text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_call_by_outcome_and_time_it() {
    let server = NatsServer::start();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = host.metrics_addr().expect("the metrics endpoint");
    run_component(&client, host.host_id(), "probe", "prober", 4, &[]).await;
    for _ in 0..20 {
        call(&host, "ok", &[]).await.unwrap();
    }
    for _ in 0..2 {
        call(&host, "nap", &[Val::U32(30)]).await.unwrap();
    }
    for _ in 0..3 {
        assert!(call(&host, "trap", &[]).await.is_err());
    }

    let (status, text) = get(addr.port(), "/metrics").await.unwrap();
    assert!(status.contains("200"), "{status}");
    let series = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    let probe = r#"component="probe""#;
    assert_eq!(
        series(&format!(
            r#"trellis_component_calls_total{{{probe},outcome="ok"}}"#
        )),
        22.0
    );
    assert_eq!(
        series(&format!(
            r#"trellis_component_calls_total{{{probe},outcome="trap"}}"#
        )),
        3.0
    );
    assert_eq!(
        series(&format!(
            r#"trellis_component_calls_total{{{probe},outcome="budget"}}"#
        )),
        0.0
    );
    assert_eq!(
        series(&format!(
            "trellis_component_call_duration_seconds_count{{{probe}}}"
        )),
        25.0
    );
    assert_eq!(
        series(&format!(
            r#"trellis_component_call_duration_seconds_bucket{{{probe},le="+Inf"}}"#
        )),
        25.0
    );
    // The two naps took at least 30 ms each.
    assert!(
        series(&format!(
            "trellis_component_call_duration_seconds_sum{{{probe}}}"
        )) >= 0.06
    );
    assert!(
        series(&format!(
            r#"trellis_component_call_duration_seconds_bucket{{{probe},le="0.025"}}"#
        )) <= 23.0
    );
    assert_eq!(
        series(&format!("trellis_component_instances_max{{{probe}}}")),
        4.0
    );
    assert_eq!(
        series(&format!("trellis_component_instances_in_use{{{probe}}}")),
        0.0
    );
    assert!(
        series(r#"trellis_ctl_requests_total{operation="component.scale",outcome="ok"}"#) >= 1.0
    );
    assert_eq!(series("trellis_nats_disconnects_total"), 0.0);
    // The same calls by exported interface.
    let interface = r#"component="probe",interface="trellis:example/probe""#;
    assert_eq!(
        series(&format!(
            r#"trellis_interface_calls_total{{{interface},outcome="ok"}}"#
        )),
        22.0
    );
    assert_eq!(
        series(&format!(
            r#"trellis_interface_calls_total{{{interface},outcome="trap"}}"#
        )),
        3.0
    );
    assert_eq!(
        series(&format!(
            "trellis_interface_call_duration_seconds_count{{{interface}}}"
        )),
        25.0
    );
    // What the calls used: no fuel (not metered here); linear memory, every instance some.
    assert_eq!(
        series(&format!("trellis_component_fuel_consumed_total{{{probe}}}")),
        0.0
    );
    assert!(series(&format!("trellis_component_memory_peak_bytes{{{probe}}}")) >= 65536.0);
    // No component here sent a wRPC call.
    assert_eq!(series("trellis_wrpc_call_duration_seconds_count"), 0.0);
    // The same code again is a compile-cache hit.
    let misses = series(r#"trellis_compile_cache_total{outcome="miss"}"#);
    assert!(misses >= 1.0);
    run_component(&client, host.host_id(), "probe-again", "prober", 1, &[]).await;
    let (_, text) = get(addr.port(), "/metrics").await.unwrap();
    let series = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert!(series(r#"trellis_compile_cache_total{outcome="hit"}"#) >= 1.0);
    assert_eq!(
        series(r#"trellis_compile_cache_total{outcome="miss"}"#),
        misses
    );
    let (status, _) = get(addr.port(), "/elsewhere").await.unwrap();
    assert!(status.contains("404"), "{status}");

    let quiet = start_host(&server, None).await;
    assert_eq!(quiet.metrics_addr(), None);
    quiet.stop(None).await.unwrap();
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metered_calls_report_the_fuel_and_memory_they_used() {
    let server = NatsServer::start();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let host = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        limits: trellis_host::HostLimits {
            max_fuel: Some(1 << 40),
            ..trellis_host::HostLimits::default()
        },
        ..HostConfig::default()
    })
    .await
    .expect("starting the host");
    let addr = host.metrics_addr().expect("the metrics endpoint");
    run_component(&client, host.host_id(), "probe", "prober", 1, &[]).await;
    let fuel = |text: &str| {
        sample(
            text,
            r#"trellis_component_fuel_consumed_total{component="probe"}"#,
        )
    };
    let memory = |text: &str| {
        sample(
            text,
            r#"trellis_component_memory_peak_bytes{component="probe"}"#,
        )
    };

    call(&host, "ok", &[]).await.unwrap();
    let (_, text) = get(addr.port(), "/metrics").await.unwrap();
    let (fuel_after_ok, memory_after_ok) = (fuel(&text).unwrap(), memory(&text).unwrap());
    assert!(fuel_after_ok > 0.0, "{text}");
    call(&host, "hog", &[Val::U32(8)]).await.unwrap();
    let (_, text) = get(addr.port(), "/metrics").await.unwrap();
    // Allocating 8 MiB burns fuel and leaves the instance at least 8 MiB of linear memory.
    assert!(fuel(&text).unwrap() > fuel_after_ok);
    assert!(
        memory(&text).unwrap() >= memory_after_ok + 8.0 * 1024.0 * 1024.0,
        "{text}"
    );
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrpc_outcomes_and_provider_health_are_reported() {
    let server = NatsServer::start();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = host.metrics_addr().expect("the metrics endpoint");
    let metric = |series: &'static str| async move {
        let (_, text) = get(addr.port(), "/metrics").await.ok()?;
        sample(&text, series)
    };

    // The importer's `adder` import has no link: its call is never sent.
    run_component(&client, host.host_id(), "importer", "importer", 1, &[]).await;
    let failed = host
        .runtime()
        .invoke(
            "importer",
            "trellis:example/front@0.1.0",
            "add",
            &[Val::U32(1), Val::U32(2)],
            None,
        )
        .await;
    assert!(failed.is_err());
    assert_eq!(
        metric(r#"trellis_wrpc_calls_total{component="importer",outcome="no_link"}"#).await,
        Some(1.0)
    );

    // An external provider is healthy once it answers its health checks, and gone once stopped.
    let archive = trellis_tests::provider_archive("greeter");
    let ack = client
        .start_provider(
            host.host_id(),
            &format!("file://{}", archive.display()),
            "greeter",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually("the provider reported healthy", || async {
        (metric(r#"trellis_provider_healthy{provider="greeter"}"#).await == Some(1.0)).then_some(())
    })
    .await;
    let ack = client
        .stop_provider(host.host_id(), "greeter")
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually("the stopped provider gone from the metrics", || async {
        metric(r#"trellis_provider_healthy{provider="greeter"}"#)
            .await
            .is_none()
            .then_some(())
    })
    .await;
    host.stop(None).await.unwrap();
}

/// Debian's `prometheus` with a 1 s scrape of `target`, its data in a temporary directory;
/// killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: trellis\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is not installed: bash .ci/setup-tests");
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// The value of an instant query's single result, once there is one.
    async fn query(&self, query: &str) -> Option<f64> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        let (_, body) = get(self.port, &format!("/api/v1/query?query={encoded}"))
            .await
            .ok()?;
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_calls_this_test_made() {
    let server = NatsServer::start();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, Some("127.0.0.1:0".parse().unwrap())).await;
    run_component(&client, host.host_id(), "probe", "prober", 4, &[]).await;
    let prometheus = Prometheus::start(host.metrics_addr().unwrap());
    let calls = 40;
    for _ in 0..calls {
        call(&host, "ok", &[]).await.unwrap();
    }
    let wanted = [
        r#"trellis_component_calls_total{component="probe",outcome="ok"}"#,
        r#"trellis_component_call_duration_seconds_count{component="probe"}"#,
        r#"sum(trellis_component_call_duration_seconds_bucket{component="probe",le="+Inf"})"#,
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    for query in wanted {
        loop {
            if prometheus.query(query).await == Some(calls as f64) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never reported {calls} for {query} (last: {:?})",
                prometheus.query(query).await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    host.stop(None).await.unwrap();
}
