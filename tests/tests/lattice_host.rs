//! The lattice host on a real `nats-server`, driven only through the real
//! `wasmcloud-control-interface` 3.0.1 client (and raw NATS for malformed requests and events).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_nats_039 as nats;
use futures::StreamExt as _;
use serde_json::Value;
use trellis_host::{HostConfig, LatticeHost};
use trellis_runtime::Val;
use trellis_tests::component_ref;
use trellis_tests::lattice::{ctl_client, eventually, registered};
use trellis_tests::nats::NatsServer;
use wasmcloud_control_interface::Link;

const LATTICE: &str = "trellis";
const ADDER: &str = "trellis:example/adder@0.1.0";
const WAIT: Duration = Duration::from_secs(15);

async fn start_host(server: &NatsServer, labels: &[(&str, &str)]) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        heartbeat_interval: Duration::from_secs(1),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

/// Every event on the lattice, in arrival order.
struct Events(nats::Subscriber);

impl Events {
    async fn subscribe(nc: &nats::Client) -> Self {
        let events = Self(
            nc.subscribe(format!("wasmbus.evt.{LATTICE}.>"))
                .await
                .unwrap(),
        );
        registered(nc).await;
        events
    }

    /// The next event of type `name` whose data satisfies `matches` (waits at most `WAIT`).
    async fn next(&mut self, name: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let wanted = format!("com.wasmcloud.lattice.{name}");
        let found = tokio::time::timeout(WAIT, async {
            while let Some(message) = self.0.next().await {
                let event: Value = serde_json::from_slice(&message.payload).unwrap();
                assert_eq!(event["specversion"], "1.0");
                if event["type"] == wanted.as_str() && matches(&event["data"]) {
                    return event;
                }
            }
            panic!("event subscription ended");
        });
        found
            .await
            .unwrap_or_else(|_| panic!("no `{name}` event within {WAIT:?}"))
    }
}

/// A raw request (for payloads the client would never send); returns the decoded reply.
async fn raw_request(nc: &nats::Client, subject: String, payload: &'static [u8]) -> Value {
    let reply = tokio::time::timeout(WAIT, nc.request(subject.clone(), payload.into()))
        .await
        .unwrap_or_else(|_| panic!("no reply on {subject}"))
        .unwrap_or_else(|e| panic!("request on {subject}: {e}"));
    serde_json::from_slice(&reply.payload).unwrap()
}

fn annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("wasmcloud.dev/appspec".to_string(), "hello".to_string()),
        ("wasmcloud.dev/managed-by".to_string(), "wadm".to_string()),
        (
            "wasmcloud.dev/scaler".to_string(),
            "ünïcode ✓ value".to_string(),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announces_itself_answers_ping_and_stops_on_request() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let mut events = Events::subscribe(&nc).await;
    let host = start_host(&server, &[("zone", "a")]).await;
    let id = host.host_id().to_string();
    assert!(id.starts_with('N') && id.len() == 56, "{id}");

    let started = events.next("host_started", |_| true).await;
    assert_eq!(started["source"], id.as_str());
    assert_eq!(started["data"]["labels"]["zone"], "a");
    let heartbeat = events.next("host_heartbeat", |_| true).await;
    assert_eq!(heartbeat["source"], id.as_str());
    assert_eq!(heartbeat["data"]["components"], serde_json::json!([]));
    assert_eq!(heartbeat["data"]["providers"], serde_json::json!([]));
    let version = heartbeat["data"]["version"].as_str().unwrap();
    assert_eq!(version.split('.').count(), 3, "semver: {version}");

    let hosts = client.get_hosts().await.unwrap();
    assert_eq!(hosts.len(), 1);
    let summary = hosts[0].data().unwrap();
    assert_eq!(summary.id(), id);
    assert_eq!(summary.lattice(), LATTICE);
    assert_eq!(summary.friendly_name(), host.friendly_name());
    for key in ["hostcore.os", "hostcore.arch", "hostcore.osfamily", "zone"] {
        assert!(summary.labels().contains_key(key), "{key}");
    }

    let stop = client.stop_host(&id, Some(2000)).await.unwrap();
    assert!(stop.succeeded(), "{}", stop.message());
    let request = tokio::time::timeout(WAIT, host.stop_requested())
        .await
        .unwrap();
    assert_eq!(request.timeout, Some(Duration::from_millis(2000)));
    host.stop(request.timeout).await.unwrap();
    let stopped = events.next("host_stopped", |_| true).await;
    assert_eq!(stopped["source"], id.as_str());
    assert_eq!(stopped["data"]["labels"]["zone"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_put_and_delete_but_hostcore_is_reserved() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, &[]).await;
    let id = host.host_id().to_string();
    let mut events = Events::subscribe(&nc).await;

    let put = client.put_label(&id, "zone", "b").await.unwrap();
    assert!(put.succeeded(), "{}", put.message());
    let changed = events.next("labels_changed", |_| true).await;
    assert_eq!(changed["data"]["labels"]["zone"], "b");
    assert_eq!(changed["data"]["host_id"], id.as_str());
    let inventory = client.get_host_inventory(&id).await.unwrap();
    assert_eq!(inventory.data().unwrap().labels()["zone"], "b");

    let refused = client.put_label(&id, "HostCore.os", "plan9").await.unwrap();
    assert!(!refused.succeeded());
    assert!(
        refused.message().contains("reserved"),
        "{}",
        refused.message()
    );
    let refused = client.delete_label(&id, "hostcore.arch").await.unwrap();
    assert!(!refused.succeeded());

    let deleted = client.delete_label(&id, "zone").await.unwrap();
    assert!(deleted.succeeded(), "{}", deleted.message());
    let changed = events.next("labels_changed", |_| true).await;
    assert!(changed["data"]["labels"].get("zone").is_none());
    let absent = client.delete_label(&id, "zone").await.unwrap();
    assert!(absent.succeeded() && absent.message().contains("no label"));
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_runs_the_component_then_update_and_scale_to_zero() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, &[]).await;
    let id = host.host_id().to_string();
    let mut events = Events::subscribe(&nc).await;
    let reference = component_ref("exporter");

    let ack = client
        .scale_component(
            &id,
            &reference,
            "adder",
            3,
            Some(annotations()),
            vec![],
            false,
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let scaled = events
        .next("component_scaled", |d| d["max_instances"] == 3)
        .await;
    assert_eq!(scaled["source"], id.as_str());
    assert_eq!(scaled["data"]["component_id"], "adder");
    assert_eq!(scaled["data"]["image_ref"], reference.as_str());
    assert_eq!(
        scaled["data"]["annotations"],
        serde_json::to_value(annotations()).unwrap()
    );

    let inventory = client.get_host_inventory(&id).await.unwrap();
    let components = inventory.data().unwrap().components().clone();
    assert_eq!(components.len(), 1);
    assert_eq!(components[0].id(), "adder");
    assert_eq!(components[0].image_ref(), reference);
    assert_eq!(components[0].max_instances(), 3);
    assert_eq!(components[0].annotations(), Some(&annotations()));

    let sum = host
        .runtime()
        .invoke("adder", ADDER, "add", &[Val::U32(40), Val::U32(2)], None)
        .await
        .unwrap();
    assert_eq!(sum, [Val::U32(42)]);

    // The spec exists in LATTICEDATA so links can be attached to it.
    let js = nats::jetstream::new(nc.clone());
    let bucket = js
        .get_key_value(format!("LATTICEDATA_{LATTICE}"))
        .await
        .unwrap();
    let spec: Value =
        serde_json::from_slice(&bucket.get("COMPONENT_adder").await.unwrap().unwrap()).unwrap();
    assert_eq!(spec["url"], reference.as_str());
    assert_eq!(spec["links"], serde_json::json!([]));

    // Update to a copy of the component at another path.
    let copy = tempfile::tempdir().unwrap();
    let path = copy.path().join("adder-v2.wasm");
    std::fs::copy(trellis_tests::component_path("exporter"), &path).unwrap();
    let new_reference = format!("file://{}", path.display());
    let ack = client
        .update_component(&id, "adder", &new_reference, Some(annotations()))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let updated = events
        .next("component_scaled", |d| {
            d["image_ref"] == new_reference.as_str()
        })
        .await;
    assert_eq!(updated["data"]["max_instances"], 3);
    let old = events
        .next("component_scaled", |d| d["image_ref"] == reference.as_str())
        .await;
    assert_eq!(old["data"]["max_instances"], 0);
    let inventory = client.get_host_inventory(&id).await.unwrap();
    assert_eq!(
        inventory.data().unwrap().components()[0].image_ref(),
        new_reference
    );
    let sum = host
        .runtime()
        .invoke("adder", ADDER, "add", &[Val::U32(1), Val::U32(1)], None)
        .await
        .unwrap();
    assert_eq!(sum, [Val::U32(2)]);

    let ack = client
        .scale_component(
            &id,
            &new_reference,
            "adder",
            0,
            Some(annotations()),
            vec![],
            false,
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    events
        .next("component_scaled", |d| d["max_instances"] == 0)
        .await;
    let inventory = client.get_host_inventory(&id).await.unwrap();
    assert!(inventory.data().unwrap().components().is_empty());
    assert!(host.runtime().component("adder").is_none());
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_failures_are_reported() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, &[]).await;
    let id = host.host_id().to_string();
    let mut events = Events::subscribe(&nc).await;

    let unsupported = client
        .scale_component(
            &id,
            "https://example.com/thing.wasm",
            "thing",
            1,
            None,
            vec![],
            false,
        )
        .await
        .unwrap();
    assert!(!unsupported.succeeded());
    assert!(
        unsupported.message().contains("file://"),
        "{}",
        unsupported.message()
    );

    let missing = client
        .scale_component(
            &id,
            &component_ref("exporter"),
            "needs-config",
            1,
            None,
            vec!["nope".into()],
            false,
        )
        .await
        .unwrap();
    assert!(missing.succeeded(), "acked early: {}", missing.message());
    let failed = events.next("component_scale_failed", |_| true).await;
    assert_eq!(failed["data"]["component_id"], "needs-config");
    assert!(
        failed["data"]["error"]
            .as_str()
            .unwrap()
            .contains("Config nope does not exist"),
        "{failed}"
    );

    let update = client
        .update_component(&id, "not-running", &component_ref("exporter"), None)
        .await
        .unwrap();
    assert!(!update.succeeded());
    assert!(
        update.message().contains("not found"),
        "{}",
        update.message()
    );
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_share_config_and_links_and_answer_only_their_own_subjects() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let first = start_host(&server, &[("name", "first")]).await;
    let second = start_host(&server, &[("name", "second")]).await;
    let mut events = Events::subscribe(&nc).await;

    let mut ids: Vec<String> = client
        .get_hosts()
        .await
        .unwrap()
        .iter()
        .map(|h| h.data().unwrap().id().to_string())
        .collect();
    ids.sort();
    let mut expected = vec![first.host_id().to_string(), second.host_id().to_string()];
    expected.sort();
    assert_eq!(ids, expected);
    for host in [&first, &second] {
        let inventory = client.get_host_inventory(host.host_id()).await.unwrap();
        assert_eq!(inventory.data().unwrap().host_id(), host.host_id());
    }

    // Config.
    let config = HashMap::from([("url".to_string(), "redis://127.0.0.1".to_string())]);
    let put = client.put_config("kv-cfg", config.clone()).await.unwrap();
    assert!(put.succeeded(), "{}", put.message());
    events
        .next("config_set", |d| d["config_name"] == "kv-cfg")
        .await;
    let js = nats::jetstream::new(nc.clone());
    let configs = js
        .get_key_value(format!("CONFIGDATA_{LATTICE}"))
        .await
        .unwrap();
    let stored = configs.get("kv-cfg").await.unwrap().unwrap();
    assert_eq!(&stored[..], serde_json::to_vec(&config).unwrap().as_slice());
    // Whichever host answers (queue group), it has the config.
    for _ in 0..4 {
        let got = eventually("config on both hosts", || async {
            let got = client.get_config("kv-cfg").await.unwrap();
            got.data().is_some().then_some(got)
        })
        .await;
        assert_eq!(got.data().unwrap(), &config);
    }
    let absent = client.get_config("nothing-here").await.unwrap();
    assert!(absent.succeeded() && absent.data().is_none());

    // Links.
    let link = |target: &str, config: Vec<String>| {
        Link::builder()
            .source_id("frontend")
            .target(target)
            .name("default")
            .wit_namespace("wasi")
            .wit_package("keyvalue")
            .interfaces(vec!["store".into()])
            .target_config(config)
            .build()
            .unwrap()
    };
    let refused = client
        .put_link(link("kv", vec!["missing-cfg".into()]))
        .await
        .unwrap();
    assert!(!refused.succeeded());
    assert!(
        refused.message().contains("missing-cfg"),
        "{}",
        refused.message()
    );
    events
        .next("linkdef_set_failed", |d| d["target"] == "kv")
        .await;

    let put = client
        .put_link(link("kv", vec!["kv-cfg".into()]))
        .await
        .unwrap();
    assert!(put.succeeded(), "{}", put.message());
    let set = events.next("linkdef_set", |_| true).await;
    assert_eq!(set["data"]["source_id"], "frontend");
    assert_eq!(set["data"]["target_config"], serde_json::json!(["kv-cfg"]));

    let conflict = client.put_link(link("other-kv", vec![])).await.unwrap();
    assert!(!conflict.succeeded());
    assert!(
        conflict.message().contains("already bound"),
        "{}",
        conflict.message()
    );

    for _ in 0..4 {
        let links = eventually("link on both hosts", || async {
            let links = client.get_links().await.unwrap().into_data().unwrap();
            (!links.is_empty()).then_some(links)
        })
        .await;
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].target(), "kv");
    }
    let spec = js
        .get_key_value(format!("LATTICEDATA_{LATTICE}"))
        .await
        .unwrap();
    let spec: Value =
        serde_json::from_slice(&spec.get("COMPONENT_frontend").await.unwrap().unwrap()).unwrap();
    assert_eq!(spec["links"][0]["target"], "kv");

    let deleted = client
        .delete_link("frontend", "default", "wasi", "keyvalue")
        .await
        .unwrap();
    assert!(deleted.succeeded(), "{}", deleted.message());
    let gone = events.next("linkdef_deleted", |_| true).await;
    assert_eq!(gone["data"]["target"], "kv");
    for _ in 0..4 {
        eventually("link deleted on both hosts", || async {
            let links = client.get_links().await.unwrap().into_data().unwrap();
            links.is_empty().then_some(())
        })
        .await;
    }

    let deleted = client.delete_config("kv-cfg").await.unwrap();
    assert!(deleted.succeeded(), "{}", deleted.message());
    events
        .next("config_deleted", |d| d["config_name"] == "kv-cfg")
        .await;
    for _ in 0..4 {
        eventually("config deleted on both hosts", || async {
            let got = client.get_config("kv-cfg").await.unwrap();
            got.data().is_none().then_some(())
        })
        .await;
    }

    // A component scaled on one host shows only in that host's inventory.
    let ack = client
        .scale_component(
            second.host_id(),
            &component_ref("exporter"),
            "only-second",
            1,
            None,
            vec![],
            false,
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    events
        .next("component_scaled", |d| d["component_id"] == "only-second")
        .await;
    let on_second = client.get_host_inventory(second.host_id()).await.unwrap();
    assert_eq!(on_second.data().unwrap().components().len(), 1);
    let on_first = client.get_host_inventory(first.host_id()).await.unwrap();
    assert!(on_first.data().unwrap().components().is_empty());
    assert!(first.runtime().component("only-second").is_none());

    first.stop(None).await.unwrap();
    second.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auctions_bid_only_when_constraints_match() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, &[("zone", "a")]).await;
    let reference = component_ref("exporter");
    let mut events = Events::subscribe(&nc).await;

    let bids = client
        .perform_component_auction(
            &reference,
            "adder",
            BTreeMap::from([("zone".to_string(), "a".to_string())]),
        )
        .await
        .unwrap();
    assert_eq!(bids.len(), 1);
    let bid = bids[0].data().unwrap();
    assert_eq!(bid.host_id(), host.host_id());
    // The client's `ComponentAuctionAck::component_id()` returns the ref (a 3.0.1 bug), so
    // look at the wire field itself.
    let wire = serde_json::to_value(bid).unwrap();
    assert_eq!(wire["component_id"], "adder");
    assert_eq!(wire["component_ref"], reference.as_str());

    let none = client
        .perform_component_auction(
            &reference,
            "adder",
            BTreeMap::from([("zone".to_string(), "b".to_string())]),
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    // Once `adder` runs here, the host no longer bids for it.
    let ack = client
        .scale_component(host.host_id(), &reference, "adder", 1, None, vec![], false)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    events
        .next("component_scaled", |d| d["component_id"] == "adder")
        .await;
    let running = client
        .perform_component_auction(&reference, "adder", BTreeMap::new())
        .await
        .unwrap();
    assert!(running.is_empty());

    let providers = client
        .perform_provider_auction("https://example.com/p.par.gz", "p", BTreeMap::new())
        .await
        .unwrap();
    assert!(
        providers.is_empty(),
        "a host must not bid for a provider it cannot start"
    );
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unsupported_requests_get_error_replies() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, &[]).await;
    let id = host.host_id().to_string();
    let p = format!("wasmbus.ctl.v1.{LATTICE}");

    let provider = client
        .start_provider(&id, "https://example.com/p.par.gz", "p", None, vec![])
        .await
        .unwrap();
    assert!(!provider.succeeded());
    assert!(
        provider.message().contains("file:///path"),
        "{}",
        provider.message()
    );
    let provider = client.stop_provider(&id, "p").await.unwrap();
    assert!(!provider.succeeded());

    let subjects = [
        format!("{p}.label.put.{id}"),
        format!("{p}.label.del.{id}"),
        format!("{p}.component.scale.{id}"),
        format!("{p}.component.update.{id}"),
        format!("{p}.provider.start.{id}"),
        format!("{p}.provider.stop.{id}"),
        format!("{p}.host.stop.{id}"),
        format!("{p}.component.auction"),
        format!("{p}.provider.auction"),
        format!("{p}.registry.put"),
        format!("{p}.link.put"),
        format!("{p}.link.del"),
        format!("{p}.config.put.some-config"),
    ];
    for subject in subjects {
        let operation = subject
            .strip_prefix(&format!("{p}."))
            .unwrap()
            .split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join(".");
        for payload in [&b"{not json"[..], &b"[1, 2]"[..]] {
            let reply = raw_request(&nc, subject.clone(), payload).await;
            assert_eq!(reply["success"], false, "{subject}: {reply}");
            let message = reply["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("invalid {operation} request")),
                "{subject}: {message}"
            );
        }
    }
    let reply = raw_request(&nc, format!("{p}.component.scale.{id}"), br#"{"count":1}"#).await;
    assert!(
        reply["message"].as_str().unwrap().contains("component_id"),
        "{reply}"
    );
    let reply = raw_request(&nc, format!("{p}.host.explode.{id}"), b"").await;
    assert_eq!(reply["success"], false);
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("unsupported subject")
    );

    // The host still works.
    let hosts = client.get_hosts().await.unwrap();
    assert_eq!(hosts.len(), 1);
    host.stop(None).await.unwrap();
}

/// A reply the server would drop for its size (the client would only time out) is replaced
/// by a failure that names the limit; smaller replies still go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_servers_max_payload_is_an_error_reply() {
    let server = NatsServer::start_with_config("max_payload: 4096");
    let (_, nc) = ctl_client(&server, LATTICE).await;
    let value = "v".repeat(100);
    let keys: Vec<String> = (0..40).map(|k| format!("label-{k:02}")).collect();
    let labels: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), value.as_str())).collect();
    let host = start_host(&server, &labels).await;
    let p = format!("wasmbus.ctl.v1.{LATTICE}");
    let id = host.host_id();

    let reply = raw_request(&nc, format!("{p}.host.get.{id}"), b"").await;
    assert_eq!(reply["success"], false, "{reply}");
    let message = reply["message"].as_str().unwrap();
    assert!(message.contains("max_payload (4096 bytes)"), "{message}");

    let reply = raw_request(&nc, format!("{p}.label.del.{id}"), br#"{"key":"label-00"}"#).await;
    assert_eq!(reply["success"], true, "{reply}");
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_a_server_that_requires_an_nkey_and_is_refused_without_it() {
    let user = nkeys::KeyPair::new_user();
    let server = NatsServer::start_with_config(&format!(
        "authorization {{ users = [ {{ nkey: {} }} ] }}",
        user.public_key()
    ));
    let config = |auth: trellis_host::NatsAuth| HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        nats_auth: auth,
        lattice: LATTICE.into(),
        ..HostConfig::default()
    };
    let refused = LatticeHost::start(config(Default::default()))
        .await
        .err()
        .expect("anonymous is refused");
    let message = refused.to_string();
    assert!(
        message.starts_with("cannot connect to NATS at"),
        "{message}"
    );
    assert!(
        message.to_lowercase().contains("authorization"),
        "{message}"
    );

    let auth = trellis_host::NatsAuth {
        nkey_seed: Some(user.seed().unwrap()),
        ..Default::default()
    };
    let host = LatticeHost::start(config(auth))
        .await
        .expect("the nkey is accepted");
    assert!(host.host_id().starts_with('N'));
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_lets_calls_in_flight_finish_on_the_old_code() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, &[]).await;
    let id = host.host_id().to_string();
    let mut events = Events::subscribe(&nc).await;
    let old = component_ref("prober");
    let ack = client
        .scale_component(&id, &old, "napper", 2, None, vec![], false)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    events
        .next("component_scaled", |d| d["max_instances"] == 2)
        .await;

    // A second copy of the same code under another reference is a new version to the host.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("prober-v2.wasm");
    std::fs::copy(trellis_tests::component_path("prober"), &copy).unwrap();
    let new = format!("file://{}", copy.display());

    let runtime = host.runtime().clone();
    let in_flight = tokio::spawn(async move {
        runtime
            .invoke(
                "napper",
                "trellis:example/probe@0.1.0",
                "nap",
                &[Val::U32(1500)],
                None,
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ack = client
        .update_component(&id, "napper", &new, None)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    events
        .next("component_scaled", |d| d["image_ref"] == new.as_str())
        .await;
    assert!(
        !in_flight.is_finished(),
        "the update must not wait for, or cut, the call in flight"
    );
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        [Val::U32(1500)],
        "the call in flight finishes"
    );

    let inventory = client.get_host_inventory(&id).await.unwrap();
    assert_eq!(
        inventory.data().unwrap().components()[0].image_ref(),
        new.as_str()
    );
    let after = host
        .runtime()
        .invoke("napper", "trellis:example/probe@0.1.0", "ok", &[], None)
        .await
        .unwrap();
    assert_eq!(after, [Val::U32(42)]);
    host.stop(None).await.unwrap();
}

/// A host loads `file://` components and providers only where its operator allowed: anything
/// else is acknowledged, then refused with an event naming the flag, and nothing is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_outside_the_allowed_roots_are_refused_with_an_event() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let allowed = tempfile::tempdir().unwrap();
    std::fs::copy(
        trellis_tests::component_path("exporter"),
        allowed.path().join("exporter.wasm"),
    )
    .unwrap();
    let host = LatticeHost::start(HostConfig {
        nats_url: server.url(),
        lattice: LATTICE.into(),
        files: trellis_host::FilePolicy {
            allow_all: false,
            roots: vec![allowed.path().to_path_buf()],
        },
        ..HostConfig::default()
    })
    .await
    .unwrap();
    let id = host.host_id().to_string();
    let mut events = Events::subscribe(&nc).await;

    let ack = client
        .scale_component(&id, "file:///etc/shadow", "shadow", 1, None, vec![], false)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let failed = events.next("component_scale_failed", |_| true).await;
    let error = failed["data"]["error"].as_str().unwrap();
    assert!(
        error.contains("file:///etc/shadow") && error.contains("--allow-file-load"),
        "{error}"
    );

    let ack = client
        .start_provider(&id, "file:///usr/bin/true", "outside", None, vec![])
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let failed = events.next("provider_start_failed", |_| true).await;
    let error = failed["data"]["error"].as_str().unwrap();
    assert!(error.contains("--allow-file-root"), "{error}");

    // Under the allowed root, a component starts.
    let inside = format!("file://{}", allowed.path().join("exporter.wasm").display());
    let ack = client
        .scale_component(&id, &inside, "inside", 1, None, vec![], false)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let scaled = events.next("component_scaled", |_| true).await;
    assert_eq!(scaled["data"]["component_id"], "inside");
    host.stop(None).await.unwrap();
}
