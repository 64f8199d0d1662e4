//! Limits on a real lattice: a component's own limits from `component_limits` in
//! `component.scale` (sent as the real control-interface 3.0.1 type serializes it) and from
//! `trellis.limits.*` keys in its named config stop a runaway HTTP call at the limit with a 504,
//! are reported in the inventory, change without a restart, and leave the component serving.
//! A request whose client hung up stops burning CPU. Bad limits are refused naming the key.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use trellis_host::{HostConfig, HostLimits, LatticeHost};
use trellis_tests::component_ref;
use trellis_tests::http::{free_port, get};
use trellis_tests::lattice::{
    ctl_client, eventually, put_config, put_http_server_link, start_http_server,
};
use trellis_tests::nats::NatsServer;
use wasmcloud_control_interface::{Client, ScaleComponentCommand};

const LATTICE: &str = "limits";

struct Web {
    client: Client,
    nc: async_nats_039::Client,
    host: LatticeHost,
    port: u16,
    _server: NatsServer,
}

/// A host whose calls may run 600 s (wasmCloud's default) at full speed: busy calls are not
/// slowed, so a call left running shows as a busy core.
async fn unpaced_host(server: &NatsServer) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        heartbeat_interval: Duration::from_secs(5),
        limits: HostLimits {
            busy_call_cpu_percent: 100,
            ..HostLimits::default()
        },
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

/// An [`unpaced_host`] and the built-in HTTP server, with a route to component `web` (not yet
/// running).
async fn web() -> Web {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = unpaced_host(&server).await;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    put_config(&client, "web-http", &[("address", &address)]).await;
    start_http_server(&client, host.host_id()).await;
    put_http_server_link(&client, "web", "default", "web-http").await;
    Web {
        client,
        nc,
        host,
        port,
        _server: server,
    }
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Web {
    /// Sends `component.scale` for `web` as the 3.0.1 type serializes it; returns the ack.
    async fn scale(&self, limits: Option<HashMap<String, String>>, config: &[&str]) -> Value {
        let command = ScaleComponentCommand::builder()
            .host_id(self.host.host_id())
            .component_id("web")
            .component_ref(&component_ref("http_server"))
            .max_instances(4)
            .config(config.iter().map(|c| c.to_string()).collect())
            .component_limits(limits)
            .build()
            .unwrap();
        let subject = format!(
            "wasmbus.ctl.v1.{LATTICE}.component.scale.{}",
            self.host.host_id()
        );
        let reply = self
            .nc
            .request(subject, serde_json::to_vec(&command).unwrap().into())
            .await
            .unwrap();
        serde_json::from_slice(&reply.payload).unwrap()
    }

    /// `web`'s limits as the inventory reports them, once it runs.
    async fn limits(&self) -> Option<HashMap<String, String>> {
        eventually("web in the inventory", || async {
            let inventory = self
                .client
                .get_host_inventory(self.host.host_id())
                .await
                .ok()?;
            let component = inventory
                .data()?
                .components()
                .iter()
                .find(|c| c.id() == "web")?
                .clone();
            Some(component.limits())
        })
        .await
    }

    /// Waits until the inventory reports `web`'s `max_execution_time_ms` as `millis`.
    async fn wait_for_execution_time_ms(&self, millis: &str) {
        eventually(
            &format!("max_execution_time_ms {millis} reported"),
            || async {
                let limits = self.limits().await?;
                (limits.get("max_execution_time_ms").map(String::as_str) == Some(millis))
                    .then_some(())
            },
        )
        .await;
    }

    /// How long `/spin` takes to be answered, and with what status.
    async fn spin(&self) -> (Duration, String) {
        let started = Instant::now();
        let (status, _) = get(self.port, "/spin").await.expect("an answer to /spin");
        (started.elapsed(), status)
    }

    async fn hello(&self) {
        let (status, body) = eventually("web answering", || async {
            get(self.port, "/hello").await.ok()
        })
        .await;
        assert!(status.contains("200"), "{status}: {body}");
    }
}

/// Held by each test that runs endless loops: one measures this process's CPU time, which the
/// others' loops would add to.
static CPU: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// CPU time this process has used (user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Linux reports in USER_HZ, 100 on every architecture Rust targets here.
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_limits_stop_a_runaway_call_and_show_in_the_inventory() {
    let _alone = CPU.lock().await;
    let web = web().await;
    let refused = web.scale(Some(map(&[("max_memory", "1")])), &[]).await;
    assert_eq!(refused["success"], false, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("component_limits") && message.contains("`max_memory`"),
        "{message}"
    );
    let refused = web
        .scale(Some(map(&[("max_memory_limit", "1099511627776")])), &[])
        .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("--max-linear-memory-bytes"),
        "{refused}"
    );

    let limits = map(&[
        ("max_execution_time", "1"),
        ("max_memory_limit", "67108864"),
    ]);
    let ack = web.scale(Some(limits), &[]).await;
    assert_eq!(ack["success"], true, "{ack}");
    let reported = web.limits().await.expect("limits in the inventory");
    assert_eq!(reported["max_execution_time"], "1");
    assert_eq!(reported["max_execution_time_ms"], "1000");
    assert_eq!(reported["max_memory_limit"], "67108864");
    web.hello().await;

    let (took, status) = web.spin().await;
    assert!(status.contains("504"), "{status}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    web.hello().await;

    // New limits alone: applied to the next calls, the component keeps running.
    let ack = web
        .scale(Some(map(&[("max_execution_time", "2")])), &[])
        .await;
    assert_eq!(ack["success"], true, "{ack}");
    web.wait_for_execution_time_ms("2000").await;
    let (took, status) = web.spin().await;
    assert!(status.contains("504"), "{status}");
    assert!(took >= Duration::from_secs(2), "{took:?}");

    // A client that hangs up: its call stops at the next epoch, not at the limit.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", web.port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /spin HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = cpu_time();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let used = cpu_time() - before;
    // A call still spinning would use a whole core for the 1.5 s.
    assert!(
        used < Duration::from_millis(1000),
        "{used:?} of CPU after the client left"
    );
    web.hello().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_in_named_config_apply_and_follow_the_config() {
    let _alone = CPU.lock().await;
    let web = web().await;
    put_config(
        &web.client,
        "web-limits",
        &[("trellis.limits.max_execution_time_ms", "500")],
    )
    .await;
    let ack = web.scale(None, &["web-limits"]).await;
    assert_eq!(ack["success"], true, "{ack}");
    let reported = web.limits().await.expect("limits in the inventory");
    assert_eq!(reported["max_execution_time_ms"], "500");
    web.hello().await;
    let (took, status) = web.spin().await;
    assert!(status.contains("504"), "{status}");
    assert!(took < Duration::from_millis(2500), "{took:?}");

    put_config(
        &web.client,
        "web-limits",
        &[("trellis.limits.max_execution_time_ms", "1500")],
    )
    .await;
    web.wait_for_execution_time_ms("1500").await;
    let (took, status) = web.spin().await;
    assert!(status.contains("504"), "{status}");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    web.hello().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrpc_call_stops_when_its_caller_stops_waiting() {
    let _alone = CPU.lock().await;
    use wrpc_transport::InvokeExt as _;
    let server = NatsServer::start();
    let (client, _) = ctl_client(&server, LATTICE).await;
    let host = unpaced_host(&server).await;
    trellis_tests::lattice::run_component(&client, host.host_id(), "probe", "prober", 1, &[]).await;
    let nats = async_nats::connect(server.url()).await.unwrap();
    let wrpc = wrpc_transport_nats::Client::new(nats, format!("{LATTICE}.probe"), None)
        .await
        .unwrap();

    // The caller says it waits 500 ms (as a Trellis host's lattice calls do) and gives up at
    // 1 s; the component's own limit is 600 s.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("trellis-timeout-ms", "500");
    let call = wrpc.invoke_values_blocking::<_, (), ()>(
        Some(headers),
        "trellis:example/probe@0.1.0",
        "spin",
        (),
        &[] as &[&[Option<usize>]],
    );
    let started = Instant::now();
    // The stopped call's results stream closes (for `spin`'s empty results that decodes as
    // a return): either way it ends at the caller's deadline, not at the component's limit.
    let ended = tokio::time::timeout(Duration::from_secs(1), call).await;
    let took = started.elapsed();
    assert!(
        ended.is_ok(),
        "the call still ran after the caller's deadline"
    );
    assert!(took >= Duration::from_millis(450), "{took:?}");
    let before = cpu_time();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let used = cpu_time() - before;
    assert!(
        used < Duration::from_millis(1000),
        "{used:?} of CPU after the caller's deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_above_the_size_limit_is_refused() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        limits: HostLimits {
            max_component_size_bytes: 1024,
            ..HostLimits::default()
        },
        ..HostConfig::default()
    })
    .await
    .expect("starting the host");
    let mut events = nc
        .subscribe(format!("wasmbus.evt.{LATTICE}.component_scale_failed"))
        .await
        .unwrap();
    trellis_tests::lattice::registered(&nc).await;
    let ack = client
        .scale_component(
            host.host_id(),
            &component_ref("http_server"),
            "big",
            1,
            None,
            vec![],
            false,
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let event = tokio::time::timeout(
        Duration::from_secs(15),
        futures::StreamExt::next(&mut events),
    )
    .await
    .expect("a component_scale_failed event")
    .unwrap();
    let event: Value = serde_json::from_slice(&event.payload).unwrap();
    let error = event["data"]["error"].as_str().unwrap();
    assert!(error.contains("--max-component-size-bytes"), "{error}");
}
