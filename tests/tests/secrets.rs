//! Secrets end to end with the real backend: crates.io's `secrets-nats-kv` 0.2.0 (installed by
//! `tests/secrets/build.sh`) on a real `nats-server`, secrets put and mapped with its own CLI.
//! The example manifest `wadm-manifests/secrets.yaml`, deployed by the Trellis deployer, gives a
//! signed component its password (read through `wasmcloud:secrets` + `reveal`), the SDK 0.17
//! greeter provider a token in its HostData and another sealed with its link; what is refused
//! (an unsigned component, one the backend does not map, an unknown backend, a host without a
//! backend) fails its start with one event naming the secret; a component sees only the secrets
//! its own config names; and no value appears in the host's logs at `trace` level.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use trellis_deployer::client::WadmClient;
use trellis_deployer::{Deployer, DeployerConfig, cli, manifest};
use trellis_host::{HostConfig, LatticeHost, ProviderSettings};
use trellis_runtime::Val;
use trellis_tests::lattice::{EventLog, ctl_client, eventually, run_component};
use trellis_tests::nats::NatsServer;
use trellis_tests::secrets::{BACKEND, ExampleSecrets, SECRET_PROBE, SecretsBackend, TOPIC};
use wasmcloud_control_interface::Client;

const LATTICE: &str = "secrets";

/// Everything every test here logs, at `trace` (all but the compiler's own chatter).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    trellis_tests::logs::captured(
        "trace,cranelift_codegen=info,cranelift_frontend=info,regalloc2=info,\
         wasmtime_cranelift=info,wasmtime::compile=info",
    )
}

fn assert_not_logged(values: &[&str]) {
    let logs = captured_logs();
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        logs.contains(" TRACE "),
        "the logs were not captured at trace level"
    );
    for value in values {
        assert!(!logs.contains(value), "a secret value reached the logs");
    }
}

async fn start_host(server: &NatsServer, secrets_topic: Option<&str>) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        heartbeat_interval: Duration::from_secs(2),
        rpc_timeout: Duration::from_secs(5),
        providers: ProviderSettings {
            cache_dir: tempfile::tempdir().unwrap().keep(),
            ..ProviderSettings::default()
        },
        secrets_topic: secrets_topic.map(String::from),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

/// The example manifest with absolute images, the reader's replaced by `signed`.
fn example(signed: &std::path::Path) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let bytes = std::fs::read(root.join("wadm-manifests/secrets.yaml")).unwrap();
    let mut parsed = manifest::parse(&bytes).expect("the example is valid");
    cli::absolutize_file_refs(&mut parsed.document, root);
    let components = parsed.document["spec"]["components"]
        .as_array_mut()
        .unwrap();
    let reader = components
        .iter_mut()
        .find(|c| c["name"] == "reader")
        .unwrap();
    reader["properties"]["image"] = format!("file://{}", signed.display()).into();
    parsed.document
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_gives_a_component_a_provider_and_a_link_their_secrets() {
    captured_logs();
    trellis_tests::component_path("secret_reader");
    let server = NatsServer::start();
    let backend = SecretsBackend::start(&server).await;
    let secrets = ExampleSecrets::put(&backend).await;
    let host = start_host(&server, Some(TOPIC)).await;
    let deployer = Deployer::start(DeployerConfig {
        nats_url: server.url(),
        lattice: LATTICE.into(),
        reconcile_interval: Duration::from_secs(1),
        ..DeployerConfig::default()
    })
    .await
    .expect("starting the deployer");
    let nats = async_nats::connect(server.url()).await.unwrap();
    let client = WadmClient::new(nats, LATTICE);
    let document = example(&secrets.signed_reader);
    let put = client.put(&document).await.expect("putting the manifest");
    assert_eq!(put["result"], "created", "{put}");
    let deployed = client.deploy("secrets", None).await.expect("deploying");
    assert_eq!(deployed["result"], "acknowledged", "{deployed}");

    secrets.check(&[host.runtime()], "secrets").await;
    assert_not_logged(&secrets.values());
    deployer.stop().await;
    host.stop(None).await.unwrap();
}

/// Scales test guest `guest` (a `file://` reference `image`) as `id` with `config`; returns
/// its outcome event's name and error.
async fn start(
    client: &Client,
    events: &EventLog,
    host: &LatticeHost,
    id: &str,
    image: &str,
    config: &[&str],
) -> (String, String) {
    let config = config.iter().map(|c| c.to_string()).collect();
    let ack = client
        .scale_component(host.host_id(), image, id, 1, None, config, false)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let (name, data) = events
        .outcome(&["component_scaled", "component_scale_failed"], id, image)
        .await;
    (name, data["error"].as_str().unwrap_or_default().to_string())
}

/// Puts secret reference `SECRET_{name}` as wadm writes it: secret `name`, backend key `key`.
async fn put_reference(client: &Client, name: &str, key: &str, backend: &str) {
    let policy = r#"{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{}}"#;
    let reference = std::collections::HashMap::from([
        ("name".to_string(), name.to_string()),
        ("type".into(), "secret.wasmcloud.dev/v1alpha1".into()),
        ("backend".into(), backend.into()),
        ("key".into(), key.into()),
        ("policy".into(), policy.into()),
    ]);
    let ack = client
        .put_config(&format!("SECRET_{name}"), reference)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
}

async fn reveal(host: &LatticeHost, id: &str, key: &str) -> Result<String, String> {
    let out = host
        .runtime()
        .invoke(id, SECRET_PROBE, "reveal", &[Val::String(key.into())], None)
        .await
        .map_err(|e| e.to_string())?;
    match out.as_slice() {
        [Val::Result(result)] => match result {
            Ok(Some(value)) | Err(Some(value)) => match (&**value, result.is_ok()) {
                (Val::String(text), true) => Ok(text.clone()),
                (Val::String(text), false) => Err(text.clone()),
                (other, _) => Err(format!("unexpected {other:?}")),
            },
            other => Err(format!("unexpected {other:?}")),
        },
        other => Err(format!("unexpected {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_granted_is_refused_with_an_event_naming_the_secret() {
    captured_logs();
    let server = NatsServer::start();
    let backend = SecretsBackend::start(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let (signed, key) = trellis_tests::secrets::signed_component("secret_reader", dir.path());
    let signed = format!("file://{}", signed.display());
    let (unmapped, _) = {
        let other = tempfile::tempdir().unwrap();
        let (path, key) = trellis_tests::secrets::signed_component("secret_reader", other.path());
        let kept = dir.path().join("unmapped.wasm");
        std::fs::copy(path, &kept).unwrap();
        (format!("file://{}", kept.display()), key)
    };
    let password = format!("password-{:016x}", fastrand::u64(..));
    backend.put("db_password", &password);
    backend.add_mapping(&key, &["db_password"]);
    let host = start_host(&server, Some(TOPIC)).await;
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let events = EventLog::record(&nc, LATTICE).await;
    put_reference(&client, "db-password", "db_password", BACKEND).await;
    put_reference(&client, "elsewhere", "db_password", "nope").await;

    // Granted: the signed, mapped component reads it.
    let (outcome, _) = start(
        &client,
        &events,
        &host,
        "granted",
        &signed,
        &["SECRET_db-password"],
    )
    .await;
    assert_eq!(outcome, "component_scaled");
    assert_eq!(
        reveal(&host, "granted", "db-password").await,
        Ok(password.clone())
    );

    // The same code without the secret in its config: not found, nothing fetched for it.
    run_component(&client, host.host_id(), "plain", "secret_reader", 1, &[]).await;
    let refused = reveal(&host, "plain", "db-password").await.unwrap_err();
    assert!(refused.contains("NotFound"), "{refused}");

    // Unsigned, unmapped, unknown backend: one failure event each, naming the secret.
    let unsigned = trellis_tests::component_ref("secret_reader");
    let cases = [
        (
            "unsigned",
            unsigned.as_str(),
            "SECRET_db-password",
            "no embedded claims",
        ),
        (
            "unmapped",
            unmapped.as_str(),
            "SECRET_db-password",
            "unauthorized",
        ),
        (
            "lost",
            signed.as_str(),
            "SECRET_elsewhere",
            "backend `nope`",
        ),
    ];
    for (id, image, reference, reason) in cases {
        let (outcome, error) = start(&client, &events, &host, id, image, &[reference]).await;
        assert_eq!(outcome, "component_scale_failed", "{id}");
        let secret = reference.trim_start_matches("SECRET_");
        assert!(
            error.contains(&format!("secret `{secret}`")),
            "{id}: {error}"
        );
        assert!(error.contains(reason), "{id}: {error}");
        let inventory = client.get_host_inventory(host.host_id()).await.unwrap();
        let inventory = inventory.data().unwrap();
        assert!(
            inventory.components().iter().all(|c| c.id() != id),
            "{id} half-started"
        );
    }

    // A host without a backend refuses every secret, and says how to give it one.
    let bare = start_host(&server, None).await;
    let (outcome, error) = start(
        &client,
        &events,
        &bare,
        "bare",
        &signed,
        &["SECRET_db-password"],
    )
    .await;
    assert_eq!(outcome, "component_scale_failed");
    assert!(error.contains("--secrets-topic"), "{error}");

    eventually("the granted component still answering", || async {
        (reveal(&host, "granted", "db-password").await.ok()? == password).then_some(())
    })
    .await;
    assert_not_logged(&[&password]);
    bare.stop(None).await.unwrap();
    host.stop(None).await.unwrap();
}

async fn greet(host: &LatticeHost, probe: &str) -> Option<String> {
    let out = host
        .runtime()
        .invoke(
            "front",
            "trellis:example/front@0.1.0",
            "greet",
            &[Val::String(probe.into())],
            None,
        )
        .await
        .ok()?;
    match out.as_slice() {
        [Val::String(answer)] => Some(answer.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_gets_its_secrets_at_start_and_with_each_new_link() {
    captured_logs();
    let archive = trellis_tests::provider_archive("greeter");
    let reference = format!("file://{}", archive.display());
    let server = NatsServer::start();
    let backend = SecretsBackend::start(&server).await;
    let (token, link_token) = (
        format!("token-{:016x}", fastrand::u64(..)),
        format!("link-token-{:016x}", fastrand::u64(..)),
    );
    backend.put("api_token", &token);
    backend.put("link_token", &link_token);
    let host = start_host(&server, Some(TOPIC)).await;
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let events = EventLog::record(&nc, LATTICE).await;
    put_reference(&client, "api-token", "api_token", BACKEND).await;
    put_reference(&client, "link-token", "link_token", BACKEND).await;

    // Not mapped yet: the start fails, naming the secret.
    let config = vec!["SECRET_api-token".to_string()];
    let ack = client
        .start_provider(host.host_id(), &reference, "greeter", None, config.clone())
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let failed = events.wait("provider_start_failed", 0).await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("secret `api-token`") && error.contains("unauthorized"),
        "{error}"
    );

    // Mapped: it starts with the token in its HostData.
    let key = trellis_tests::secrets::provider_key("greeter").await;
    backend.add_mapping(&key, &["api_token", "link_token"]);
    let ack = client
        .start_provider(host.host_id(), &reference, "greeter", None, config)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    events.wait("provider_started", 0).await;
    run_component(&client, host.host_id(), "front", "importer", 1, &[]).await;
    let link = wasmcloud_control_interface::Link::builder()
        .source_id("front")
        .target("greeter")
        .name("default")
        .wit_namespace("trellis")
        .wit_package("example")
        .interfaces(vec!["greeter".into()])
        .target_config(vec!["SECRET_link-token".into()])
        .build()
        .unwrap();
    let ack = client.put_link(link).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let reversed = |value: &str| value.chars().rev().collect::<String>();
    for (probe, value) in [
        ("secret?api-token", &token),
        ("secret?default/link-token", &link_token),
    ] {
        eventually(&format!("the provider answering {probe}"), || async {
            (greet(&host, probe).await? == reversed(value)).then_some(())
        })
        .await;
    }
    assert_not_logged(&[&token, &link_token]);
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_in_signs_in_with_credentials_from_its_links_secrets() {
    captured_logs();
    let server = NatsServer::start();
    // The bucket lives on a server of its own that admits only its JWT user.
    let remote = trellis_tests::nats::JwtServer::start();
    let backend = SecretsBackend::start(&server).await;
    backend.put("kv_jwt", &remote.user_jwt);
    backend.put("kv_seed", &remote.user_seed);
    let dir = tempfile::tempdir().unwrap();
    let (signed, key) = trellis_tests::secrets::signed_component("kv", dir.path());
    backend.add_mapping(&key, &["kv_jwt", "kv_seed"]);
    let host = start_host(&server, Some(TOPIC)).await;
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let events = EventLog::record(&nc, LATTICE).await;
    let remote_url = remote.server.url();
    trellis_tests::lattice::put_config(
        &client,
        "kv-remote",
        &[("cluster_uri", &remote_url), ("bucket", "remote")],
    )
    .await;
    put_reference(&client, "client_jwt", "kv_jwt", BACKEND).await;
    put_reference(&client, "client_seed", "kv_seed", BACKEND).await;
    let ack = client
        .start_provider(
            host.host_id(),
            "trellis+builtin://keyvalue?backend=nats",
            "kv",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    // Running before its link: the secrets are fetched when the link re-binds the plugin.
    let signed = format!("file://{}", signed.display());
    let (outcome, error) = start(&client, &events, &host, "counter", &signed, &[]).await;
    assert_eq!(outcome, "component_scaled", "{error}");
    let link = wasmcloud_control_interface::Link::builder()
        .source_id("counter")
        .target("kv")
        .name("default")
        .wit_namespace("wasi")
        .wit_package("keyvalue")
        .interfaces(vec!["store".into(), "atomics".into()])
        .target_config(vec![
            "kv-remote".into(),
            "SECRET_client_jwt".into(),
            "SECRET_client_seed".into(),
        ])
        .build()
        .unwrap();
    let ack = client.put_link(link).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());

    let increment = || async {
        let args = [
            Val::String("remote".into()),
            Val::String("hits".into()),
            Val::U64(1),
        ];
        let out = host
            .runtime()
            .invoke(
                "counter",
                "trellis:providers/kv-probe@0.1.0",
                "increment",
                &args,
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        match out.as_slice() {
            [Val::Result(Ok(Some(value)))] => Ok(format!("{value:?}")),
            other => Err(format!("{other:?}")),
        }
    };
    let first = eventually("the linked bucket", || async { increment().await.ok() }).await;
    assert_eq!(first, "U64(1)");
    assert_eq!(increment().await, Ok("U64(2)".to_string()));

    // The count is on the remote server, read there with the same user's credentials.
    let user = async_nats::ConnectOptions::with_credentials(&remote.creds)
        .unwrap()
        .connect(&remote_url)
        .await
        .unwrap();
    let bucket = async_nats::jetstream::new(user)
        .get_key_value("remote")
        .await
        .unwrap();
    let hits = bucket.get("hits").await.unwrap().expect("the counter");
    assert_eq!(&hits[..], b"2");
    assert_not_logged(&[&remote.user_seed]);
    host.stop(None).await.unwrap();
}
