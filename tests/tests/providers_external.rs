//! External capability providers on a real `nats-server`: the greeter test provider (built with
//! the real wasmcloud-provider-sdk 0.17 under `tests/providers`, packed as a provider archive)
//! started through the control interface, called from a component through a link, calling a
//! component back, receiving link and config changes, restarted after `kill -9` (and after it
//! stops answering health checks) with its links re-delivered, and stopped without leaving a
//! process behind; its claims reported by `claims.get`, its HostData (log level, credentials)
//! as the SDK read it, and a provider joining a server that requires user JWTs with the host's
//! credentials (and reported healthy as soon as it answers, long before its first regular
//! health check).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use async_nats_039 as nats;
use trellis_host::{HostConfig, LatticeHost, NatsAuth, ProviderSettings};
use trellis_runtime::Val;
use trellis_tests::component_ref;
use trellis_tests::lattice::{EventLog, ctl_client, eventually, in_inventory};
use trellis_tests::nats::{JwtServer, NatsServer};
use wasmcloud_control_interface::{Client, ClientBuilder, Link};

const LATTICE: &str = "extproviders";
const FRONT: &str = "trellis:example/front@0.1.0";
const PROVIDER: &str = "greeter-provider";

fn greeter_archive() -> PathBuf {
    trellis_tests::provider_archive("greeter")
}

/// Quick health checks and restarts, so that supervision shows within a test's time.
fn provider_settings(cache: &Path) -> ProviderSettings {
    ProviderSettings {
        health_interval: Duration::from_millis(300),
        health_timeout: Duration::from_secs(1),
        restart_backoff: Duration::from_millis(200),
        restart_backoff_max: Duration::from_secs(2),
        shutdown_timeout: Duration::from_secs(3),
        cache_dir: cache.to_path_buf(),
        ..ProviderSettings::default()
    }
}

async fn start_host(server: &NatsServer, cache: &Path) -> LatticeHost {
    start_host_with(server, NatsAuth::default(), provider_settings(cache)).await
}

async fn start_host_with(
    server: &NatsServer,
    nats_auth: NatsAuth,
    providers: ProviderSettings,
) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        nats_auth,
        lattice: LATTICE.into(),
        heartbeat_interval: Duration::from_secs(5),
        rpc_timeout: Duration::from_secs(5),
        providers,
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

async fn scale(client: &Client, host: &LatticeHost, id: &str, guest: &str) {
    let ack = client
        .scale_component(
            host.host_id(),
            &component_ref(guest),
            id,
            1,
            None,
            vec![],
            false,
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    in_inventory(client, host.host_id(), id, 1).await;
}

fn link(source: &str, target: &str, interface: &str) -> Link {
    Link::builder()
        .source_id(source)
        .target(target)
        .name("default")
        .wit_namespace("trellis")
        .wit_package("example")
        .interfaces(vec![interface.into()])
        .build()
        .unwrap()
}

async fn greet(host: &LatticeHost, name: &str) -> Result<String, String> {
    let results = host
        .runtime()
        .invoke("front", FRONT, "greet", &[Val::String(name.into())], None)
        .await
        .map_err(|e| e.to_string())?;
    match results.as_slice() {
        [Val::String(s)] => Ok(s.clone()),
        other => Err(format!("unexpected results {other:?}")),
    }
}

/// Asks the provider (through the importer's link) until its answer to `probe` satisfies
/// `wanted`; returns that answer.
async fn until(host: &LatticeHost, probe: &str, wanted: impl Fn(&str) -> bool) -> String {
    eventually(&format!("provider answer to {probe}"), || async {
        greet(host, probe)
            .await
            .ok()
            .filter(|answer| wanted(answer))
    })
    .await
}

fn alive(pid: i32) -> bool {
    // A reaped process has no /proc entry; a zombie still would, so check its state too.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

const TO_PROVIDER: &str = "front->greeter-provider:default";
const FROM_PROVIDER: &str = "greeter-provider->adder-svc:default";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_provider_is_linked_supervised_restarted_and_stopped() {
    let archive = greeter_archive();
    let server = NatsServer::start();
    let cache = tempfile::tempdir().unwrap();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let events = EventLog::record(&nc, LATTICE).await;
    let host = start_host(&server, cache.path()).await;
    scale(&client, &host, "adder-svc", "exporter").await;
    scale(&client, &host, "front", "importer").await;

    // A link and config that exist before the start arrive in HostData.
    let ack = client
        .put_link(link("front", PROVIDER, "greeter"))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let config = std::collections::HashMap::from([("greeting".to_string(), "hi".to_string())]);
    assert!(
        client
            .put_config("greeter-config", config)
            .await
            .unwrap()
            .succeeded()
    );

    let reference = format!("file://{}", archive.display());
    let ack = client
        .start_provider(
            host.host_id(),
            &reference,
            PROVIDER,
            None,
            vec!["greeter-config".into()],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let started = events.wait("provider_started", 0).await;
    assert_eq!(started["provider_id"], PROVIDER);
    // As wasmCloud reports a provider's file reference: the path, no scheme (what wash waits for).
    let path = archive.display().to_string();
    assert_eq!(started["image_ref"], path.as_str());
    assert_eq!(started["claims"]["name"], "trellis-test-greeter");
    let passed = events.wait("health_check_passed", 0).await;
    assert_eq!(passed["provider_id"], PROVIDER);
    assert_eq!(passed["host_id"], host.host_id());
    events.wait("health_check_status", 0).await;
    let inventory = client.get_host_inventory(host.host_id()).await.unwrap();
    let inventory = inventory.data().expect("inventory");
    let listed = inventory
        .providers()
        .iter()
        .find(|p| p.id() == PROVIDER)
        .expect("listed");
    assert_eq!(listed.image_ref(), Some(path.as_str()));
    assert_eq!(listed.name(), Some("trellis-test-greeter"));

    // The archive's claims, lattice-wide through claims.get, in the reference's string maps.
    let claims = client.get_claims().await.unwrap();
    assert!(claims.succeeded(), "{}", claims.message());
    let claims = claims.data().expect("claims");
    let greeter = claims
        .iter()
        .find(|c| c.get("name").map(String::as_str) == Some("trellis-test-greeter"))
        .unwrap_or_else(|| panic!("no greeter claims in {claims:?}"));
    let mut keys: Vec<&str> = greeter.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "config_schema",
            "iss",
            "issuer",
            "name",
            "rev",
            "revision",
            "sub",
            "subject",
            "version"
        ]
    );
    assert!(greeter["sub"].starts_with('V') && greeter["sub"] == greeter["subject"]);
    assert!(greeter["iss"].starts_with('A') && greeter["iss"] == greeter["issuer"]);
    assert_eq!(
        (greeter["rev"].as_str(), greeter["version"].as_str()),
        ("1", "0.1.0")
    );

    // What the SDK read from HostData: the host's level for provider output, an empty secrets
    // map, no credentials (an anonymous server); and one config update once it answered.
    assert_eq!(
        greet(&host, "host-data?").await.unwrap(),
        "log_level=debug structured_logging=false secrets=0 user_jwt=empty user_seed=empty"
    );
    until(&host, "config-updates?", |a| a == "1").await;

    // Component → provider through the link; HostData carried the link and the config.
    assert_eq!(greet(&host, "x").await.unwrap(), "provider says hello, x");
    let links = greet(&host, "links?").await.unwrap();
    assert!(
        links.contains(&format!("target=[{TO_PROVIDER}]")),
        "{links}"
    );
    assert_eq!(greet(&host, "config?").await.unwrap(), "greeting=hi");

    // A link put while it runs reaches it (xkey subject); provider → component over wRPC.
    let ack = client
        .put_link(link(PROVIDER, "adder-svc", "adder"))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    until(&host, "links?", |a| {
        a.contains(&format!("source=[{FROM_PROVIDER}]"))
    })
    .await;
    assert_eq!(
        greet(&host, "add:2,3").await.unwrap(),
        "adder-svc says 2+3=5"
    );

    // A link delete reaches it too, and so does a config change.
    let ack = client
        .delete_link(PROVIDER, "default", "trellis", "example")
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    until(&host, "links?", |a| a.contains("source=[]")).await;
    let config = std::collections::HashMap::from([("greeting".to_string(), "hey".to_string())]);
    assert!(
        client
            .put_config("greeter-config", config)
            .await
            .unwrap()
            .succeeded()
    );
    until(&host, "config?", |a| a == "greeting=hey").await;
    let ack = client
        .put_link(link(PROVIDER, "adder-svc", "adder"))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    until(&host, "links?", |a| {
        a.contains(&format!("source=[{FROM_PROVIDER}]"))
    })
    .await;

    // kill -9: restarted with an event, healthy again, links re-delivered through HostData.
    let pid: i32 = greet(&host, "pid?").await.unwrap().parse().unwrap();
    let passed_before = events.count("health_check_passed");
    assert!(alive(pid));
    signal(pid, "-9");
    let restarted = events.wait("provider_restarted", 0).await;
    assert_eq!(restarted["provider_id"], PROVIDER);
    assert_eq!(restarted["restarts"], 1);
    assert!(
        restarted["reason"].as_str().unwrap().contains("exited"),
        "{restarted}"
    );
    events.wait("health_check_passed", passed_before).await;
    let new_pid: i32 = until(&host, "pid?", |a| a.parse::<i32>().is_ok_and(|p| p != pid))
        .await
        .parse()
        .unwrap();
    let links = greet(&host, "links?").await.unwrap();
    assert_eq!(
        links,
        format!("links: source=[{FROM_PROVIDER}] target=[{TO_PROVIDER}]")
    );
    assert_eq!(greet(&host, "config?").await.unwrap(), "greeting=hey");
    until(&host, "config-updates?", |a| a == "1").await;
    assert!(!alive(pid));

    // Stop: shutdown request, provider_stopped, no process left, gone from the inventory.
    let ack = client
        .stop_provider(host.host_id(), PROVIDER)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let stopped = events.wait("provider_stopped", 0).await;
    assert_eq!(stopped["provider_id"], PROVIDER);
    assert_eq!(stopped["reason"], "stop");
    assert!(
        !alive(new_pid),
        "provider process {new_pid} survived its stop"
    );
    let inventory = client.get_host_inventory(host.host_id()).await.unwrap();
    assert!(
        inventory
            .data()
            .unwrap()
            .providers()
            .iter()
            .all(|p| p.id() != PROVIDER)
    );
    assert_eq!(events.count("provider_restarted"), 1);
    host.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_fail_and_host_stop_takes_providers_down() {
    let archive = greeter_archive();
    let server = NatsServer::start();
    let cache = tempfile::tempdir().unwrap();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let events = EventLog::record(&nc, LATTICE).await;
    let host = start_host(&server, cache.path()).await;
    scale(&client, &host, "front", "importer").await;

    // A missing file and a non-provider file: acknowledged, then provider_start_failed.
    let missing = "file:///nonexistent/provider.par.gz";
    let ack = client
        .start_provider(host.host_id(), missing, "missing", None, vec![])
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let failed = events.wait("provider_start_failed", 0).await;
    assert_eq!(failed["provider_id"], "missing");
    assert_eq!(failed["provider_ref"], missing);
    assert!(
        failed["error"].as_str().unwrap().contains("nonexistent"),
        "{failed}"
    );
    let text = cache.path().join("not-a-provider.txt");
    std::fs::write(&text, "hello").unwrap();
    let reference = format!("file://{}", text.display());
    let ack = client
        .start_provider(host.host_id(), &reference, "text", None, vec![])
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let failed = events.wait("provider_start_failed", 1).await;
    assert!(
        failed["error"].as_str().unwrap().contains("neither"),
        "{failed}"
    );
    let inventory = client.get_host_inventory(host.host_id()).await.unwrap();
    assert!(inventory.data().unwrap().providers().is_empty());

    // A running provider is stopped with the host.
    let ack = client
        .put_link(link("front", PROVIDER, "greeter"))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let reference = format!("file://{}", archive.display());
    let ack = client
        .start_provider(host.host_id(), &reference, PROVIDER, None, vec![])
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let ack = client
        .start_provider(host.host_id(), &reference, PROVIDER, None, vec![])
        .await
        .unwrap();
    assert!(
        !ack.succeeded(),
        "a second start of a running ID is refused"
    );
    events.wait("health_check_passed", 0).await;
    let frozen: i32 = until(&host, "pid?", |a| a.parse::<i32>().is_ok())
        .await
        .parse()
        .unwrap();

    // A provider that stops answering health checks (SIGSTOP) is killed and restarted.
    signal(frozen, "-STOP");
    let restarted = events.wait("provider_restarted", 0).await;
    let reason = restarted["reason"].as_str().unwrap();
    assert!(reason.contains("stopped answering"), "{reason}");
    let pid: i32 = until(&host, "pid?", |a| {
        a.parse::<i32>().is_ok_and(|p| p != frozen)
    })
    .await
    .parse()
    .unwrap();
    assert!(
        !alive(frozen),
        "the unresponsive process {frozen} was not killed"
    );
    host.stop(None).await.unwrap();
    let stopped = events.wait("provider_stopped", 0).await;
    assert_eq!(stopped["provider_id"], PROVIDER);
    assert!(!alive(pid), "provider process {pid} survived the host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_joins_a_server_that_requires_user_jwts_with_the_host_credentials() {
    let archive = greeter_archive();
    let jwt = JwtServer::start();
    let cache = tempfile::tempdir().unwrap();
    let anonymous = nats::connect(jwt.server.url()).await;
    assert!(anonymous.is_err(), "the server lets anonymous clients in");
    let nc = nats::ConnectOptions::with_credentials(&jwt.creds)
        .unwrap()
        .connect(jwt.server.url())
        .await
        .expect("the user's credentials are accepted");
    let client = ClientBuilder::new(nc.clone())
        .lattice(LATTICE)
        .timeout(Duration::from_secs(5))
        .build();
    let events = EventLog::record(&nc, LATTICE).await;
    let auth = NatsAuth {
        creds_file: Some(jwt.creds_file.clone()),
        ..NatsAuth::default()
    };
    // Health checks a minute apart: a new process is still reported healthy as soon as it
    // answers, because it is probed often until its first answer.
    let providers = ProviderSettings {
        health_interval: Duration::from_secs(60),
        ..provider_settings(cache.path())
    };
    let host = start_host_with(&jwt.server, auth, providers).await;
    scale(&client, &host, "front", "importer").await;
    let ack = client
        .put_link(link("front", PROVIDER, "greeter"))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());

    let reference = format!("file://{}", archive.display());
    let ack = client
        .start_provider(host.host_id(), &reference, PROVIDER, None, vec![])
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let started = std::time::Instant::now();
    let passed = events.wait("health_check_passed", 0).await;
    assert_eq!(passed["provider_id"], PROVIDER);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "first healthy report {:?} after the start, with checks 60 s apart",
        started.elapsed()
    );
    assert_eq!(greet(&host, "x").await.unwrap(), "provider says hello, x");
    let host_data = greet(&host, "host-data?").await.unwrap();
    assert!(
        host_data.ends_with("user_jwt=set user_seed=set"),
        "{host_data}"
    );

    let ack = client
        .stop_provider(host.host_id(), PROVIDER)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    events.wait("provider_stopped", 0).await;
    host.stop(None).await.unwrap();
}

/// `kill {signal} {pid}`.
fn signal(pid: i32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
    assert!(status.is_ok_and(|s| s.success()), "kill {signal} {pid}");
}

/// The value the `echo-caller` sends: every WIT type family, with multi-byte characters, a
/// full byte range, extreme integers and every variant case.
fn everything() -> Val {
    let string = |s: &str| Val::String(s.into());
    let point = |x: i32, y: i32, label: &str| {
        Val::Record(vec![
            ("x".into(), Val::S32(x)),
            ("y".into(), Val::S32(y)),
            ("label".into(), string(label)),
        ])
    };
    Val::Record(vec![
        ("flag".into(), Val::Bool(true)),
        ("letter".into(), Val::Char('😀')),
        ("tiny".into(), Val::S8(-7)),
        ("small".into(), Val::U16(65_000)),
        ("signed".into(), Val::S32(-2_000_000_000)),
        ("big".into(), Val::U64(u64::MAX - 1)),
        ("negative".into(), Val::S64(i64::MIN + 1)),
        ("ratio".into(), Val::Float32(1.5)),
        ("precise".into(), Val::Float64(-0.1)),
        ("text".into(), string("héllo, 中文")),
        (
            "bytes".into(),
            Val::List((0..=255u8).map(Val::U8).collect()),
        ),
        ("names".into(), Val::List(vec![string(""), string("ß")])),
        ("at".into(), point(-1, 2, "p")),
        (
            "shapes".into(),
            Val::List(vec![
                Val::Variant("circle".into(), Some(Box::new(Val::Float64(2.5)))),
                Val::Variant("rect".into(), Some(Box::new(point(3, 4, "r")))),
                Val::Variant("empty".into(), None),
            ]),
        ),
        (
            "perms".into(),
            Val::Flags(vec!["read".into(), "exec".into()]),
        ),
        ("color".into(), Val::Enum("blue".into())),
        ("maybe".into(), Val::Option(Some(Box::new(Val::U32(42))))),
        (
            "outcome".into(),
            Val::Result(Err(Some(Box::new(Val::U8(9))))),
        ),
        (
            "pair".into(),
            Val::Tuple(vec![Val::S16(-300), Val::U8(200)]),
        ),
    ])
}

/// wRPC between Trellis and a provider built with wasmCloud's SDK 0.17 (wit-bindgen-wrpc 0.10
/// codecs) for every WIT type family, both ways: a component's call to the provider, and the
/// provider's call to a component, each with the same value back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_family_crosses_to_and_from_an_sdk_provider() {
    let archive = greeter_archive();
    let server = NatsServer::start();
    let cache = tempfile::tempdir().unwrap();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, cache.path()).await;
    scale(&client, &host, "echoer", "echo_caller").await;
    scale(&client, &host, "front", "importer").await;
    scale(&client, &host, "adder-svc", "exporter").await;
    for link in [
        link("echoer", PROVIDER, "echo"),
        link("front", PROVIDER, "greeter"),
        link(PROVIDER, "adder-svc", "echo"),
    ] {
        assert!(client.put_link(link).await.unwrap().succeeded());
    }
    let reference = format!("file://{}", archive.display());
    let ack = client
        .start_provider(host.host_id(), &reference, PROVIDER, None, vec![])
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());

    // Component → provider: our encoder for the parameters, our decoder for the results.
    let sent = everything();
    let back = eventually("the provider echoes", || async {
        host.runtime()
            .invoke(
                "echoer",
                "trellis:example/echo-front@0.1.0",
                "echo-everything",
                std::slice::from_ref(&sent),
                None,
            )
            .await
            .ok()
    })
    .await;
    assert_eq!(back, vec![sent]);

    // Provider → component: our decoder for the parameters, our encoder for the results.
    assert_eq!(
        until(&host, "echo?", |a| !a.contains("no trellis")).await,
        "echo ok"
    );
    host.stop(None).await.unwrap();
}
