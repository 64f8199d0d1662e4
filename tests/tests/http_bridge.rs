//! The `wasi:http` ⇄ `wrpc:http` bridge on a real `nats-server`, driven by the real control
//! client: a component's `wasi:http/incoming-handler` answers `wrpc:http/incoming-handler@0.1.0`
//! `handle` from a wRPC client (the host's generated bindings), and the built-in HTTP server on
//! one host serves a component that runs on another.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats_039 as nats;
use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::BodyExt as _;
use trellis_host::wrpc_http::wrpc::http::incoming_handler;
use trellis_host::wrpc_http::wrpc::http::types::{ErrorCode, Fields, Method, Request, Scheme};
use trellis_host::{HostConfig, LatticeHost};
use trellis_tests::component_ref;
use trellis_tests::http::{answering_server, free_port};
use trellis_tests::lattice::{
    count_wrpc_messages, ctl_client, eventually, in_inventory, registered,
};
use trellis_tests::nats::NatsServer;
use wasmcloud_control_interface::{Client, Link};

const LATTICE: &str = "bridge";
const HANDLE_SUBJECT: &str = "wrpc.0.0.1.wrpc:http/incoming-handler@0.1.0.handle";
/// Echo bodies: 64 chunks of 64 KiB.
const CHUNK: usize = 64 << 10;
const CHUNKS: usize = 64;

async fn start_host(server: &NatsServer, switches: &[&str]) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        heartbeat_interval: Duration::from_secs(5),
        rpc_timeout: Duration::from_secs(5),
        builtins: trellis_host::parse_switches(switches.iter().copied()).unwrap(),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

async fn scale(client: &Client, host: &LatticeHost, id: &str, count: u32) {
    let ack = client
        .scale_component(
            host.host_id(),
            &component_ref("http_server"),
            id,
            count,
            None,
            vec![],
            false,
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    in_inventory(client, host.host_id(), id, count).await;
}

/// Puts `source`'s `default` link to `target` for `wasi:http/{interface}`, with the named
/// config `source_config` on the source side.
async fn put_http_link(
    client: &Client,
    source: &str,
    target: &str,
    interface: &str,
    source_config: &str,
) {
    let link = Link::builder()
        .source_id(source)
        .target(target)
        .name("default")
        .wit_namespace("wasi")
        .wit_package("http")
        .interfaces(vec![interface.into()])
        .source_config(vec![source_config.into()])
        .build()
        .unwrap();
    let ack = client.put_link(link).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
}

/// Counts the invocations published on `{lattice}.{component}`'s `wrpc:http` handle subject.
async fn count_handle_calls(
    nc: &nats::Client,
    component: &str,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    count_handle_calls_on(nc, component, HANDLE_SUBJECT).await
}

/// Counts the invocations published on `{lattice}.{target}.{subject}`.
async fn count_handle_calls_on(
    nc: &nats::Client,
    target: &str,
    subject: &str,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let mut calls = nc
        .subscribe(format!("{LATTICE}.{target}.{subject}"))
        .await
        .unwrap();
    registered(nc).await;
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while calls.next().await.is_some() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    count
}

fn chunk() -> Bytes {
    (0..CHUNK)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// A request whose body is produced chunk by chunk as the transport reads it.
fn request(method: Method, path: &str, headers: Fields, chunks: usize) -> Request {
    let chunk = chunk();
    Request {
        body: Box::pin(futures::stream::iter(
            (0..chunks).map(move |_| chunk.clone()),
        )),
        trailers: Box::pin(std::future::ready(None)),
        method,
        path_with_query: Some(path.into()),
        scheme: Some(Scheme::Http),
        authority: Some("bridge.test".into()),
        headers,
    }
}

fn header<'a>(headers: &'a Fields, name: &str) -> Option<&'a [Bytes]> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, values)| values.as_slice())
}

/// Calls `wrpc:http/incoming-handler.handle` on `component`: status, headers, whole body and
/// trailers, or the error code.
async fn call(
    wrpc: &wrpc_transport_nats::Client,
    request: Request,
) -> Result<(u16, Fields, Vec<Bytes>, Option<Fields>), ErrorCode> {
    let exchange = async {
        let (result, io) = incoming_handler::handle(wrpc, None, request)
            .await
            .expect("invoking handle");
        let io = io.map(tokio::spawn);
        let response = match result {
            Ok(response) => response,
            Err(code) => return Err(code),
        };
        let body: Vec<Bytes> = response.body.collect().await;
        let trailers = response.trailers.await;
        if let Some(io) = io {
            io.await.unwrap().expect("body transfer");
        }
        Ok((response.status, response.headers, body, trailers))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("wRPC HTTP exchange within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrpc_http_client_reaches_a_components_incoming_handler() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, &[]).await;
    scale(&client, &host, "web", 2).await;
    let calls = count_handle_calls(&nc, "web").await;

    let wrpc_nats = async_nats::connect(server.url()).await.unwrap();
    let wrpc = wrpc_transport_nats::Client::new(wrpc_nats, format!("{LATTICE}.web"), None)
        .await
        .unwrap();

    // Headers (one repeated) and a 4 MiB body streamed out; everything echoed back.
    let headers: Fields = vec![
        ("x-trace".into(), vec![Bytes::from("abc")]),
        (
            "x-multi".into(),
            vec![Bytes::from("one"), Bytes::from("two")],
        ),
        (
            "content-type".into(),
            vec![Bytes::from("application/octet-stream")],
        ),
    ];
    let (status, headers, body, trailers) =
        call(&wrpc, request(Method::Post, "/echo?q=1", headers, CHUNKS))
            .await
            .expect("a response");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "x-method"),
        Some(&[Bytes::from("POST")][..])
    );
    assert_eq!(header(&headers, "x-trace"), Some(&[Bytes::from("abc")][..]));
    assert_eq!(
        header(&headers, "x-multi"),
        Some(&[Bytes::from("one"), Bytes::from("two")][..])
    );
    assert_eq!(header(&headers, "content-type"), None, "only x-* is echoed");
    let body = body.concat();
    assert_eq!(body.len(), CHUNK * CHUNKS);
    assert!(body.chunks(CHUNK).all(|c| c == &chunk()[..]));
    let trailers = trailers.expect("trailers");
    let expected = (CHUNK * CHUNKS).to_string();
    assert_eq!(
        header(&trailers, "x-echoed-bytes"),
        Some(&[Bytes::from(expected)][..])
    );

    // A trapping handler answers with an error code; the next request is served.
    match call(&wrpc, request(Method::Get, "/trap", vec![], 0)).await {
        Err(ErrorCode::InternalError(Some(message))) => {
            assert!(message.contains("failed"), "{message}")
        }
        other => panic!("expected an internal error, got {:?}", other.map(|r| r.0)),
    }
    let (status, _, body, _) = call(&wrpc, request(Method::Get, "/after", vec![], 0))
        .await
        .expect("a response after the trap");
    assert_eq!(status, 200);
    assert_eq!(body.concat(), b"hello from  at /after");
    eventually("one invocation per request", || async {
        (calls.load(Ordering::SeqCst) == 3).then_some(())
    })
    .await;
    host.stop(None).await.unwrap();
}

/// One HTTP/1.1 exchange over a real socket: status, headers and body.
async fn send(
    port: u16,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "web.test")
            .header("x-trace", "from-http")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("HTTP exchange within 30 s")
}

async fn connects(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_server_on_one_host_serves_a_component_on_another() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let (front, back) = (
        start_host(&server, &[]).await,
        start_host(&server, &[]).await,
    );
    scale(&client, &back, "web", 2).await;

    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let ack = client
        .put_config(
            "web-http",
            std::collections::HashMap::from([("address".to_string(), address)]),
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let ack = client
        .start_provider(
            front.host_id(),
            "wasmcloud+builtin://http-server",
            "httpserver",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    put_http_link(&client, "httpserver", "web", "incoming-handler", "web-http").await;
    eventually("the front host to listen", || async {
        connects(port).await.then_some(())
    })
    .await;
    assert!(front.runtime().component("web").is_none());

    // Over the lattice: the request reaches `web` on the back host through its wrpc:http subject.
    let traffic = count_wrpc_messages(&nc, LATTICE, "web").await;
    let calls = count_handle_calls(&nc, "web").await;
    let (status, _, body) = send(port, "GET", "/hello?x=1", vec![]).await;
    assert_eq!(status, 200);
    assert_eq!(body, &b"hello from  at /hello?x=1"[..]);
    let payload: Vec<u8> = chunk().iter().copied().cycle().take(3 << 20).collect();
    let (status, headers, body) = send(port, "PUT", "/echo", payload.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-method"], "PUT");
    assert_eq!(headers["x-trace"], "from-http");
    assert_eq!(body.len(), payload.len());
    assert!(body == payload, "echoed body differs");
    let (status, _, body) = send(port, "GET", "/trap", vec![]).await;
    assert_eq!(status, 500);
    assert!(body.len() < 64, "{body:?}");
    let (status, _, _) = send(port, "GET", "/after", vec![]).await;
    assert_eq!(status, 200);
    eventually("a wRPC call for each of the 4 HTTP requests", || async {
        (calls.load(Ordering::SeqCst) >= 4 && traffic.load(Ordering::SeqCst) >= 4).then_some(())
    })
    .await;
    let counts = (calls.load(Ordering::SeqCst), traffic.load(Ordering::SeqCst));
    assert_eq!(
        counts,
        (4, 4),
        "(handle calls, messages on web's wRPC subjects)"
    );

    // The component arrives on the front host: requests stay in-process there.
    scale(&client, &front, "web", 1).await;
    let before = traffic.load(Ordering::SeqCst);
    for path in ["/one", "/two", "/three"] {
        let (status, _, body) = send(port, "GET", path, vec![]).await;
        assert_eq!(status, 200);
        assert_eq!(body, format!("hello from  at {path}").as_bytes());
    }
    assert_eq!(
        traffic.load(Ordering::SeqCst),
        before,
        "no wRPC for a local component"
    );

    // Gone from the back host too: nothing serves it, the server says so instead of hanging.
    scale(&client, &front, "web", 0).await;
    scale(&client, &back, "web", 0).await;
    let (status, _, _) = send(port, "GET", "/gone", vec![]).await;
    assert_eq!(status, 502);

    front.stop(None).await.unwrap();
    back.stop(None).await.unwrap();
}

const FETCH_PROBE: &str = "trellis:providers/fetch-probe@0.1.0";
const OUTGOING_SUBJECT: &str = "wrpc.0.0.1.wrpc:http/outgoing-handler@0.1.0.handle";

async fn fetch(host: &LatticeHost, url: &str) -> Result<String, String> {
    use wasmtime::component::Val;
    let results = host
        .runtime()
        .invoke(
            "fetcher",
            FETCH_PROBE,
            "get",
            &[Val::String(url.into())],
            None,
        )
        .await
        .expect("the fetcher answers");
    match &results[0] {
        Val::Result(Ok(Some(text))) => match &**text {
            Val::String(text) => Ok(text.clone()),
            other => panic!("unexpected {other:?}"),
        },
        Val::Result(Err(Some(text))) => match &**text {
            Val::String(text) => Err(text.clone()),
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_off_sends_through_another_hosts_http_client_provider() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let without_client = start_host(&server, &["http-client=off"]).await;
    let with_client = start_host(&server, &[]).await;

    let ack = client
        .scale_component(
            without_client.host_id(),
            &component_ref("fetcher"),
            "fetcher",
            1,
            None,
            vec![],
            false,
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    eventually("the fetcher running", || async {
        without_client.runtime().component("fetcher").map(drop)
    })
    .await;
    let ack = client
        .start_provider(
            with_client.host_id(),
            "trellis+builtin://http-client",
            "httpclient",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());

    // Several chunks of body, so that the response streams back over NATS.
    let body: Bytes = (0..300_000)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<_>>()
        .into();
    let allowed = answering_server(8, body.clone()).await;
    let denied = answering_server(1, body.clone()).await;
    let ack = client
        .put_config(
            "fetch-allowed",
            std::collections::HashMap::from([("allowed_hosts".to_string(), allowed.to_string())]),
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    put_http_link(
        &client,
        "fetcher",
        "httpclient",
        "outgoing-handler",
        "fetch-allowed",
    )
    .await;

    let traffic = count_wrpc_messages(&nc, LATTICE, "httpclient").await;
    let calls = count_handle_calls_on(&nc, "httpclient", OUTGOING_SUBJECT).await;
    let text = eventually("the link to reach the fetcher's host", || async {
        fetch(&without_client, &format!("http://{allowed}/page?q=1"))
            .await
            .ok()
    })
    .await;
    let expected = format!("200 {}", String::from_utf8_lossy(&body));
    assert!(
        text == expected,
        "fetched {} bytes: {:?}…",
        text.len(),
        &text[..40.min(text.len())]
    );

    // The provider's host enforces the link's allowed hosts: a denial the guest sees.
    let refused = fetch(&without_client, &format!("http://{denied}/")).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("HttpRequestDenied")),
        "{refused:?}"
    );
    eventually("both requests over wRPC", || async {
        (calls.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), traffic.load(Ordering::SeqCst));

    // Without the link, the request fails at once, naming what is missing.
    let ack = client
        .delete_link("fetcher", "default", "wasi", "http")
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let missing = eventually("the link deletion to arrive", || async {
        fetch(&without_client, &format!("http://{allowed}/"))
            .await
            .err()
            .filter(|error| error.contains("link"))
    })
    .await;
    assert!(
        missing.contains("`fetcher` has no `default` link"),
        "{missing}"
    );

    without_client.stop(None).await.unwrap();
    with_client.stop(None).await.unwrap();
}
