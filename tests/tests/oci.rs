//! OCI references on a real lattice: a real registry (Debian's `docker-registry`) on loopback,
//! the test component and the greeter provider archive published to it with `trellis push`'s
//! library function, started from it through the wasmcloud-control-interface client on a real
//! host and nats-server; started again from the cache with the registry gone; pull failures
//! (missing tag, unknown repository, damaged layer, `latest`, unreachable registry, wrong
//! artifact kind, a plain-HTTP registry not allowed) reported in the reply or the failure event;
//! basic auth through `registry.put`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use trellis_host::oci::{self, OciSettings, PushOptions, RegistryCredential};
use trellis_host::{HostConfig, LatticeHost, ProviderSettings};
use trellis_runtime::Val;
use trellis_tests::lattice::{EventLog, ctl_client, eventually};
use trellis_tests::nats::NatsServer;
use trellis_tests::registry::{Registry, TEST_PASSWORD, TEST_USER};
use trellis_tests::{component_path, provider_archive};
use wasmcloud_control_interface::Client;

const LATTICE: &str = "oci";
const ADDER: &str = "trellis:example/adder@0.1.0";

async fn start_host(server: &NatsServer, cache: &Path, registry: &Registry) -> LatticeHost {
    start_host_allowing(server, cache, vec![registry.address()]).await
}

/// A host that speaks plain HTTP only to the registries in `allowed_insecure`.
async fn start_host_allowing(
    server: &NatsServer,
    cache: &Path,
    allowed_insecure: Vec<String>,
) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        heartbeat_interval: Duration::from_secs(5),
        providers: ProviderSettings {
            cache_dir: cache.join("providers"),
            shutdown_timeout: Duration::from_secs(3),
            ..ProviderSettings::default()
        },
        oci: OciSettings {
            cache_dir: cache.join("oci"),
            allowed_insecure,
            allow_latest: false,
        },
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

async fn push(registry: &Registry, file: &Path, reference: &str) -> String {
    let options = PushOptions {
        allowed_insecure: vec![registry.address()],
        credential: None,
    };
    oci::push(file, reference, &options)
        .await
        .unwrap_or_else(|e| panic!("pushing {}: {e}", file.display()))
}

/// Scales `id` from `reference` to one instance; returns the outcome event.
async fn scale(
    client: &Client,
    host: &LatticeHost,
    events: &EventLog,
    id: &str,
    reference: &str,
) -> (String, Value) {
    let ack = client
        .scale_component(host.host_id(), reference, id, 1, None, vec![], false)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{reference}: {}", ack.message());
    events
        .outcome(
            &["component_scaled", "component_scale_failed"],
            id,
            reference,
        )
        .await
}

async fn scale_to_zero(client: &Client, host: &LatticeHost, id: &str, reference: &str) {
    let ack = client
        .scale_component(host.host_id(), reference, id, 0, None, vec![], false)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually(&format!("{id} stopped"), || async {
        host.runtime().component(id).is_none().then_some(())
    })
    .await;
}

async fn start_provider(
    client: &Client,
    host: &LatticeHost,
    events: &EventLog,
    id: &str,
    reference: &str,
) -> (String, Value) {
    let ack = client
        .start_provider(host.host_id(), reference, id, None, vec![])
        .await
        .unwrap();
    assert!(ack.succeeded(), "{reference}: {}", ack.message());
    events
        .outcome(
            &["provider_started", "provider_start_failed"],
            id,
            reference,
        )
        .await
}

async fn add(host: &LatticeHost, id: &str) -> Vec<Val> {
    host.runtime()
        .invoke(id, ADDER, "add", &[Val::U32(40), Val::U32(2)], None)
        .await
        .unwrap_or_else(|e| panic!("calling {id}: {e:#}"))
}

/// The file anywhere under `dir` holding exactly `content`.
fn cached_file(dir: &Path, content: &[u8]) -> std::path::PathBuf {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path).is_ok_and(|c| c == content) {
                return path;
            }
        }
    }
    panic!("nothing under {} holds that content", dir.display());
}

fn error_of(outcome: &(String, Value)) -> String {
    outcome.1["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_and_provider_archives_start_from_a_registry_then_from_the_cache() {
    let server = NatsServer::start();
    let mut registry = Registry::start();
    let cache = tempfile::tempdir().unwrap();
    let address = registry.address();
    let exporter_tag = format!("{address}/trellis/exporter:0.1.0");
    let exporter_digest = push(&registry, &component_path("exporter"), &exporter_tag).await;
    let greeter_tag = format!("{address}/trellis/greeter:0.1.0");
    let greeter_digest = push(&registry, &provider_archive("greeter"), &greeter_tag).await;
    assert!(exporter_digest.starts_with("sha256:"), "{exporter_digest}");

    let (client, nc) = ctl_client(&server, LATTICE).await;
    let events = EventLog::record(&nc, LATTICE).await;
    let host = start_host(&server, cache.path(), &registry).await;

    // Pulled from the registry, by tag.
    let scaled = scale(&client, &host, &events, "adder", &exporter_tag).await;
    assert_eq!(scaled.0, "component_scaled", "{}", error_of(&scaled));
    assert_eq!(add(&host, "adder").await, [Val::U32(42)]);
    let started = start_provider(&client, &host, &events, "greeter", &greeter_tag).await;
    assert_eq!(started.0, "provider_started", "{}", error_of(&started));
    assert_eq!(started.1["claims"]["name"], "trellis-test-greeter");

    // An update to an OCI reference pulls it too.
    let by_digest = format!("{address}/trellis/exporter@{exporter_digest}");
    let ack = client
        .update_component(host.host_id(), "adder", &by_digest, None)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let updated = events
        .outcome(
            &["component_scaled", "component_scale_failed"],
            "adder",
            &by_digest,
        )
        .await;
    assert_eq!(updated.0, "component_scaled", "{}", error_of(&updated));

    // A damaged cache entry is noticed (its digest no longer matches) and fetched again.
    let exporter = std::fs::read(component_path("exporter")).unwrap();
    let cached = cached_file(&cache.path().join("oci/blobs"), &exporter);
    std::fs::write(&cached, b"not the component").unwrap();
    let scaled = scale(&client, &host, &events, "refetched", &exporter_tag).await;
    assert_eq!(scaled.0, "component_scaled", "{}", error_of(&scaled));
    assert_eq!(std::fs::read(&cached).unwrap(), exporter);
    scale_to_zero(&client, &host, "refetched", &exporter_tag).await;
    scale_to_zero(&client, &host, "adder", &by_digest).await;
    let stopped = client
        .stop_provider(host.host_id(), "greeter")
        .await
        .unwrap();
    assert!(stopped.succeeded(), "{}", stopped.message());
    events.clear();

    // With the registry gone, references by digest start from the cache. Something listens on
    // the registry's port and sees no connection: the starts made no network call.
    registry.stop();
    let listener = TcpListener::bind(&address).expect("taking over the registry's port");
    listener.set_nonblocking(true).unwrap();
    let scaled = scale(&client, &host, &events, "adder", &by_digest).await;
    assert_eq!(scaled.0, "component_scaled", "{}", error_of(&scaled));
    assert_eq!(add(&host, "adder").await, [Val::U32(42)]);
    let greeter_by_digest = format!("{address}/trellis/greeter@{greeter_digest}");
    let started = start_provider(&client, &host, &events, "greeter", &greeter_by_digest).await;
    assert_eq!(started.0, "provider_started", "{}", error_of(&started));
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a start by digest from the cache connected to the registry"
    );
    drop(listener);

    // A tag needs the registry to resolve it; with the registry unreachable, the digest it
    // had at its last pull is used (with a warning).
    let scaled = scale(&client, &host, &events, "adder-by-tag", &exporter_tag).await;
    assert_eq!(scaled.0, "component_scaled", "{}", error_of(&scaled));
    assert_eq!(add(&host, "adder-by-tag").await, [Val::U32(42)]);
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_failures_are_reported_clearly() {
    let server = NatsServer::start();
    let registry = Registry::start();
    let cache = tempfile::tempdir().unwrap();
    let address = registry.address();
    push(
        &registry,
        &component_path("exporter"),
        &format!("{address}/trellis/exporter:1"),
    )
    .await;
    // A layer the registry serves damaged: its bytes no longer match the digest.
    let importer = component_path("importer");
    push(
        &registry,
        &importer,
        &format!("{address}/trellis/damaged:1"),
    )
    .await;
    let blob = registry.blob_file(&std::fs::read(&importer).unwrap());
    let mut damaged = std::fs::read(&blob).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&blob, damaged).unwrap();

    let (client, nc) = ctl_client(&server, LATTICE).await;
    let events = EventLog::record(&nc, LATTICE).await;
    let host = start_host(&server, cache.path(), &registry).await;
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let zeros = "0".repeat(64);

    for (id, reference, expected) in [
        (
            "missing-tag",
            format!("{address}/trellis/exporter:9.9.9"),
            "not found in the registry",
        ),
        (
            "unknown-repo",
            format!("{address}/trellis/nothing:1"),
            "not found in the registry",
        ),
        (
            "unknown-digest",
            format!("{address}/trellis/exporter@sha256:{zeros}"),
            "not found in the registry",
        ),
        (
            "damaged",
            format!("{address}/trellis/damaged:1"),
            "does not match its digest",
        ),
        (
            "unreachable",
            format!("127.0.0.1:{closed_port}/trellis/exporter:1"),
            "is unreachable",
        ),
    ] {
        let outcome = scale(&client, &host, &events, id, &reference).await;
        assert_eq!(outcome.0, "component_scale_failed", "{reference} started");
        let error = error_of(&outcome);
        assert!(
            error.contains(expected) && error.contains(&reference),
            "{reference}: {error}"
        );
        assert!(host.runtime().component(id).is_none());
    }

    // A plain-HTTP registry that was not allowed is spoken to over HTTPS, fails, and the error
    // says which flag allows it.
    let strict_cache = tempfile::tempdir().unwrap();
    let strict = start_host_allowing(&server, strict_cache.path(), vec![]).await;
    let reference = format!("{address}/trellis/exporter:1");
    let outcome = scale(&client, &strict, &events, "not-allowed", &reference).await;
    assert_eq!(outcome.0, "component_scale_failed", "{reference} started");
    let error = error_of(&outcome);
    assert!(
        error.contains(&format!("--allowed-insecure {address}")),
        "{error}"
    );
    strict.stop(None).await.unwrap();

    // `latest` is refused in the reply, before any work.
    for reference in [
        format!("{address}/trellis/exporter:latest"),
        format!("{address}/trellis/exporter"),
    ] {
        let ack = client
            .scale_component(host.host_id(), &reference, "latest", 1, None, vec![], false)
            .await
            .unwrap();
        assert!(!ack.succeeded(), "{reference} accepted");
        assert!(
            ack.message().contains("--allow-latest"),
            "{}",
            ack.message()
        );
    }
    let ack = client
        .start_provider(
            host.host_id(),
            &format!("{address}/trellis/greeter:latest"),
            "latest",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(!ack.succeeded());
    assert!(
        ack.message().contains("--allow-latest"),
        "{}",
        ack.message()
    );

    // Providers: a missing tag, and a component where a provider archive is needed.
    let missing = format!("{address}/trellis/greeter:9.9.9");
    let outcome = start_provider(&client, &host, &events, "missing", &missing).await;
    assert_eq!(outcome.0, "provider_start_failed");
    assert!(
        error_of(&outcome).contains("not found in the registry"),
        "{}",
        error_of(&outcome)
    );
    let component = format!("{address}/trellis/exporter:1");
    let outcome = start_provider(&client, &host, &events, "not-a-provider", &component).await;
    assert_eq!(outcome.0, "provider_start_failed");
    assert!(
        error_of(&outcome).contains("no provider archive layer"),
        "{}",
        error_of(&outcome)
    );
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_put_credentials_are_used_for_pulls() {
    let server = NatsServer::start();
    let registry = Registry::start_with_basic_auth();
    let cache = tempfile::tempdir().unwrap();
    let address = registry.address();
    let reference = format!("{address}/trellis/private:1");
    let anonymous = PushOptions {
        allowed_insecure: vec![address.clone()],
        credential: None,
    };
    let refused = oci::push(&component_path("exporter"), &reference, &anonymous).await;
    assert!(
        matches!(refused, Err(oci::OciError::Unauthorized { .. })),
        "{refused:?}"
    );
    let authenticated = PushOptions {
        credential: Some(RegistryCredential::basic(TEST_USER, TEST_PASSWORD)),
        ..anonymous
    };
    oci::push(&component_path("exporter"), &reference, &authenticated)
        .await
        .expect("pushing with credentials");

    let (client, nc) = ctl_client(&server, LATTICE).await;
    let events = EventLog::record(&nc, LATTICE).await;
    let host = start_host(&server, cache.path(), &registry).await;
    let outcome = scale(&client, &host, &events, "anonymous", &reference).await;
    assert_eq!(outcome.0, "component_scale_failed");
    assert!(
        error_of(&outcome).contains("refused access"),
        "{}",
        error_of(&outcome)
    );

    let credentials = HashMap::from([(
        address.clone(),
        wasmcloud_control_interface::RegistryCredential::from_username_password(
            TEST_USER,
            TEST_PASSWORD,
            "oci",
        ),
    )]);
    client.put_registries(credentials).await.unwrap();
    // `registry.put` is a plain publish: retry until the host has applied it (bounded).
    let mut attempt = 0;
    loop {
        let id = format!("private-{attempt}");
        let outcome = scale(&client, &host, &events, &id, &reference).await;
        if outcome.0 == "component_scaled" {
            assert_eq!(add(&host, &id).await, [Val::U32(42)]);
            break;
        }
        attempt += 1;
        assert!(
            attempt < 20,
            "credentials never applied: {}",
            error_of(&outcome)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    host.stop(None).await.unwrap();
}
