//! A `trellis host` process killed with SIGKILL publishes nothing, yet a `trellis deployer`
//! process notices it (it stops answering inventory requests) and re-places its share of an
//! app on a host that is still up.

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};
use trellis_deployer::client::WadmClient;
use trellis_deployer::lattice::Ctl;
use trellis_host::{HostConfig, LatticeHost};
use trellis_tests::component_ref;
use trellis_tests::lattice::eventually;
use trellis_tests::nats::NatsServer;

mod common;

const LATTICE: &str = "crash";

fn manifest() -> Value {
    json!({
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": "survivor", "annotations": {"version": "v0.1.0"}},
        "spec": {"components": [{
            "name": "math",
            "type": "component",
            "properties": {"image": component_ref("exporter")},
            "traits": [{"type": "spreadscaler", "properties": {
                "instances": 2,
                "spread": [{"name": "workers", "requirements": {"role": "worker"}}],
            }}],
        }]},
    })
}

/// `host id -> max instances` of the app's component on each host in `hosts`.
async fn placement(ctl: &Ctl, hosts: &[&str]) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for host in hosts {
        if let Ok(inventory) = ctl.inventory(host).await
            && let Some(component) = inventory.component("survivor-math")
        {
            out.push((host.to_string(), component.max_instances));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_is_noticed_and_its_instances_placed_elsewhere() {
    let server = NatsServer::start();
    let nats = async_nats::connect(server.url()).await.unwrap();
    let (_, events_nc) = trellis_tests::lattice::ctl_client(&server, LATTICE).await;
    let mut events = events_nc
        .subscribe(format!("wasmbus.evt.{LATTICE}.>"))
        .await
        .unwrap();
    trellis_tests::lattice::registered(&events_nc).await;
    let trellis = |args: &[&str]| {
        common::trellis()
            .args(args)
            .args(["--lattice", LATTICE])
            .env("TRELLIS_NATS_URL", server.url())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut deployer = trellis(&["deployer", "--reconcile-secs", "1"]);
    // The only worker at first: a host process of its own.
    let mut child = trellis(&[
        "host",
        "--label",
        "role=worker",
        "--heartbeat-secs",
        "2",
        "--allow-file-load",
    ]);
    let doomed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let message = events.next().await.unwrap();
            let event: Value = serde_json::from_slice(&message.payload).unwrap();
            if event["type"] == "com.wasmcloud.lattice.host_started" {
                return event["source"].as_str().unwrap().to_string();
            }
        }
    })
    .await
    .expect("the host process started");

    let client = WadmClient::new(nats.clone(), LATTICE);
    let put = client.put(&manifest()).await.unwrap();
    assert_eq!(put["result"], "created", "{put}");
    let deployed = client.deploy("survivor", None).await.unwrap();
    assert_eq!(deployed["result"], "acknowledged", "{deployed}");
    let ctl = Ctl::new(nats.clone(), LATTICE, Duration::from_secs(2));
    eventually("the app on the host process", || async {
        (placement(&ctl, &[&doomed]).await == [(doomed.clone(), 2)]).then_some(())
    })
    .await;

    // A second worker joins; the app is satisfied, so nothing moves to it yet.
    let survivor = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        labels: [("role".to_string(), "worker".to_string())].into(),
        heartbeat_interval: Duration::from_secs(2),
        ..HostConfig::default()
    })
    .await
    .unwrap();
    let survivor_id = survivor.host_id().to_string();

    child.start_kill().unwrap();
    child.wait().await.unwrap();
    eventually("the app re-placed on the surviving host", || async {
        let now = placement(&ctl, &[&doomed, &survivor_id]).await;
        (now == [(survivor_id.clone(), 2)]).then_some(())
    })
    .await;
    eventually("the app deployed again", || async {
        let status = client.status("survivor").await.unwrap();
        (status["status"]["status"]["type"] == "deployed").then_some(())
    })
    .await;

    // The killed host said nothing: the deployer found out by itself.
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(200), events.next()).await
    {
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        assert!(
            !(event["type"] == "com.wasmcloud.lattice.host_stopped"
                && event["source"] == doomed.as_str()),
            "a SIGKILLed host published host_stopped"
        );
    }
    let pid = deployer.id().unwrap().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(term.unwrap().success());
    let exit = tokio::time::timeout(Duration::from_secs(20), deployer.wait()).await;
    assert!(
        exit.unwrap().unwrap().success(),
        "the deployer exits 0 on SIGTERM"
    );
    survivor.stop(None).await.unwrap();
}
