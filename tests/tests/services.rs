//! Components that run as services (they export `wasi:cli/run`) on a real lattice, driven by
//! the real `wasmcloud-control-interface` client: started and stopped by `component.scale`,
//! linked like any component (here to an adder on another host, over wRPC), their output in
//! the host's log tagged with their id, restarted by the policy their named config sets, and
//! their state in the host inventory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats_039 as nats;
use serde_json::Value;
use trellis_host::{HostConfig, LatticeHost};
use trellis_tests::lattice::{ctl_client, eventually, put_config, run_component};
use trellis_tests::nats::NatsServer;
use wasmcloud_control_interface::{Client, Link};

const LATTICE: &str = "services";

/// Everything the tests here log at `info` and above.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    trellis_tests::logs::captured("info")
}

fn logged_lines() -> Vec<String> {
    trellis_tests::logs::lines(&captured_logs())
}

async fn start_host(server: &NatsServer) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        heartbeat_interval: Duration::from_secs(5),
        rpc_timeout: Duration::from_secs(2),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

async fn link_to_adder(client: &Client, source: &str, target: &str) {
    let link = Link::builder()
        .source_id(source)
        .target(target)
        .name("default")
        .wit_namespace("trellis")
        .wit_package("example")
        .interfaces(vec!["adder".into()])
        .build()
        .unwrap();
    let ack = client.put_link(link).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
}

/// The `state` the host's inventory gives component `id` (raw JSON: a Trellis extension the
/// typed client does not know), or `None` when it does not run there or is no service.
async fn inventory_state(nats: &nats::Client, host: &LatticeHost, id: &str) -> Option<String> {
    let subject = format!("wasmbus.ctl.v1.{LATTICE}.host.get.{}", host.host_id());
    let reply = nats.request(subject, "".into()).await.unwrap();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    reply["response"]["components"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == id)?["state"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_calls_a_component_on_another_host_and_logs_its_output() {
    captured_logs();
    let server = NatsServer::start();
    let (client, nats) = ctl_client(&server, LATTICE).await;
    let home = start_host(&server).await;
    let away = start_host(&server).await;
    run_component(&client, away.host_id(), "math", "exporter", 1, &[]).await;
    link_to_adder(&client, "ticker", "math").await;
    put_config(
        &client,
        "ticker-five",
        &[("trellis.env.EVERY_MS", "20"), ("trellis.env.TICKS", "5")],
    )
    .await;
    run_component(
        &client,
        home.host_id(),
        "ticker",
        "ticker",
        1,
        &["ticker-five"],
    )
    .await;

    // Five calls over wRPC to the other host, then a clean exit that is not restarted.
    eventually("the ticker to finish", || async {
        let state = inventory_state(&nats, &home, "ticker").await?;
        (state == "exited with code 0").then_some(())
    })
    .await;
    assert!(away.runtime().component("math").unwrap().invocations() >= 5);
    let lines = logged_lines();
    let line = |text: &str| {
        lines
            .iter()
            .find(|line| line.contains(text))
            .unwrap_or_else(|| panic!("no log line with {text:?}"))
            .clone()
    };
    let tick = line("tick 5: add(5, 1) = 6");
    assert!(
        tick.contains("INFO") && tick.contains("component=\"ticker\""),
        "{tick}"
    );
    assert!(tick.contains("stream=\"stdout\""), "{tick}");
    let done = line("ticker done after 5 ticks, exiting with code 0");
    assert!(
        done.contains("WARN") && done.contains("stream=\"stderr\""),
        "{done}"
    );
    // The service's `wasi:cli/run` is not callable over the lattice.
    let run = format!("{LATTICE}.ticker.wrpc.0.0.1.wasi:cli/run@0.2.6.run");
    let called = nats.request(run, "".into()).await;
    assert!(called.is_err(), "wasi:cli/run answered on the lattice");

    // A control request stops it.
    run_component(
        &client,
        home.host_id(),
        "ticker",
        "ticker",
        0,
        &["ticker-five"],
    )
    .await;
    assert!(home.runtime().component("ticker").is_none());
    home.stop(None).await.unwrap();
    away.stop(None).await.unwrap();
}

/// Polls `id`'s inventory state until it is `restarting (n): …` for `n` = 1, 2, 3; returns when
/// each was first seen.
async fn restart_times(nats: &nats::Client, host: &LatticeHost, id: &str) -> Vec<Instant> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 3 {
        assert!(Instant::now() < deadline, "fewer than 3 restarts: {seen:?}");
        if let Some(state) = inventory_state(nats, host, id).await {
            let wanted = format!("restarting ({}): exited with code 1", seen.len() + 1);
            if state == wanted {
                seen.push(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_service_is_restarted_with_backoff_by_its_policy() {
    captured_logs();
    let server = NatsServer::start();
    let (client, nats) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server).await;
    run_component(&client, host.host_id(), "math", "exporter", 1, &[]).await;
    link_to_adder(&client, "crashy", "math").await;
    put_config(
        &client,
        "one-tick-then-fail",
        &[
            ("trellis.env.EVERY_MS", "1"),
            ("trellis.env.TICKS", "1"),
            ("trellis.env.EXIT_CODE", "1"),
        ],
    )
    .await;
    run_component(
        &client,
        host.host_id(),
        "crashy",
        "ticker",
        1,
        &["one-tick-then-fail"],
    )
    .await;
    // The default policy, on-failure: restarted, each wait twice the one before (250 ms, then
    // 500 ms), so the gaps between restarts grow.
    let times = restart_times(&nats, &host, "crashy").await;
    let (first, second) = (times[1] - times[0], times[2] - times[1]);
    assert!(
        first >= Duration::from_millis(180) && second >= first + Duration::from_millis(150),
        "restarts after {first:?} then {second:?}: not backing off"
    );
    run_component(&client, host.host_id(), "crashy", "ticker", 0, &[]).await;

    // `never`: the failure is final; `always`: even a clean exit starts it again.
    put_config(
        &client,
        "fail-once",
        &[
            ("trellis.env.TICKS", "1"),
            ("trellis.env.EXIT_CODE", "1"),
            ("trellis.service.restart", "never"),
        ],
    )
    .await;
    link_to_adder(&client, "once", "math").await;
    link_to_adder(&client, "again", "math").await;
    run_component(&client, host.host_id(), "once", "ticker", 1, &["fail-once"]).await;
    eventually("the failure to be final", || async {
        let state = inventory_state(&nats, &host, "once").await?;
        (state == "failed: exited with code 1").then_some(())
    })
    .await;
    put_config(
        &client,
        "exit-clean-always",
        &[
            ("trellis.env.TICKS", "1"),
            ("trellis.service.restart", "always"),
        ],
    )
    .await;
    run_component(
        &client,
        host.host_id(),
        "again",
        "ticker",
        1,
        &["exit-clean-always"],
    )
    .await;
    eventually("a clean exit to be restarted", || async {
        let state = inventory_state(&nats, &host, "again").await?;
        state
            .starts_with("restarting (")
            .then_some(())
            .filter(|()| state.ends_with("exited with code 0"))
    })
    .await;
    // A component that is no service has no state in the inventory.
    assert_eq!(inventory_state(&nats, &host, "math").await, None);
    host.stop(None).await.unwrap();
}

/// A WASI preview-1 core module with `_start` (the weft case) runs as a service too: started by
/// `component.scale`, its output in the log, its end in the inventory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview1_module_runs_as_a_service_on_the_lattice() {
    captured_logs();
    let server = NatsServer::start();
    let (client, nats) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let source =
        std::fs::read_to_string(trellis_tests::components_dir().join("p1-start.wat")).unwrap();
    let module = dir.path().join("hello-p1.wasm");
    std::fs::write(&module, wat::parse_str(&source).unwrap()).unwrap();
    let ack = client
        .scale_component(
            host.host_id(),
            &format!("file://{}", module.display()),
            "weft",
            1,
            None,
            vec![],
            false,
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually("the module to run to its end", || async {
        let state = inventory_state(&nats, &host, "weft").await?;
        (state == "exited with code 0").then_some(())
    })
    .await;
    let said = logged_lines()
        .into_iter()
        .find(|line| line.contains("hello from preview1"))
        .expect("the module's output in the log");
    assert!(said.contains("component=\"weft\""), "{said}");
    run_component(&client, host.host_id(), "weft", "ticker", 0, &[]).await;
    host.stop(None).await.unwrap();
}
