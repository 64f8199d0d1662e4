//! HTTP through the `wasi:http` ⇄ `wrpc:http` bridge, side by side with the same requests served
//! in-process, in one run. Two hosts on a loopback nats-server; the built-in HTTP server runs on
//! the first, the `http-server` guest first only on the second (requests cross the lattice as
//! `wrpc:http/incoming-handler.handle`), then on the first too (in-process). Also a wRPC client
//! calling the component directly, without an HTTP socket.
//!
//! `cargo bench -p trellis-host --bench http_bridge` (needs `nats-server` on PATH); see
//! BENCHMARKS.md.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_json::json;
use trellis_host::wrpc_http::wrpc::http::incoming_handler;
use trellis_host::wrpc_http::wrpc::http::types::{Method, Request, Scheme};
use trellis_host::{HostConfig, LatticeHost};
use trellis_tests::nats::NatsServer;

const LATTICE: &str = "bench-http";
/// Requests per latency sample set, and the cap on any one measurement.
const REQUESTS: usize = 1000;
const TIME_CAP: Duration = Duration::from_secs(20);

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn host(server: &NatsServer) -> LatticeHost {
    let config = HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        ..HostConfig::default()
    };
    LatticeHost::start(config).await.expect("starting a host")
}

async fn ctl(nats: &async_nats::Client, operation: String, body: serde_json::Value) {
    let subject = format!("wasmbus.ctl.v1.{LATTICE}.{operation}");
    let reply = nats
        .request(subject, serde_json::to_vec(&body).unwrap().into())
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["success"], true, "{reply}");
}

async fn scale(nats: &async_nats::Client, host: &LatticeHost, count: u32) {
    let body = json!({"component_ref": trellis_tests::component_ref("http_server"),
        "component_id": "web", "count": count});
    ctl(nats, format!("component.scale.{}", host.host_id()), body).await;
    wait(|| async { host.runtime().component("web").is_some() == (count > 0) }).await;
}

async fn wait<F: Future<Output = bool>>(mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A keep-alive HTTP/1.1 connection to `port`.
async fn connect(port: u16) -> Sender {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

async fn http(sender: &mut Sender, method: &str, path: &str, body: &Bytes) -> Bytes {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "web.bench")
        .body(Full::new(body.clone()))
        .unwrap();
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap().to_bytes()
}

async fn wrpc(client: &wrpc_transport_nats::Client, path: &str) -> Bytes {
    use futures::StreamExt as _;
    let request = Request {
        body: Box::pin(futures::stream::empty()),
        trailers: Box::pin(std::future::ready(None)),
        method: Method::Get,
        path_with_query: Some(path.into()),
        scheme: Some(Scheme::Http),
        authority: Some("web.bench".into()),
        headers: vec![],
    };
    let (result, io) = incoming_handler::handle(client, None, request)
        .await
        .unwrap();
    let io = io.map(tokio::spawn);
    let response = result.expect("a response");
    let body: Vec<Bytes> = response.body.collect().await;
    if let Some(io) = io {
        io.await.unwrap().unwrap();
    }
    body.concat().into()
}

/// p50, p99 and mean of `run` over at most `count` sequential runs.
async fn latency(
    count: usize,
    mut run: impl AsyncFnMut() -> Bytes,
) -> (Duration, Duration, Duration) {
    let started = Instant::now();
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let one = Instant::now();
        std::hint::black_box(run().await);
        samples.push(one.elapsed());
        if started.elapsed() > TIME_CAP {
            break;
        }
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
        mean,
    )
}

fn row(label: &str, (p50, p99, mean): (Duration, Duration, Duration)) {
    println!("| {label} | {p50:.1?} | {p99:.1?} | {mean:.1?} |");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // A global subscriber, as the `trellis` binary installs (only warnings here unless RUST_LOG
    // says otherwise). Without one, tracing's `log` feature (which oci-client turns on) evaluates
    // the fields of every disabled span for the `log` fallback, and wrpc-transport-nats's writers
    // record `format!("{buf:02x?}")` of each buffer they publish: the bridge then spends its time
    // hex-formatting bodies (79 ms instead of 4.9 ms for the 1 MiB echo; see BENCHMARKS.md).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let server = NatsServer::start();
    let nats = async_nats::connect(server.url()).await.unwrap();
    let (front, back) = (host(&server).await, host(&server).await);
    scale(&nats, &back, 32).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    ctl(
        &nats,
        "config.put.web-http".into(),
        json!({ "address": address }),
    )
    .await;
    let provider = json!({"provider_id": "httpserver",
        "provider_ref": "wasmcloud+builtin://http-server", "config": []});
    ctl(
        &nats,
        format!("provider.start.{}", front.host_id()),
        provider,
    )
    .await;
    let link = json!({"source_id": "httpserver", "target": "web", "name": "default", "wit_namespace": "wasi",
        "wit_package": "http", "interfaces": ["incoming-handler"], "source_config": ["web-http"],
        "target_config": []});
    ctl(&nats, "link.put".into(), link).await;
    wait(|| async { tokio::net::TcpStream::connect(&address).await.is_ok() }).await;

    let empty = Bytes::new();
    let mib: Bytes = (0..1 << 20)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let mut sender = connect(port).await;
    let bridged_hello = latency(REQUESTS, async || {
        http(&mut sender, "GET", "/hello", &empty).await
    })
    .await;
    let bridged_echo = latency(REQUESTS / 10, async || {
        http(&mut sender, "PUT", "/echo", &mib).await
    })
    .await;
    let client = wrpc_transport_nats::Client::new(nats.clone(), format!("{LATTICE}.web"), None)
        .await
        .unwrap();
    let direct_hello = latency(REQUESTS, async || wrpc(&client, "/hello").await).await;

    scale(&nats, &front, 32).await;
    let mut sender = connect(port).await;
    let local_hello = latency(REQUESTS, async || {
        http(&mut sender, "GET", "/hello", &empty).await
    })
    .await;
    let local_echo = latency(REQUESTS / 10, async || {
        http(&mut sender, "PUT", "/echo", &mib).await
    })
    .await;

    println!("| one request, keep-alive connection | p50 | p99 | mean |\n|---|---|---|---|");
    row("GET /hello, HTTP → wRPC bridge → other host", bridged_hello);
    row("GET /hello, HTTP → in-process", local_hello);
    row(
        "GET /hello, wRPC client → component (no HTTP)",
        direct_hello,
    );
    row("PUT /echo 1 MiB, HTTP → wRPC bridge", bridged_echo);
    row("PUT /echo 1 MiB, HTTP → in-process", local_echo);
    println!(
        "\nratios: hello p50 bridge/in-process = {:.1}x, echo 1 MiB p50 bridge/in-process = {:.1}x",
        bridged_hello.0.as_secs_f64() / local_hello.0.as_secs_f64(),
        bridged_echo.0.as_secs_f64() / local_echo.0.as_secs_f64(),
    );
    front.stop(None).await.unwrap();
    back.stop(None).await.unwrap();
}
