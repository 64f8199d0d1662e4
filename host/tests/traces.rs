//! One trace across hosts and providers, exported over OTLP/gRPC to a real receiver
//! (opentelemetry-proto's generated services, `trellis_tests::otlp`). Two `trellis host`
//! processes and an SDK 0.17 provider (`tests/providers/greeter`) join one lattice:
//! - an HTTP request carrying its own `traceparent` goes to `front-door` on host one, which
//!   calls `kv-probe` over wRPC on `kv` on host two, which increments through the built-in
//!   key-value: one trace, the incoming span continued, parent to child hop by hop;
//! - a wRPC call with a `traceparent` to the `importer` on host one, whose `greeter` import goes
//!   to the provider on host two: the provider's span has the same trace ID and its parent is
//!   the host's call span;
//! - a message with a `traceparent` delivered to a handler continues that trace, and the
//!   handler's answer carries it on (consumer and producer spans);
//! - host one's metrics (`trellis.component.calls`) reach the same receiver;
//! - with the collector unreachable, every call of the same chain still succeeds.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use trellis_tests::http::free_port;
use trellis_tests::lattice::{
    ctl_client, eventually, in_inventory, put_config, put_http_server_link, run_component,
    start_http_server,
};
use trellis_tests::nats::NatsServer;
use trellis_tests::otlp::{OtlpReceiver, ReceivedSpan};

mod common;

const LATTICE: &str = "traced";
const SPAN_WAIT: Duration = Duration::from_secs(20);

/// A `trellis host` exporting to `endpoint` with `switches`, killed when dropped.
fn host(
    server: &NatsServer,
    name: &str,
    endpoint: &str,
    switches: &[&str],
) -> tokio::process::Child {
    common::trellis()
        .args(["host", "--allow-file-load", "--name", name])
        .args(["--nats-url", &server.url(), "--lattice", LATTICE])
        .args(["--observability-protocol", "grpc"])
        .args(["--override-observability-endpoint", endpoint])
        .args(switches)
        // Batches go out within 100 ms rather than the default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting trellis host")
}

/// The IDs of the hosts named `names`, once they have all joined.
async fn host_ids(client: &wasmcloud_control_interface::Client, names: &[&str]) -> Vec<String> {
    eventually("every host joins", || async {
        let hosts = client.get_hosts().await.ok()?;
        names
            .iter()
            .map(|name| {
                hosts
                    .iter()
                    .filter_map(|host| host.data())
                    .find(|host| host.friendly_name() == *name)
                    .map(|host| host.id().to_string())
            })
            .collect()
    })
    .await
}

/// `GET path` with `traceparent`; the status line and body.
async fn get_traced(port: u16, path: &str, traceparent: &str) -> Option<(String, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: localhost\r\ntraceparent: {traceparent}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn link(
    source: &str,
    target: &str,
    namespace: &str,
    package: &str,
    interface: &str,
) -> wasmcloud_control_interface::Link {
    wasmcloud_control_interface::Link::builder()
        .source_id(source)
        .target(target)
        .name("default")
        .wit_namespace(namespace)
        .wit_package(package)
        .interfaces(vec![interface.into()])
        .build()
        .unwrap()
}

/// `front-door` on host `one` behind the built-in HTTP server, linked to `kv` on host `two`;
/// returns the HTTP port.
async fn front_door_to_kv(
    client: &wasmcloud_control_interface::Client,
    one: &str,
    two: &str,
) -> u16 {
    run_component(client, one, "front", "front_door", 4, &[]).await;
    run_component(client, two, "kv", "kv", 4, &[]).await;
    let ack = client
        .put_link(link("front", "kv", "trellis", "providers", "kv-probe"))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    put_config(client, "front-listen", &[("address", &address)]).await;
    start_http_server(client, one).await;
    put_http_server_link(client, "front", "default", "front-listen").await;
    port
}

/// The spans of `trace_id`, keyed for the chain checks.
fn of_trace<'a>(spans: &'a [ReceivedSpan], trace_id: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.trace_id == trace_id).collect()
}

/// The span named `name` of `kind` (OTLP's: 2 server, 3 client).
fn find<'a>(spans: &[&'a ReceivedSpan], name: &str, kind: i32, describe: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.name == name && s.kind == kind)
        .copied()
        .unwrap_or_else(|| panic!("no `{name}` span of kind {kind} ({describe}) in {spans:#?}"))
}

/// The length of the longest chain of `trace_id` spans received from a span named `leaf` up
/// (spans arrive in batches, host by host).
fn chain_of(spans: &[ReceivedSpan], trace_id: &str, leaf: &str) -> usize {
    spans
        .iter()
        .filter(|s| s.trace_id == trace_id && s.name == leaf)
        .map(|leaf| {
            let mut length = 1;
            let mut child = leaf;
            while let Some(parent) = spans
                .iter()
                .find(|s| s.trace_id == trace_id && s.span_id == child.parent_span_id)
            {
                length += 1;
                child = parent;
            }
            length
        })
        .max()
        .unwrap_or(0)
}

/// The parent of `child`, which must be named `name` and of `kind`. (A test retries a call with
/// the same `traceparent` until it succeeds, so a trace may hold a failed attempt's spans too:
/// chains are followed from their last span up.)
fn parent<'a>(
    spans: &[&'a ReceivedSpan],
    child: &ReceivedSpan,
    name: &str,
    kind: i32,
) -> &'a ReceivedSpan {
    let parent = spans
        .iter()
        .find(|s| s.span_id == child.parent_span_id)
        .copied()
        .unwrap_or_else(|| panic!("the parent of {child:#?} is not in {spans:#?}"));
    assert_eq!(
        (parent.name.as_str(), parent.kind),
        (name, kind),
        "{parent:#?}"
    );
    parent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_http_across_two_hosts_to_keyvalue() {
    let server = NatsServer::start();
    let receiver = OtlpReceiver::start().await;
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let _one = host(
        &server,
        "one",
        &receiver.endpoint(),
        &["--enable-observability"],
    );
    let _two = host(&server, "two", &receiver.endpoint(), &["--enable-traces"]);
    let ids = host_ids(&client, &["one", "two"]).await;
    let (one, two) = (&ids[0], &ids[1]);

    let port = front_door_to_kv(&client, one, two).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let answer = eventually("front-door answers", || async {
        get_traced(port, "/count/apple", &traceparent)
            .await
            .filter(|(status, _)| status.contains("200"))
    })
    .await;
    assert_eq!(answer.1, "1");

    let spans = receiver
        .spans_when(SPAN_WAIT, |spans| {
            chain_of(spans, trace_id, "wasi:keyvalue increment") >= 4
        })
        .await;
    let trace = of_trace(&spans, trace_id);
    let kv_probe = "trellis:providers/kv-probe@0.1.0/increment";
    // From the key-value call up, each hop is the child of the one before, and the request's
    // own traceparent is continued.
    let kv = find(
        &trace,
        "wasi:keyvalue increment",
        3,
        "host two's built-in key-value",
    );
    let serve = parent(&trace, kv, kv_probe, 2);
    let call = parent(&trace, serve, kv_probe, 3);
    let http = parent(&trace, call, "GET", 2);
    assert_eq!(http.parent_span_id, caller_span);
    for span in [http, call] {
        assert_eq!(span.resource["wasmcloud.host.id"], *one, "{span:#?}");
    }
    for span in [serve, kv] {
        assert_eq!(span.resource["wasmcloud.host.id"], *two, "{span:#?}");
    }
    for span in [http, call, serve, kv] {
        assert_eq!(span.service(), "trellis-host");
        assert_eq!(span.resource["wasmcloud.lattice"], LATTICE);
    }

    // Kinds and attributes (OTel semantic conventions plus wasmCloud's).
    assert_eq!((http.kind, call.kind, serve.kind, kv.kind), (2, 3, 2, 3));
    assert_eq!(http.attribute("http.request.method"), Some("GET"));
    assert_eq!(http.attribute("url.path"), Some("/count/apple"));
    assert_eq!(http.attribute("http.response.status_code"), Some("200"));
    assert_eq!(http.attribute("wasmcloud.component.id"), Some("front"));
    assert_eq!(call.attribute("rpc.system"), Some("wrpc"));
    assert_eq!(
        call.attribute("rpc.service"),
        Some("trellis:providers/kv-probe@0.1.0")
    );
    assert_eq!(call.attribute("rpc.method"), Some("increment"));
    assert_eq!(call.attribute("wasmcloud.component.id"), Some("front"));
    assert_eq!(call.attribute("wasmcloud.target.id"), Some("kv"));
    assert_eq!(serve.attribute("wasmcloud.component.id"), Some("kv"));
    assert_eq!(serve.attribute("wasmcloud.caller.id"), Some("front"));
    assert_eq!(kv.attribute("db.operation.name"), Some("increment"));
    assert_eq!(kv.attribute("wasmcloud.component.id"), Some("kv"));

    // The guest's `wasi:logging` record is an event of its invocation's span, and a log
    // record of the same trace on host one (which exports logs too).
    assert!(
        http.events.iter().any(|e| e == "request for /count/apple"),
        "{http:#?}"
    );
    eventually("the guest's log record", || async {
        receiver
            .logs()
            .iter()
            .any(|log| log.trace_id == trace_id && log.body == "request for /count/apple")
            .then_some(())
    })
    .await;

    // Host one's metrics reach the collector too: the component's calls by outcome, counted
    // and timed.
    for metric in ["trellis.component.calls", "trellis.component.call.duration"] {
        eventually(
            &format!("front's {metric} among host one's OTLP metrics"),
            || async {
                receiver
                    .points()
                    .iter()
                    .any(|point| {
                        let attribute = |key: &str| point.attributes.get(key).map(String::as_str);
                        point.metric == metric
                            && point.resource.get("wasmcloud.host.id") == Some(one)
                            && attribute("wasmcloud.component.id") == Some("front")
                            && attribute("outcome") == Some("ok")
                            && (metric == "trellis.component.calls"
                                || attribute("rpc.service") == Some("wasi:http/incoming-handler"))
                            && point.value >= 1.0
                    })
                    .then_some(())
            },
        )
        .await;
    }

    // Host-wide figures too: the control requests that set the lattice up.
    eventually(
        "host one's control requests among its OTLP metrics",
        || async {
            receiver
                .points()
                .iter()
                .any(|point| {
                    point.metric == "trellis.ctl.requests"
                        && point.resource.get("wasmcloud.host.id") == Some(one)
                        && point.attributes.get("operation").map(String::as_str)
                            == Some("component.scale")
                        && point.value >= 1.0
                })
                .then_some(())
        },
    )
    .await;

    // Every span of the trace has its parent in the trace, except the caller's.
    let ids: Vec<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    for span in &trace {
        assert!(
            span.parent_span_id == caller_span || ids.contains(&span.parent_span_id.as_str()),
            "orphan span {span:#?}"
        );
    }
}

/// Encodes one `string` parameter as wRPC does (LEB128 length, then the bytes).
fn wrpc_string(s: &str) -> bytes::Bytes {
    let mut out = Vec::new();
    let mut n = s.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(s.as_bytes());
    out.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_span_joins_the_callers_trace() {
    use wrpc_transport::Invoke as _;

    let server = NatsServer::start();
    let receiver = OtlpReceiver::start().await;
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let _one = host(&server, "one", &receiver.endpoint(), &["--enable-traces"]);
    let _two = host(&server, "two", &receiver.endpoint(), &["--enable-traces"]);
    let ids = host_ids(&client, &["one", "two"]).await;
    let (one, two) = (&ids[0], &ids[1]);

    let archive = trellis_tests::provider_archive("greeter");
    let ack = client
        .start_provider(
            two,
            &format!("file://{}", archive.display()),
            "greeter",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    run_component(&client, one, "importer", "importer", 4, &[]).await;
    let ack = client
        .put_link(link("importer", "greeter", "trellis", "example", "greeter"))
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    in_inventory(&client, one, "importer", 4).await;

    // The test is the caller: its span ID is the parent of the host's serving span.
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let nats = async_nats::connect(server.url()).await.unwrap();
    drop(nc);
    let wrpc = wrpc_transport_nats::Client::new(nats, format!("{LATTICE}.importer"), None)
        .await
        .unwrap();
    let answer = eventually("the provider answers through the importer", || async {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "traceparent",
            format!("00-{trace_id}-{caller_span}-01").as_str(),
        );
        let no_paths: [[Option<usize>; 0]; 0] = [];
        let (mut outgoing, mut incoming) = wrpc
            .invoke(
                Some(headers),
                "trellis:example/front@0.1.0",
                "greet",
                wrpc_string("tracer"),
                no_paths,
            )
            .await
            .ok()?;
        outgoing.shutdown().await.ok()?;
        let mut results = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), incoming.read_to_end(&mut results))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&results).into_owned();
        text.contains("provider says hello, tracer").then_some(text)
    })
    .await;
    assert!(answer.ends_with("provider says hello, tracer"), "{answer}");

    let spans = receiver
        .spans_when(SPAN_WAIT, |spans| chain_of(spans, trace_id, "greet") >= 3)
        .await;
    let trace = of_trace(&spans, trace_id);
    let greet = find(&trace, "greet", 2, "the provider's own span");
    let call = parent(&trace, greet, "trellis:example/greeter@0.1.0/greet", 3);
    let serve = parent(&trace, call, "trellis:example/front@0.1.0/greet", 2);
    assert_eq!(serve.parent_span_id, caller_span);
    assert_eq!(serve.attribute("rpc.method"), Some("greet"));
    assert_eq!(call.attribute("wasmcloud.target.id"), Some("greeter"));
    assert_eq!(greet.service(), "trellis-test-greeter");
    assert_eq!(serve.resource["wasmcloud.host.id"], *one);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_calls_nothing() {
    let server = NatsServer::start();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    // Nothing listens there.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let _one = host(&server, "one", &nowhere, &["--enable-observability"]);
    let _two = host(&server, "two", &nowhere, &["--enable-observability"]);
    let ids = host_ids(&client, &["one", "two"]).await;
    let port = front_door_to_kv(&client, &ids[0], &ids[1]).await;
    let traceparent = "00-11111111111111111111111111111111-2222222222222222-01";
    eventually("front-door answers", || async {
        get_traced(port, "/count/warmup", traceparent)
            .await
            .filter(|(status, _)| status.contains("200"))
    })
    .await;
    for n in 1..=200 {
        let (status, body) = get_traced(port, "/count/pear", traceparent)
            .await
            .expect("an answer");
        assert!(status.contains("200"), "request {n}: {status} {body}");
        assert_eq!(body, n.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_continues_its_senders_trace_and_passes_it_on() {
    let server = NatsServer::start();
    let receiver = OtlpReceiver::start().await;
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let nats = async_nats::connect(server.url()).await.unwrap();
    let _one = host(&server, "one", &receiver.endpoint(), &["--enable-traces"]);
    let ids = host_ids(&client, &["one"]).await;
    let ack = client
        .start_provider(
            &ids[0],
            "wasmcloud+builtin://messaging-nats",
            "messaging",
            None,
            vec![],
        )
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
    run_component(&client, &ids[0], "messenger", "messenger", 4, &[]).await;
    put_config(&client, "messenger-subs", &[("subscriptions", "traced.in")]).await;
    for (source, target, interface, config) in [
        (
            "messaging",
            "messenger",
            "handler",
            vec!["messenger-subs".to_string()],
        ),
        ("messenger", "messaging", "consumer", vec![]),
    ] {
        let link = wasmcloud_control_interface::Link::builder()
            .source_id(source)
            .target(target)
            .name("default")
            .wit_namespace("wasmcloud")
            .wit_package("messaging")
            .interfaces(vec![interface.into()])
            .source_config(config)
            .build()
            .unwrap();
        let ack = client.put_link(link).await.unwrap();
        assert!(ack.succeeded(), "{}", ack.message());
    }

    // The handler answers on the message's reply subject; both messages carry the trace.
    let trace_id = "5b8efff798038103d269b633813fc60c";
    let caller_span = "eee19b7ec3c1b174";
    let reply = eventually("the messenger answers", || async {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "traceparent",
            format!("00-{trace_id}-{caller_span}-01").as_str(),
        );
        let request = async_nats::Request::new()
            .headers(headers)
            .payload("ping".into())
            .timeout(Some(Duration::from_secs(2)));
        nats.send_request("traced.in", request).await.ok()
    })
    .await;
    assert_eq!(&reply.payload[..], b"handled traced.in: ping");
    let answered_on = reply.subject.to_string();
    let passed_on = reply
        .headers
        .as_ref()
        .and_then(|headers| headers.get("traceparent"))
        .map(|value| value.to_string())
        .expect("the answer carries a traceparent");
    assert!(
        passed_on.starts_with(&format!("00-{trace_id}-")),
        "{passed_on}"
    );

    let spans = receiver
        .spans_when(SPAN_WAIT, |spans| {
            chain_of(spans, trace_id, &format!("send {answered_on}")) >= 2
        })
        .await;
    let trace = of_trace(&spans, trace_id);
    // The answer's traceparent names a producer span, child of the delivery's span.
    let send = trace
        .iter()
        .find(|s| s.kind == 4 && passed_on.contains(&s.span_id))
        .unwrap_or_else(|| panic!("no producer span for {passed_on} in {trace:#?}"));
    let process = parent(&trace, send, "process traced.in", 5);
    assert_eq!(process.parent_span_id, caller_span);
    assert_eq!(process.attribute("messaging.system"), Some("nats"));
    assert_eq!(
        process.attribute("wasmcloud.component.id"),
        Some("messenger")
    );
}
