//! How long lattice operations take end to end, as a control client sees them: from the request
//! to the event (or status) that says it is done. Components started from a file, pulled from a
//! registry and taken from the OCI cache; an external provider started, first reported healthy,
//! restarted after `kill -9` and stopped; an app deployed and undeployed by the deployer; and a
//! `trellis host` process killed under a deployed app until the app is placed elsewhere.
//!
//! `cargo bench -p trellis-host --bench lifecycle` (needs `nats-server` and `docker-registry` on
//! PATH and the test providers built: `bash .ci/setup-tests`); see BENCHMARKS.md.

use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats_039 as nats;
use futures::StreamExt as _;
use serde_json::{Value, json};
use trellis_deployer::client::WadmClient;
use trellis_deployer::{Deployer, DeployerConfig};
use trellis_host::oci::{OciSettings, PushOptions};
use trellis_host::{HostConfig, LatticeHost, ProviderSettings};
use trellis_tests::nats::NatsServer;
use trellis_tests::registry::Registry;
use trellis_tests::{component_path, component_ref, provider_archive};
use wasmcloud_control_interface::Client;

const LATTICE: &str = "lifecycle";
/// Repetitions of each measurement, and the longest any one wait may take.
const RUNS: usize = 5;
const WAIT: Duration = Duration::from_secs(60);

/// The lattice's events as they arrive, each stamped with its arrival time.
struct Events(nats::Subscriber);

impl Events {
    async fn subscribe(nc: &nats::Client) -> Self {
        let events = nc
            .subscribe(format!("wasmbus.evt.{LATTICE}.>"))
            .await
            .unwrap();
        trellis_tests::lattice::registered(nc).await;
        Self(events)
    }

    /// The arrival time of the next event called `name` whose data has `field == value`.
    async fn next(&mut self, name: &str, field: &str, value: &str) -> Instant {
        let wanted = format!("com.wasmcloud.lattice.{name}");
        let seen = tokio::time::timeout(WAIT, async {
            while let Some(message) = self.0.next().await {
                let arrived = Instant::now();
                let event: Value = serde_json::from_slice(&message.payload).unwrap();
                if event["type"] == wanted.as_str() && event["data"][field] == value {
                    return arrived;
                }
            }
            panic!("the event subscription ended");
        });
        seen.await
            .unwrap_or_else(|_| panic!("no {name} for {value} within {WAIT:?}"))
    }
}

/// Median, minimum and maximum of `samples`, in milliseconds.
fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:8.1} ms   min {:8.1}   max {:8.1}   (n={})",
        ms(samples[samples.len() / 2]),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

fn report(what: &str, samples: &mut [Duration]) {
    println!("{what:<52} {}", summary(samples));
}

/// Time from a scale request to `component_scaled`; the component is scaled back to zero after.
async fn start_component(
    client: &Client,
    events: &mut Events,
    host: &LatticeHost,
    id: &str,
    reference: &str,
) -> Duration {
    let asked = Instant::now();
    let ack = client
        .scale_component(host.host_id(), reference, id, 1, None, vec![], false)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let scaled = events.next("component_scaled", "component_id", id).await;
    let ack = client
        .scale_component(host.host_id(), reference, id, 0, None, vec![], false)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    events.next("component_scaled", "component_id", id).await;
    scaled - asked
}

async fn components(server: &NatsServer, client: &Client, events: &mut Events) {
    let registry = Registry::start();
    let cache = tempfile::tempdir().unwrap();
    let host = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        oci: OciSettings {
            cache_dir: cache.path().join("oci"),
            allowed_insecure: vec![registry.address()],
            allow_latest: false,
        },
        ..HostConfig::default()
    })
    .await
    .unwrap();
    let options = PushOptions {
        allowed_insecure: vec![registry.address()],
        credential: None,
    };
    let tag = format!("{}/bench/exporter:0.1.0", registry.address());
    let digest = trellis_host::oci::push(&component_path("exporter"), &tag, &options)
        .await
        .unwrap();
    let by_digest = format!("{}/bench/exporter@{digest}", registry.address());
    let file = component_ref("exporter");
    // Compiles the component once: every start below reuses the compiled code.
    start_component(client, events, &host, "warm-up", &file).await;

    let (mut from_file, mut pulled, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        from_file.push(start_component(client, events, &host, &format!("f{run}"), &file).await);
        let _ = std::fs::remove_dir_all(cache.path().join("oci"));
        pulled.push(start_component(client, events, &host, &format!("p{run}"), &tag).await);
        cached.push(start_component(client, events, &host, &format!("c{run}"), &by_digest).await);
    }
    report("component start, file://", &mut from_file);
    report("component start, OCI tag pulled (empty cache)", &mut pulled);
    report("component start, OCI digest from the cache", &mut cached);
    host.stop(None).await.unwrap();
}

async fn providers(server: &NatsServer, client: &Client, events: &mut Events) {
    let cache = tempfile::tempdir().unwrap();
    // Default supervision (a health check every 30 s) apart from a short first restart delay.
    let host = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        providers: ProviderSettings {
            restart_backoff: Duration::from_millis(100),
            cache_dir: cache.path().to_path_buf(),
            ..ProviderSettings::default()
        },
        ..HostConfig::default()
    })
    .await
    .unwrap();
    let reference = format!("file://{}", provider_archive("greeter").display());
    let (mut started, mut healthy, mut restarted, mut healthy_again, mut stopped) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        let id = format!("greeter-{run}");
        let asked = Instant::now();
        let ack = client
            .start_provider(host.host_id(), &reference, &id, None, vec![])
            .await
            .unwrap();
        assert!(ack.succeeded(), "{}", ack.message());
        started.push(events.next("provider_started", "provider_id", &id).await - asked);
        healthy.push(events.next("health_check_passed", "provider_id", &id).await - asked);

        let pid = provider_pid(cache.path());
        let killed = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        assert!(status.unwrap().success());
        restarted.push(events.next("provider_restarted", "provider_id", &id).await - killed);
        healthy_again.push(events.next("health_check_passed", "provider_id", &id).await - killed);

        let asked = Instant::now();
        let ack = client.stop_provider(host.host_id(), &id).await.unwrap();
        assert!(ack.succeeded(), "{}", ack.message());
        stopped.push(events.next("provider_stopped", "provider_id", &id).await - asked);
    }
    report("provider start -> provider_started", &mut started);
    report("provider start -> health_check_passed", &mut healthy);
    report(
        "kill -9 -> provider_restarted (100 ms backoff)",
        &mut restarted,
    );
    report("kill -9 -> health_check_passed", &mut healthy_again);
    report("provider stop -> provider_stopped", &mut stopped);
    host.stop(None).await.unwrap();
}

/// The PID of the one live provider process extracted under `cache` (each run stops its
/// provider before the next starts).
fn provider_pid(cache: &std::path::Path) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            if exe.starts_with(cache) && !stat.contains(") Z ") {
                return pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no provider process under {cache:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn app(name: &str, labels: Option<Value>) -> Value {
    let spread = match labels {
        Some(requirements) => json!([{"name": "placed", "requirements": requirements}]),
        None => json!([]),
    };
    json!({
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": name, "annotations": {"version": "v0.1.0"}},
        "spec": {"components": [
            {"name": "front", "type": "component",
             "properties": {"image": component_ref("importer")},
             "traits": [
                {"type": "spreadscaler", "properties": {"instances": 1, "spread": spread}},
                {"type": "link", "properties": {"target": {"name": "math"},
                  "namespace": "trellis", "package": "example", "interfaces": ["adder", "greeter"]}}]},
            {"name": "math", "type": "component",
             "properties": {"image": component_ref("exporter")},
             "traits": [{"type": "spreadscaler", "properties": {"instances": 2, "spread": spread}}]}
        ]}
    })
}

async fn status_is(wadm: &WadmClient, name: &str, wanted: &str) -> bool {
    let status = wadm.status(name).await.unwrap();
    status["status"]["status"]["type"] == wanted
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn deployer(server: &NatsServer) {
    let host = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        ..HostConfig::default()
    })
    .await
    .unwrap();
    // The CLI's reconcile interval (`trellis deployer`, `trellis up`): 10 s.
    let deployer = Deployer::start(DeployerConfig {
        nats_url: server.url(),
        lattice: LATTICE.into(),
        ..DeployerConfig::default()
    })
    .await
    .unwrap();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let wadm = WadmClient::new(nc, LATTICE);
    let (mut deployed, mut undeployed) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let name = format!("pair{run}");
        let put = wadm.put(&app(&name, None)).await.unwrap();
        assert_eq!(put["result"], "created", "{put}");
        let asked = Instant::now();
        let reply = wadm.deploy(&name, None).await.unwrap();
        assert_eq!(reply["result"], "acknowledged", "{reply}");
        until("deployed", async || {
            status_is(&wadm, &name, "deployed").await
        })
        .await;
        deployed.push(asked.elapsed());

        let asked = Instant::now();
        wadm.undeploy(&name).await.unwrap();
        let runtime = host.runtime();
        until("nothing left", async || {
            runtime.component(&format!("{name}-front")).is_none()
                && runtime.component(&format!("{name}-math")).is_none()
        })
        .await;
        undeployed.push(asked.elapsed());
    }
    report("deploy (2 components, 1 link) -> deployed", &mut deployed);
    report("undeploy -> components gone", &mut undeployed);
    deployer.stop().await;
    host.stop(None).await.unwrap();
}

/// A `trellis host` process holding a deployed app is SIGKILLed; how long until the app runs on
/// the other host, with the deployer reconciling every `reconcile` (besides on events).
async fn host_crash(server: &NatsServer, reconcile: Duration, run: usize) -> Duration {
    let lattice = format!("crash-{}-{run}", reconcile.as_secs());
    let deployer = Deployer::start(DeployerConfig {
        nats_url: server.url(),
        lattice: lattice.clone(),
        reconcile_interval: reconcile,
        ..DeployerConfig::default()
    })
    .await
    .unwrap();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let wadm = WadmClient::new(nc, &lattice);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["host", "--lattice", &lattice, "--label", "role=worker"])
        .arg("--allow-file-load")
        .env("TRELLIS_NATS_URL", server.url())
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let put = wadm
        .put(&app("moving", Some(json!({"role": "worker"}))))
        .await
        .unwrap();
    assert_eq!(put["result"], "created", "{put}");
    wadm.deploy("moving", None).await.unwrap();
    until("deployed on the host process", async || {
        status_is(&wadm, "moving", "deployed").await
    })
    .await;
    let survivor = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: lattice.clone(),
        labels: [("role".to_string(), "worker".to_string())].into(),
        ..HostConfig::default()
    })
    .await
    .unwrap();
    let killed = Instant::now();
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let runtime = survivor.runtime();
    until("re-placed", async || {
        runtime.component("moving-front").is_some() && runtime.component("moving-math").is_some()
    })
    .await;
    let elapsed = killed.elapsed();
    deployer.stop().await;
    survivor.stop(None).await.unwrap();
    elapsed
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    trellis_tests::install_tracing();
    component_path("exporter");
    let server = NatsServer::start();
    let (client, nc) = trellis_tests::lattice::ctl_client(&server, LATTICE).await;
    let mut events = Events::subscribe(&nc).await;
    components(&server, &client, &mut events).await;
    providers(&server, &client, &mut events).await;
    deployer(&server).await;
    for reconcile in [Duration::from_secs(1), Duration::from_secs(10)] {
        let mut samples = Vec::new();
        for run in 0..2 {
            samples.push(host_crash(&server, reconcile, run).await);
        }
        let what = format!("host SIGKILL -> app re-placed (reconcile {reconcile:?})");
        report(&what, &mut samples);
    }
}
