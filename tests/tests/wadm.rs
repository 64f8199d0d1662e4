//! The real wadm 0.21.1 (built by `tests/wadm/build.sh`, a child process) manages Trellis
//! hosts on a real `nats-server`, with no Trellis deployer on the lattice: example manifests
//! from `wadm-manifests/` are deployed through the wadm API, as `trellis app deploy` sends them,
//! reach `deployed` as wadm reports it, serve real HTTP requests or answer calls across two
//! hosts, and undeploy leaves no component, provider or link on the hosts (checked with the
//! wasmcloud-control-interface client). The other way round, the real wadm client library
//! (wadm-client 0.10, as `wash app` uses it) drives the Trellis deployer through an app's whole
//! life, every reply deserialized into wadm's own types. And the same raw manifests put to
//! wadm and to the Trellis deployer are stored by both or refused by both.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};
use trellis_deployer::client::{ClientError, WadmClient};
use trellis_deployer::{Deployer, DeployerConfig, cli, manifest};
use trellis_host::{HostConfig, LatticeHost};
use trellis_runtime::Val;
use trellis_tests::http::{free_port, get};
use trellis_tests::lattice::{LATTICE_WAIT, ctl_client, eventually, front_add};
use trellis_tests::nats::NatsServer;
use trellis_tests::secrets::{self, ExampleSecrets, SecretsBackend};
use trellis_tests::wadm::{Wadm, WadmClientRun};
use trellis_tests::{component_path, wadm_binary};
use wasmcloud_control_interface::Client as CtlClient;

const LATTICE: &str = "wadm-managed";

/// wadm, then two hosts: 0 in zone a, 1 in zone b.
struct Lattice {
    hosts: Vec<LatticeHost>,
    client: WadmClient,
    ctl: CtlClient,
    _wadm: Wadm,
    _server: NatsServer,
    _turn: MutexGuard<'static, ()>,
}

/// wadm gives each event 2 s before it redelivers it and drops it after three deliveries; two
/// wadm lattices at once on a loaded 2-core machine (each with its nats-server and two hosts)
/// starve each other past that. They take turns.
static ONE_LATTICE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn host(server: &NatsServer, zone: &str) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        labels: [("zone".to_string(), zone.to_string())].into(),
        heartbeat_interval: Duration::from_secs(2),
        rpc_timeout: Duration::from_secs(5),
        // Only the secrets example starts a backend; the others name no secrets.
        secrets_topic: Some(secrets::TOPIC.into()),
        ..HostConfig::default()
    })
    .await
    .expect("starting a host")
}

/// Two hosts (zones a and b) and the Trellis deployer on `server`: what wadm is compared with.
async fn trellis_managed(server: &NatsServer) -> (Vec<LatticeHost>, Deployer) {
    let hosts = vec![host(server, "a").await, host(server, "b").await];
    let deployer = Deployer::start(DeployerConfig {
        nats_url: server.url(),
        lattice: LATTICE.into(),
        reconcile_interval: Duration::from_secs(1),
        ..DeployerConfig::default()
    })
    .await
    .expect("starting the deployer");
    (hosts, deployer)
}

async fn lattice() -> Lattice {
    // Fail fast, before anything starts, when wadm was not built; build the guests before
    // anything times out on them.
    wadm_binary();
    for guest in ["http_server", "importer", "exporter"] {
        component_path(guest);
    }
    let turn = ONE_LATTICE_AT_A_TIME.lock().await;
    let server = NatsServer::start();
    let nats = async_nats::connect(server.url()).await.unwrap();
    let client = WadmClient::new(nats.clone(), LATTICE);
    // Nothing of Trellis answers the wadm API here: only the wadm started next will.
    assert!(
        matches!(client.list().await, Err(ClientError::NoDeployer(_))),
        "something answers the wadm API before wadm runs"
    );
    let mut wadm = Wadm::start(&server);
    let deadline = Instant::now() + LATTICE_WAIT;
    while client.list().await.is_err() {
        assert!(wadm.is_running(), "wadm exited");
        assert!(Instant::now() < deadline, "wadm's API did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hosts = vec![host(&server, "a").await, host(&server, "b").await];
    monitored(&nats).await;
    let (ctl, _) = ctl_client(&server, LATTICE).await;
    Lattice {
        hosts,
        client,
        ctl,
        _wadm: wadm,
        _server: server,
        _turn: turn,
    }
}

/// Waits until wadm manages the lattice: it starts doing so on the lattice's first event (a
/// host starting), and a deploy before that is lost. wadm hands deploys to the lattice's
/// scaler manager through its `wadm_notify` stream, which keeps a message only for consumers
/// that exist when it is published, and the manager's consumer is created with the manager.
async fn monitored(nats: &async_nats::Client) {
    let subject = format!("wadm.notify.{LATTICE}");
    let js = async_nats::jetstream::new(nats.clone());
    eventually("wadm managing the lattice", || async {
        let stream = js.get_stream("wadm_notify").await.ok()?;
        let consumers: Vec<_> = stream.consumers().collect().await;
        let managed = consumers
            .into_iter()
            .flatten()
            .any(|consumer| consumer.config.filter_subject == subject);
        managed.then_some(())
    })
    .await;
}

/// An example manifest with its relative `file://` images made absolute (as `trellis app
/// deploy` does).
fn example(name: &str) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bytes = std::fs::read(root.join("wadm-manifests").join(name)).unwrap();
    let mut parsed = manifest::parse(&bytes).expect("the example is valid");
    cli::absolutize_file_refs(&mut parsed.document, root);
    parsed.document
}

/// `(host index, max instances)` of each of `hosts` running component `id`.
async fn placement(ctl: &CtlClient, hosts: &[LatticeHost], id: &str) -> Vec<(usize, u32)> {
    let mut placement = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let inventory = ctl.get_host_inventory(host.host_id()).await.unwrap();
        let inventory = inventory.data().expect("an inventory");
        if let Some(component) = inventory.components().iter().find(|c| c.id() == id) {
            placement.push((i, component.max_instances()));
        }
    }
    placement
}

/// Waits until none of `hosts` runs a component or provider and no link is left.
async fn nothing_left(ctl: &CtlClient, hosts: &[LatticeHost], app: &str) {
    eventually(&format!("nothing of {app} left on the hosts"), || async {
        for host in hosts {
            let inventory = ctl.get_host_inventory(host.host_id()).await.ok()?;
            let inventory = inventory.data()?;
            if !inventory.components().is_empty() || !inventory.providers().is_empty() {
                return None;
            }
        }
        let links = ctl.get_links().await.ok()?;
        links.data()?.is_empty().then_some(())
    })
    .await;
}

impl Lattice {
    /// Puts and deploys `document` through wadm's API; returns the app's name.
    async fn deploy(&self, document: &Value) -> String {
        let put = self.client.put(document).await.unwrap();
        assert_eq!(put["result"], "created", "{put}");
        let name = put["name"].as_str().unwrap().to_string();
        let version = put["current_version"].as_str().unwrap();
        let deployed = self.client.deploy(&name, Some(version)).await.unwrap();
        assert_eq!(deployed["result"], "acknowledged", "{deployed}");
        name
    }

    /// Waits for wadm to report `app` deployed; on timeout, says what wadm last reported.
    ///
    /// wadm handles a deploy as an event on the lattice's work queue, one event at a time, and
    /// drops an event after three deliveries unacknowledged for 2 s each: on a loaded 2-core
    /// machine a deploy queued behind a slow event is lost, and the app stays `undeployed` with
    /// no version, as if never deployed. A user deploys again, and so does this, each time 10 s
    /// pass without wadm handling it.
    async fn wait_deployed(&self, app: &str) {
        const NEVER_HANDLED_FOR: Duration = Duration::from_secs(10);
        let mut last = Value::Null;
        let deadline = Instant::now() + 2 * LATTICE_WAIT;
        let mut deployed_at = Instant::now();
        loop {
            if let Ok(reply) = self.client.status(app).await {
                assert_eq!(reply["result"], "ok", "{reply}");
                if reply["status"]["status"]["type"] == "deployed" {
                    return;
                }
                let never_handled = reply["status"]["version"] == "";
                if never_handled && deployed_at.elapsed() > NEVER_HANDLED_FOR {
                    eprintln!("wadm never handled the deploy of {app}; deploying again");
                    let deployed = self.client.deploy(app, None).await.unwrap();
                    assert_eq!(deployed["result"], "acknowledged", "{deployed}");
                    deployed_at = Instant::now();
                }
                last = reply;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for wadm to report {app} deployed; last status: {last}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `(host index, max instances)` of each host running component `id`.
    async fn placement(&self, id: &str) -> Vec<(usize, u32)> {
        placement(&self.ctl, &self.hosts, id).await
    }

    /// Undeploys through wadm and waits until no host runs a component or provider and no link
    /// is left.
    async fn undeploy_and_wait_nothing_left(&self, app: &str) {
        let reply = self.client.undeploy(app).await.unwrap();
        assert_eq!(reply["result"], "acknowledged", "{reply}");
        nothing_left(&self.ctl, &self.hosts, app).await;
    }

    async fn shutdown(self) {
        for host in self.hosts {
            host.stop(Some(Duration::from_secs(2))).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wadm_deploys_hello_and_it_answers_real_http_requests() {
    let lattice = lattice().await;
    let mut document = example("hello.yaml");
    let port = free_port();
    let server = &mut document["spec"]["components"][1];
    assert_eq!(server["type"], "capability");
    server["traits"][0]["properties"]["source"]["config"][0]["properties"]["address"] =
        format!("127.0.0.1:{port}").into();
    let app = lattice.deploy(&document).await;
    lattice.wait_deployed(&app).await;

    let (status, body) = eventually("hello answers", || async {
        get(port, "/from-wadm").await.ok()
    })
    .await;
    assert!(status.contains("200"), "{status}: {body}");
    assert!(body.contains("at /from-wadm"), "{body}");
    // wadm's component ID; the spread's 4 instances, wherever wadm put them.
    let placement = lattice.placement("hello-http_component").await;
    let instances: u32 = placement.iter().map(|(_, n)| n).sum();
    assert_eq!(instances, 4, "{placement:?}");
    // The manifest's limits reached the host through the config wadm put and passed on.
    let (host, _) = placement[0];
    let inventory = lattice
        .ctl
        .get_host_inventory(lattice.hosts[host].host_id())
        .await
        .unwrap();
    let inventory = inventory.data().unwrap();
    let hello = inventory
        .components()
        .iter()
        .find(|c| c.id() == "hello-http_component")
        .unwrap();
    let limits = hello.limits().expect("limits in the inventory");
    assert_eq!(limits["max_execution_time_ms"], "30000", "{limits:?}");

    lattice.undeploy_and_wait_nothing_left(&app).await;
    eventually("the port is closed", || async {
        get(port, "/").await.is_err().then_some(())
    })
    .await;
    lattice.shutdown().await;
}

/// wadm passes the provider component's volume keys through as named config it does not read;
/// the count goes on from request to request, kept in that volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wadm_deploys_a_key_value_that_is_a_component() {
    component_path("counter");
    component_path("kv_store");
    let lattice = lattice().await;
    let mut document = example("kv-component.yaml");
    let port = free_port();
    let server = &mut document["spec"]["components"][2];
    assert_eq!(server["type"], "capability");
    server["traits"][0]["properties"]["source"]["config"][0]["properties"]["address"] =
        format!("127.0.0.1:{port}").into();
    let app = lattice.deploy(&document).await;
    lattice.wait_deployed(&app).await;
    let count = |body: &str| body.trim().strip_prefix("count: ")?.parse::<u64>().ok();
    let first = eventually("the counter answers", || async {
        let (status, body) = get(port, "/").await.ok()?;
        status.contains("200").then(|| count(&body)).flatten()
    })
    .await;
    for next in first + 1..first + 4 {
        let (status, body) = get(port, "/").await.unwrap();
        assert!(status.contains("200"), "{status}: {body}");
        assert_eq!(count(&body), Some(next));
    }
    lattice.undeploy_and_wait_nothing_left(&app).await;
    lattice.shutdown().await;
}

/// wadm places a service like any component; its settings reach the host as named config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wadm_deploys_a_service_that_calls_a_component() {
    component_path("ticker");
    let lattice = lattice().await;
    // The service in zone a, the adder in zone b: the calls cross the lattice, where the adder
    // counts them.
    let mut document = example("ticker.yaml");
    for (index, zone) in [(0, "a"), (1, "b")] {
        let scaler = &mut document["spec"]["components"][index]["traits"][0]["properties"];
        scaler["spread"] = serde_json::json!([{"name": zone, "requirements": {"zone": zone}}]);
    }
    let app = lattice.deploy(&document).await;
    lattice.wait_deployed(&app).await;
    eventually("two ticks to reach the adder", || async {
        let math = lattice.hosts[1].runtime().component("ticker-math")?;
        (math.invocations() >= 2).then_some(())
    })
    .await;
    lattice.undeploy_and_wait_nothing_left(&app).await;
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wadm_deploys_the_secrets_example_and_every_secret_arrives() {
    component_path("secret_reader");
    let lattice = lattice().await;
    let backend = SecretsBackend::start(&lattice._server).await;
    let secrets = ExampleSecrets::put(&backend).await;
    let mut document = example("secrets.yaml");
    let reader = &mut document["spec"]["components"][0];
    assert_eq!(reader["name"], "reader");
    reader["properties"]["image"] = format!("file://{}", secrets.signed_reader.display()).into();
    let app = lattice.deploy(&document).await;
    lattice.wait_deployed(&app).await;

    let runtimes: Vec<_> = lattice.hosts.iter().map(LatticeHost::runtime).collect();
    secrets.check(&runtimes, &app).await;
    lattice.undeploy_and_wait_nothing_left(&app).await;
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wadm_places_the_c2c_pair_on_two_hosts_and_the_call_crosses_them() {
    let lattice = lattice().await;
    let app = lattice.deploy(&example("c2c.yaml")).await;
    lattice.wait_deployed(&app).await;

    // Placed by the spreads' label requirements: front in zone a, math in zone b.
    assert_eq!(lattice.placement("c2c-front").await, [(0, 1)]);
    assert_eq!(lattice.placement("c2c-math").await, [(1, 1)]);
    let links = lattice.ctl.get_links().await.unwrap();
    assert!(
        links
            .data()
            .unwrap()
            .iter()
            .any(|l| l.source_id() == "c2c-front" && l.target() == "c2c-math"),
        "{links:?}"
    );

    // The importer on host 0 calls the exporter on host 1, through wadm's link.
    let sum = front_add(lattice.hosts[0].runtime(), "c2c-front").await;
    assert_eq!(sum, vec![Val::U32(5)]);

    lattice.undeploy_and_wait_nothing_left(&app).await;
    lattice.shutdown().await;
}

/// wasmCloud's way to put several components behind one http-server provider: one link each,
/// with distinct names, addresses and paths. Every route answers, wherever wadm put the server
/// and the components (a component on the other host is reached over wRPC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wadm_serves_three_components_through_one_server_by_named_links() {
    let lattice = lattice().await;
    let mut document = example("three-routes.yaml");
    let (first, shared) = (free_port(), free_port());
    let server = &mut document["spec"]["components"][3];
    assert_eq!(server["name"], "httpserver");
    for (link, port) in [(0, first), (1, shared), (2, shared)] {
        server["traits"][link]["properties"]["source"]["config"][0]["properties"]["address"] =
            format!("127.0.0.1:{port}").into();
    }
    let app = lattice.deploy(&document).await;
    lattice.wait_deployed(&app).await;
    let links = lattice.ctl.get_links().await.unwrap();
    let names: Vec<&str> = links.data().unwrap().iter().map(|l| l.name()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for (port, path) in [(first, "/one/x"), (shared, "/two/x"), (shared, "/three/x")] {
        let (status, body) = eventually(&format!("{path} answering"), || async {
            let (status, body) = get(port, path).await.ok()?;
            status.contains("200").then_some((status, body))
        })
        .await;
        assert!(body.contains(&format!("at {path}")), "{status}: {body}");
    }
    let (status, _) = get(first, "/two/x").await.unwrap();
    assert!(status.contains("404"), "{status}");
    lattice.undeploy_and_wait_nothing_left(&app).await;
    lattice.shutdown().await;
}

/// The real wadm client library (`trellis-test-wadm client`: wadm-client 0.10 with wadm-types
/// 0.8.3) against the Trellis deployer, with no wadm on the lattice: it puts c2c, lists it, gets
/// it back equal to what it put (latest and by version), lists its versions, deploys it, sees it
/// `deployed` both by polling the typed status and on its status subscription, sees the deployed
/// version listed, undeploys it, sees `undeployed` both ways, deletes it and finds it gone. Each
/// reply goes through wadm's own types: a shape the deployer got wrong fails the step. While the
/// client waits before undeploying, the pair runs where c2c says and the call crosses hosts;
/// after it, nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wadm_client_library_drives_the_trellis_deployer() {
    wadm_binary();
    for guest in ["importer", "exporter"] {
        component_path(guest);
    }
    let server = NatsServer::start();
    let (hosts, deployer) = trellis_managed(&server).await;
    let (ctl, _) = ctl_client(&server, LATTICE).await;
    // JSON is YAML too: wadm-client loads either from a file.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("c2c.json");
    std::fs::write(&manifest, example("c2c.yaml").to_string()).unwrap();

    let mut client = WadmClientRun::start(&server, LATTICE, &manifest);
    let put = client.until("put").await;
    assert_eq!(put["name"], "c2c", "{put}");
    assert_eq!(put["version"], "v0.1.0", "{put}");
    let deployed = client.until("status_deployed").await;
    let scalers = deployed["status"]["scalers"].as_array().unwrap();
    assert!(!scalers.is_empty(), "{deployed}");
    client.until("paused").await;

    assert_eq!(placement(&ctl, &hosts, "c2c-front").await, [(0, 1)]);
    assert_eq!(placement(&ctl, &hosts, "c2c-math").await, [(1, 1)]);
    let sum = front_add(hosts[0].runtime(), "c2c-front").await;
    assert_eq!(sum, vec![Val::U32(5)]);

    client.resume().await;
    client.until("status_undeployed").await;
    nothing_left(&ctl, &hosts, "c2c").await;
    let steps = client.finish().await;
    assert_eq!(
        steps,
        [
            "connect",
            "put",
            "list",
            "get",
            "versions",
            "subscribe",
            "deploy",
            "status_deployed",
            "subscribed_deployed",
            "list_deployed",
            "paused",
            "undeploy",
            "status_undeployed",
            "subscribed_undeployed",
            "delete",
            "gone",
        ]
    );

    deployer.stop().await;
    for host in hosts {
        host.stop(Some(Duration::from_secs(2))).await.unwrap();
    }
}

/// A manifest for the put conformance test: `annotations` and `policies` are indented lines
/// added to those maps, `components` the list under `spec.components`.
fn put_case(name: &str, annotations: &str, policies: &str, components: &str) -> String {
    format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: {name}\n  \
         annotations:\n    version: v1\n{annotations}spec:\n{policies}  components:\n{components}"
    )
}

const API: &str =
    "    - name: api\n      type: component\n      properties:\n        image: file:///api.wasm\n";
const KV: &str =
    "    - name: kv\n      type: capability\n      properties:\n        image: file:///kv.wasm\n";
const KV_LINK: &str = "        - type: link\n          properties:\n            namespace: wasi\n\
                       \x20           package: keyvalue\n            interfaces: [store]\n";

/// `api` linked to `kv` with the link's `target` (and anything else) given by `rest`.
fn linked(rest: &str) -> String {
    format!("{API}      traits:\n{KV_LINK}{rest}{KV}")
}

/// The same wadm API request to wadm and to the Trellis deployer; their replies, in that order.
async fn ask_both(
    wadm: &WadmClient,
    trellis: &WadmClient,
    op: &str,
    name: Option<&str>,
    body: Vec<u8>,
) -> (Value, Value) {
    let by_wadm = wadm.request(op, name, body.clone()).await.unwrap();
    let by_trellis = trellis.request(op, name, body).await.unwrap();
    (by_wadm, by_trellis)
}

/// The raw YAML of each case goes to `model.put` of the real wadm (on one nats-server) and of
/// the Trellis deployer (on another), as `trellis app deploy` or a `nats req` sends it: both
/// store it or both refuse it. The cases are the shapes where wadm's types read leniently (keys
/// it ignores, YAML scalars it takes as text) or strictly (keys it refuses, numbers where it
/// wants strings inside the components, duplicate links). Then every other model operation,
/// sent to both in the same order, gets the same reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wadm_api_answers_as_wadm_does() {
    wadm_binary();
    let wadm_server = NatsServer::start();
    let _wadm = Wadm::start(&wadm_server);
    let trellis_server = NatsServer::start();
    let deployer = Deployer::start(DeployerConfig {
        nats_url: trellis_server.url(),
        lattice: LATTICE.into(),
        ..DeployerConfig::default()
    })
    .await
    .expect("starting the deployer");
    let wadm = WadmClient::new(
        async_nats::connect(wadm_server.url()).await.unwrap(),
        LATTICE,
    );
    let trellis = WadmClient::new(
        async_nats::connect(trellis_server.url()).await.unwrap(),
        LATTICE,
    );
    let deadline = Instant::now() + LATTICE_WAIT;
    while wadm.list().await.is_err() {
        assert!(Instant::now() < deadline, "wadm's API never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let target = "            target:\n              name: kv\n";
    let cases = [
        ("plain", put_case("plain", "", "", &linked(target)), true),
        (
            "a link source with a name",
            put_case(
                "source-name",
                "",
                "",
                &linked(&format!(
                    "            source:\n              name: api\n{target}"
                )),
            ),
            true,
        ),
        (
            "a link target with another key",
            put_case(
                "target-key",
                "",
                "",
                &linked(&format!("{target}              note: x\n")),
            ),
            true,
        ),
        (
            "a link with another key",
            put_case(
                "link-key",
                "",
                "",
                &linked(&format!("            comment: x\n{target}")),
            ),
            true,
        ),
        (
            "a component with another key",
            put_case("component-key", "", "", &format!("{API}      trait: []\n")),
            true,
        ),
        (
            "annotations that are empty, a number, a boolean",
            put_case(
                "scalar-annotations",
                "    wasmcloud.dev/homepage:\n    revision: 3\n    beta: true\n",
                "",
                API,
            ),
            true,
        ),
        (
            "a policy property that is a number",
            put_case(
                "policy-number",
                "",
                "  policies:\n    - name: p\n      type: policy.secret.wasmcloud.dev/v1alpha1\n      \
                 properties:\n        port: 8200\n",
                API,
            ),
            true,
        ),
        (
            "a config property that is a number",
            put_case(
                "config-number",
                "",
                "",
                &format!(
                    "{API}        config:\n          - name: c\n            properties:\n              \
                     port: 8080\n"
                ),
            ),
            false,
        ),
        (
            "component properties with another key",
            put_case("properties-key", "", "", &format!("{API}        imag: x\n")),
            false,
        ),
        (
            "a spreadscaler with another key",
            put_case(
                "scaler-key",
                "",
                "",
                &format!(
                    "{API}      traits:\n        - type: spreadscaler\n          properties:\n            \
                     instances: 1\n            spred: []\n"
                ),
            ),
            false,
        ),
        (
            "the same link twice",
            put_case(
                "duplicate-link",
                "",
                "",
                &format!("{API}      traits:\n{KV_LINK}{target}{KV_LINK}{target}{KV}"),
            ),
            false,
        ),
    ];
    let mut disagreements = Vec::new();
    for (what, yaml, stored) in &cases {
        let body = yaml.clone().into_bytes();
        let (by_wadm, by_trellis) = ask_both(&wadm, &trellis, "put", None, body).await;
        let (wadm_stored, trellis_stored) = (
            by_wadm["result"] != "error",
            by_trellis["result"] != "error",
        );
        if wadm_stored != *stored
            || trellis_stored != *stored
            || by_wadm["result"] != by_trellis["result"]
        {
            disagreements.push(format!(
                "{what} (expected stored: {stored}):\n  wadm: {by_wadm}\n  trellis: {by_trellis}\n{yaml}"
            ));
        }
    }
    // The same name and version again, then a new version, then a name wadm refuses: the same
    // replies, field for field, apart from the wording of the refusal.
    for (what, yaml) in [
        ("the same version again", cases[0].1.clone()),
        (
            "a new version",
            cases[0].1.replace("version: v1", "version: v2"),
        ),
        (
            "a name wadm refuses",
            cases[0].1.replace("name: plain", "name: pl.ain"),
        ),
    ] {
        let body = yaml.into_bytes();
        let (mut by_wadm, mut by_trellis) = ask_both(&wadm, &trellis, "put", None, body).await;
        if what == "a name wadm refuses" {
            by_wadm["message"] = Value::Null;
            by_trellis["message"] = Value::Null;
        }
        if by_wadm != by_trellis {
            disagreements.push(format!(
                "{what}:\n  wadm: {by_wadm}\n  trellis: {by_trellis}"
            ));
        }
    }
    // The rest of a model's life, found and not found, with no host on either lattice: the
    // same replies, field for field and word for word.
    for (op, name, body) in [
        ("get", Some("plain"), b"".to_vec()),
        ("get", None, b"".to_vec()),
        ("history", Some("plain"), b"".to_vec()),
        ("frobnicate", Some("plain"), b"".to_vec()),
        ("get", Some("plain"), br#"{"version":"v1"}"#.to_vec()),
        ("get", Some("nosuch"), b"".to_vec()),
        ("versions", Some("plain"), b"".to_vec()),
        ("versions", Some("nosuch"), b"".to_vec()),
        ("list", None, b"".to_vec()),
        ("status", Some("plain"), b"".to_vec()),
        ("status", Some("nosuch"), b"".to_vec()),
        ("deploy", Some("plain"), br#"{"version":"v1"}"#.to_vec()),
        ("deploy", Some("nosuch"), b"".to_vec()),
        ("deploy", Some("plain"), br#"{"version":"v9"}"#.to_vec()),
        ("status", Some("plain"), b"".to_vec()),
        ("list", None, b"".to_vec()),
        ("undeploy", Some("plain"), b"".to_vec()),
        ("undeploy", Some("nosuch"), b"".to_vec()),
        ("del", Some("plain"), br#"{"version":"v1"}"#.to_vec()),
        ("del", Some("plain"), br#"{"version":"v1"}"#.to_vec()),
        ("del", Some("nosuch"), b"".to_vec()),
        ("del", Some("plain"), b"".to_vec()),
        ("get", Some("plain"), b"".to_vec()),
    ] {
        let (by_wadm, by_trellis) = ask_both(&wadm, &trellis, op, name, body.clone()).await;
        if by_wadm != by_trellis {
            disagreements.push(format!(
                "{op} {name:?} {}:\n  wadm: {by_wadm}\n  trellis: {by_trellis}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    deployer.stop().await;
}

/// `c2c.yaml` deployed by the real wadm on two Trellis hosts and by the Trellis deployer on two
/// others: once both report it deployed, the app's status, the list of apps, its versions and
/// the stored manifest are the same replies, down to the scalers' ids (wadm's own hashes, also
/// the `wasmcloud.dev/scaler` annotation on what they start) and their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployed_app_reads_the_same_from_wadm_and_the_deployer() {
    let lattice = lattice().await;
    let server = NatsServer::start();
    let (hosts, deployer) = trellis_managed(&server).await;
    let trellis = WadmClient::new(async_nats::connect(server.url()).await.unwrap(), LATTICE);
    let document = example("c2c.yaml");
    let app = lattice.deploy(&document).await;
    trellis.put(&document).await.unwrap();
    trellis.deploy(&app, None).await.unwrap();
    lattice.wait_deployed(&app).await;

    let requests = [
        ("status", Some(app.as_str())),
        ("get", None),
        ("list", None),
        ("versions", Some(app.as_str())),
        ("get", Some(app.as_str())),
    ];
    // Both settle: poll until they agree on a deployed app, and show the last replies if not.
    let deadline = Instant::now() + LATTICE_WAIT;
    loop {
        let mut replies = Vec::new();
        for (op, name) in requests {
            let (by_wadm, by_trellis) =
                ask_both(&lattice.client, &trellis, op, name, Vec::new()).await;
            replies.push((op, by_wadm, by_trellis));
        }
        let deployed = replies[0].1["status"]["status"]["type"] == "deployed";
        if deployed && replies.iter().all(|(_, w, t)| w == t) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "wadm and the deployer still differ:\n{}",
            replies
                .iter()
                .map(|(op, w, t)| format!("{op}:\n  wadm: {w}\n  trellis: {t}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    deployer.stop().await;
    for host in hosts {
        host.stop(None).await.unwrap();
    }
    lattice.shutdown().await;
}
