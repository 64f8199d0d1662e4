//! The built-in deployer on a real `nats-server` with in-process hosts carrying different
//! labels: each example manifest in `wadm-manifests/` reaches `deployed` with instances where
//! its spread rules say, the component-to-component pair answers a call, the key-value counter
//! counts real HTTP requests, the messaging example answers on its subscribed subjects, the
//! external provider runs healthy and is called through its links, apps are re-placed when a
//! host leaves and follow a host that joins, upgrades change what changed, and undeploy leaves
//! nothing behind. A standby deployer takes over when the active one stops or crashes, and
//! finishes an undeploy the crashed one had begun.
//! Everything goes through the wadm API and the control interface, as a user's `trellis app`
//! / `wash app` would.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};
use trellis_deployer::client::WadmClient;
use trellis_deployer::lattice::Ctl;
use trellis_deployer::wire::{
    Annotated as _, ComponentDescription, HostInventory, ScaleComponentCommand,
};
use trellis_deployer::{Deployer, DeployerConfig, MAX_ATTEMPTS, cli, manifest};
use trellis_host::{HostConfig, LatticeHost, ProviderSettings};
use trellis_runtime::Val;
use trellis_tests::http::{free_port, get};
use trellis_tests::lattice::{LATTICE_WAIT, eventually, front_add};
use trellis_tests::nats::NatsServer;
use trellis_tests::{component_path, provider_archive};

const LATTICE: &str = "deploy";

struct Lattice {
    server: NatsServer,
    hosts: Vec<Option<LatticeHost>>,
    deployer: Option<Deployer>,
    client: WadmClient,
    ctl: Ctl,
    nats: async_nats::Client,
}

async fn host(server: &NatsServer, labels: &[(&str, &str)]) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        heartbeat_interval: Duration::from_secs(2),
        rpc_timeout: Duration::from_secs(5),
        providers: ProviderSettings {
            health_interval: Duration::from_millis(500),
            ..ProviderSettings::default()
        },
        ..HostConfig::default()
    })
    .await
    .expect("starting a host")
}

/// A deployer with the default lease TTL. (Shorter leases flap in these tests: the hosts
/// sharing the test's runtime have delayed lease renewals by over 3 s on a loaded machine.)
async fn deployer(server: &NatsServer) -> Deployer {
    Deployer::start(DeployerConfig {
        nats_url: server.url(),
        lattice: LATTICE.into(),
        reconcile_interval: Duration::from_secs(1),
        ..DeployerConfig::default()
    })
    .await
    .expect("starting a deployer")
}

/// Hosts: 0 = {zone a, worker}, 1 = {zone b, worker}, 2 = {zone b}. Deployer logs go to the
/// test output with `RUST_LOG` (e.g. `RUST_LOG=trellis_deployer=info`).
async fn lattice() -> Lattice {
    // Build the guests before anything times out on them.
    component_path("exporter");
    let server = NatsServer::start();
    let hosts = vec![
        Some(host(&server, &[("zone", "a"), ("role", "worker")]).await),
        Some(host(&server, &[("zone", "b"), ("role", "worker")]).await),
        Some(host(&server, &[("zone", "b")]).await),
    ];
    let deployer = deployer(&server).await;
    let nats = async_nats::connect(server.url()).await.unwrap();
    let client = WadmClient::new(nats.clone(), LATTICE);
    // The deployer stops waiting for its lease after 5 s; on a loaded machine it may answer
    // later still.
    eventually("the deployer to answer the wadm API", || async {
        client.list().await.ok()
    })
    .await;
    let ctl = Ctl::new(nats.clone(), LATTICE, Duration::from_secs(2));
    Lattice {
        server,
        hosts,
        deployer: Some(deployer),
        client,
        ctl,
        nats,
    }
}

/// Returns once the server has registered every subscription `nats` made before the call: the
/// async-nats 0.49 twin of `trellis_tests::lattice::registered` (a probe published on the same
/// connection coming back proves the earlier subscriptions were processed; `flush` only
/// proves they were written).
async fn registered(nats: &async_nats::Client) {
    let probe = nats.new_inbox();
    let mut echo = nats.subscribe(probe.clone()).await.unwrap();
    nats.publish(probe, "".into()).await.unwrap();
    tokio::time::timeout(LATTICE_WAIT, echo.next())
        .await
        .expect("the NATS server echoes a probe")
        .expect("probe subscription open");
}

/// Messages seen on a subject, as (arrival time, subject, JSON body), in arrival order.
type Recorded = Arc<Mutex<Vec<(Instant, String, Value)>>>;

/// Records every message on `subject` (wildcards allowed) from now on: lattice events, or
/// control requests whoever sends them. The subscription is registered when this returns.
async fn record(nats: &async_nats::Client, subject: &str) -> Recorded {
    let mut messages = nats.subscribe(subject.to_string()).await.unwrap();
    registered(nats).await;
    let seen = Recorded::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let body = serde_json::from_slice(&message.payload).unwrap_or_default();
            let seen = (Instant::now(), message.subject.to_string(), body);
            log.lock().unwrap().push(seen);
        }
    });
    seen
}

/// The recorded `component.scale` requests (from index `from` on) for component `id`.
fn scale_requests(recorded: &Recorded, from: usize, id: &str) -> Vec<Value> {
    timed_scale_requests(recorded, from, id)
        .into_iter()
        .map(|(_, body)| body)
        .collect()
}

/// The same, with the time each was seen.
fn timed_scale_requests(recorded: &Recorded, from: usize, id: &str) -> Vec<(Instant, Value)> {
    recorded.lock().unwrap()[from..]
        .iter()
        .filter(|(_, _, body)| body["component_id"] == id)
        .map(|(at, _, body)| (*at, body.clone()))
        .collect()
}

/// Waits for a status notification of type `wanted` on a `wadm.status.…` subscription.
async fn next_status(notifications: &mut async_nats::Subscriber, wanted: &str) -> Value {
    tokio::time::timeout(LATTICE_WAIT, async {
        loop {
            let message = notifications.next().await.expect("status subscription");
            let status: Value = serde_json::from_slice(&message.payload).expect("status JSON");
            if status["status"]["type"] == wanted {
                return status;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no `{wanted}` status notification"))
}

fn keys(object: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    keys
}

/// Asserts wadm's `Status` shape: `{status: StatusInfo, scalers?: [{id, kind, name, status:
/// StatusInfo}], version: "", components: []}` with `StatusInfo = {type, message?}` (the last
/// two fields are deprecated and always empty in wadm; wadm leaves out an empty `scalers` and
/// an empty `message`).
fn assert_wadm_status(status: &Value) {
    let info = |info: &Value| {
        let mut fields = keys(info);
        fields.retain(|k| *k != "message");
        assert_eq!(fields, ["type"], "{status}");
        assert_ne!(info["message"], "", "{status}");
        let kind = info["type"].as_str().unwrap_or_default();
        assert!(
            [
                "deployed",
                "reconciling",
                "failed",
                "undeployed",
                "waiting",
                "unhealthy"
            ]
            .contains(&kind),
            "{status}"
        );
        assert!(
            info["message"].is_null() || info["message"].is_string(),
            "{status}"
        );
    };
    let mut fields = keys(status);
    fields.retain(|k| *k != "scalers");
    assert_eq!(fields, ["components", "status", "version"], "{status}");
    assert_ne!(status["scalers"], json!([]), "{status}");
    info(&status["status"]);
    assert_eq!(status["version"], "", "{status}");
    assert_eq!(status["components"], json!([]), "{status}");
    for scaler in status["scalers"].as_array().into_iter().flatten() {
        assert_eq!(keys(scaler), ["id", "kind", "name", "status"], "{status}");
        let id = scaler["id"].as_str().unwrap();
        assert!(
            id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{status}"
        );
        assert!(
            ["SpreadScaler", "DaemonScaler", "LinkScaler"]
                .contains(&scaler["kind"].as_str().unwrap()),
            "{status}"
        );
        assert!(scaler["name"].is_string(), "{status}");
        info(&scaler["status"]);
    }
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// An example manifest with its relative `file://` images made absolute.
fn example(name: &str) -> Value {
    let bytes = std::fs::read(repo_root().join("wadm-manifests").join(name)).unwrap();
    let mut parsed = manifest::parse(&bytes).expect("the example is valid");
    cli::absolutize_file_refs(&mut parsed.document, repo_root());
    parsed.document
}

impl Lattice {
    fn host(&self, i: usize) -> &LatticeHost {
        self.hosts[i].as_ref().expect("host is running")
    }

    async fn deploy(&self, document: &Value) -> String {
        let put = self.client.put(document).await.unwrap();
        assert!(
            matches!(put["result"].as_str(), Some("created" | "newversion")),
            "{put}"
        );
        let name = put["name"].as_str().unwrap().to_string();
        let version = put["current_version"].as_str().unwrap();
        let deployed = self.client.deploy(&name, Some(version)).await.unwrap();
        assert_eq!(deployed["result"], "acknowledged", "{deployed}");
        name
    }

    async fn status(&self, app: &str) -> Value {
        let reply = self.client.status(app).await.unwrap();
        assert_eq!(reply["result"], "ok", "{reply}");
        reply["status"].clone()
    }

    async fn wait_status(&self, app: &str, wanted: &str) -> Value {
        eventually(&format!("{app} {wanted}"), || async {
            let status = self.status(app).await;
            (status["status"]["type"] == wanted).then_some(status)
        })
        .await
    }

    /// Inventories of the running hosts, by host index.
    async fn inventories(&self) -> BTreeMap<usize, HostInventory> {
        let mut out = BTreeMap::new();
        for (i, host) in self.hosts.iter().enumerate() {
            if let Some(host) = host {
                out.insert(i, self.ctl.inventory(host.host_id()).await.unwrap());
            }
        }
        out
    }

    /// `host index -> max instances` of component `id`.
    async fn placement(&self, id: &str) -> BTreeMap<usize, u32> {
        self.inventories()
            .await
            .into_iter()
            .filter_map(|(i, inv)| inv.component(id).map(|c| (i, c.max_instances)))
            .collect()
    }

    async fn wait_placement(&self, id: &str, wanted: impl Fn(&BTreeMap<usize, u32>) -> bool) {
        eventually(&format!("placement of {id}"), || async {
            wanted(&self.placement(id).await).then_some(())
        })
        .await
    }

    /// Index of the running host that runs component `id`.
    async fn host_running(&self, id: &str) -> usize {
        let placement = self.placement(id).await;
        *placement
            .keys()
            .next()
            .unwrap_or_else(|| panic!("{id} runs nowhere"))
    }

    /// Calls `greet` on the importer `id`, on the host that runs it.
    async fn greet(&self, id: &str, name: &str) -> Result<String, String> {
        let host = self.host(self.host_running(id).await);
        let results = host
            .runtime()
            .invoke(
                id,
                "trellis:example/front@0.1.0",
                "greet",
                &[Val::String(name.into())],
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        match results.as_slice() {
            [Val::String(s)] => Ok(s.clone()),
            other => Err(format!("unexpected results {other:?}")),
        }
    }

    /// The app's stored record in the manifest bucket, as JSON.
    async fn stored(&self, app: &str) -> Option<Value> {
        let js = async_nats::jetstream::new(self.nats.clone());
        let kv = js.get_key_value("wadm_manifests").await.unwrap();
        let value = kv.get(format!("{LATTICE}-{app}")).await.unwrap()?;
        Some(serde_json::from_slice(&value).unwrap())
    }

    /// Waits until no host runs anything, no link is left and `config` is gone.
    async fn wait_nothing_left(&self, config: &str) {
        eventually("nothing left on the lattice", || async {
            let inventories = self.inventories().await;
            let running = inventories
                .values()
                .any(|i| !i.components.is_empty() || !i.providers.is_empty());
            let links = self.ctl.links().await.unwrap();
            let config = self.ctl.config(config).await.unwrap();
            (!running && links.is_empty() && config.is_none()).then_some(())
        })
        .await;
    }

    async fn stop_host(&mut self, i: usize) {
        let host = self.hosts[i].take().unwrap();
        host.stop(None).await.unwrap();
    }

    async fn shutdown(mut self) {
        if let Some(deployer) = self.deployer.take() {
            deployer.stop().await;
        }
        for host in self.hosts.iter_mut().filter_map(Option::take) {
            host.stop(Some(Duration::from_secs(2))).await.unwrap();
        }
        drop(self.server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c2c_pair_answers_across_hosts_and_undeploy_leaves_nothing() {
    let lattice = lattice().await;
    let mut notifications = lattice
        .nats
        .subscribe(format!("wadm.status.{LATTICE}.c2c"))
        .await
        .unwrap();
    registered(&lattice.nats).await;
    let app = lattice.deploy(&example("c2c.yaml")).await;
    let status = lattice.wait_status(&app, "deployed").await;
    let kinds: Vec<&str> = status["scalers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    // In manifest order, as wadm lists them: front's spread and link, then math's spread.
    assert_eq!(
        kinds,
        ["SpreadScaler", "LinkScaler", "SpreadScaler"],
        "{status}"
    );
    assert_wadm_status(&status);
    assert_eq!(
        status["scalers"][1]["name"],
        "c2c-front -(trellis:example)-> c2c-math"
    );

    // The same status was published on wadm's status subject, and the `wadm_status` stream
    // keeps it as the subject's last message (what wadm's status endpoint reads).
    let notified = next_status(&mut notifications, "deployed").await;
    assert_wadm_status(&notified);
    assert_eq!(notified, status);
    let stream = async_nats::jetstream::new(lattice.nats.clone())
        .get_stream("wadm_status")
        .await
        .unwrap();
    eventually("the status in the wadm_status stream", || async {
        let kept = stream
            .get_last_raw_message_by_subject(&format!("wadm.status.{LATTICE}.{app}"))
            .await
            .ok()?;
        let kept: Value = serde_json::from_slice(&kept.payload).unwrap();
        (kept == status).then_some(())
    })
    .await;

    // `model.get`: the stored manifest, the latest or the version asked for.
    let got = lattice
        .client
        .request("get", Some(&app), vec![])
        .await
        .unwrap();
    assert_eq!(got["result"], "success", "{got}");
    assert!(got["message"].is_string(), "{got}");
    assert_eq!(got["manifest"], example("c2c.yaml"));
    let version = json!({"version": "v0.1.0"}).to_string().into_bytes();
    let versioned = lattice
        .client
        .request("get", Some(&app), version)
        .await
        .unwrap();
    assert_eq!(versioned["result"], "success", "{versioned}");
    assert_eq!(versioned["manifest"], got["manifest"]);
    let version = json!({"version": "v9"}).to_string().into_bytes();
    for (name, body) in [(app.as_str(), version), ("nope", vec![])] {
        let missing = lattice
            .client
            .request("get", Some(name), body)
            .await
            .unwrap();
        assert_eq!(missing["result"], "notfound", "{missing}");
        assert!(missing["manifest"].is_null(), "{missing}");
    }
    // The deprecated `model.list`: a bare array of the summaries `model.get` lists.
    let listed = lattice.client.request("list", None, vec![]).await.unwrap();
    let models = listed.as_array().expect("model.list replies with an array");
    assert_eq!(models.len(), 1, "{listed}");
    let summary = &models[0];
    assert_eq!(
        keys(summary),
        [
            "deployed_version",
            "description",
            "detailed_status",
            "name",
            "status",
            "status_message",
            "version"
        ],
        "{summary}"
    );
    assert_eq!(summary["name"], "c2c");
    assert_eq!(summary["version"], "v0.1.0");
    assert_eq!(summary["deployed_version"], "v0.1.0");
    assert_eq!(
        summary["description"],
        example("c2c.yaml")["metadata"]["annotations"]["description"]
    );
    assert_eq!(summary["status"], "deployed");
    assert_eq!(summary["status_message"], "");
    assert_eq!(summary["detailed_status"], status);
    assert_eq!(lattice.client.list().await.unwrap()["models"], listed);
    // `model.history` is an error, as in wadm; an unknown operation too.
    let history = lattice
        .client
        .request("history", Some(&app), vec![])
        .await
        .unwrap();
    assert_eq!(history["result"], "error", "{history}");
    assert!(
        history["message"]
            .as_str()
            .unwrap()
            .contains("history is not currently supported"),
        "{history}"
    );
    let unknown = lattice
        .client
        .request("frobnicate", Some(&app), vec![])
        .await
        .unwrap();
    assert_eq!(unknown["result"], "error", "{unknown}");
    assert_eq!(
        unknown["message"],
        format!("Unsupported subject: wadm.api.{LATTICE}.model.frobnicate.c2c")
    );

    // wadm's IDs, placed by the spreads' label requirements.
    assert_eq!(
        lattice.placement("c2c-front").await,
        BTreeMap::from([(0, 1)])
    );
    let math = lattice.placement("c2c-math").await;
    assert_eq!(math.len(), 1, "{math:?}");
    assert!(math.contains_key(&1) || math.contains_key(&2), "{math:?}");

    // The four wadm annotations on every instance.
    let inventories = lattice.inventories().await;
    let front = inventories[&0].component("c2c-front").unwrap();
    let annotations = front.annotations.clone();
    assert_eq!(annotations["wasmcloud.dev/managed-by"], "wadm");
    assert_eq!(annotations["wasmcloud.dev/appspec"], "c2c");
    assert_eq!(annotations["wasmcloud.dev/spread_name"], "zone-a");
    assert_eq!(annotations["wasmcloud.dev/scaler"].len(), 64);

    // The link and the inline config, under wadm's names.
    let links = lattice.ctl.links().await.unwrap();
    assert!(
        links
            .iter()
            .any(|l| l.source_id == "c2c-front" && l.target == "c2c-math"),
        "{links:?}"
    );
    let config = lattice.ctl.config("c2c-greeting").await.unwrap();
    assert_eq!(config.unwrap()["salutation"], "Hello");

    // The importer on host 0 calls the exporter on the zone-b host.
    let sum = front_add(lattice.host(0).runtime(), "c2c-front").await;
    assert_eq!(sum, vec![Val::U32(5)]);

    // A bad manifest changes nothing and names its field.
    let mut bad = example("c2c.yaml");
    bad["spec"]["components"][0]["traits"][1]["properties"]["target"]["name"] = "nope".into();
    bad["metadata"]["annotations"]["version"] = "v0.2.0".into();
    let put = lattice.client.put(&bad).await.unwrap();
    assert_eq!(put["result"], "error");
    let message = put["message"].as_str().unwrap();
    assert!(
        message.contains("spec.components[0].traits[1].properties.target"),
        "{message}"
    );
    let versions = lattice
        .client
        .request("versions", Some("c2c"), vec![])
        .await
        .unwrap();
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );

    // A shared reference to c2c's exporter is stored but not deployed: c2c is not shared.
    let consumer = serde_json::json!({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
        "metadata": {"name": "consumer", "annotations": {"version": "v1"}},
        "spec": {"components": [
            {"name": "caller", "type": "component",
             "properties": {"image": example("c2c.yaml")["spec"]["components"][0]["properties"]["image"]},
             "traits": [{"type": "link", "properties": {"target": {"name": "math"},
                "namespace": "trellis", "package": "example", "interfaces": ["adder"]}}]},
            {"name": "math", "type": "component",
             "properties": {"application": {"name": "c2c", "component": "math"}}}
        ]}
    });
    let put = lattice.client.put(&consumer).await.unwrap();
    assert_eq!(put["result"], "created", "{put}");
    let refused = lattice.client.deploy("consumer", None).await.unwrap();
    assert_eq!(refused["result"], "error", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("spec.components[1].properties.application")
            && message.contains("application `c2c` is not shared"),
        "{message}"
    );
    assert!(
        lattice.client.list().await.unwrap()["models"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["name"] != "consumer" || m["deployed_version"].is_null())
    );
    lattice.client.delete("consumer", None).await.unwrap();

    // Undeploy: components, link and owned config are gone; the manifest stays stored.
    let reply = lattice.client.undeploy(&app).await.unwrap();
    assert_eq!(reply["result"], "acknowledged");
    lattice.wait_nothing_left("c2c-greeting").await;
    assert_eq!(lattice.status(&app).await["status"]["type"], "undeployed");
    let undeployed = next_status(&mut notifications, "undeployed").await;
    assert_wadm_status(&undeployed);
    assert_eq!(
        undeployed["status"]["message"], "Manifest has been undeployed",
        "{undeployed}"
    );
    let list = lattice.client.list().await.unwrap();
    assert_eq!(list["models"][0]["name"], "c2c", "{list}");
    assert!(list["models"][0]["deployed_version"].is_null(), "{list}");

    let deleted = lattice.client.delete(&app, None).await.unwrap();
    assert_eq!(deleted["result"], "deleted", "{deleted}");
    let list = lattice.client.list().await.unwrap();
    assert_eq!(list["models"].as_array().unwrap().len(), 0, "{list}");
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_spread_is_replaced_when_a_host_leaves_and_upgrades_in_place() {
    let mut lattice = lattice().await;
    let document = example("spread.yaml");
    let app = lattice.deploy(&document).await;
    lattice.wait_status(&app, "deployed").await;
    // 4 instances at 75/25: 3 on the zone-a host, 1 on one zone-b host.
    let placement = lattice.placement("spread-math").await;
    assert_eq!(placement.get(&0), Some(&3), "{placement:?}");
    let west: Vec<usize> = placement.keys().copied().filter(|i| *i != 0).collect();
    assert_eq!(west.len(), 1, "{placement:?}");
    assert_eq!(placement[&west[0]], 1);

    // The zone-b host holding the west share leaves: the other zone-b host takes it.
    let gone = west[0];
    let other = if gone == 1 { 2 } else { 1 };
    lattice.stop_host(gone).await;
    lattice
        .wait_placement("spread-math", |p| {
            p.get(&other) == Some(&1) && p.get(&0) == Some(&3)
        })
        .await;
    lattice.wait_status(&app, "deployed").await;

    // Upgrade: v0.2.0 with 2 instances puts both on zone a and removes the west one.
    let mut upgraded = document.clone();
    upgraded["metadata"]["annotations"]["version"] = "v0.2.0".into();
    upgraded["spec"]["components"][0]["traits"][0]["properties"]["instances"] = 2.into();
    lattice.deploy(&upgraded).await;
    lattice
        .wait_placement("spread-math", |p| p.len() == 1 && p.get(&0) == Some(&2))
        .await;
    lattice.wait_status(&app, "deployed").await;
    let versions = lattice
        .client
        .request("versions", Some(&app), vec![])
        .await
        .unwrap();
    let deployed: Vec<&Value> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["deployed"] == true)
        .collect();
    assert_eq!(deployed.len(), 1);
    assert_eq!(deployed[0]["version"], "v0.2.0");

    // Putting an existing version again is refused, as wadm does.
    let again = lattice.client.put(&upgraded).await.unwrap();
    assert_eq!(again["result"], "error");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonscaler_follows_worker_hosts() {
    let mut lattice = lattice().await;
    let app = lattice.deploy(&example("daemon.yaml")).await;
    lattice.wait_status(&app, "deployed").await;
    assert_eq!(
        lattice.placement("daemon-math").await,
        BTreeMap::from([(0, 2), (1, 2)])
    );

    // A new worker joins: the daemon runs there too.
    let joined = host(&lattice.server, &[("role", "worker")]).await;
    lattice.hosts.push(Some(joined));
    lattice
        .wait_placement("daemon-math", |p| p.get(&3) == Some(&2) && p.len() == 3)
        .await;

    // A worker leaves: the others keep theirs and the app stays deployed.
    lattice.stop_host(1).await;
    lattice
        .wait_placement("daemon-math", |p| p.len() == 2 && p.get(&0) == Some(&2))
        .await;
    lattice.wait_status(&app, "deployed").await;

    // A spread no host can satisfy fails with the reason, and is not fatal to the lattice.
    let mut impossible = example("spread.yaml");
    impossible["metadata"]["name"] = "nowhere".into();
    impossible["spec"]["components"][0]["traits"][0]["properties"]["spread"][0]["requirements"]["zone"] =
        "mars".into();
    let app = lattice.deploy(&impossible).await;
    let status = lattice.wait_status(&app, "failed").await;
    let message = status["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("Could not satisfy spread east"),
        "{message}"
    );

    // A provider the hosts cannot start: its failure is in the status, the component runs.
    let mut with_provider = example("c2c.yaml");
    with_provider["metadata"]["name"] = "withprov".into();
    let front = &mut with_provider["spec"]["components"][0];
    front["traits"].as_array_mut().unwrap().truncate(1);
    front["traits"][0]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("spread");
    with_provider["spec"]["components"][1] = serde_json::json!({
        "name": "cache", "type": "capability",
        "properties": {"image": "file:///nonexistent/provider.par.gz"},
    });
    let app = lattice.deploy(&with_provider).await;
    let status = lattice.wait_status(&app, "failed").await;
    let scalers = status["scalers"].as_array().unwrap();
    let provider = scalers
        .iter()
        .find(|s| s["name"] == "withprov-cache")
        .unwrap();
    assert_eq!(provider["status"]["type"], "failed", "{status}");
    assert!(
        provider["status"]["message"]
            .as_str()
            .unwrap()
            .contains("withprov-cache"),
        "{status}"
    );
    lattice
        .wait_placement("withprov-front", |p| p.values().sum::<u32>() == 1)
        .await;
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_active_deployer_per_lattice_with_failover() {
    let mut lattice = lattice().await;
    let standby = deployer(&lattice.server).await;
    assert!(lattice.deployer.as_ref().unwrap().is_active());
    assert!(!standby.is_active());

    let app = lattice.deploy(&example("daemon.yaml")).await;
    lattice.wait_status(&app, "deployed").await;

    // The active one stops (releasing the lease): the standby takes over, loads the stored
    // app, serves the API and keeps reconciling (a new worker gets the daemon).
    lattice.deployer.take().unwrap().stop().await;
    eventually("standby active", || async {
        standby.is_active().then_some(())
    })
    .await;
    lattice.wait_status(&app, "deployed").await;
    let joined = host(&lattice.server, &[("role", "worker")]).await;
    lattice.hosts.push(Some(joined));
    lattice
        .wait_placement("daemon-math", |p| p.get(&3) == Some(&2))
        .await;
    lattice.deployer = Some(standby);
    lattice.shutdown().await;
}

/// The number in a counter reply (`count: N`).
fn count(body: &str) -> u64 {
    body.trim()
        .strip_prefix("count: ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a count: {body:?}"))
}

/// Points the example's HTTP server (component `index`, first link) at a free port.
fn listen_on_free_port(document: &mut Value, index: usize) -> u16 {
    let port = free_port();
    let server = &mut document["spec"]["components"][index];
    assert_eq!(server["type"], "capability");
    server["traits"][0]["properties"]["source"]["config"][0]["properties"]["address"] =
        format!("127.0.0.1:{port}").into();
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_example_answers_real_http_requests() {
    component_path("http_server");
    let lattice = lattice().await;
    let mut document = example("hello.yaml");
    let port = listen_on_free_port(&mut document, 1);
    let app = lattice.deploy(&document).await;
    lattice.wait_status(&app, "deployed").await;
    let (status, body) =
        eventually("hello answers", || async { get(port, "/tour").await.ok() }).await;
    assert!(status.contains("200"), "{status}: {body}");
    assert!(body.contains("at /tour"), "{body}");
    assert_eq!(
        lattice
            .placement("hello-http_component")
            .await
            .into_values()
            .collect::<Vec<_>>(),
        [4]
    );
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_example_counts_real_http_requests_in_the_builtin_keyvalue() {
    component_path("counter");
    let lattice = lattice().await;
    let mut document = example("counter.yaml");
    let port = listen_on_free_port(&mut document, 2);
    let app = lattice.deploy(&document).await;
    lattice.wait_status(&app, "deployed").await;

    // The component and both built-in providers it is linked with share one host.
    let host = lattice.host_running("counter-counter").await;
    let inventory = lattice
        .ctl
        .inventory(lattice.host(host).host_id())
        .await
        .unwrap();
    for provider in ["counter-httpserver", "counter-kvstore"] {
        assert!(
            inventory.provider(provider).is_some(),
            "{provider}: {inventory:?}"
        );
    }

    // Over real HTTP; the count lives in the JetStream KV bucket the link configured.
    let js = async_nats::jetstream::new(lattice.nats.clone());
    let stored_count = || async {
        let kv = js.get_key_value("counter").await.ok()?;
        let value = kv.get("hits").await.ok()??;
        String::from_utf8(value.to_vec()).ok()?.parse::<u64>().ok()
    };
    // Until both links reached the host, a request may not count in that bucket.
    let first = eventually("the counter answers from the bucket", || async {
        let (status, body) = get(port, "/").await.ok()?;
        assert!(status.contains("200"), "{status}: {body}");
        let n = count(&body);
        (stored_count().await == Some(n)).then_some(n)
    })
    .await;
    let (status, body) = get(port, "/").await.unwrap();
    assert!(status.contains("200"), "{status}: {body}");
    assert_eq!(count(&body), first + 1);
    assert_eq!(stored_count().await, Some(first + 1));

    // Undeploy: the server stops listening and nothing of the app is left.
    let reply = lattice.client.undeploy(&app).await.unwrap();
    assert_eq!(reply["result"], "acknowledged");
    lattice.wait_nothing_left("counter-bucket").await;
    eventually("the port is closed", || async {
        get(port, "/").await.is_err().then_some(())
    })
    .await;
    lattice.shutdown().await;
}

/// The key-value of the counter is the kv-store component, which keeps its buckets in its
/// own empty-dir volume: the count goes on from request to request, each a fresh instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_component_example_counts_in_a_component_with_a_volume() {
    component_path("counter");
    component_path("kv_store");
    let lattice = lattice().await;
    let mut document = example("kv-component.yaml");
    let port = listen_on_free_port(&mut document, 2);
    let app = lattice.deploy(&document).await;
    lattice.wait_status(&app, "deployed").await;
    // Until the links reached the hosts a request fails (500), counting nothing.
    let first = eventually("the counter answers", || async {
        let (status, body) = get(port, "/").await.ok()?;
        status.contains("200").then(|| count(&body))
    })
    .await;
    for next in first + 1..first + 4 {
        let (status, body) = get(port, "/").await.unwrap();
        assert!(status.contains("200"), "{status}: {body}");
        assert_eq!(count(&body), next);
    }
    let reply = lattice.client.undeploy(&app).await.unwrap();
    assert_eq!(reply["result"], "acknowledged");
    lattice.wait_nothing_left("kv-component-files").await;
    lattice.shutdown().await;
}

/// The kv-store of `kv-component.yaml` alone: it asks to stop while unlinked, so it runs only
/// while some link on the lattice targets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_component_runs_only_while_a_link_targets_it() {
    component_path("kv_store");
    let lattice = lattice().await;
    let mut document = example("kv-component.yaml");
    let components = document["spec"]["components"].as_array_mut().unwrap();
    components.retain(|c| c["name"] == "kvstore");
    let app = lattice.deploy(&document).await;
    lattice.wait_status(&app, "deployed").await;
    let id = "kv_component-kvstore";
    assert_eq!(lattice.placement(id).await, BTreeMap::new());

    let link = trellis_deployer::wire::Link {
        source_id: "a-user".into(),
        target: id.into(),
        name: "default".into(),
        wit_namespace: "wasi".into(),
        wit_package: "keyvalue".into(),
        interfaces: vec!["store".into()],
        source_config: vec![],
        target_config: vec![],
    };
    lattice.ctl.put_link(&link).await.unwrap();
    lattice
        .wait_placement(id, |p| p.values().sum::<u32>() == 1)
        .await;
    lattice.ctl.delete_link(&link).await.unwrap();
    lattice.wait_placement(id, BTreeMap::is_empty).await;
    lattice.wait_status(&app, "deployed").await;

    let reply = lattice.client.undeploy(&app).await.unwrap();
    assert_eq!(reply["result"], "acknowledged");
    lattice.wait_nothing_left("kv-component-files").await;
    lattice.shutdown().await;
}

/// `ticker.yaml` with the service in zone a and the adder in zone b: its calls cross the
/// lattice, where the adder counts them (composed in-process, they would be the ticker's own).
fn ticker_across_zones() -> Value {
    let mut document = example("ticker.yaml");
    for (index, zone) in [(0, "a"), (1, "b")] {
        let scaler = &mut document["spec"]["components"][index]["traits"][0]["properties"];
        scaler["spread"] = serde_json::json!([{"name": zone, "requirements": {"zone": zone}}]);
    }
    document
}

/// The ticker service calls the adder every second on another host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticker_example_runs_a_service_that_calls_a_component() {
    component_path("ticker");
    component_path("exporter");
    let lattice = lattice().await;
    let app = lattice.deploy(&ticker_across_zones()).await;
    lattice.wait_status(&app, "deployed").await;
    let host = lattice.host_running("ticker-math").await;
    eventually("two ticks to reach the adder", || async {
        let math = lattice.host(host).runtime().component("ticker-math")?;
        (math.invocations() >= 2).then_some(())
    })
    .await;
    // `app status` words the service's state on its host.
    let status = eventually("the service's state in the app status", || async {
        let reply = lattice.client.status(&app).await.ok()?.to_string();
        reply.contains("ticker-ticker on ").then_some(reply)
    })
    .await;
    assert!(status.contains(": running"), "{status}");
    let reply = lattice.client.undeploy(&app).await.unwrap();
    assert_eq!(reply["result"], "acknowledged");
    lattice.wait_nothing_left("ticker-settings").await;
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_provider_example_runs_healthy_and_is_called_through_its_links() {
    provider_archive("greeter");
    component_path("importer");
    let lattice = lattice().await;
    let mut health = lattice
        .nats
        .subscribe(format!("wasmbus.evt.{LATTICE}.health_check_passed"))
        .await
        .unwrap();
    registered(&lattice.nats).await;
    let app = lattice.deploy(&example("external.yaml")).await;
    let status = lattice.wait_status(&app, "deployed").await;
    let names: Vec<&str> = status["scalers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"external-greeter"), "{status}");

    // The provider process answers its health checks.
    let passed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let message = health.next().await.expect("event subscription");
            let event: Value = serde_json::from_slice(&message.payload).unwrap();
            if event["data"]["provider_id"] == "external-greeter" {
                return event;
            }
        }
    })
    .await
    .expect("no health_check_passed from the provider");
    let provider_host = passed["data"]["host_id"].as_str().unwrap().to_string();
    let inventory = lattice.ctl.inventory(&provider_host).await.unwrap();
    let listed = inventory.provider("external-greeter").expect("listed");
    assert!(
        listed.image_ref.starts_with('/') && listed.image_ref.ends_with("greeter.par.gz"),
        "{listed:?}"
    );

    // Component -> provider, provider -> component, and the provider's inline config.
    let hello = eventually("the provider answers", || async {
        lattice.greet("external-front", "x").await.ok()
    })
    .await;
    assert_eq!(hello, "provider says hello, x");
    let sum = eventually("the provider calls the adder", || async {
        lattice.greet("external-front", "add:2,3").await.ok()
    })
    .await;
    assert_eq!(sum, "external-adder says 2+3=5");
    assert_eq!(
        lattice.greet("external-front", "config?").await.unwrap(),
        "greeting=hi"
    );

    // Undeploy stops the provider process too.
    let pid: u32 = lattice
        .greet("external-front", "pid?")
        .await
        .unwrap()
        .parse()
        .unwrap();
    let reply = lattice.client.undeploy(&app).await.unwrap();
    assert_eq!(reply["result"], "acknowledged");
    lattice.wait_nothing_left("external-greeting").await;
    eventually("the provider process is gone", || async {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        stat.map_or(true, |s| s.contains(") Z ")).then_some(())
    })
    .await;
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_deployer_is_replaced_when_its_lease_expires() {
    let mut lattice = lattice().await;
    let standby = deployer(&lattice.server).await;
    assert!(!standby.is_active());
    let app = lattice.deploy(&example("spread.yaml")).await;
    lattice.wait_status(&app, "deployed").await;
    let placement = lattice.placement("spread-math").await;
    let west = *placement.keys().find(|i| **i != 0).unwrap();
    let other = if west == 1 { 2 } else { 1 };

    // The active deployer dies without releasing its lease.
    lattice.deployer.take().unwrap().abort();
    let crashed = Instant::now();
    let js = async_nats::jetstream::new(lattice.nats.clone());
    let lease = js.get_key_value("trellis_deployer_lease").await.unwrap();
    assert!(
        lease.get(LATTICE).await.unwrap().is_some(),
        "the crashed deployer's lease should still be held"
    );
    // While nobody is in charge, the host holding the west share leaves.
    lattice.stop_host(west).await;

    // The standby takes over once the lease expires: within the TTL and one retry period
    // (a third of the TTL), plus a margin for a loaded machine.
    eventually("the standby takes over", || async {
        standby.is_active().then_some(())
    })
    .await;
    let took = crashed.elapsed();
    let ttl = DeployerConfig::default().lease_ttl;
    assert!(
        took <= ttl + ttl / 3 + Duration::from_secs(4),
        "takeover took {took:?}"
    );
    // …and reconciles: the other zone-b host gets the west share.
    lattice
        .wait_placement("spread-math", |p| {
            p.get(&other) == Some(&1) && p.get(&0) == Some(&3)
        })
        .await;
    lattice.wait_status(&app, "deployed").await;
    eprintln!("standby took over {took:?} after the crash");
    lattice.deployer = Some(standby);
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeploy_cut_short_by_a_crash_is_finished_by_the_next_deployer() {
    let mut lattice = lattice().await;
    let app = lattice.deploy(&example("c2c.yaml")).await;
    lattice.wait_status(&app, "deployed").await;
    let standby = deployer(&lattice.server).await;

    // Undeploy, and crash as soon as it is acknowledged: before the reconciler acts on it.
    let reply = lattice.client.undeploy(&app).await.unwrap();
    lattice.deployer.take().unwrap().abort();
    assert_eq!(reply["result"], "acknowledged", "{reply}");
    assert!(
        !lattice.placement("c2c-front").await.is_empty(),
        "the undeploy finished before the crash: nothing left to resume"
    );
    let stored = lattice.stored(&app).await.unwrap();
    assert!(stored["deployed_version"].is_null(), "{stored}");
    assert_eq!(
        stored["trellis_undeploying"]["version"], "v0.1.0",
        "{stored}"
    );

    // The standby takes over and finishes it: components, link and owned config go, and the
    // stored intent is cleared; the manifest itself stays.
    eventually("the standby takes over", || async {
        standby.is_active().then_some(())
    })
    .await;
    lattice.wait_nothing_left("c2c-greeting").await;
    eventually("the undeploy record is cleared", || async {
        let stored = lattice.stored(&app).await?;
        stored.get("trellis_undeploying").is_none().then_some(())
    })
    .await;
    assert_eq!(lattice.status(&app).await["status"]["type"], "undeployed");
    let versions = lattice
        .client
        .request("versions", Some(&app), vec![])
        .await
        .unwrap();
    assert_eq!(versions["versions"][0]["version"], "v0.1.0", "{versions}");
    lattice.deployer = Some(standby);
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_example_answers_on_its_subscribed_subjects() {
    component_path("messenger");
    let lattice = lattice().await;
    let app = lattice.deploy(&example("messaging.yaml")).await;
    lattice.wait_status(&app, "deployed").await;

    // The component and the built-in messaging provider it is linked with share one host.
    let host = lattice.host_running("messaging-messenger").await;
    let inventory = lattice
        .ctl
        .inventory(lattice.host(host).host_id())
        .await
        .unwrap();
    assert!(
        inventory.provider("messaging-nats").is_some(),
        "{inventory:?}"
    );
    let reply = eventually("the subscription to answer", || async {
        lattice
            .nats
            .request("tasks.hello", "world".into())
            .await
            .ok()
    })
    .await;
    assert_eq!(&reply.payload[..], b"handled tasks.hello: world");

    let reply = lattice.client.undeploy(&app).await.unwrap();
    assert_eq!(reply["result"], "acknowledged");
    lattice.wait_nothing_left("messaging-subscriptions").await;
    eventually("the subscription to end", || async {
        match lattice.nats.request("tasks.hello", "world".into()).await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Some(()),
            _ => None,
        }
    })
    .await;
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reverted_and_a_component_that_cannot_start_is_given_up() {
    let lattice = lattice().await;
    let app = lattice.deploy(&example("c2c.yaml")).await;
    lattice.wait_status(&app, "deployed").await;
    let scales = record(
        &lattice.nats,
        &format!("wasmbus.ctl.v1.{LATTICE}.component.scale.>"),
    )
    .await;

    // An app whose component cannot start (its code does not exist), on the zone-a host. It
    // fails and backs off while the drift below is corrected (nothing here resets its count).
    let broken = json!({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
        "metadata": {"name": "broken", "annotations": {"version": "v1"}},
        "spec": {"components": [
            {"name": "ghost", "type": "component",
             "properties": {"image": "file:///nonexistent/ghost.wasm"},
             "traits": [{"type": "spreadscaler", "properties": {"instances": 1,
                "spread": [{"name": "zone-a", "requirements": {"zone": "a"}}]}}]}
        ]}
    });
    let broken = lattice.deploy(&broken).await;

    // Out-of-band changes through the control interface, each reverted by the deployer.
    let host0 = lattice.host(0).host_id().to_string();
    let math = lattice.placement("c2c-math").await;
    let inventories = lattice.inventories().await;
    let front = inventories[&0].component("c2c-front").unwrap().clone();
    let math_instance = inventories[math.keys().next().unwrap()]
        .component("c2c-math")
        .unwrap()
        .clone();
    let out_of_band = |instance: &ComponentDescription, count, config| ScaleComponentCommand {
        component_ref: instance.image_ref.clone(),
        component_id: instance.id.clone(),
        host_id: host0.clone(),
        max_instances: count,
        annotations: Some(instance.annotations.clone()),
        config,
        allow_update: false,
        component_limits: None,
    };
    // front stopped, then at 3 instances instead of 1: back to 1 on its host.
    for count in [0, 3] {
        let mark = scales.lock().unwrap().len();
        lattice
            .ctl
            .scale(&out_of_band(&front, count, vec![]))
            .await
            .unwrap();
        eventually(
            &format!("the deployer to correct front at {count}"),
            || async {
                let requests = scale_requests(&scales, mark, "c2c-front");
                requests
                    .iter()
                    .any(|r| r["count"] == 1 && r["host_id"] == host0.as_str())
                    .then_some(())
            },
        )
        .await;
        lattice
            .wait_placement("c2c-front", |p| p == &BTreeMap::from([(0, 1)]))
            .await;
        lattice.wait_status(&app, "deployed").await;
    }
    // math started on the zone-a host, which its spread excludes: stopped there, and only there.
    let mark = scales.lock().unwrap().len();
    let config = vec!["c2c-greeting".to_string()];
    lattice
        .ctl
        .scale(&out_of_band(&math_instance, 1, config))
        .await
        .unwrap();
    eventually("the deployer to stop math on the zone-a host", || async {
        let requests = scale_requests(&scales, mark, "c2c-math");
        requests
            .iter()
            .any(|r| r["count"] == 0 && r["host_id"] == host0.as_str())
            .then_some(())
    })
    .await;
    lattice.wait_placement("c2c-math", |p| p == &math).await;
    lattice.wait_status(&app, "deployed").await;

    // The broken component: MAX_ATTEMPTS scale commands with growing backoff, then the status
    // says it gave up and why, and no further command is sent.
    let status = eventually("the deployer to give up on ghost", || async {
        let status = lattice.status(&broken).await;
        let message = status["status"]["message"].as_str()?;
        message.contains("gave up").then_some(status)
    })
    .await;
    assert_eq!(status["status"]["type"], "failed", "{status}");
    let message = status["status"]["message"].as_str().unwrap();
    let expected = format!(
        "{host0}/broken-ghost: gave up after {MAX_ATTEMPTS} attempts: loading \
         `file:///nonexistent/ghost.wasm`"
    );
    assert!(message.starts_with(&expected), "{message}");
    assert_eq!(status["scalers"][0]["status"]["message"], message);
    let attempts = timed_scale_requests(&scales, 0, "broken-ghost");
    assert_eq!(attempts.len(), MAX_ATTEMPTS as usize, "{attempts:?}");
    assert!(attempts.iter().all(|(_, r)| r["host_id"] == host0.as_str()));
    // Backing off: 1 s, 2 s, 4 s, 8 s between attempts (less a margin: these are the times
    // the test saw the commands, not the times they were sent).
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].0 - w[0].0).collect();
    for (i, gap) in gaps.iter().enumerate() {
        assert!(
            *gap >= Duration::from_millis((1000 << i) - 200),
            "attempt {} came {gap:?} after the previous: {gaps:?}",
            i + 2
        );
    }
    eprintln!("gave up after attempts {gaps:?} apart: {message}");
    // Two heartbeats and several reconcile passes later: still no new attempt.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        scale_requests(&scales, 0, "broken-ghost").len(),
        MAX_ATTEMPTS as usize
    );
    assert_eq!(lattice.status(&broken).await, status);
    lattice.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_leaves_unchanged_parts_running_and_versions_are_deleted_one_at_a_time() {
    let lattice = lattice().await;
    let v1 = example("c2c.yaml");
    let app = lattice.deploy(&v1).await;
    lattice.wait_status(&app, "deployed").await;
    let front = lattice.inventories().await[&0]
        .component("c2c-front")
        .unwrap()
        .clone();
    let math_host = lattice.host_running("c2c-math").await;
    let old_math = lattice.inventories().await[&math_host]
        .component("c2c-math")
        .unwrap()
        .clone();

    // A config someone else manages; v2 names it without properties, so it is used as written.
    let external = BTreeMap::from([("salutation".to_string(), "Hi".to_string())]);
    lattice
        .ctl
        .put_config("Team-Greeting", &external)
        .await
        .unwrap();

    // v2 changes only math (2 instances, the external config instead of its own) and drops
    // front's link; front itself is unchanged.
    let mut v2 = v1.clone();
    v2["metadata"]["annotations"]["version"] = "v0.2.0".into();
    v2["spec"]["components"][0]["traits"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    let math = &mut v2["spec"]["components"][1];
    math["properties"]["config"] = json!([{"name": "Team-Greeting"}]);
    math["traits"][0]["properties"]["instances"] = 2.into();

    let scales = record(
        &lattice.nats,
        &format!("wasmbus.ctl.v1.{LATTICE}.component.scale.>"),
    )
    .await;
    let scaled = record(
        &lattice.nats,
        &format!("wasmbus.evt.{LATTICE}.component_scaled"),
    )
    .await;
    lattice.deploy(&v2).await;
    lattice
        .wait_placement("c2c-math", |p| p == &BTreeMap::from([(math_host, 2)]))
        .await;
    eventually("the dropped link and owned config to go", || async {
        let links = lattice.ctl.links().await.ok()?;
        let config = lattice.ctl.config("c2c-greeting").await.ok()?;
        (!links.iter().any(|l| l.source_id == "c2c-front") && config.is_none()).then_some(())
    })
    .await;
    let status = lattice.wait_status(&app, "deployed").await;
    let kinds: Vec<&Value> = status["scalers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["kind"])
        .collect();
    assert_eq!(kinds, ["SpreadScaler", "SpreadScaler"], "{status}");

    // math was replaced: a new scaler, with the external config by its own name.
    let new_math = lattice.inventories().await[&math_host]
        .component("c2c-math")
        .unwrap()
        .clone();
    assert_ne!(
        new_math.annotation("wasmcloud.dev/scaler"),
        old_math.annotation("wasmcloud.dev/scaler")
    );
    let requests = scale_requests(&scales, 0, "c2c-math");
    assert!(
        !requests.is_empty()
            && requests
                .iter()
                .all(|r| r["config"] == json!(["Team-Greeting"])),
        "{requests:?}"
    );
    // front was left alone: no command, no event, the same instance on the same host.
    assert_eq!(scale_requests(&scales, 0, "c2c-front"), Vec::<Value>::new());
    let front_events: Vec<Value> = scaled
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, e)| e["data"]["component_id"] == "c2c-front")
        .map(|(_, _, e)| e.clone())
        .collect();
    assert_eq!(front_events, Vec::<Value>::new());
    assert!(
        scaled.lock().unwrap().iter().any(|(_, _, e)| {
            e["data"]["component_id"] == "c2c-math" && e["data"]["max_instances"] == 2
        }),
        "the recorder saw math's new instances"
    );
    let still = lattice.inventories().await[&0]
        .component("c2c-front")
        .unwrap()
        .clone();
    assert_eq!(
        (still.annotations, still.max_instances, still.image_ref),
        (front.annotations, front.max_instances, front.image_ref)
    );

    // `model.del` with a version: the old one goes, the deployed one keeps running.
    let deleted = lattice.client.delete(&app, Some("v0.1.0")).await.unwrap();
    assert_eq!(deleted["result"], "deleted", "{deleted}");
    assert_eq!(deleted["undeploy"], false, "{deleted}");
    assert!(deleted["message"].is_string(), "{deleted}");
    let again = lattice.client.delete(&app, Some("v0.1.0")).await.unwrap();
    assert_eq!(again["result"], "noop", "{again}");
    let versions = lattice
        .client
        .request("versions", Some(&app), vec![])
        .await
        .unwrap();
    assert_eq!(
        versions["versions"],
        json!([{"version": "v0.2.0", "deployed": true}]),
        "{versions}"
    );
    assert_eq!(lattice.status(&app).await["status"]["type"], "deployed");
    assert_eq!(
        lattice.placement("c2c-math").await,
        BTreeMap::from([(math_host, 2)])
    );

    // Deleting the deployed (and last) version undeploys it: everything the app started goes,
    // its record is purged once that is done, and the external config stays as it was.
    let deleted = lattice.client.delete(&app, Some("v0.2.0")).await.unwrap();
    assert_eq!(deleted["result"], "deleted", "{deleted}");
    assert_eq!(deleted["undeploy"], true, "{deleted}");
    lattice.wait_nothing_left("c2c-greeting").await;
    eventually("the app record to be purged", || async {
        lattice.stored(&app).await.is_none().then_some(())
    })
    .await;
    assert_eq!(
        lattice.ctl.config("Team-Greeting").await.unwrap(),
        Some(external)
    );
    assert_eq!(lattice.status(&app).await["status"]["type"], "undeployed");
    let list = lattice.client.list().await.unwrap();
    assert_eq!(list["models"], json!([]), "{list}");
    lattice.shutdown().await;
}
