//! The real `wash` 0.43 CLI against a Trellis host and the Trellis deployer on a real
//! `nats-server`: start a provider from a `file://` archive and a component, put config and a
//! link, check the inventory, deploy and undeploy an application, stop what it started. Each
//! wash command must succeed as it does against a wasmCloud 1.x host (wash waits for the events
//! it expects and fails, after its timeout, when they do not match). And a component signed by
//! `wash claims sign` reads its secret from the real secrets backend.
//!
//! Opt-in: wash takes about 25 minutes to build on 2 cores, longer than CI allows. Install it
//! once with `bash tests/wash/install.sh` (into `tests/wash/bin`), or point `TRELLIS_WASH` at a
//! wash 0.43 binary; without either, the test says so and passes without running.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use trellis_deployer::{Deployer, DeployerConfig};
use trellis_host::{HostConfig, LatticeHost};
use trellis_tests::lattice::{ctl_client, eventually};
use trellis_tests::nats::NatsServer;
use trellis_tests::{component_ref, provider_archive};

const LATTICE: &str = "wash";

fn wash_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TRELLIS_WASH") {
        return Some(PathBuf::from(path));
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join("wash/bin/wash");
    installed.exists().then_some(installed)
}

/// Runs wash with the lattice's connection flags; returns its stdout, failing with its output.
fn wash(binary: &Path, port: u16, args: &[&str]) -> String {
    let output = Command::new(binary)
        .args(args)
        .args(["--ctl-host", "127.0.0.1", "--ctl-port", &port.to_string()])
        .args(["--lattice", LATTICE])
        .env("WASH_DISABLE_VERSION_CHECK", "1")
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("running wash");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "wash {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wash_drives_a_trellis_host() {
    let Some(binary) = wash_binary() else {
        eprintln!("wash is not installed: run `bash tests/wash/install.sh` to run this test");
        return;
    };
    let provider = provider_archive("greeter");
    let component = component_ref("http_server");
    let server = NatsServer::start();
    let port: u16 = server.url().rsplit(':').next().unwrap().parse().unwrap();
    let host = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        heartbeat_interval: Duration::from_secs(2),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host");
    let deployer = Deployer::start(DeployerConfig {
        nats_url: server.url(),
        lattice: LATTICE.into(),
        reconcile_interval: Duration::from_secs(1),
        ..DeployerConfig::default()
    })
    .await
    .expect("starting the deployer");
    let (ctl, _) = ctl_client(&server, LATTICE).await;
    let id = host.host_id().to_string();
    let run = |args: &[&str]| {
        let (binary, args) = (
            binary.clone(),
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            wash(&binary, port, &args)
        })
    };

    let hosts = json(&run(&["get", "hosts", "-o", "json"]).await.unwrap());
    assert!(hosts.to_string().contains(&id), "{hosts}");

    let provider_ref = format!("file://{}", provider.display());
    run(&[
        "start",
        "provider",
        &provider_ref,
        "greeter",
        "--host-id",
        &id,
    ])
    .await
    .unwrap();
    run(&["start", "component", &component, "web", "--host-id", &id])
        .await
        .unwrap();
    run(&["config", "put", "web-listen", "address=127.0.0.1:0"])
        .await
        .unwrap();
    let config = json(
        &run(&["config", "get", "web-listen", "-o", "json"])
            .await
            .unwrap(),
    );
    assert!(config.to_string().contains("127.0.0.1:0"), "{config}");
    run(&[
        "link",
        "put",
        "web",
        "greeter",
        "trellis",
        "example",
        "--interface",
        "greeter",
    ])
    .await
    .unwrap();
    let links = json(&run(&["get", "links", "-o", "json"]).await.unwrap());
    assert!(links.to_string().contains("greeter"), "{links}");

    let inventory = json(&run(&["get", "inventory", &id, "-o", "json"]).await.unwrap());
    let text = inventory.to_string();
    assert!(
        text.contains("\"web\"") && text.contains("greeter"),
        "{inventory}"
    );

    run(&["link", "del", "web", "trellis", "example"])
        .await
        .unwrap();
    run(&["stop", "component", "web", "--host-id", &id])
        .await
        .unwrap();
    run(&["stop", "provider", "greeter", "--host-id", &id])
        .await
        .unwrap();

    // An application through the wadm API the Trellis deployer serves.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let manifest = std::fs::read_to_string(root.join("wadm-manifests/hello.yaml"))
        .unwrap()
        .replace("file://./", &format!("file://{}/", root.display()))
        .replace("127.0.0.1:8080", "127.0.0.1:0");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.yaml");
    std::fs::write(&file, manifest).unwrap();
    run(&["app", "deploy", file.to_str().unwrap()])
        .await
        .unwrap();
    eventually("hello deployed", || async {
        let inventory = ctl.get_host_inventory(&id).await.ok()?;
        let components = inventory.data()?.components().len();
        (components == 1).then_some(())
    })
    .await;
    let apps = json(&run(&["app", "list", "-o", "json"]).await.unwrap());
    assert!(apps.to_string().contains("hello"), "{apps}");
    run(&["app", "undeploy", "hello"]).await.unwrap();
    eventually("hello undeployed", || async {
        let inventory = ctl.get_host_inventory(&id).await.ok()?;
        inventory.data()?.components().is_empty().then_some(())
    })
    .await;

    deployer.stop().await;
    host.stop(Some(Duration::from_secs(2))).await.unwrap();
}

/// A component signed by `wash claims sign` (wash's own keys) reads the secret its key is
/// mapped to in the real secrets backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wash_signed_component_reads_its_secret() {
    let Some(binary) = wash_binary() else {
        eprintln!("wash is not installed: run `bash tests/wash/install.sh` to run this test");
        return;
    };
    use trellis_runtime::Val;
    use trellis_tests::secrets::{BACKEND, SECRET_PROBE, SecretsBackend, TOPIC};
    let unsigned = trellis_tests::component_path("secret_reader");
    let dir = tempfile::tempdir().unwrap();
    let signed = dir.path().join("reader_s.wasm");
    let output = Command::new(&binary)
        .args([
            "claims", "sign", "--name", "reader", "--rev", "1", "--ver", "0.1.0",
        ])
        .arg("--directory")
        .arg(dir.path().join("keys"))
        .arg("--destination")
        .arg(&signed)
        .arg(&unsigned)
        .env("WASH_DISABLE_VERSION_CHECK", "1")
        .env("HOME", dir.path())
        .output()
        .expect("running wash");
    assert!(output.status.success(), "{output:?}");
    let jwt = trellis_host::secrets::component_jwt(&std::fs::read(&signed).unwrap())
        .expect("claims matching the code")
        .expect("claims");
    let key = wascap::jwt::Claims::<wascap::jwt::Component>::decode(&jwt)
        .unwrap()
        .subject;

    let server = NatsServer::start();
    let backend = SecretsBackend::start(&server).await;
    let password = format!("password-{:016x}", fastrand::u64(..));
    backend.put("db_password", &password);
    backend.add_mapping(&key, &["db_password"]);
    let host = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        secrets_topic: Some(TOPIC.into()),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host");
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let reference = std::collections::HashMap::from([
        ("name".to_string(), "db-password".to_string()),
        ("type".into(), "secret.wasmcloud.dev/v1alpha1".into()),
        ("backend".into(), BACKEND.into()),
        ("key".into(), "db_password".into()),
        (
            "policy".into(),
            r#"{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{}}"#.into(),
        ),
    ]);
    let ack = client
        .put_config("SECRET_db-password", reference)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let image = format!("file://{}", signed.display());
    let config = vec!["SECRET_db-password".to_string()];
    let ack = client
        .scale_component(host.host_id(), &image, "reader", 1, None, config, false)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let revealed = eventually("the wash-signed reader revealing its secret", || async {
        let key = [Val::String("db-password".into())];
        let out = host
            .runtime()
            .invoke("reader", SECRET_PROBE, "reveal", &key, None)
            .await
            .ok()?;
        match out.as_slice() {
            [Val::Result(Ok(Some(value)))] => Some(format!("{value:?}")),
            _ => None,
        }
    })
    .await;
    assert_eq!(revealed, format!("String({password:?})"));
    host.stop(None).await.unwrap();
}
