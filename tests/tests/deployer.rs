//! The built-in deployer on a real `nats-server` with in-process hosts carrying different
//! labels: each example manifest in `wadm-manifests/` reaches `deployed` with instances where
//! its spread rules say, the component-to-component pair answers a call, apps are re-placed
//! when a host leaves and follow a host that joins, upgrades change what changed, and
//! undeploy leaves nothing behind. Everything goes through the wadm API and the control
//! interface, as a user's `trellis app` / `wash app` would.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use trellis_deployer::client::WadmClient;
use trellis_deployer::lattice::{Ctl, HostInventory};
use trellis_deployer::{Deployer, DeployerConfig, cli, manifest};
use trellis_host::{HostConfig, LatticeHost};
use trellis_runtime::Val;
use trellis_tests::component_path;
use trellis_tests::lattice::eventually;
use trellis_tests::nats::NatsServer;

const LATTICE: &str = "deploy";

struct Lattice {
    server: NatsServer,
    hosts: Vec<Option<LatticeHost>>,
    deployer: Option<Deployer>,
    client: WadmClient,
    ctl: Ctl,
}

async fn host(server: &NatsServer, labels: &[(&str, &str)]) -> LatticeHost {
    LatticeHost::start(HostConfig {
        nats_url: server.url(),
        lattice: LATTICE.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        heartbeat_interval: Duration::from_secs(2),
        rpc_timeout: Duration::from_secs(5),
        ..HostConfig::default()
    })
    .await
    .expect("starting a host")
}

/// Hosts: 0 = {zone a, worker}, 1 = {zone b, worker}, 2 = {zone b}.
async fn lattice() -> Lattice {
    // Build the guests before anything times out on them.
    component_path("exporter");
    let server = NatsServer::start();
    let hosts = vec![
        Some(host(&server, &[("zone", "a"), ("role", "worker")]).await),
        Some(host(&server, &[("zone", "b"), ("role", "worker")]).await),
        Some(host(&server, &[("zone", "b")]).await),
    ];
    let deployer = Deployer::start(DeployerConfig {
        nats_url: server.url(),
        lattice: LATTICE.into(),
        reconcile_interval: Duration::from_secs(1),
        ..DeployerConfig::default()
    })
    .await
    .expect("starting the deployer");
    let nats = async_nats::connect(server.url()).await.unwrap();
    let client = WadmClient::new(nats.clone(), LATTICE);
    let ctl = Ctl::new(nats, LATTICE, Duration::from_secs(2));
    Lattice {
        server,
        hosts,
        deployer: Some(deployer),
        client,
        ctl,
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
    let app = lattice.deploy(&example("c2c.yaml")).await;
    let status = lattice.wait_status(&app, "deployed").await;
    let kinds: Vec<&str> = status["scalers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["SpreadScaler", "SpreadScaler", "LinkScaler"],
        "{status}"
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
    let annotations = front.annotations.clone().unwrap();
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
    let sum = eventually("front answers", || async {
        lattice
            .host(0)
            .runtime()
            .invoke(
                "c2c-front",
                "trellis:example/front@0.1.0",
                "add",
                &[Val::U32(2), Val::U32(3)],
                None,
            )
            .await
            .ok()
    })
    .await;
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

    // Undeploy: components, link and owned config are gone; the manifest stays stored.
    let reply = lattice.client.undeploy(&app).await.unwrap();
    assert_eq!(reply["result"], "acknowledged");
    eventually("c2c cleaned up", || async {
        let inventories = lattice.inventories().await;
        let running = inventories.values().any(|i| !i.components.is_empty());
        let links = lattice.ctl.links().await.unwrap();
        let config = lattice.ctl.config("c2c-greeting").await.unwrap();
        (!running && links.is_empty() && config.is_none()).then_some(())
    })
    .await;
    assert_eq!(lattice.status(&app).await["status"]["type"], "undeployed");
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
    let standby = Deployer::start(DeployerConfig {
        nats_url: lattice.server.url(),
        lattice: LATTICE.into(),
        reconcile_interval: Duration::from_secs(1),
        lease_ttl: Duration::from_secs(3),
        ..DeployerConfig::default()
    })
    .await
    .unwrap();
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
