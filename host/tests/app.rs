//! Golden tests of `trellis app`: the real binary run from the repository root (as the
//! README says) against a real nats-server, two in-process hosts (zone a and zone b) and the
//! built-in deployer. `validate` works offline and names the bad field; `deploy` stores and
//! deploys, refuses the same version again and replaces it with `--replace`; `list` and
//! `status` print tables by default and wadm's JSON with `-o json` (per-scaler status, the
//! reason of a failing app); `undeploy` and `delete` leave nothing behind. Without a deployer
//! or without NATS, each command fails with one line and a hint.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trellis_deployer::{Deployer, DeployerConfig};
use trellis_host::{HostConfig, LatticeHost};
use trellis_tests::nats::NatsServer;

mod common;
use common::{Cli, WAIT};

const LATTICE: &str = "apps";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A NATS URL where nothing listens: a port bound, noted and released.
fn closed_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("nats://127.0.0.1:{port}")
}

/// `trellis app …` against `url`, run from the repository root (as the README says).
fn app(url: &str) -> Cli {
    Cli::new(url, LATTICE, &["app"]).in_dir(repo_root())
}

async fn stdout(url: &str, args: &[&str]) -> String {
    app(url).stdout(args).await
}

async fn json(url: &str, args: &[&str]) -> Value {
    app(url).json(args).await
}

async fn error_line(url: &str, args: &[&str]) -> String {
    app(url).error_line(args).await
}

/// The cells of a human table's lines (columns are two or more spaces apart).
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// `value` with each scaler `id` (a SHA-256 of the scaler's definition, as wadm derives it)
/// checked and replaced by `<id>`.
fn mask_ids(mut value: Value) -> Value {
    if let Some(scalers) = value["scalers"].as_array_mut() {
        for scaler in scalers {
            let id = scaler["id"].as_str().unwrap_or_default();
            assert!(
                id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "scaler id {id:?}"
            );
            scaler["id"] = "<id>".into();
        }
    }
    value
}

/// Polls `trellis app status NAME -o json` until its type is `wanted`; returns it.
async fn status_until(url: &str, name: &str, wanted: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = json(url, &["status", name]).await;
        if status["status"]["type"] == wanted {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {wanted}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `trellis app ARGS` until its stdout passes `check`; returns that stdout.
async fn until(url: &str, args: &[&str], check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = stdout(url, args).await;
        if check(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "app {args:?} never passed: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start_host(server: &NatsServer, zone: &str) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        labels: [("zone".to_string(), zone.to_string())].into(),
        heartbeat_interval: Duration::from_secs(1),
        rpc_timeout: Duration::from_secs(5),
        ..HostConfig::default()
    })
    .await
    .expect("starting a host")
}

/// Waits until `host` runs component `id` (or, with `false`, no longer runs it).
async fn runs(host: &LatticeHost, id: &str, running: bool) {
    let deadline = Instant::now() + WAIT;
    while host.runtime().component(id).is_some() != running {
        assert!(
            Instant::now() < deadline,
            "{id} running on {}: never {running}",
            host.host_id()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The golden status of a deployed `c2c` (scaler ids masked).
fn c2c_deployed() -> Value {
    let deployed = json!({ "type": "deployed" });
    json!({
        "name": "c2c",
        "status": deployed,
        "scalers": [
            { "id": "<id>", "kind": "SpreadScaler", "name": "c2c-front", "status": deployed },
            {
                "id": "<id>",
                "kind": "LinkScaler",
                "name": "c2c-front -(trellis:example)-> c2c-math",
                "status": deployed,
            },
            { "id": "<id>", "kind": "SpreadScaler", "name": "c2c-math", "status": deployed },
        ],
        "version": "",
        "components": [],
    })
}

#[test]
fn validate_works_offline_and_names_the_bad_field() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // No NATS anywhere: validate must not need it.
    let url = closed_url();
    runtime.block_on(async {
        for example in [
            "c2c",
            "counter",
            "daemon",
            "external",
            "hello",
            "messaging",
            "spread",
        ] {
            let file = format!("wadm-manifests/{example}.yaml");
            assert_eq!(
                stdout(&url, &["validate", &file]).await,
                format!("{file}: valid manifest `{example}` (0 warning(s))\n")
            );
        }

        let dir = tempfile::tempdir().unwrap();
        let c2c = std::fs::read_to_string(repo_root().join("wadm-manifests/c2c.yaml")).unwrap();
        // One error: one line naming the field.
        let dangling = dir.path().join("dangling.yaml");
        let target = "            target:\n              name: math\n";
        assert!(c2c.contains(target));
        std::fs::write(
            &dangling,
            c2c.replace(target, "            target:\n              name: nothere\n"),
        )
        .unwrap();
        let dangling = dangling.to_str().unwrap();
        let expected = format!(
            "trellis app: {dangling} is not a valid manifest: \
             spec.components[0].traits[1].properties.target: link target `nothere` is not a \
             component of this manifest"
        );
        assert_eq!(error_line(&url, &["validate", dangling]).await, expected);
        // `deploy` refuses it the same way, before it tries to reach NATS.
        assert_eq!(error_line(&url, &["deploy", dangling]).await, expected);

        // Several errors: a count, then one field per line.
        let counts = dir.path().join("counts.yaml");
        std::fs::write(&counts, c2c.replace("instances: 1\n", "instances: many\n")).unwrap();
        let output = app(&url).run(&["validate", counts.to_str().unwrap()]).await;
        assert!(!output.status.success());
        assert!(output.stdout.is_empty());
        let reason = "must be a non-negative integer, found a string";
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            format!(
                "trellis app: {} is not a valid manifest (2 errors):\n  \
                 spec.components[0].traits[0].properties.instances: {reason}\n  \
                 spec.components[1].traits[0].properties.instances: {reason}\n",
                counts.display()
            )
        );

        let line = error_line(&url, &["validate", "wadm-manifests/nonexistent.yaml"]).await;
        assert!(
            line.starts_with("trellis app: reading wadm-manifests/nonexistent.yaml: "),
            "{line}"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_list_status_undeploy_delete() {
    // Build the guests before anything times out on them.
    trellis_tests::component_path("importer");
    let server = NatsServer::start();
    let url = server.url();
    let zone_a = start_host(&server, "a").await;
    let zone_b = start_host(&server, "b").await;
    let deployer = Deployer::start(DeployerConfig {
        nats_url: url.clone(),
        lattice: LATTICE.into(),
        reconcile_interval: Duration::from_secs(1),
        ..DeployerConfig::default()
    })
    .await
    .expect("starting the deployer");

    // Nothing yet.
    assert_eq!(json(&url, &["list"]).await, json!([]));
    assert_eq!(
        cells(&stdout(&url, &["list"]).await),
        [["NAME", "LATEST", "DEPLOYED", "STATUS", "DESCRIPTION"]]
    );

    // Deploy (relative `file://./…` images resolve from the current directory, as with wash).
    assert_eq!(
        stdout(&url, &["deploy", "wadm-manifests/c2c.yaml"]).await,
        "deployed c2c version v0.1.0\n"
    );
    // The same version again is refused, and changes nothing.
    assert_eq!(
        error_line(&url, &["deploy", "wadm-manifests/c2c.yaml"]).await,
        "trellis app: storing c2c: Manifest version v0.1.0 already exists (--replace \
         overwrites it, or raise metadata.annotations.version)"
    );

    // Status: wadm's object, one scaler per component and link.
    let status = status_until(&url, "c2c", "deployed").await;
    assert_eq!(mask_ids(status), c2c_deployed());
    runs(&zone_a, "c2c-front", true).await;
    runs(&zone_b, "c2c-math", true).await;
    assert_eq!(
        cells(&stdout(&url, &["status", "c2c"]).await),
        [
            vec!["c2c: deployed"],
            vec![],
            vec!["KIND", "NAME", "STATUS", "MESSAGE"],
            vec!["SpreadScaler", "c2c-front", "deployed", "-"],
            vec![
                "LinkScaler",
                "c2c-front -(trellis:example)-> c2c-math",
                "deployed",
                "-"
            ],
            vec!["SpreadScaler", "c2c-math", "deployed", "-"],
        ]
    );

    // A failing app (no host in zone `mars`) shows its reason, overall and per component.
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("nowhere.yaml");
    let spread = std::fs::read_to_string(repo_root().join("wadm-manifests/spread.yaml")).unwrap();
    std::fs::write(
        &nowhere,
        spread
            .replace("name: spread\n", "name: nowhere\n")
            .replace("zone: a\n", "zone: mars\n"),
    )
    .unwrap();
    let nowhere = nowhere.to_str().unwrap();
    let mut deployed = json!({
        "success": true,
        "name": "nowhere",
        "version": "v0.1.0",
        "replaced": false,
        "message": "Successfully deployed application nowhere v0.1.0",
    });
    assert_eq!(json(&url, &["deploy", nowhere]).await, deployed);
    // --replace stores the same version over the old copy and deploys it again.
    deployed["replaced"] = true.into();
    assert_eq!(
        json(&url, &["deploy", nowhere, "--replace"]).await,
        deployed
    );
    let mut failed = mask_ids(status_until(&url, "nowhere", "failed").await);
    let reason = failed["status"]["message"].as_str().unwrap().to_string();
    assert!(
        reason.starts_with("Could not satisfy spread east for file://"),
        "{reason}"
    );
    failed["status"]["message"] = "<reason>".into();
    assert_eq!(failed["scalers"][0]["status"]["message"], reason.as_str());
    failed["scalers"][0]["status"]["message"] = "<reason>".into();
    let failure = json!({ "type": "failed", "message": "<reason>" });
    assert_eq!(
        failed,
        json!({
            "name": "nowhere",
            "status": failure,
            "scalers": [
                { "id": "<id>", "kind": "SpreadScaler", "name": "nowhere-math", "status": failure },
            ],
            "version": "",
            "components": [],
        })
    );
    // (Polled: the --replace undeployed and redeployed it, and a read may come in between.)
    let human = until(&url, &["status", "nowhere"], |out| {
        out.starts_with("nowhere: failed: ")
    })
    .await;
    assert_eq!(
        cells(&human),
        [
            vec![format!("nowhere: failed: {reason}")],
            vec![],
            ["KIND", "NAME", "STATUS", "MESSAGE"]
                .map(String::from)
                .to_vec(),
            vec![
                "SpreadScaler".into(),
                "nowhere-math".into(),
                "failed".into(),
                reason.clone(),
            ],
        ],
        "{human}"
    );

    // List: wadm's models, sorted by name.
    until(&url, &["list", "-o", "json"], |out| {
        let models: Value = serde_json::from_str(out).unwrap();
        models[0]["status"] == "deployed" && models[1]["status"] == "failed"
    })
    .await;
    let mut models = json(&url, &["list"]).await;
    for model in models.as_array_mut().unwrap() {
        let detailed = mask_ids(model["detailed_status"].take());
        model["detailed_status"] = detailed;
    }
    let nowhere_model = &mut models[1];
    assert_eq!(nowhere_model["status_message"], reason.as_str());
    nowhere_model["status_message"] = "<reason>".into();
    nowhere_model["detailed_status"]["status"]["message"] = "<reason>".into();
    nowhere_model["detailed_status"]["scalers"][0]["status"]["message"] = "<reason>".into();
    let mut c2c_detailed = c2c_deployed();
    c2c_detailed.as_object_mut().unwrap().remove("name");
    assert_eq!(
        models,
        json!([
            {
                "name": "c2c",
                "version": "v0.1.0",
                "deployed_version": "v0.1.0",
                "description": "Importer calling an exporter on another host through a link",
                "status": "deployed",
                "status_message": "",
                "detailed_status": c2c_detailed,
            },
            {
                "name": "nowhere",
                "version": "v0.1.0",
                "deployed_version": "v0.1.0",
                "description": "Exporter spread over two zones by weight",
                "status": "failed",
                "status_message": "<reason>",
                "detailed_status": {
                    "status": failure,
                    "scalers": [{
                        "id": "<id>",
                        "kind": "SpreadScaler",
                        "name": "nowhere-math",
                        "status": failure,
                    }],
                    "version": "",
                    "components": [],
                },
            },
        ])
    );
    assert_eq!(
        cells(&stdout(&url, &["list"]).await),
        [
            ["NAME", "LATEST", "DEPLOYED", "STATUS", "DESCRIPTION"],
            [
                "c2c",
                "v0.1.0",
                "v0.1.0",
                "deployed",
                "Importer calling an exporter on another host through a link"
            ],
            [
                "nowhere",
                "v0.1.0",
                "v0.1.0",
                "failed",
                "Exporter spread over two zones by weight"
            ],
        ]
    );

    // Undeploy: the components go, the versions stay.
    assert_eq!(
        json(&url, &["undeploy", "c2c"]).await,
        json!({ "success": true, "name": "c2c", "message": "Successfully undeployed application c2c" })
    );
    runs(&zone_a, "c2c-front", false).await;
    runs(&zone_b, "c2c-math", false).await;
    let undeployed = status_until(&url, "c2c", "undeployed").await;
    assert_eq!(undeployed.get("scalers"), None, "{undeployed}");
    let models = json(&url, &["list"]).await;
    assert_eq!(models[0]["name"], "c2c");
    assert_eq!(models[0]["deployed_version"], Value::Null);
    assert_eq!(
        stdout(&url, &["undeploy", "nowhere"]).await,
        "undeployed nowhere\n"
    );

    // Delete: the stored versions go too; a second delete has nothing to do.
    assert_eq!(
        json(&url, &["delete", "c2c"]).await,
        json!({
            "success": true,
            "name": "c2c",
            "deleted": true,
            "undeployed": true,
            "message": "Successfully deleted application c2c",
        })
    );
    assert_eq!(
        stdout(&url, &["delete", "nowhere"]).await,
        "deleted nowhere\n"
    );
    assert_eq!(
        json(&url, &["delete", "c2c"]).await,
        json!({
            "success": true,
            "name": "c2c",
            "deleted": false,
            "undeployed": false,
            "message": "Application c2c doesn't exist or was already deleted",
        })
    );
    assert_eq!(json(&url, &["list"]).await, json!([]));
    let unknown = format!(
        "trellis app: no application named `c2c` on lattice `{LATTICE}` (`trellis app list` lists them)"
    );
    assert_eq!(error_line(&url, &["status", "c2c"]).await, unknown);
    assert_eq!(
        error_line(&url, &["undeploy", "c2c", "-o", "json"]).await,
        unknown
    );

    deployer.stop().await;
    zone_a.stop(None).await.unwrap();
    zone_b.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_deployer_or_nats_errors_are_one_line_with_a_hint() {
    // NATS, but no deployer on the lattice.
    let server = NatsServer::start();
    let url = server.url();
    let no_deployer = format!(
        "trellis app: no deployer is answering on lattice `{LATTICE}` (start one: `trellis up`, \
         `trellis deployer` or `trellis host --deployer`; --lattice or TRELLIS_LATTICE picks \
         another lattice)"
    );
    for args in [
        &["list"][..],
        &["list", "-o", "json"],
        &["status", "c2c"],
        &["deploy", "wadm-manifests/c2c.yaml", "-o", "json"],
        &["undeploy", "c2c"],
        &["delete", "c2c"],
    ] {
        assert_eq!(error_line(&url, args).await, no_deployer, "{args:?}");
    }

    // Nothing listens on the NATS URL.
    let closed = closed_url();
    for args in [
        &["list", "-o", "json"][..],
        &["deploy", "wadm-manifests/c2c.yaml"],
    ] {
        let line = error_line(&closed, args).await;
        assert!(
            line.starts_with(&format!(
                "trellis app: cannot connect to NATS at {closed}: "
            )) && line.ends_with(
                "; is nats-server running there? (`trellis up` starts one; --nats-url or \
                     TRELLIS_NATS_URL picks another)"
            ),
            "{args:?}: {line}"
        );
    }
}
