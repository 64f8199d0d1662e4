//! Built-in providers addressed from the lattice, on a real `nats-server`, driven by the real
//! `wasmcloud-control-interface` client: `provider.start` with built-in references, links that
//! configure the plugins (HTTP routing, keyvalue buckets, messaging subscriptions), named config
//! delivered live, and switched-off built-ins whose calls go over wRPC.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use async_nats_039 as nats;
use futures::StreamExt as _;
use serde_json::Value;
use trellis_host::{BuiltinAlias, HostConfig, LatticeHost, parse_switches};
use trellis_runtime::{ImportRoute, Val};
use trellis_tests::blob::{big_object, blob_list, blob_read, blob_subjects, drive_blobs};
use trellis_tests::http::{free_port, get};
use trellis_tests::kv;
use trellis_tests::lattice::{
    ctl_client, eventually, put_config, record_wrpc_subjects, registered, run_component,
    subjects_when_seen,
};
use trellis_tests::nats::NatsServer;
use wasmcloud_control_interface::{Client, Link};

const LATTICE: &str = "builtins";
const CONFIG_PROBE: &str = "trellis:providers/config-probe@0.1.0";
const WAIT: Duration = Duration::from_secs(15);

async fn start_host(server: &NatsServer, switches: &[&str]) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        heartbeat_interval: Duration::from_secs(5),
        rpc_timeout: Duration::from_secs(2),
        builtins: parse_switches(switches.iter().copied()).unwrap(),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

/// The next lattice event of type `name` (waits at most `WAIT`).
async fn next_event(events: &mut nats::Subscriber, name: &str) -> Value {
    let wanted = format!("com.wasmcloud.lattice.{name}");
    tokio::time::timeout(WAIT, async {
        while let Some(message) = events.next().await {
            let event: Value = serde_json::from_slice(&message.payload).unwrap();
            if event["type"] == wanted.as_str() {
                return event["data"].clone();
            }
        }
        panic!("event subscription ended");
    })
    .await
    .unwrap_or_else(|_| panic!("no `{name}` event within {WAIT:?}"))
}

async fn scale(client: &Client, host: &LatticeHost, id: &str, guest: &str, config: &[&str]) {
    run_component(client, host.host_id(), id, guest, 1, config).await;
}

#[allow(clippy::too_many_arguments)]
fn link(
    source: &str,
    target: &str,
    namespace: &str,
    package: &str,
    interfaces: &[&str],
    source_config: &[&str],
    target_config: &[&str],
) -> Link {
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Link::builder()
        .source_id(source)
        .target(target)
        .name("default")
        .wit_namespace(namespace)
        .wit_package(package)
        .interfaces(names(interfaces))
        .source_config(names(source_config))
        .target_config(names(target_config))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_server_builtin_routes_to_the_linked_component() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, &[]).await;
    let id = host.host_id().to_string();
    let mut events = nc
        .subscribe(format!("wasmbus.evt.{LATTICE}.>"))
        .await
        .unwrap();
    registered(&nc).await;

    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    put_config(&client, "web-http", &[("address", &address)]).await;
    // The provider's own config gives every link's route a default path.
    put_config(&client, "server-defaults", &[("path", "/app")]).await;
    scale(&client, &host, "web", "http_server", &[]).await;
    // Scaled but not linked: nothing listens (the built-in only serves linked components).
    assert!(get(port, "/app").await.is_err());

    let annotations = BTreeMap::from([("wasmcloud.dev/appspec".to_string(), "web".to_string())]);
    let ack = client
        .start_provider(
            &id,
            "wasmcloud+builtin://http-server",
            "httpserver",
            Some(annotations.clone()),
            vec!["server-defaults".into()],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let started = next_event(&mut events, "provider_started").await;
    assert_eq!(started["provider_id"], "httpserver");
    assert_eq!(started["image_ref"], "wasmcloud+builtin://http-server");
    assert_eq!(started["annotations"]["wasmcloud.dev/appspec"], "web");
    let inventory = client.get_host_inventory(&id).await.unwrap();
    let inventory = inventory.data().unwrap();
    let providers = inventory.providers();
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0].id(), "httpserver");
    assert_eq!(
        providers[0].image_ref(),
        Some("wasmcloud+builtin://http-server")
    );
    assert_eq!(providers[0].annotations(), Some(&annotations));
    let again = client
        .start_provider(
            &id,
            "wasmcloud+builtin://http-server",
            "httpserver",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(!again.succeeded() && again.message().contains("already running"));

    let web = link(
        "httpserver",
        "web",
        "wasi",
        "http",
        &["incoming-handler"],
        &["web-http"],
        &[],
    );
    let ack = client.put_link(web.clone()).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let (status, body) = eventually("the linked route to answer", || async {
        get(port, "/app/hello").await.ok()
    })
    .await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "hello from  at /app/hello");
    let (status, _) = get(port, "/elsewhere").await.unwrap();
    assert!(status.contains("404"), "{status}");

    // Deleting the link takes the route (and the listener, its last route) away.
    let ack = client
        .delete_link("httpserver", "default", "wasi", "http")
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually("the listener to close", || async {
        get(port, "/app").await.is_err().then_some(())
    })
    .await;

    let ack = client.stop_provider(&id, "httpserver").await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let stopped = next_event(&mut events, "provider_stopped").await;
    assert_eq!(stopped["provider_id"], "httpserver");
    assert_eq!(stopped["reason"], "stop");
    let inventory = client.get_host_inventory(&id).await.unwrap();
    assert!(inventory.data().unwrap().providers().is_empty());
    let ack = client.stop_provider(&id, "httpserver").await.unwrap();
    assert!(!ack.succeeded() && ack.message().contains("not running"));
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_and_unknown_builtins_are_refused() {
    let server = NatsServer::start();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let host = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        builtins: parse_switches(["http-server=off"]).unwrap(),
        builtin_aliases: BuiltinAlias::parse_all("wasmcloud").unwrap(),
        ..HostConfig::default()
    })
    .await
    .unwrap();
    let id = host.host_id().to_string();
    // The opt-in alias table lets an unmodified wasmCloud provider reference start a built-in.
    let ack = client
        .start_provider(
            &id,
            "ghcr.io/wasmcloud/keyvalue-nats:0.3.1",
            "kv-nats",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    for (reference, expected) in [
        ("wasmcloud+builtin://http-server", "switched off"),
        ("trellis+builtin://teleport", "unknown built-in"),
        ("ghcr.io/wasmcloud/http-server:0.27.0", "switched off"),
        ("https://example.com/custom.par.gz", "file:///path"),
    ] {
        let ack = client
            .start_provider(&id, reference, "p", None, vec![])
            .await
            .unwrap();
        assert!(!ack.succeeded(), "{reference} started");
        assert!(
            ack.message().contains(expected),
            "{reference}: {}",
            ack.message()
        );
    }
    // Auctions get bids only for switched-on built-ins.
    let bids = client
        .perform_provider_auction("trellis+builtin://keyvalue", "kv", BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(bids.len(), 1);
    let bids = client
        .perform_provider_auction("wasmcloud+builtin://http-server", "web", BTreeMap::new())
        .await
        .unwrap();
    assert!(bids.is_empty());
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_config_reaches_the_component_and_follows_changes() {
    let server = NatsServer::start();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, &[]).await;
    put_config(&client, "base", &[("greeting", "hello"), ("color", "red")]).await;
    put_config(&client, "override", &[("color", "blue")]).await;
    scale(&client, &host, "cfg", "configurer", &["base", "override"]).await;

    let get = |key: &'static str| {
        let runtime = host.runtime().clone();
        async move {
            let out = runtime
                .invoke("cfg", CONFIG_PROBE, "get", &[Val::String(key.into())], None)
                .await
                .unwrap();
            match &out[0] {
                Val::Option(Some(value)) => match &**value {
                    Val::String(s) => Some(s.clone()),
                    other => panic!("unexpected {other:?}"),
                },
                Val::Option(None) => None,
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    assert_eq!(get("greeting").await.as_deref(), Some("hello"));
    assert_eq!(
        get("color").await.as_deref(),
        Some("blue"),
        "later names win"
    );

    put_config(&client, "override", &[("color", "green"), ("size", "xl")]).await;
    eventually("the changed config", || async {
        (get("color").await.as_deref() == Some("green")).then_some(())
    })
    .await;
    assert_eq!(get("size").await.as_deref(), Some("xl"));
    let ack = client.delete_config("override").await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually("the deleted config to stop contributing", || async {
        (get("color").await.as_deref() == Some("red")).then_some(())
    })
    .await;
    assert_eq!(get("size").await, None);
    host.stop(None).await.unwrap();
}

/// `increment(bucket, "hits", 1)` on the `kv` guest `id`.
async fn increment(host: &LatticeHost, id: &str, bucket: &str) -> Result<u64, String> {
    kv::increment(host.runtime(), id, bucket, "hits").await
}

async fn exercise(host: &LatticeHost, id: &str, bucket: &str) -> Vec<String> {
    kv::exercise(host.runtime(), id, bucket).await
}

/// Median of `rounds` increments by `id` on `host` (each a whole invocation).
async fn median_increment(host: &LatticeHost, id: &str, bucket: &str, rounds: usize) -> Duration {
    let mut took = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        increment(host, id, bucket).await.unwrap();
        took.push(started.elapsed());
    }
    took.sort();
    took[rounds / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyvalue_off_reaches_a_keyvalue_provider_on_another_host_by_translated_names() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host_a = start_host(&server, &["keyvalue=off"]).await;
    let host_b = start_host(&server, &[]).await;

    // On B the built-in, started as provider `kv`, serves a component linked to it in-process,
    // with the bucket from the link.
    let ack = client
        .start_provider(
            host_b.host_id(),
            "trellis+builtin://keyvalue",
            "kv",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    put_config(&client, "kv-counts", &[("bucket", "counts")]).await;
    put_config(&client, "kv-lattice", &[("bucket", "lattice-counts")]).await;
    let subjects = record_wrpc_subjects(&nc, LATTICE, "kv").await;
    scale(&client, &host_b, "counter-b", "kv", &[]).await;
    assert!(
        increment(&host_b, "counter-b", "counts").await.is_err(),
        "no link yet: only the default bucket may be opened"
    );
    let kv_link = |source: &str, target: &str, config: &str| {
        link(
            source,
            target,
            "wasi",
            "keyvalue",
            &["store", "atomics", "batch"],
            &[],
            &[config],
        )
    };
    let ack = client
        .put_link(kv_link("counter-b", "kv", "kv-counts"))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let first = eventually("the link's bucket to be bound", || async {
        increment(&host_b, "counter-b", "counts").await.ok()
    })
    .await;
    assert_eq!(
        increment(&host_b, "counter-b", "counts").await,
        Ok(first + 1)
    );
    let in_process = exercise(&host_b, "counter-b", "counts").await;
    assert!(
        subjects.lock().unwrap().is_empty(),
        "in-process on B: no wRPC"
    );

    // On A the built-in is off: a stand-in implements the import and calls the link target.
    scale(&client, &host_a, "counter-a", "kv", &[]).await;
    let routes = host_a.runtime().routes("counter-a").await.unwrap();
    let store = routes
        .iter()
        .find(|(import, _)| import.starts_with("wasi:keyvalue/store"))
        .expect("store import");
    assert_eq!(store.1, ImportRoute::Plugin("keyvalue-over-lattice".into()));

    // Without a link the call fails at once, naming what is missing.
    let started = Instant::now();
    let missing = increment(&host_a, "counter-a", "lattice-counts")
        .await
        .unwrap_err();
    assert!(
        missing.contains("`counter-a` has no `default` link for `wasi:keyvalue/atomics`"),
        "{missing}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // A link to something nobody serves fails fast too, naming the target.
    let ack = client
        .put_link(kv_link("counter-a", "nobody", "kv-lattice"))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let unserved = eventually("the link to `nobody` to reach A", || async {
        let error = increment(&host_a, "counter-a", "lattice-counts")
            .await
            .unwrap_err();
        error.contains("`nobody`").then_some(error)
    })
    .await;
    let started = Instant::now();
    assert!(
        increment(&host_a, "counter-a", "lattice-counts")
            .await
            .is_err()
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{unserved}: {:?}",
        started.elapsed()
    );
    let ack = client
        .delete_link("counter-a", "default", "wasi", "keyvalue")
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());

    // Linked to `kv`: the counter lives in B's plugin, in the bucket A's link names.
    let ack = client
        .put_link(kv_link("counter-a", "kv", "kv-lattice"))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let first = eventually("A's link to `kv` to be mirrored", || async {
        increment(&host_a, "counter-a", "lattice-counts").await.ok()
    })
    .await;
    assert_eq!(first, 1);
    assert_eq!(
        increment(&host_a, "counter-a", "lattice-counts").await,
        Ok(2)
    );
    // The provider applies the link's bucket rule, as the in-process binding does.
    let denied = increment(&host_a, "counter-a", "counts").await.unwrap_err();
    assert!(denied.contains("no-such-store"), "{denied}");
    assert_eq!(
        exercise(&host_a, "counter-a", "lattice-counts").await,
        in_process,
        "the same transcript over the lattice as in-process"
    );
    let expected = kv::translated_subjects(LATTICE, "kv");
    assert_eq!(subjects_when_seen(&subjects, &expected).await, expected);

    let rounds = 200;
    let remote = median_increment(&host_a, "counter-a", "lattice-counts", rounds).await;
    let local = median_increment(&host_b, "counter-b", "counts", rounds).await;
    println!(
        "increment invocation, median of {rounds}: wrpc:keyvalue via NATS {remote:?}, in-process {local:?}"
    );

    // A stopped provider stops serving: A's calls fail with the target named, not a hang. (Not
    // at once: the subject recorder above is a subscriber, so NATS does not answer "no
    // responders", and the call waits out the rpc timeout.)
    let ack = client.stop_provider(host_b.host_id(), "kv").await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let stopped = eventually("calls to the stopped provider to fail", || async {
        increment(&host_a, "counter-a", "lattice-counts")
            .await
            .err()
    })
    .await;
    assert!(stopped.contains("`kv`"), "{stopped}");
    host_a.stop(None).await.unwrap();
    host_b.stop(None).await.unwrap();
}

const MESSENGER_PROBE: &str = "trellis:providers/messenger-probe@0.1.0";

/// Runs the messenger's probe `function`: the `ok` payload's bytes (empty for none), or the
/// error the guest saw.
async fn messenger(host: &LatticeHost, function: &str, params: &[Val]) -> Result<Vec<u8>, String> {
    let out = host
        .runtime()
        .invoke("messenger", MESSENGER_PROBE, function, params, None)
        .await
        .map_err(|e| e.to_string())?;
    let bytes = |value: &Val| match value {
        Val::List(items) => items
            .iter()
            .map(|item| match item {
                Val::U8(b) => *b,
                other => panic!("not a byte: {other:?}"),
            })
            .collect(),
        other => panic!("not a list: {other:?}"),
    };
    match &out[0] {
        Val::Result(Ok(None)) => Ok(Vec::new()),
        Val::Result(Ok(Some(value))) => Ok(bytes(value)),
        Val::Result(Err(Some(error))) => Err(format!("{error:?}")),
        other => panic!("unexpected {other:?}"),
    }
}

fn byte_list(data: &[u8]) -> Val {
    Val::List(data.iter().map(|b| Val::U8(*b)).collect())
}

/// Subscribes to `subject` and returns once the server has the subscription: a message this
/// connection publishes on `probe` (which `subject` matches) comes back first, so anything any
/// connection publishes later is delivered too.
async fn subscribed(nc: &nats::Client, subject: &str, probe: &str) -> nats::Subscriber {
    let mut subscriber = nc.subscribe(subject.to_string()).await.unwrap();
    nc.publish(probe.to_string(), "ready".into()).await.unwrap();
    let ready = tokio::time::timeout(WAIT, subscriber.next())
        .await
        .expect("the subscription to be ready")
        .unwrap();
    assert_eq!(&ready.payload[..], b"ready");
    subscriber
}

/// Whether a request on `subject` finds no subscriber.
async fn no_responders(nc: &nats::Client, subject: &str) -> bool {
    matches!(
        nc.request(subject.to_string(), "hello".into()).await,
        Err(e) if e.kind() == nats::RequestErrorKind::NoResponders
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_builtin_publishes_requests_and_serves_linked_subscriptions() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, &[]).await;
    let ack = client
        .start_provider(
            host.host_id(),
            "wasmcloud+builtin://messaging-nats",
            "messaging",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    scale(&client, &host, "messenger", "messenger", &[]).await;

    // publish and request go out on the host's NATS connection.
    let mut observed = subscribed(&nc, "out.>", "out.ready").await;
    let published = messenger(
        &host,
        "publish",
        &[
            Val::String("out.greeting".into()),
            byte_list(b"hi"),
            Val::Option(None),
        ],
    )
    .await;
    assert_eq!(published, Ok(Vec::new()));
    let message = tokio::time::timeout(WAIT, observed.next())
        .await
        .expect("the published message")
        .unwrap();
    assert_eq!(&message.payload[..], b"hi");
    let mut service = subscribed(&nc, "svc.time", "svc.time").await;
    let responder = {
        let nc = nc.clone();
        tokio::spawn(async move {
            let request = tokio::time::timeout(WAIT, service.next())
                .await
                .unwrap()
                .unwrap();
            nc.publish(request.reply.unwrap(), "tick".into())
                .await
                .unwrap();
        })
    };
    let request = [
        Val::String("svc.time".into()),
        byte_list(b"now?"),
        Val::U32(5000),
    ];
    assert_eq!(
        messenger(&host, "request", &request).await,
        Ok(b"tick".to_vec())
    );
    responder.await.unwrap();

    // Not linked yet: nothing is subscribed for the component.
    assert!(no_responders(&nc, "tasks.one").await);
    put_config(&client, "messenger-subs", &[("subscriptions", "tasks.*")]).await;
    for link in [
        link(
            "messaging",
            "messenger",
            "wasmcloud",
            "messaging",
            &["handler"],
            &["messenger-subs"],
            &[],
        ),
        link(
            "messenger",
            "messaging",
            "wasmcloud",
            "messaging",
            &["consumer"],
            &[],
            &[],
        ),
    ] {
        let ack = client.put_link(link).await.unwrap();
        assert!(ack.succeeded(), "{}", ack.message());
    }
    let reply = eventually("the linked subscription to answer", || async {
        nc.request("tasks.one", "hello".into()).await.ok()
    })
    .await;
    assert_eq!(&reply.payload[..], b"handled tasks.one: hello");

    // A trapping handler does not end the subscription.
    nc.publish("tasks.bad", "trap".into()).await.unwrap();
    let reply = nc.request("tasks.two", "again".into()).await.unwrap();
    assert_eq!(&reply.payload[..], b"handled tasks.two: again");

    // Deleting the link unsubscribes; sending still works (the binding grants it).
    let ack = client
        .delete_link("messaging", "default", "wasmcloud", "messaging")
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually("delivery to stop", || async {
        no_responders(&nc, "tasks.one").await.then_some(())
    })
    .await;
    let published = messenger(
        &host,
        "publish",
        &[
            Val::String("out.after".into()),
            byte_list(b"still"),
            Val::Option(None),
        ],
    )
    .await;
    assert_eq!(published, Ok(Vec::new()));

    // Switched off, the built-in is not there: the import goes to the lattice.
    let off = start_host(&server, &["messaging=off"]).await;
    let ack = client
        .start_provider(
            off.host_id(),
            "trellis+builtin://messaging",
            "messaging-off",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(
        !ack.succeeded() && ack.message().contains("switched off"),
        "{}",
        ack.message()
    );
    scale(&client, &off, "messenger-off", "messenger", &[]).await;
    let routes = off.runtime().routes("messenger-off").await.unwrap();
    let consumer = routes
        .iter()
        .find(|(import, _)| import.starts_with("wasmcloud:messaging/consumer"))
        .expect("consumer import");
    assert_eq!(consumer.1, ImportRoute::Remote);
    off.stop(None).await.unwrap();
    host.stop(None).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// blobstore over wrpc:blobstore

/// Starts the blobstore built-in as provider `blobs` on `host`, storing in `root` for the
/// components linked to it.
async fn start_blobstore_provider(client: &Client, host: &LatticeHost, root: &std::path::Path) {
    let ack = client
        .start_provider(
            host.host_id(),
            "trellis+builtin://blobstore",
            "blobs",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    put_config(
        client,
        "blobs-fs",
        &[("backend", "fs"), ("root", root.to_str().unwrap())],
    )
    .await;
}

fn blob_link(source: &str, target: &str) -> Link {
    link(
        source,
        target,
        "wasi",
        "blobstore",
        &["blobstore"],
        &[],
        &["blobs-fs"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobstore_off_reaches_a_blobstore_provider_on_another_host_by_translated_names() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host_a = start_host(&server, &["blobstore=off"]).await;
    let host_b = start_host(&server, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    start_blobstore_provider(&client, &host_b, dir.path()).await;
    let subjects = record_wrpc_subjects(&nc, LATTICE, "blobs").await;

    // On A the built-in is off: a stand-in implements the imports and calls the link target.
    scale(&client, &host_a, "blob-a", "blob", &[]).await;
    let routes = host_a.runtime().routes("blob-a").await.unwrap();
    for interface in ["blobstore", "container", "types"] {
        let prefix = format!("wasi:blobstore/{interface}");
        let (_, route) = routes
            .iter()
            .find(|(import, _)| import.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{prefix} import"));
        assert_eq!(*route, ImportRoute::Plugin("blobstore-over-lattice".into()));
    }
    let started = Instant::now();
    let missing = blob_list(host_a.runtime(), "blob-a", "photos")
        .await
        .unwrap_err();
    assert!(
        missing.contains("`blob-a` has no `default` link for `wasi:blobstore/blobstore`"),
        "{missing}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let ack = client.put_link(blob_link("blob-a", "blobs")).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually("A's link to `blobs` to be mirrored", || async {
        blob_list(host_a.runtime(), "blob-a", "photos").await.ok()
    })
    .await;
    let (remote_write, remote_read) = drive_blobs(host_a.runtime(), "blob-a").await;
    // B stored them, in the directory its link config names.
    let root = dir.path();
    assert_eq!(
        std::fs::read(root.join("photos/big/data.bin")).unwrap(),
        big_object()
    );
    assert!(!root.join("photos/c.txt").exists());
    assert!(!dir.path().parent().unwrap().join("escaped.txt").exists());
    let expected = blob_subjects(LATTICE, "blobs", "0.2.0");
    assert_eq!(subjects_when_seen(&subjects, &expected).await, expected);

    // A component on B linked to the same provider is served in-process, from the same store.
    scale(&client, &host_b, "blob-b", "blob", &[]).await;
    let ack = client.put_link(blob_link("blob-b", "blobs")).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let seen = eventually("B's link to `blobs` to bind", || async {
        blob_read(host_b.runtime(), "blob-b", ("photos", "big/data.bin"))
            .await
            .ok()
    })
    .await;
    assert!(seen == big_object(), "B reads what A wrote");
    let calls_before = subjects.lock().unwrap().len();
    let (local_write, local_read) = drive_blobs(host_b.runtime(), "blob-b").await;
    assert_eq!(
        subjects.lock().unwrap().len(),
        calls_before,
        "in-process on B: no new subjects"
    );
    println!(
        "1.5 MiB object, write / read: wrpc:blobstore via NATS {remote_write:?} / {remote_read:?}, in-process {local_write:?} / {local_read:?}"
    );

    // A stopped provider stops serving: A's calls fail with the target named, not a hang.
    let ack = client
        .stop_provider(host_b.host_id(), "blobs")
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let stopped = eventually("calls to the stopped provider to fail", || async {
        blob_list(host_a.runtime(), "blob-a", "photos").await.err()
    })
    .await;
    assert!(stopped.contains("`blobs`"), "{stopped}");
    host_a.stop(None).await.unwrap();
    host_b.stop(None).await.unwrap();
}

/// A test-side `wrpc:blobstore/blobstore@0.1.0` server that serves only `@0.1.0`, as a provider
/// from before `@0.2.0` would, by relaying every call to provider `blobs`' `@0.1.0` (under the
/// caller's `legacy` link). Its bindings are generated here from the vendored WIT, not taken
/// from the host.
mod legacy {
    use std::collections::BTreeSet;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};

    use async_nats::HeaderMap;
    use bytes::Bytes;
    use futures::{Stream, StreamExt as _};
    use tokio::task::JoinSet;
    use wrpc_transport_nats::{Client, NatsContext};

    use bindings::exports::wrpc::blobstore0_1_0::blobstore::{
        ContainerMetadata, Handler, ObjectId, ObjectMetadata,
    };
    use bindings::wrpc::blobstore0_1_0::blobstore as provider;

    mod bindings {
        wit_bindgen_wrpc::generate!({
            inline: "
                package trellis:legacy-blobstore;

                world legacy {
                    import wrpc:blobstore/blobstore@0.1.0;
                    export wrpc:blobstore/blobstore@0.1.0;
                }
            ",
            path: "../wit",
            generate_all,
        });
    }

    type ByteStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;
    type NameStream = Pin<Box<dyn Stream<Item = Vec<String>> + Send>>;
    type Answer<T> = anyhow::Result<Result<T, String>>;

    #[derive(Clone)]
    struct Relay {
        blobs: Client,
        relayed: Arc<Mutex<BTreeSet<String>>>,
    }

    impl Relay {
        /// Records `function`; the caller's identity, under the `legacy` link name.
        fn headers(&self, function: &str, cx: &NatsContext) -> Option<HeaderMap> {
            self.relayed.lock().unwrap().insert(function.to_string());
            let source = cx
                .headers
                .as_ref()
                .and_then(|h| h.get("source-id"))
                .unwrap();
            let mut headers = HeaderMap::new();
            headers.insert("source-id", source.as_str());
            headers.insert("link-name", "legacy");
            Some(headers)
        }
    }

    impl Handler<NatsContext> for Relay {
        async fn clear_container(&self, cx: NatsContext, name: String) -> Answer<()> {
            let headers = self.headers("clear-container", &cx);
            provider::clear_container(&self.blobs, headers, &name).await
        }

        async fn container_exists(&self, cx: NatsContext, name: String) -> Answer<bool> {
            let headers = self.headers("container-exists", &cx);
            provider::container_exists(&self.blobs, headers, &name).await
        }

        async fn create_container(&self, cx: NatsContext, name: String) -> Answer<()> {
            let headers = self.headers("create-container", &cx);
            provider::create_container(&self.blobs, headers, &name).await
        }

        async fn delete_container(&self, cx: NatsContext, name: String) -> Answer<()> {
            let headers = self.headers("delete-container", &cx);
            provider::delete_container(&self.blobs, headers, &name).await
        }

        async fn get_container_info(
            &self,
            cx: NatsContext,
            name: String,
        ) -> Answer<ContainerMetadata> {
            let headers = self.headers("get-container-info", &cx);
            provider::get_container_info(&self.blobs, headers, &name).await
        }

        async fn list_container_objects(
            &self,
            cx: NatsContext,
            name: String,
            limit: Option<u64>,
            offset: Option<u64>,
        ) -> Answer<NameStream> {
            let headers = self.headers("list-container-objects", &cx);
            let (answer, io) =
                provider::list_container_objects(&self.blobs, headers, &name, limit, offset)
                    .await?;
            if let Some(io) = io {
                tokio::spawn(io);
            }
            Ok(answer)
        }

        async fn copy_object(&self, cx: NatsContext, src: ObjectId, dest: ObjectId) -> Answer<()> {
            let headers = self.headers("copy-object", &cx);
            provider::copy_object(&self.blobs, headers, &src, &dest).await
        }

        async fn delete_object(&self, cx: NatsContext, id: ObjectId) -> Answer<()> {
            let headers = self.headers("delete-object", &cx);
            provider::delete_object(&self.blobs, headers, &id).await
        }

        async fn delete_objects(
            &self,
            cx: NatsContext,
            container: String,
            objects: Vec<String>,
        ) -> Answer<()> {
            let headers = self.headers("delete-objects", &cx);
            let objects: Vec<&str> = objects.iter().map(String::as_str).collect();
            provider::delete_objects(&self.blobs, headers, &container, &objects).await
        }

        async fn get_container_data(
            &self,
            cx: NatsContext,
            id: ObjectId,
            start: u64,
            end: u64,
        ) -> Answer<ByteStream> {
            let headers = self.headers("get-container-data", &cx);
            let (answer, io) =
                provider::get_container_data(&self.blobs, headers, &id, start, end).await?;
            if let Some(io) = io {
                tokio::spawn(io);
            }
            Ok(answer)
        }

        async fn get_object_info(&self, cx: NatsContext, id: ObjectId) -> Answer<ObjectMetadata> {
            let headers = self.headers("get-object-info", &cx);
            provider::get_object_info(&self.blobs, headers, &id).await
        }

        async fn has_object(&self, cx: NatsContext, id: ObjectId) -> Answer<bool> {
            let headers = self.headers("has-object", &cx);
            provider::has_object(&self.blobs, headers, &id).await
        }

        async fn move_object(&self, cx: NatsContext, src: ObjectId, dest: ObjectId) -> Answer<()> {
            let headers = self.headers("move-object", &cx);
            provider::move_object(&self.blobs, headers, &src, &dest).await
        }

        async fn write_container_data(
            &self,
            cx: NatsContext,
            id: ObjectId,
            data: ByteStream,
        ) -> Answer<()> {
            let headers = self.headers("write-container-data", &cx);
            let (answer, io) =
                provider::write_container_data(&self.blobs, headers, &id, data).await?;
            if let Some(io) = io {
                io.await?;
            }
            Ok(answer)
        }
    }

    /// Serves the relay as `{lattice}.legacy` until the tasks are dropped; the set fills with
    /// the functions it relayed.
    pub async fn serve(
        nats_url: &str,
        lattice: &str,
    ) -> (JoinSet<()>, Arc<Mutex<BTreeSet<String>>>) {
        let nc = async_nats::connect(nats_url).await.unwrap();
        let blobs = Client::new(nc.clone(), format!("{lattice}.blobs"), None)
            .await
            .unwrap();
        let relay = Relay {
            blobs,
            relayed: Arc::default(),
        };
        let relayed = relay.relayed.clone();
        let prefix = format!("{lattice}.legacy");
        let wrpc = Client::new(nc, prefix.clone(), Some(prefix.into()))
            .await
            .unwrap();
        // On a thread with a larger stack: unoptimized, polling the generated subscription of
        // fourteen functions takes a frame larger than a test thread's stack.
        let runtime = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(move || {
                let subscribed = runtime.block_on(bindings::serve(&wrpc, relay)).unwrap();
                tx.send(subscribed).ok();
            })
            .unwrap();
        let subscribed = rx.await.unwrap();
        let mut tasks = JoinSet::new();
        for (_, _, mut invocations) in subscribed {
            tasks.spawn(async move {
                while let Some(invocation) = invocations.next().await {
                    tokio::spawn(invocation.unwrap());
                }
            });
        }
        (tasks, relayed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobstore_off_falls_back_to_wrpc_blobstore_0_1_0_which_the_provider_serves_too() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host_a = start_host(&server, &["blobstore=off"]).await;
    let host_b = start_host(&server, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    start_blobstore_provider(&client, &host_b, dir.path()).await;
    // Only what reaches the provider is recorded: a subscriber under `legacy` would answer the
    // `@0.2.0` subjects, where NATS must say that nobody serves them.
    let subjects = record_wrpc_subjects(&nc, LATTICE, "blobs").await;
    let (_relay, relayed) = legacy::serve(&server.url(), LATTICE).await;

    scale(&client, &host_a, "blob-a", "blob", &[]).await;
    let ack = client
        .put_link(blob_link("blob-a", "legacy"))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let relay_link = Link::builder()
        .source_id("blob-a")
        .target("blobs")
        .name("legacy")
        .wit_namespace("wasi")
        .wit_package("blobstore")
        .interfaces(vec!["blobstore".to_string()])
        .target_config(vec!["blobs-fs".to_string()])
        .build()
        .unwrap();
    let ack = client.put_link(relay_link).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually("A's links to be mirrored", || async {
        blob_list(host_a.runtime(), "blob-a", "photos").await.ok()
    })
    .await;

    drive_blobs(host_a.runtime(), "blob-a").await;
    assert_eq!(
        std::fs::read(dir.path().join("photos/big/data.bin")).unwrap(),
        big_object()
    );
    let functions = |set: BTreeSet<String>| {
        set.into_iter()
            .map(|s| s.rsplit('.').next().unwrap().to_string())
            .collect::<BTreeSet<_>>()
    };
    let expected = blob_subjects(LATTICE, "legacy", "0.1.0");
    assert_eq!(*relayed.lock().unwrap(), functions(expected.clone()));
    let served = blob_subjects(LATTICE, "blobs", "0.1.0");
    assert_eq!(subjects_when_seen(&subjects, &served).await, served);
    host_a.stop(None).await.unwrap();
    host_b.stop(None).await.unwrap();
}

/// `component.update` with code of the same interface swaps it in place: requests keep being
/// answered throughout (none fails, none finds no route), and the inventory names the new code.
/// GETs `path` on `port` one after another for 4 s (at most 20 000): the count answered 200
/// and what the others got.
fn load_for_4_s(port: u16, path: &'static str) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let (mut answered, mut failed) = (0, Vec::new());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) && answered < 20_000 {
            match get(port, path).await {
                Ok((status, _)) if status.contains("200") => answered += 1,
                Ok((status, _)) => failed.push(status),
                Err(error) => failed.push(error.to_string()),
            }
        }
        (answered, failed)
    })
}

/// Waits for a [`load_for_4_s`]; checks that it got answers and that none failed during
/// `what`. Returns how many were answered.
async fn all_answered(load: tokio::task::JoinHandle<(usize, Vec<String>)>, what: &str) -> usize {
    let (answered, failed) = load.await.unwrap();
    assert!(answered > 50, "only {answered} requests answered");
    assert!(
        failed.is_empty(),
        "{} failed during {what}: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_swaps_the_code_with_no_failed_request() {
    let server = NatsServer::start();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, &[]).await;
    let id = host.host_id().to_string();
    let port = free_port();
    put_config(
        &client,
        "swap-http",
        &[("address", &format!("127.0.0.1:{port}"))],
    )
    .await;
    scale(&client, &host, "swapped", "http_server", &[]).await;
    let ack = client
        .start_provider(
            &id,
            "wasmcloud+builtin://http-server",
            "swapserver",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let web = link(
        "swapserver",
        "swapped",
        "wasi",
        "http",
        &["incoming-handler"],
        &["swap-http"],
        &[],
    );
    assert!(client.put_link(web).await.unwrap().succeeded());
    eventually("the route answers", || async { get(port, "/").await.ok() }).await;

    // The same guest under another digest: a custom section appended.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(trellis_tests::component_path("http_server")).unwrap();
    bytes.extend_from_slice(&[0, 6, 5, b's', b'w', b'a', b'p', b'2']);
    let second = dir.path().join("second.wasm");
    std::fs::write(&second, &bytes).unwrap();
    let second = format!("file://{}", second.display());

    let load = load_for_4_s(port, "/during");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ack = client
        .update_component(&id, "swapped", &second, None)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually("the inventory names the new code", || async {
        let inventory = client.get_host_inventory(&id).await.ok()?;
        let listed = inventory
            .data()?
            .components()
            .iter()
            .any(|c| c.id() == "swapped" && c.image_ref() == second);
        listed.then_some(())
    })
    .await;
    let before_upgrade = all_answered(load, "the update").await;

    // A deployer's upgrade: one scale with the same count, new annotations and new code
    // (allow_update). The annotations change in place and the code is swapped: nothing fails.
    bytes.extend_from_slice(&[0, 6, 5, b's', b'w', b'a', b'p', b'3']);
    let third = dir.path().join("third.wasm");
    std::fs::write(&third, &bytes).unwrap();
    let third = format!("file://{}", third.display());
    let load = load_for_4_s(port, "/upgrade");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let version = BTreeMap::from([("app.version".to_string(), "v2".to_string())]);
    let ack = client
        .scale_component(
            &id,
            &third,
            "swapped",
            1,
            Some(version.clone()),
            vec![],
            true,
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually("the inventory names the upgrade", || async {
        let inventory = client.get_host_inventory(&id).await.ok()?;
        let listed = inventory.data()?.components().iter().any(|c| {
            c.id() == "swapped" && c.image_ref() == third && c.annotations() == Some(&version)
        });
        listed.then_some(())
    })
    .await;
    let answered = all_answered(load, "the upgrade").await;
    // The same running component throughout: its count of calls never restarted.
    let swapped = host.runtime().component("swapped").unwrap();
    assert!(
        swapped.invocations() >= (before_upgrade + answered) as u64,
        "{} calls counted, {} answered: the component restarted",
        swapped.invocations(),
        before_upgrade + answered
    );
    host.stop(None).await.unwrap();
}
