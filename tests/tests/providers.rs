//! The built-in provider plugins driven through `trellis_runtime::Runtime` by real guest
//! components (tests/components): logging, config, key-value (memory and NATS JetStream),
//! blobstore, outgoing HTTP, the HTTP server, over real sockets on loopback, and messaging
//! through a real NATS server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use trellis_providers::{
    BlobstorePlugin, ConfigPlugin, HttpClientPlugin, HttpServerPlugin, KeyvaluePlugin,
    LoggingPlugin, MessagingPlugin,
};
use trellis_runtime::{
    Host, HostInterface, Plugin, Runtime, StartError, Val, Workload, WorkloadComponent,
};
use trellis_tests::component;
use trellis_tests::http::{answering_server, free_port};
use trellis_tests::lattice::eventually;
use trellis_tests::nats::NatsServer;

const LOG_PROBE: &str = "trellis:providers/log-probe@0.1.0";
const CONFIG_PROBE: &str = "trellis:providers/config-probe@0.1.0";
const KV_PROBE: &str = "trellis:providers/kv-probe@0.1.0";
const BLOB_PROBE: &str = "trellis:providers/blob-probe@0.1.0";
const FETCH_PROBE: &str = "trellis:providers/fetch-probe@0.1.0";
const MESSENGER_PROBE: &str = "trellis:providers/messenger-probe@0.1.0";

async fn runtime_with(plugins: Vec<Arc<dyn Plugin>>) -> Runtime {
    let mut builder = Runtime::builder();
    for plugin in plugins {
        builder = builder.plugin(plugin);
    }
    builder.build().await.expect("building the runtime")
}

/// A workload of one component, with config for the plugin serving `interface`.
fn single(id: &str, guest: &str, interface: &str, config: &[(&str, &str)]) -> Workload {
    Workload {
        namespace: "providers".into(),
        name: id.into(),
        components: vec![WorkloadComponent::new(id, component(guest))],
        host_interfaces: vec![HostInterface {
            interface: interface.into(),
            config: map(config),
        }],
        ..Default::default()
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn string(value: &str) -> Val {
    Val::String(value.into())
}

/// The `ok` payload of a `result` value; panics with the `err` payload.
fn ok(value: &Val) -> Option<&Val> {
    match value {
        Val::Result(Ok(payload)) => payload.as_deref(),
        Val::Result(Err(error)) => panic!("guest returned an error: {error:?}"),
        other => panic!("not a result: {other:?}"),
    }
}

fn err_text(value: &Val) -> String {
    match value {
        Val::Result(Err(Some(error))) => match &**error {
            Val::String(text) => text.clone(),
            other => panic!("error is not a string: {other:?}"),
        },
        other => panic!("expected an error, got {other:?}"),
    }
}

fn strings(value: &Val) -> Vec<String> {
    match value {
        Val::List(items) => items
            .iter()
            .map(|item| match item {
                Val::String(s) => s.clone(),
                other => panic!("not a string: {other:?}"),
            })
            .collect(),
        other => panic!("not a list: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// logging

/// One captured `tracing` event: level and its fields as text.
#[derive(Debug, Clone)]
struct Captured {
    level: tracing::Level,
    target: String,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().into(),
            fields,
        });
    }
}

#[tokio::test]
async fn logging_reaches_tracing_with_component_and_level() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let runtime = runtime_with(vec![Arc::new(LoggingPlugin::new())]).await;
    runtime
        .workload_start(single("logger", "logger", "wasi:logging/logging", &[]))
        .await
        .unwrap();
    runtime
        .invoke(
            "logger",
            LOG_PROBE,
            "log-all",
            &[string("ctx-1"), string("hello logs")],
            None,
        )
        .await
        .unwrap();

    let events: Vec<Captured> = capture
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.target == trellis_providers::logging::TARGET)
        .cloned()
        .collect();
    let levels: Vec<tracing::Level> = events.iter().map(|e| e.level).collect();
    use tracing::Level;
    assert_eq!(
        levels,
        [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
            Level::ERROR
        ]
    );
    for event in &events {
        assert_eq!(event.fields["component"], "logger");
        assert_eq!(event.fields["context"], "ctx-1");
        assert_eq!(event.fields["message"], "hello logs");
    }
    assert_eq!(
        events[5].fields.get("critical").map(String::as_str),
        Some("true")
    );
    assert!(!events[4].fields.contains_key("critical"));
    runtime.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// config

#[tokio::test]
async fn config_values_are_visible_and_updatable() {
    let config = Arc::new(ConfigPlugin::new());
    let runtime = runtime_with(vec![config.clone()]).await;
    runtime
        .workload_start(single(
            "configurer",
            "configurer",
            "wasi:config/store",
            &[("greeting", "hello"), ("color", "green")],
        ))
        .await
        .unwrap();
    let get = |key: &str| {
        let runtime = runtime.clone();
        let key = key.to_string();
        async move {
            runtime
                .invoke("configurer", CONFIG_PROBE, "get", &[string(&key)], None)
                .await
                .unwrap()
                .remove(0)
        }
    };
    assert_eq!(
        get("greeting").await,
        Val::Option(Some(Box::new(string("hello"))))
    );
    assert_eq!(get("missing").await, Val::Option(None));
    let legacy = runtime
        .invoke(
            "configurer",
            CONFIG_PROBE,
            "legacy-get",
            &[string("color")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(legacy[0], Val::Option(Some(Box::new(string("green")))));
    let all = runtime
        .invoke("configurer", CONFIG_PROBE, "get-all", &[], None)
        .await
        .unwrap();
    let Val::List(pairs) = &all[0] else {
        panic!("not a list: {all:?}")
    };
    assert_eq!(pairs.len(), 2);

    // The host hands in the merged named config later; the next invocation sees it.
    assert!(config.update_config("configurer", map(&[("greeting", "bonjour")])));
    assert_eq!(
        get("greeting").await,
        Val::Option(Some(Box::new(string("bonjour"))))
    );
    assert_eq!(get("color").await, Val::Option(None));
    assert!(!config.update_config("nobody", map(&[])));
    runtime.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// keyvalue

async fn increment(runtime: &Runtime, id: &str, bucket: &str, key: &str, delta: u64) -> Val {
    runtime
        .invoke(
            id,
            KV_PROBE,
            "increment",
            &[string(bucket), string(key), Val::U64(delta)],
            None,
        )
        .await
        .unwrap()
        .remove(0)
}

fn counter(value: &Val) -> u64 {
    match ok(value) {
        Some(Val::U64(n)) => *n,
        other => panic!("not a u64: {other:?}"),
    }
}

#[tokio::test]
async fn keyvalue_memory_counter_and_store_functions() {
    let runtime = runtime_with(vec![Arc::new(KeyvaluePlugin::memory_only())]).await;
    runtime
        .workload_start(single(
            "kv",
            "kv",
            "wasi:keyvalue/store",
            &[("backend", "memory"), ("bucket", "counts")],
        ))
        .await
        .unwrap();
    for expected in [1, 2, 3] {
        assert_eq!(
            counter(&increment(&runtime, "kv", "counts", "hits", 1).await),
            expected
        );
    }
    assert_eq!(
        counter(&increment(&runtime, "kv", "", "hits", 10).await),
        13
    );
    // Only the configured bucket may be opened.
    let denied = increment(&runtime, "kv", "other", "hits", 1).await;
    assert!(matches!(denied, Val::Result(Err(_))), "{denied:?}");
    assert_eq!(err_text(&denied), "no-such-store");

    let transcript = runtime
        .invoke("kv", KV_PROBE, "exercise", &[string("counts")], None)
        .await
        .unwrap();
    assert_eq!(
        strings(ok(&transcript[0]).unwrap()),
        [
            "get a = Some(Ok(\"one\"))",
            "exists b = true",
            "exists b = false",
            "get b = None",
            "get-many = c=three,none,d=four",
            "keys = a,d,hits",
        ]
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn keyvalue_refuses_unknown_backend() {
    let runtime = runtime_with(vec![Arc::new(KeyvaluePlugin::memory_only())]).await;
    let refused = runtime
        .workload_start(single(
            "kv",
            "kv",
            "wasi:keyvalue/store",
            &[("backend", "redis")],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StartError::BindingRefused { .. }),
        "{refused}"
    );
    let no_nats = runtime
        .workload_start(single(
            "kv2",
            "kv",
            "wasi:keyvalue/store",
            &[("backend", "nats")],
        ))
        .await
        .unwrap_err();
    assert!(
        no_nats.to_string().contains("nats") || format!("{no_nats:?}").contains("NATS"),
        "{no_nats:?}"
    );
}

#[tokio::test]
async fn keyvalue_nats_counter_survives_a_runtime_restart() {
    let server = NatsServer::start();
    let config = [("backend", "nats"), ("bucket", "trellis_counts")];
    for (round, expected) in [(0, [1u64, 2]), (1, [3, 4])] {
        let client = async_nats::connect(server.url()).await.unwrap();
        let runtime = runtime_with(vec![Arc::new(KeyvaluePlugin::with_nats(client.clone()))]).await;
        runtime
            .workload_start(single("kv", "kv", "wasi:keyvalue/store", &config))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        for n in expected {
            assert_eq!(
                counter(&increment(&runtime, "kv", "trellis_counts", "hits", 1).await),
                n
            );
        }
        runtime.shutdown().await;
        client.drain().await.unwrap();
    }

    // The bucket is a real JetStream KV bucket: read it with a plain client.
    let client = async_nats::connect(server.url()).await.unwrap();
    let store = async_nats::jetstream::new(client)
        .get_key_value("trellis_counts")
        .await
        .unwrap();
    let value = tokio::time::timeout(Duration::from_secs(5), store.get("hits"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.as_deref(), Some(&b"4"[..]));
}

// ---------------------------------------------------------------------------------------------
// blobstore

fn bytes(data: &[u8]) -> Val {
    Val::List(data.iter().map(|b| Val::U8(*b)).collect())
}

fn from_bytes(value: &Val) -> Vec<u8> {
    match value {
        Val::List(items) => items
            .iter()
            .map(|v| match v {
                Val::U8(b) => *b,
                other => panic!("not a byte: {other:?}"),
            })
            .collect(),
        other => panic!("not a list: {other:?}"),
    }
}

async fn blob(runtime: &Runtime, function: &str, params: &[Val]) -> Val {
    runtime
        .invoke("blob", BLOB_PROBE, function, params, None)
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test]
async fn blobstore_fs_round_trip_and_escapes_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"top secret").unwrap();

    let runtime = runtime_with(vec![Arc::new(BlobstorePlugin::new())]).await;
    runtime
        .workload_start(single(
            "blob",
            "blob",
            "wasi:blobstore/blobstore",
            &[("backend", "fs"), ("root", root.to_str().unwrap())],
        ))
        .await
        .unwrap();

    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let written = blob(
        &runtime,
        "write",
        &[string("photos"), string("a/b.bin"), bytes(&data)],
    )
    .await;
    ok(&written);
    assert_eq!(std::fs::read(root.join("photos/a/b.bin")).unwrap(), data);
    let read = blob(&runtime, "read", &[string("photos"), string("a/b.bin")]).await;
    assert_eq!(from_bytes(ok(&read).unwrap()), data);
    ok(&blob(
        &runtime,
        "write",
        &[string("photos"), string("c.txt"), bytes(b"see")],
    )
    .await);
    let listed = blob(&runtime, "list-names", &[string("photos")]).await;
    assert_eq!(strings(ok(&listed).unwrap()), ["a/b.bin", "c.txt"]);
    ok(&blob(&runtime, "delete", &[string("photos"), string("c.txt")]).await);
    assert!(!root.join("photos/c.txt").exists());

    // Names that try to leave the root are refused before anything is touched.
    for (container, object) in [
        ("photos", "../escaped.txt"),
        ("photos", "a/../../escaped.txt"),
        ("photos", "/etc/passwd"),
        ("..", "escaped.txt"),
        ("photos/..", "escaped.txt"),
    ] {
        let refused = blob(
            &runtime,
            "write",
            &[string(container), string(object), bytes(b"x")],
        )
        .await;
        assert!(
            err_text(&refused).contains("invalid name"),
            "{container} {object}: {refused:?}"
        );
    }
    assert!(!dir.path().join("escaped.txt").exists());

    // Symlinks planted inside the root cannot lead outside it.
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("photos/link.txt")).unwrap();
    let refused = blob(&runtime, "read", &[string("photos"), string("link.txt")]).await;
    assert!(err_text(&refused).contains("outside"), "{refused:?}");
    let refused = blob(
        &runtime,
        "write",
        &[string("photos"), string("link.txt"), bytes(b"overwritten")],
    )
    .await;
    assert!(err_text(&refused).contains("outside"), "{refused:?}");
    assert_eq!(
        std::fs::read(outside.join("secret.txt")).unwrap(),
        b"top secret"
    );
    std::os::unix::fs::symlink(&outside, root.join("photos/sub")).unwrap();
    let refused = blob(
        &runtime,
        "write",
        &[string("photos"), string("sub/new.txt"), bytes(b"x")],
    )
    .await;
    assert!(err_text(&refused).contains("outside"), "{refused:?}");
    assert!(!outside.join("new.txt").exists());
    std::os::unix::fs::symlink(&outside, root.join("elsewhere")).unwrap();
    let refused = blob(
        &runtime,
        "read",
        &[string("elsewhere"), string("secret.txt")],
    )
    .await;
    assert!(err_text(&refused).contains("outside"), "{refused:?}");
    runtime.shutdown().await;
}

#[tokio::test]
async fn blobstore_memory_round_trip() {
    let runtime = runtime_with(vec![Arc::new(BlobstorePlugin::new())]).await;
    runtime
        .workload_start(single(
            "blob",
            "blob",
            "wasi:blobstore/blobstore",
            &[("backend", "memory")],
        ))
        .await
        .unwrap();
    ok(&blob(
        &runtime,
        "write",
        &[string("c"), string("k"), bytes(b"value")],
    )
    .await);
    let read = blob(&runtime, "read", &[string("c"), string("k")]).await;
    assert_eq!(from_bytes(ok(&read).unwrap()), b"value");
    let missing = blob(&runtime, "read", &[string("c"), string("nope")]).await;
    assert!(err_text(&missing).contains("no object"), "{missing:?}");
    runtime.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// http-client

async fn fetch(runtime: &Runtime, id: &str, url: &str) -> Val {
    runtime
        .invoke(id, FETCH_PROBE, "get", &[string(url)], None)
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test]
async fn http_client_reaches_allowed_hosts_only() {
    let server = answering_server(4, bytes::Bytes::from_static(b"hello")).await;
    let url = format!("http://{server}/greeting");
    let runtime = runtime_with(vec![Arc::new(HttpClientPlugin::new())]).await;
    let allowed = format!("localhost,{server}");
    let wrong_port = format!("127.0.0.1:{}", server.port().wrapping_add(1));
    for (id, hosts) in [
        ("allowed", allowed.as_str()),
        ("wrong-port", &wrong_port),
        ("nothing", ""),
    ] {
        let config: Vec<(&str, &str)> = if hosts.is_empty() {
            vec![]
        } else {
            vec![("allowed_hosts", hosts)]
        };
        runtime
            .workload_start(single(id, "fetcher", "wasi:http/outgoing-handler", &config))
            .await
            .unwrap();
    }

    let fetched = fetch(&runtime, "allowed", &url).await;
    assert_eq!(ok(&fetched), Some(&string("200 hello")));
    for id in ["wrong-port", "nothing"] {
        let denied = fetch(&runtime, id, &url).await;
        assert!(
            err_text(&denied).contains("HttpRequestDenied"),
            "{id}: {denied:?}"
        );
    }
    // The guest is still fine after a denial: the next call works as before.
    let again = fetch(&runtime, "allowed", &url).await;
    assert_eq!(ok(&again), Some(&string("200 hello")));
    runtime.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// http-server

/// A workload serving the http-server guest as `name` under the given route config.
fn site(name: &str, config: &[(&str, &str)]) -> Workload {
    let mut workload = single(name, "http_server", "wasi:http/incoming-handler", config);
    workload.components[0].grants.env = vec![("NAME".into(), name.into())];
    workload
}

type TestBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>;

/// An HTTP/1.1 client on a fresh connection to `port`.
async fn http1_sender(port: u16) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

/// One HTTP/1.1 exchange on a fresh connection: the response head and the whole body (30 s at
/// most).
async fn exchange(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    body: http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>,
) -> (http::response::Parts, bytes::Bytes) {
    use http_body_util::BodyExt as _;
    let exchange = async {
        let mut sender = http1_sender(port).await;
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, host)
            .body(body)
            .unwrap();
        let (head, body) = sender.send_request(request).await.unwrap().into_parts();
        (head, body.collect().await.unwrap().to_bytes())
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("HTTP exchange within 30 s")
}

/// Status and body of one request on a fresh connection.
async fn send(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    body: http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>,
) -> (http::StatusCode, bytes::Bytes) {
    let (head, body) = exchange(port, method, host, path, body).await;
    (head.status, body)
}

/// One HTTP/2 request (cleartext, prior knowledge) with an empty body; the authority travels
/// in the URI, as `:authority`.
async fn send_h2(port: u16, authority: &str, path: &str) -> (http::StatusCode, bytes::Bytes) {
    use http_body_util::BodyExt as _;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let request = http::Request::builder()
            .uri(format!("http://{authority}{path}"))
            .body(empty())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("HTTP/2 exchange within 30 s")
}

/// How many requests the instance that answered `GET path` on `host` had served, this one
/// included (the http-server guest's `x-instance-requests`); `None` for a 5xx.
async fn instance_requests(port: u16, host: &str, path: &str) -> Option<u32> {
    let (head, _) = exchange(port, "GET", host, path, empty()).await;
    let served = head.headers.get("x-instance-requests")?;
    Some(served.to_str().unwrap().parse().unwrap())
}

fn empty() -> http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible> {
    use http_body_util::BodyExt as _;
    http_body_util::Empty::new().boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_server_routes_streams_and_survives_traps() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let plugin = Arc::new(HttpServerPlugin::new());
    let runtime = runtime_with(vec![plugin.clone()]).await;
    for (name, config) in [
        ("a", vec![("address", address.as_str()), ("host", "a.test")]),
        ("b", vec![("address", address.as_str()), ("host", "b.test")]),
        ("api", vec![("address", address.as_str()), ("path", "/api")]),
    ] {
        runtime.workload_start(site(name, &config)).await.unwrap();
    }

    // Routing by host (port in the Host header ignored) and by path prefix.
    let a_host = format!("a.test:{port}");
    for (host, path, expected) in [
        (a_host.as_str(), "/hello", "hello from a at /hello"),
        ("b.test", "/hello?x=1", "hello from b at /hello?x=1"),
        ("c.test", "/api/items", "hello from api at /api/items"),
        ("a.test", "/api/items", "hello from a at /api/items"),
    ] {
        let (status, body) = send(port, "GET", host, path, empty()).await;
        assert_eq!(status, 200, "{host}{path}");
        assert_eq!(body, expected.as_bytes(), "{host}{path}");
    }
    let (status, _) = send(port, "GET", "c.test", "/other", empty()).await;
    assert_eq!(status, 404);
    // HTTP/2 on the same listener, routed the same way.
    let (status, body) = send_h2(port, "b.test", "/h2").await;
    assert_eq!(status, 200);
    assert_eq!(body, &b"hello from b at /h2"[..]);

    // A 10 MiB body streams in (chunked, in 64 KiB frames) and back out.
    use http_body_util::BodyExt as _;
    let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let frames = (0..160).map({
        let chunk = bytes::Bytes::from(chunk.clone());
        move |_| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(chunk.clone()))
    });
    let body = http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed();
    let (status, echoed) = send(port, "POST", "a.test", "/echo", body).await;
    assert_eq!(status, 200);
    assert_eq!(echoed.len(), 10 << 20);
    assert!(echoed.chunks(65536).all(|c| c == &chunk[..]));

    // A trapping handler gives 500 with a short body; the next request is served normally.
    let (status, body) = send(port, "GET", "b.test", "/trap", empty()).await;
    assert_eq!(status, 500);
    assert!(body.len() < 64, "{body:?}");
    let (status, body) = send(port, "GET", "b.test", "/after", empty()).await;
    assert_eq!(status, 200);
    assert_eq!(body, &b"hello from b at /after"[..]);

    // The same route twice is refused; stopping every route closes the listener.
    let taken = runtime
        .workload_start(site(
            "a2",
            &[("address", address.as_str()), ("host", "a.test")],
        ))
        .await
        .unwrap_err();
    assert!(
        taken.to_string().contains("already routes")
            || format!("{taken:?}").contains("already routes"),
        "{taken:?}"
    );
    for name in ["a", "b", "api"] {
        runtime
            .workload_stop(&format!("providers/{name}"), false)
            .await
            .unwrap();
    }
    assert!(plugin.addresses().await.is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(std::time::Instant::now() < deadline, "listener still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runtime.shutdown().await;
}

/// A short response leaves whole, with its length; a response whose handler is still running
/// streams: the echo's first bytes arrive while the request body is still open (the handler
/// cannot end before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_responses_leave_whole_and_long_ones_stream() {
    use futures::SinkExt as _;
    use http_body_util::BodyExt as _;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let plugin = Arc::new(HttpServerPlugin::new());
    let runtime = runtime_with(vec![plugin.clone()]).await;
    let config = [("address", address.as_str()), ("host", "a.test")];
    runtime.workload_start(site("a", &config)).await.unwrap();

    let (head, body) = exchange(port, "GET", "a.test", "/short", empty()).await;
    assert_eq!(body, &b"hello from a at /short"[..]);
    assert_eq!(head.headers[http::header::CONTENT_LENGTH], "22", "{head:?}");
    assert!(!head.headers.contains_key(http::header::TRANSFER_ENCODING));

    let (mut request_body, frames) = futures::channel::mpsc::channel(4);
    let frames = http_body_util::StreamBody::new(frames).boxed();
    let mut sender = http1_sender(port).await;
    let request = http::Request::builder()
        .method("POST")
        .uri("/echo")
        .header(http::header::HOST, "a.test")
        .body(frames)
        .unwrap();
    let data = |text: &'static str| {
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(text)))
    };
    request_body.send(data("ping")).await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("the response head within 10 s")
        .unwrap();
    let mut echoed = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), echoed.frame())
        .await
        .expect("the first echoed bytes within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "ping");
    request_body.send(data("pong")).await.unwrap();
    drop(request_body);
    let rest = tokio::time::timeout(Duration::from_secs(10), echoed.collect())
        .await
        .expect("the rest of the echo within 10 s")
        .unwrap();
    assert_eq!(rest.to_bytes(), "pong");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_server_reuses_or_warms_instances_only_when_the_route_allows() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let plugin = Arc::new(HttpServerPlugin::new());
    let runtime = runtime_with(vec![plugin.clone()]).await;
    for (name, config) in [
        (
            "fresh",
            vec![("address", address.as_str()), ("host", "fresh.test")],
        ),
        (
            "reused",
            vec![
                ("address", address.as_str()),
                ("host", "reused.test"),
                ("requests_per_instance", "3"),
            ],
        ),
        (
            "warm",
            vec![
                ("address", address.as_str()),
                ("host", "warm.test"),
                ("warm_instances", "2"),
            ],
        ),
    ] {
        runtime.workload_start(site(name, &config)).await.unwrap();
    }

    // By default every request gets a new instance.
    for _ in 0..3 {
        assert_eq!(instance_requests(port, "fresh.test", "/").await, Some(1));
    }
    // Instances made ahead of their requests are fresh ones all the same: one request each.
    for _ in 0..5 {
        assert_eq!(instance_requests(port, "warm.test", "/").await, Some(1));
    }
    // Allowed three requests, instances serve up to three. (An instance goes back to the pool
    // just after its response ends, so a request may still find none idle and start another.)
    let mut served = Vec::new();
    while !served.contains(&3) {
        assert!(served.len() < 60, "no instance served three: {served:?}");
        served.push(instance_requests(port, "reused.test", "/").await.unwrap());
    }
    assert!(served.iter().all(|n| (1..=3).contains(n)), "{served:?}");
    // A trap fails its request only; the route serves on.
    assert_eq!(instance_requests(port, "reused.test", "/trap").await, None);
    let next = instance_requests(port, "reused.test", "/").await;
    assert!(next.is_some_and(|n| (1..=3).contains(&n)), "{next:?}");

    for (name, key, value, expected) in [
        (
            "zero",
            "requests_per_instance",
            "0",
            "bad requests_per_instance `0`",
        ),
        (
            "hot",
            "warm_instances",
            "65",
            "bad warm_instances `65`: a whole number from 0 to 64",
        ),
    ] {
        let host = format!("{name}.test");
        let config = [("address", address.as_str()), ("host", &host), (key, value)];
        let refused = runtime
            .workload_start(site(name, &config))
            .await
            .unwrap_err();
        assert!(format!("{refused:?}").contains(expected), "{refused:?}");
    }
    runtime.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// messaging

/// The next message of `subscriber`, within five seconds.
async fn next_message(subscriber: &mut async_nats::Subscriber) -> async_nats::Message {
    use futures::StreamExt as _;
    tokio::time::timeout(Duration::from_secs(5), subscriber.next())
        .await
        .expect("a message within 5 s")
        .expect("subscription open")
}

/// Subscribes to `subject` and returns once the server has the subscription: a message this
/// connection publishes on `probe` (which `subject` matches) comes back first, so anything any
/// connection publishes later is delivered too.
async fn subscribed(nc: &async_nats::Client, subject: &str, probe: &str) -> async_nats::Subscriber {
    let mut subscriber = nc.subscribe(subject.to_string()).await.unwrap();
    nc.publish(probe.to_string(), "ready".into()).await.unwrap();
    assert_eq!(&next_message(&mut subscriber).await.payload[..], b"ready");
    subscriber
}

/// The messenger's `request` probe: the reply body as text, or the error the guest saw.
async fn messenger_request(runtime: &Runtime, subject: &str, body: &str) -> Result<String, String> {
    let out = runtime
        .invoke(
            "messenger",
            MESSENGER_PROBE,
            "request",
            &[string(subject), bytes(body.as_bytes()), Val::U32(2000)],
            None,
        )
        .await
        .unwrap();
    match &out[0] {
        Val::Result(Ok(Some(reply))) => Ok(String::from_utf8(from_bytes(reply)).unwrap()),
        _ => Err(err_text(&out[0])),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_publishes_requests_and_handles_subscriptions() {
    let server = NatsServer::start();
    let nc = async_nats::connect(server.url()).await.unwrap();
    let plugin_client = async_nats::connect(server.url()).await.unwrap();
    let runtime = runtime_with(vec![Arc::new(MessagingPlugin::new(plugin_client))]).await;
    let subscriptions = [("subscriptions", "greet.*, jobs|workers")];
    runtime
        .workload_start(single(
            "messenger",
            "messenger",
            "wasmcloud:messaging/handler",
            &subscriptions,
        ))
        .await
        .unwrap();

    // publish, with the reply-to passed through.
    let mut out = subscribed(&nc, "probe.out", "probe.out").await;
    let published = runtime
        .invoke(
            "messenger",
            MESSENGER_PROBE,
            "publish",
            &[
                string("probe.out"),
                bytes(b"hi"),
                Val::Option(Some(Box::new(string("probe.reply")))),
            ],
            None,
        )
        .await
        .unwrap();
    ok(&published[0]);
    let message = next_message(&mut out).await;
    assert_eq!(&message.payload[..], b"hi");
    assert_eq!(message.reply.as_deref(), Some("probe.reply"));

    // request, answered by a responder here; no responder and reserved subjects are errors.
    let mut service = subscribed(&nc, "svc.echo", "svc.echo").await;
    let responder = {
        let nc = nc.clone();
        tokio::spawn(async move {
            let request = next_message(&mut service).await;
            let mut answer = b"echo: ".to_vec();
            answer.extend_from_slice(&request.payload);
            nc.publish(request.reply.unwrap(), answer.into())
                .await
                .unwrap();
        })
    };
    assert_eq!(
        messenger_request(&runtime, "svc.echo", "ping").await,
        Ok("echo: ping".into())
    );
    responder.await.unwrap();
    let error = messenger_request(&runtime, "nobody.home", "ping")
        .await
        .unwrap_err();
    assert!(error.contains("no responders"), "{error}");
    let error = messenger_request(&runtime, "wasmbus.ctl.v1.default.host.ping", "")
        .await
        .unwrap_err();
    assert!(error.contains("reserved"), "{error}");

    // A request on a subscribed subject reaches handle-message, whose answer goes to reply-to.
    let reply = eventually("the subscription to answer", || async {
        nc.request("greet.alice", "hello".into()).await.ok()
    })
    .await;
    assert_eq!(&reply.payload[..], b"handled greet.alice: hello");
    // Without a reply-to the handler answers on messenger.out; queue-group subscriptions work.
    let mut handled = subscribed(&nc, "messenger.out", "messenger.out").await;
    nc.publish("jobs", "work".into()).await.unwrap();
    assert_eq!(
        &next_message(&mut handled).await.payload[..],
        b"handled jobs: work"
    );

    // A trapping handler and one returning an error leave the subscription serving.
    nc.publish("greet.x", "trap".into()).await.unwrap();
    nc.publish("greet.x", "fail".into()).await.unwrap();
    let reply = nc.request("greet.bob", "again".into()).await.unwrap();
    assert_eq!(&reply.payload[..], b"handled greet.bob: again");

    // A config change keeps the subscriptions it still names: a burst published just before it
    // is handled in full (unsubscribing would drop what the client had buffered), and the new
    // subscription serves too.
    const BURST: usize = 200;
    for n in 0..BURST {
        nc.publish("jobs", n.to_string().into()).await.unwrap();
    }
    nc.flush().await.unwrap();
    let more = [HostInterface {
        interface: "wasmcloud:messaging/handler".into(),
        config: map(&[("subscriptions", "greet.*, jobs|workers, more.*")]),
    }];
    runtime.rebind("providers/messenger", &more).await.unwrap();
    let mut bodies = Vec::new();
    for _ in 0..BURST {
        bodies.push(next_message(&mut handled).await.payload);
    }
    assert!(bodies.iter().all(|b| b.starts_with(b"handled jobs: ")));
    let reply = eventually("the added subscription to answer", || async {
        nc.request("more.x", "extra".into()).await.ok()
    })
    .await;
    assert_eq!(&reply.payload[..], b"handled more.x: extra");

    // Stopping the component unsubscribes.
    runtime
        .workload_stop("providers/messenger", false)
        .await
        .unwrap();
    eventually("the subscription to end", || async {
        match nc.request("greet.alice", "hello".into()).await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Some(()),
            _ => None,
        }
    })
    .await;
    runtime.shutdown().await;
}
