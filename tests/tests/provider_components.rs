//! Components as capability providers: a component exporting `wasi:keyvalue` (or
//! `wasi:blobstore`) serves the components linked to it for that interface, in place of the
//! built-in, on a real lattice driven by the real `wasmcloud-control-interface` client. An explicit link wins over the
//! built-in; without one the built-in serves as before.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use trellis_host::{HostConfig, LatticeHost};
use trellis_runtime::{ImportRoute, Val};
use trellis_tests::blob::{big_object, blob_read, blob_subjects, drive_blobs};
use trellis_tests::http::{free_port, get};
use trellis_tests::kv::{self, KV_PROBE};
use trellis_tests::lattice::{
    EventLog, ctl_client, eventually, put_config, put_http_server_link, record_wrpc_subjects,
    run_component, start_http_server, subjects_when_seen,
};
use trellis_tests::nats::NatsServer;
use wasmcloud_control_interface::{Client, Link};

const LATTICE: &str = "provider-components";
const KV_INTERFACES: [&str; 3] = ["store", "atomics", "batch"];

async fn start_host(server: &NatsServer) -> LatticeHost {
    start_host_with_volumes(server, &[]).await
}

async fn start_host_with_volumes(server: &NatsServer, roots: &[&Path]) -> LatticeHost {
    LatticeHost::start(HostConfig {
        volume_roots: roots.iter().map(|root| root.to_path_buf()).collect(),
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

fn link(source: &str, target: &str, namespace: &str, package: &str, interfaces: &[&str]) -> Link {
    Link::builder()
        .source_id(source)
        .target(target)
        .name("default")
        .wit_namespace(namespace)
        .wit_package(package)
        .interfaces(interfaces.iter().map(|i| i.to_string()).collect())
        .build()
        .unwrap()
}

async fn put_link(client: &Client, link: Link) {
    let ack = client.put_link(link).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
}

async fn delete_link(client: &Client, source: &str, namespace: &str, package: &str) {
    let ack = client
        .delete_link(source, "default", namespace, package)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
}

/// Where each of `id`'s `wasi:keyvalue` imports goes now.
async fn keyvalue_routes(host: &LatticeHost, id: &str) -> Vec<ImportRoute> {
    host.runtime()
        .routes(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|(import, _)| import.starts_with("wasi:keyvalue/"))
        .map(|(_, route)| route)
        .collect()
}

async fn wait_for_keyvalue_routes(host: &LatticeHost, id: &str, route: ImportRoute) {
    eventually(
        &format!("`{id}`'s key-value to go to {route:?}"),
        || async {
            let routes = keyvalue_routes(host, id).await;
            (routes.len() == KV_INTERFACES.len() && routes.iter().all(|r| *r == route))
                .then_some(())
        },
    )
    .await;
}

/// `increment("default", key, 1)` on the `kv` guest `id`.
/// Waits until `id`'s key-value goes over the lattice, through the forwarding plugin.
async fn wait_for_forwarding(host: &LatticeHost, id: &str) {
    let forwarding = ImportRoute::Plugin("keyvalue-over-lattice".into());
    wait_for_keyvalue_routes(host, id, forwarding).await;
}

async fn increment(host: &LatticeHost, id: &str, key: &str) -> Result<u64, String> {
    kv::increment(host.runtime(), id, "default", key).await
}

async fn exercise(host: &LatticeHost, id: &str) -> Vec<String> {
    kv::exercise(host.runtime(), id, "default").await
}

/// What the unchanged `kv` guest's `exercise` sees from any correct `wasi:keyvalue`.
const EXERCISED: [&str; 6] = [
    "get a = Some(Ok(\"one\"))",
    "exists b = true",
    "exists b = false",
    "get b = None",
    "get-many = c=three,none,d=four",
    "keys = a,d",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_a_keyvalue_component_wins_over_the_builtin_in_process() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server).await;
    run_component(&client, host.host_id(), "store", "kv_store", 1, &[]).await;
    run_component(&client, host.host_id(), "counter", "kv", 1, &[]).await;

    // No link: the built-in serves, and its bucket outlives the invocation.
    wait_for_keyvalue_routes(&host, "counter", ImportRoute::Plugin("keyvalue".into())).await;
    assert_eq!(increment(&host, "counter", "hits").await, Ok(1));
    assert_eq!(increment(&host, "counter", "hits").await, Ok(2));

    // A link to the component takes all three interfaces off the built-in, composed in-process.
    let wrpc = record_wrpc_subjects(&nc, LATTICE, "*").await;
    put_link(
        &client,
        link("counter", "store", "wasi", "keyvalue", &KV_INTERFACES),
    )
    .await;
    wait_for_keyvalue_routes(&host, "counter", ImportRoute::InProcess("store".into())).await;
    assert_eq!(exercise(&host, "counter").await, EXERCISED);
    // The provider component keeps its buckets in memory, and each invocation gets a fresh
    // instance of it: a count starts again at every call (the built-in's would be 3).
    assert_eq!(increment(&host, "counter", "hits").await, Ok(1));
    assert_eq!(increment(&host, "counter", "hits").await, Ok(1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        wrpc.lock().unwrap().is_empty(),
        "in-process: no wRPC message, saw {:?}",
        wrpc.lock().unwrap()
    );

    // The provider component scaled to zero: the link still wins, so the calls go looking for
    // it on the lattice and fail as key-value errors (not traps), naming the target; scaled
    // back, it is composed in again.
    run_component(&client, host.host_id(), "store", "kv_store", 0, &[]).await;
    wait_for_forwarding(&host, "counter").await;
    let missing = increment(&host, "counter", "hits").await.unwrap_err();
    assert!(missing.contains("store"), "{missing}");
    run_component(&client, host.host_id(), "store", "kv_store", 1, &[]).await;
    wait_for_keyvalue_routes(&host, "counter", ImportRoute::InProcess("store".into())).await;
    assert_eq!(increment(&host, "counter", "hits").await, Ok(1));

    // The link deleted, the built-in serves again, with the count it kept.
    delete_link(&client, "counter", "wasi", "keyvalue").await;
    wait_for_keyvalue_routes(&host, "counter", ImportRoute::Plugin("keyvalue".into())).await;
    assert_eq!(increment(&host, "counter", "hits").await, Ok(3));
    host.stop(None).await.unwrap();
}

/// `front` (HTTP) → `counter` (the kv guest, composed in) → `wasi:keyvalue`: the composed
/// exporter's own imports are linked when the link arrives after both started, first to the
/// built-in, then, linked on, to a third component composed into the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_composed_after_start_keeps_its_own_imports() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server).await;
    run_component(&client, host.host_id(), "front", "front_door", 1, &[]).await;
    run_component(&client, host.host_id(), "counter", "kv", 1, &[]).await;
    run_component(&client, host.host_id(), "store", "kv_store", 1, &[]).await;
    start_http_server(&client, host.host_id()).await;
    let port = free_port();
    put_config(
        &client,
        "front-listen",
        &[("address", &format!("127.0.0.1:{port}"))],
    )
    .await;
    put_http_server_link(&client, "front", "default", "front-listen").await;

    put_link(
        &client,
        link("front", "counter", "trellis", "providers", &["kv-probe"]),
    )
    .await;
    eventually("`front` to compose `counter` in", || async {
        let routes = host.runtime().routes("front").await?;
        routes
            .iter()
            .any(|(import, route)| {
                import.starts_with(KV_PROBE) && *route == ImportRoute::InProcess("counter".into())
            })
            .then_some(())
    })
    .await;
    let wrpc = record_wrpc_subjects(&nc, LATTICE, "*").await;
    let count = |expected: &'static str| {
        let expected = expected.to_string();
        async move {
            eventually(&format!("GET /count/visits to answer {expected}"), || {
                let expected = expected.clone();
                async move {
                    let (status, body) = get(port, "/count/visits").await.ok()?;
                    (status.contains("200") && body == expected).then_some(())
                }
            })
            .await
        }
    };
    // The built-in's count persists between requests.
    count("1").await;
    count("2").await;

    // Linked on to the provider component: now a three-component composition, whose memory
    // lasts one request.
    put_link(
        &client,
        link("counter", "store", "wasi", "keyvalue", &KV_INTERFACES),
    )
    .await;
    wait_for_keyvalue_routes(&host, "counter", ImportRoute::InProcess("store".into())).await;
    for _ in 0..3 {
        count("1").await;
    }
    // Unlinked, the built-in again: a request that reached the old composition while the
    // chain was re-linked may have counted there too, so at least 3.
    delete_link(&client, "counter", "wasi", "keyvalue").await;
    eventually("the built-in's count again", || async {
        let (_, body) = get(port, "/count/visits").await.ok()?;
        (body.parse::<u64>().ok()? >= 3).then_some(())
    })
    .await;
    assert!(
        wrpc.lock().unwrap().is_empty(),
        "all in-process: no wRPC message, saw {:?}",
        wrpc.lock().unwrap()
    );
    host.stop(None).await.unwrap();
}

/// The provider component on another host is reached as a keyvalue provider is, under the
/// translated `wrpc:keyvalue` names; when it arrives on the caller's host the calls come home
/// in-process, and go back to the lattice when it leaves, without restarting the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyvalue_component_on_another_host_serves_over_wrpc_and_moves() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let home = start_host(&server).await;
    let away = start_host(&server).await;
    run_component(&client, away.host_id(), "store", "kv_store", 1, &[]).await;
    run_component(&client, home.host_id(), "counter", "kv", 1, &[]).await;
    let wrpc = record_wrpc_subjects(&nc, LATTICE, "store").await;
    put_link(
        &client,
        link("counter", "store", "wasi", "keyvalue", &KV_INTERFACES),
    )
    .await;
    wait_for_forwarding(&home, "counter").await;
    // Over wRPC each operation is a call of its own, on a fresh instance: the memory-backed
    // component forgets between them, which the translated protocol makes visible.
    assert_eq!(increment(&home, "counter", "hits").await, Ok(1));
    let expected = kv::translated_subjects(LATTICE, "store");
    let increment_subject = expected
        .iter()
        .find(|s| s.ends_with("increment"))
        .unwrap()
        .clone();
    let seen = subjects_when_seen(&wrpc, &BTreeSet::from([increment_subject])).await;
    assert!(
        seen.iter()
            .any(|s| s.ends_with("atomics@0.2.0-draft.increment")),
        "{seen:?}"
    );
    let exercised = exercise(&home, "counter").await;
    assert_eq!(exercised[0], "get a = None", "{exercised:?}");
    let seen = subjects_when_seen(&wrpc, &expected).await;
    assert_eq!(seen, expected);
    let served = away.runtime().component("store").unwrap().invocations();
    assert!(served >= 10, "the far host served the calls ({served})");

    // The provider component arrives on the caller's host: composed in, no NATS.
    run_component(&client, home.host_id(), "store", "kv_store", 1, &[]).await;
    wait_for_keyvalue_routes(&home, "counter", ImportRoute::InProcess("store".into())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    wrpc.lock().unwrap().clear();
    assert_eq!(exercise(&home, "counter").await, EXERCISED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        wrpc.lock().unwrap().is_empty(),
        "{:?}",
        wrpc.lock().unwrap()
    );

    // It leaves again: back to the lattice, the caller never restarted.
    run_component(&client, home.host_id(), "store", "kv_store", 0, &[]).await;
    wait_for_forwarding(&home, "counter").await;
    assert_eq!(increment(&home, "counter", "hits").await, Ok(1));
    eventually("the call to go over NATS", || async {
        (!wrpc.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    home.stop(None).await.unwrap();
    away.stop(None).await.unwrap();
}

const PROBE: &str = "trellis:example/probe@0.1.0";

/// Volumes and environment from named config: a host-path volume under an allowed root makes
/// the provider component's buckets outlive its instances, on its host and over wRPC; a path
/// outside the roots, and a malformed key, refuse the start naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_and_env_come_from_named_config_within_the_allowed_roots() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("kv");
    std::fs::create_dir(&data).unwrap();
    let home = start_host(&server).await;
    let away = start_host_with_volumes(&server, &[root.path()]).await;
    let events = EventLog::record(&nc, LATTICE).await;

    put_config(
        &client,
        "store-volume",
        &[
            ("trellis.volume.data.path", "/data"),
            ("trellis.volume.data.host_path", data.to_str().unwrap()),
        ],
    )
    .await;
    run_component(
        &client,
        away.host_id(),
        "store",
        "kv_store",
        1,
        &["store-volume"],
    )
    .await;
    run_component(&client, home.host_id(), "counter", "kv", 1, &[]).await;
    put_link(
        &client,
        link("counter", "store", "wasi", "keyvalue", &KV_INTERFACES),
    )
    .await;
    wait_for_forwarding(&home, "counter").await;
    // Over wRPC, each call a fresh instance: the count lives in the volume.
    for expected in 1..=3 {
        assert_eq!(increment(&home, "counter", "hits").await, Ok(expected));
    }
    // The whole exercise holds together across calls too (the count is in the same bucket).
    let exercised = exercise(&home, "counter").await;
    assert_eq!(exercised[..5], EXERCISED[..5]);
    assert_eq!(exercised[5], "keys = a,d,hits");
    let bucket = data.join(hex("default"));
    assert_eq!(
        std::fs::read_to_string(bucket.join(hex("hits"))).unwrap(),
        "3"
    );

    // Co-located, a provider component with a volume of its own is not composed in (it would
    // see its importer's files, not its own): it is called over the lattice, same count.
    run_component(&client, away.host_id(), "counter-away", "kv", 1, &[]).await;
    put_link(
        &client,
        link("counter-away", "store", "wasi", "keyvalue", &KV_INTERFACES),
    )
    .await;
    wait_for_forwarding(&away, "counter-away").await;
    assert_eq!(increment(&away, "counter-away", "hits").await, Ok(4));

    // The same volume on the caller's host would need a root there: `home` allows none.
    let failures = events.count("component_scale_failed");
    let ack = client
        .scale_component(
            home.host_id(),
            &trellis_tests::component_ref("kv_store"),
            "store",
            1,
            None,
            vec!["store-volume".into()],
            false,
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let failed = events.wait("component_scale_failed", failures).await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`trellis.volume.data.host_path`") && error.contains("--allow-volume-root"),
        "{failed}"
    );
    assert!(home.runtime().component("store").is_none());

    // On `away`, a path outside its root is refused the same way, and so is a malformed key.
    put_config(
        &client,
        "outside",
        &[
            ("trellis.volume.data.path", "/data"),
            ("trellis.volume.data.host_path", "/etc"),
        ],
    )
    .await;
    put_config(&client, "typo", &[("trellis.volume.data.mode", "rw")]).await;
    for (config, key) in [
        ("outside", "trellis.volume.data.host_path"),
        ("typo", "trellis.volume.data.mode"),
    ] {
        let failures = events.count("component_scale_failed");
        let ack = client
            .scale_component(
                away.host_id(),
                &trellis_tests::component_ref("prober"),
                config,
                1,
                None,
                vec![config.into()],
                false,
            )
            .await
            .unwrap();
        assert!(ack.succeeded(), "{}", ack.message());
        let failed = events.wait("component_scale_failed", failures).await;
        assert!(
            failed["error"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("`{key}`")),
            "{failed}"
        );
    }

    // Environment variables, and an empty dir that the component may write.
    put_config(
        &client,
        "probe-env",
        &[
            ("trellis.env.GREETING", "hello"),
            ("trellis.volume.scratch.path", "/scratch"),
            ("trellis.volume.scratch.empty_dir", "true"),
        ],
    )
    .await;
    run_component(
        &client,
        home.host_id(),
        "probe",
        "prober",
        1,
        &["probe-env"],
    )
    .await;
    let probe = |function: &'static str, params: Vec<Val>| {
        let runtime = home.runtime();
        async move {
            runtime
                .invoke("probe", PROBE, function, &params, None)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        probe("get-env", vec![Val::String("GREETING".into())]).await,
        [Val::Option(Some(Box::new(Val::String("hello".into()))))]
    );
    let written = probe(
        "write-file",
        vec![
            Val::String("/scratch/note".into()),
            Val::String("kept".into()),
        ],
    )
    .await;
    assert_eq!(written, [Val::Result(Ok(None))]);
    assert_eq!(
        probe("read-file", vec![Val::String("/scratch/note".into())]).await,
        [Val::Result(Ok(Some(Box::new(Val::String("kept".into())))))]
    );
    // Nothing else of the host's files.
    let outside = probe("read-file", vec![Val::String("/etc/hostname".into())]).await;
    assert!(matches!(&outside[0], Val::Result(Err(_))), "{outside:?}");
    home.stop(None).await.unwrap();
    away.stop(None).await.unwrap();
}

/// A component exporting `wasi:blobstore` over a volume serves the unchanged `blob` guest in
/// place of the built-in, under the translated `wrpc:blobstore` names a blobstore provider
/// answers (with a volume of its own it is reached over the lattice even from its own host):
/// the objects are files in its volume, and every call runs on a fresh instance of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blobstore_component_over_a_volume_serves_the_blob_guest() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("blobs");
    std::fs::create_dir(&data).unwrap();
    let home = start_host(&server).await;
    let away = start_host_with_volumes(&server, &[root.path()]).await;
    put_config(
        &client,
        "blob-volume",
        &[
            ("trellis.volume.data.path", "/data"),
            ("trellis.volume.data.host_path", data.to_str().unwrap()),
        ],
    )
    .await;
    run_component(
        &client,
        away.host_id(),
        "objects",
        "blob_store",
        1,
        &["blob-volume"],
    )
    .await;
    run_component(&client, home.host_id(), "photos", "blob", 1, &[]).await;
    let wrpc = record_wrpc_subjects(&nc, LATTICE, "objects").await;
    put_link(
        &client,
        link("photos", "objects", "wasi", "blobstore", &["blobstore"]),
    )
    .await;
    let forwarding = ImportRoute::Plugin("blobstore-over-lattice".into());
    eventually("`photos`' blobstore to go over the lattice", || async {
        let routes = home.runtime().routes("photos").await.unwrap();
        let blobstore: Vec<_> = routes
            .iter()
            .filter(|(import, _)| import.starts_with("wasi:blobstore/"))
            .collect();
        (blobstore.len() == 3 && blobstore.iter().all(|(_, route)| *route == forwarding))
            .then_some(())
    })
    .await;

    drive_blobs(home.runtime(), "photos").await;
    let container = data.join(hex("photos"));
    assert_eq!(
        std::fs::read(container.join(hex("big/data.bin"))).unwrap(),
        big_object()
    );
    assert!(!container.join(hex("c.txt")).exists());
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        [hex("photos").as_str()],
        "nothing set aside is left"
    );
    let expected = blob_subjects(LATTICE, "objects", "0.2.0");
    assert_eq!(subjects_when_seen(&wrpc, &expected).await, expected);
    let served = away.runtime().component("objects").unwrap().invocations();
    assert!(served >= 10, "the far host served the calls ({served})");

    // A second guest on the provider's own host reads what the first wrote.
    run_component(&client, away.host_id(), "albums", "blob", 1, &[]).await;
    put_link(
        &client,
        link("albums", "objects", "wasi", "blobstore", &["blobstore"]),
    )
    .await;
    let read = eventually("`albums` to read the big object", || async {
        blob_read(away.runtime(), "albums", ("photos", "big/data.bin"))
            .await
            .ok()
    })
    .await;
    assert!(read == big_object(), "read {} bytes", read.len());
    home.stop(None).await.unwrap();
    away.stop(None).await.unwrap();
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}
