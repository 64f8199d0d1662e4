//! Faults on a real lattice, bounded and on loopback: the NATS server SIGKILLed under HTTP load
//! and restarted on its port and store (no HTTP request fails, the host is back within 2 s with
//! its inventory, links and config, and a new scale works); a runaway component beside others
//! under load; two lattices on one server that see nothing of each other; a TLS-only server
//! with a CA made here.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use trellis_host::{HostConfig, LatticeHost, NatsAuth};
use trellis_tests::http::{free_port, get};
use trellis_tests::lattice::{
    ctl_client, eventually, in_inventory, put_config, put_http_server_link, run_component,
    start_http_server,
};
use trellis_tests::nats::NatsServer;
use wasmcloud_control_interface::{Client, Link};

/// Taken by the tests that measure throughput, so that they do not load the machine at once.
static LOAD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn host(url: String, lattice: &str, auth: NatsAuth) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: url,
        nats_auth: auth,
        lattice: lattice.into(),
        heartbeat_interval: Duration::from_secs(5),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

/// Starts the built-in HTTP server on `host` and serves component `id` (the `http_server`
/// guest, 8 instances, with `config`) on a fresh loopback port, which is returned.
async fn serve(client: &Client, host: &LatticeHost, id: &str, config: &[&str]) -> u16 {
    let port = free_port();
    let listen = format!("{id}-listen");
    put_config(
        client,
        &listen,
        &[("address", &format!("127.0.0.1:{port}"))],
    )
    .await;
    run_component(client, host.host_id(), id, "http_server", 8, config).await;
    start_http_server(client, host.host_id()).await;
    // Named after the component: one server, one link each, as wasmCloud manifests do it.
    put_http_server_link(client, id, id, &listen).await;
    eventually(&format!("{id} answering"), || async {
        let (status, _) = get(port, "/hello").await.ok()?;
        status.contains("200").then_some(())
    })
    .await;
    port
}

/// Requests and failures (I/O errors or a status other than 200) of a GET load.
#[derive(Default)]
struct Load {
    requests: AtomicU64,
    failures: AtomicU64,
    stop: AtomicBool,
}

impl Load {
    /// `clients` loops of GET `/hello` on `port` until stopped (at most 60 s, 1M requests).
    fn start(port: u16, clients: usize) -> Arc<Load> {
        let load = Arc::new(Load::default());
        for _ in 0..clients {
            let load = load.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                while !load.stop.load(Ordering::Relaxed)
                    && started.elapsed() < Duration::from_secs(60)
                    && load.requests.load(Ordering::Relaxed) < 1_000_000
                {
                    let ok = matches!(get(port, "/hello").await, Ok((s, _)) if s.contains("200"));
                    load.requests.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        load.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        load
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests per second over the next `window`.
    async fn rate(&self, window: Duration) -> f64 {
        let (before, started) = (self.requests(), Instant::now());
        tokio::time::sleep(window).await;
        (self.requests() - before) as f64 / started.elapsed().as_secs_f64()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_crash_under_http_load_loses_nothing() {
    let _alone = LOAD.lock().await;
    const LATTICE: &str = "crash";
    let mut server = NatsServer::start();
    let (client, _) = ctl_client(&server, LATTICE).await;
    let host = host(server.url(), LATTICE, NatsAuth::default()).await;
    put_config(&client, "kept", &[("greeting", "kept")]).await;
    let port = serve(&client, &host, "web", &["kept"]).await;

    let load = Load::start(port, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    let down = load.requests();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let served_while_down = load.requests() - down;
    server.restart();
    let restarted = Instant::now();

    // A fresh client: the host must answer on the restarted server.
    let (client, _) = ctl_client(&server, LATTICE).await;
    eventually("the host answering after the restart", || async {
        let inventory = client.get_host_inventory(host.host_id()).await.ok()?;
        inventory.data().map(drop)
    })
    .await;
    let back = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.stop.store(true, Ordering::Relaxed);
    let (requests, failures) = (load.requests(), load.failures.load(Ordering::Relaxed));
    eprintln!(
        "{requests} requests, {served_while_down} while NATS was down, {failures} failed; \
         host answering {back:?} after the restart"
    );
    assert_eq!(failures, 0, "HTTP requests failed across the NATS crash");
    assert!(
        served_while_down > 0,
        "nothing was served while NATS was down"
    );
    assert!(
        back <= Duration::from_secs(2),
        "host answered {back:?} after the restart"
    );

    // What the lattice knew survived: inventory, links, config; and the host takes new work.
    in_inventory(&client, host.host_id(), "web", 8).await;
    let links = client.get_links().await.unwrap();
    assert!(
        links.data().unwrap().iter().any(|l| l.target() == "web"),
        "the link was lost"
    );
    let config = client.get_config("kept").await.unwrap();
    assert_eq!(config.data().unwrap()["greeting"], "kept");
    run_component(&client, host.host_id(), "after", "http_server", 1, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_ends_at_its_limit_while_its_neighbour_keeps_serving() {
    let _alone = LOAD.lock().await;
    const LATTICE: &str = "runaway";
    let server = NatsServer::start();
    let (client, _) = ctl_client(&server, LATTICE).await;
    let host = host(server.url(), LATTICE, NatsAuth::default()).await;
    let limit = [("trellis.limits.max_execution_time_ms", "2000")];
    put_config(&client, "short", &limit).await;
    let busy = serve(&client, &host, "busy", &[]).await;
    let runaway = serve(&client, &host, "runaway", &["short"]).await;

    // Throughput windows alone and beside a fresh runaway, up to three pairs: the machine is
    // shared, so one pair can be unlucky; without pacing every pair shows about half.
    let window = Duration::from_secs(1);
    let load = Load::start(busy, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ratios = Vec::new();
    for _ in 0..3 {
        let alone = load.rate(window).await;
        let spin = tokio::spawn(async move {
            let started = Instant::now();
            let answer = get(runaway, "/spin").await;
            (started.elapsed(), answer)
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let beside = load.rate(window).await;
        let (took, answer) = spin.await.unwrap();
        let (status, _) = answer.expect("an answer to the runaway call");
        assert!(status.contains("504"), "{status}");
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(5),
            "{took:?}"
        );
        ratios.push(beside / alone);
        eprintln!("{alone:.0} req/s alone, {beside:.0} req/s beside the runaway");
        if beside >= 0.8 * alone {
            break;
        }
    }
    load.stop.store(true, Ordering::Relaxed);
    assert_eq!(load.failures.load(Ordering::Relaxed), 0);
    assert!(
        ratios.iter().any(|r| *r >= 0.8),
        "throughput beside the runaway / alone: {ratios:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lattices_on_one_server_see_nothing_of_each_other() {
    let server = NatsServer::start();
    let (one, nc) = ctl_client(&server, "one").await;
    let (two, _) = ctl_client(&server, "two").await;
    let host_one = host(server.url(), "one", NatsAuth::default()).await;
    let host_two = host(server.url(), "two", NatsAuth::default()).await;
    let mut events_one = nc.subscribe("wasmbus.evt.one.>").await.unwrap();
    trellis_tests::lattice::registered(&nc).await;

    put_config(&two, "only-two", &[("k", "v")]).await;
    run_component(&two, host_two.host_id(), "web", "http_server", 1, &[]).await;
    let link = Link::builder()
        .source_id("web")
        .target("other")
        .name("default")
        .wit_namespace("wasi")
        .wit_package("keyvalue")
        .interfaces(vec!["store".into()])
        .build()
        .unwrap();
    assert!(two.put_link(link).await.unwrap().succeeded());

    let hosts: Vec<String> = one
        .get_hosts()
        .await
        .unwrap()
        .iter()
        .filter_map(|h| h.data().map(|h| h.id().to_string()))
        .collect();
    assert_eq!(hosts, vec![host_one.host_id().to_string()]);
    let inventory = one.get_host_inventory(host_one.host_id()).await.unwrap();
    assert!(inventory.data().unwrap().components().is_empty());
    // Lattice one's client cannot reach lattice two's host at all.
    assert!(
        one.get_host_inventory(host_two.host_id())
            .await
            .map_or(true, |r| r.data().is_none()),
        "lattice one reached lattice two's host"
    );
    assert!(one.get_links().await.unwrap().data().unwrap().is_empty());
    let config = one.get_config("only-two").await.unwrap();
    assert!(config.data().is_none_or(|c| c.is_empty()), "{config:?}");
    // Lattice one's events (its own host's heartbeats) say nothing of lattice two.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some(event)) =
        tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut events_one)).await
    {
        let text = String::from_utf8_lossy(&event.payload);
        assert!(
            !text.contains(host_two.host_id()) && !text.contains("only-two"),
            "lattice two's news reached lattice one on {}: {text}",
            event.subject
        );
    }
}

/// A CA, and a server certificate for 127.0.0.1 signed by it, made with `openssl`.
fn test_ca(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=trellis test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_joins_a_tls_only_server_with_the_operators_ca() {
    let dir = tempfile::tempdir().unwrap();
    test_ca(dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    let server = NatsServer::start_with_config(&format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
        path("server.pem"),
        path("server.key")
    ));
    let ca = dir.path().join("ca.pem");

    // Without the CA the host cannot join; with it, it does and answers the lattice.
    let untrusted = LatticeHost::start(HostConfig {
        nats_url: server.url(),
        lattice: "tls".into(),
        nats_auth: NatsAuth {
            tls_ca: None,
            ..NatsAuth::default()
        },
        ..HostConfig::default()
    })
    .await;
    assert!(
        untrusted.is_err(),
        "a host joined a TLS-only server without trusting its CA"
    );
    let auth = NatsAuth {
        tls_ca: Some(ca.clone()),
        ..NatsAuth::default()
    };
    let host = host(server.url(), "tls", auth).await;
    let nc = async_nats_039::ConnectOptions::new()
        .add_root_certificates(ca)
        .require_tls(true)
        .connect(server.url())
        .await
        .unwrap();
    let client = wasmcloud_control_interface::ClientBuilder::new(nc)
        .lattice("tls")
        .build();
    let inventory = client.get_host_inventory(host.host_id()).await.unwrap();
    assert_eq!(inventory.data().unwrap().host_id(), host.host_id());
}
