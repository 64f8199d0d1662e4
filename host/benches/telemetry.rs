//! What telemetry costs, side by side in one run: two `trellis host` processes with telemetry
//! off, OTLP metrics on, traces sampled 100% and traces sampled 1% (`OTEL_TRACES_SAMPLER=
//! traceidratio`), all exporting over gRPC to a receiver in this process. Per variant and
//! round: HTTP hello through the built-in HTTP server (the `http-server` guest on host one, 32
//! connections for 3 s) and wRPC `front.add` calls (32 callers for 3 s; the importer on host
//! one calls the exporter on host two over wRPC, so each call makes three spans). Three
//! alternating rounds; the table gives each variant's median and its ratio to "off".
//!
//! `cargo bench -p trellis-host --bench telemetry` (needs `nats-server` on PATH and the guest
//! components: `bash tests/components/build.sh`); see BENCHMARKS.md.

mod peers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use peers::{Build, client, ctl, scale, start_host};
use serde_json::json;
use trellis_tests::nats::NatsServer;
use trellis_tests::otlp::OtlpReceiver;
use wrpc_transport::InvokeExt as _;

const FRONT: &str = "trellis:example/front@0.1.0";
const WINDOW: Duration = Duration::from_secs(3);
const CONCURRENCY: usize = 32;
const ROUNDS: usize = 3;

/// The variants: a name, the host flags, the host environment.
fn variants(endpoint: &str) -> Vec<Build> {
    let this = env!("CARGO_BIN_EXE_trellis");
    let export = |switch: &str| {
        vec![
            "--allow-file-load".to_string(),
            switch.to_string(),
            "--observability-protocol".into(),
            "grpc".into(),
            "--override-observability-endpoint".into(),
            endpoint.to_string(),
        ]
    };
    let sampled = |ratio: &str| {
        vec![
            (
                "OTEL_TRACES_SAMPLER".to_string(),
                "traceidratio".to_string(),
            ),
            ("OTEL_TRACES_SAMPLER_ARG".to_string(), ratio.to_string()),
        ]
    };
    vec![
        Build {
            name: "telemetry off".into(),
            binary: this.into(),
            extra_args: vec!["--allow-file-load".into()],
            env: Vec::new(),
        },
        Build {
            name: "metrics on".into(),
            binary: this.into(),
            extra_args: export("--enable-metrics"),
            env: Vec::new(),
        },
        Build {
            name: "traces, 100% sampled".into(),
            binary: this.into(),
            extra_args: export("--enable-traces"),
            env: sampled("1.0"),
        },
        Build {
            name: "traces, 1% sampled".into(),
            binary: this.into(),
            extra_args: export("--enable-traces"),
            env: sampled("0.01"),
        },
    ]
}

struct Sample {
    http_per_second: f64,
    wrpc_per_second: f64,
}

async fn add(front: &wrpc_transport_nats::Client) -> bool {
    let sum: Option<(u32,)> = front
        .invoke_values_blocking(None, FRONT, "add", (1u32, 2u32), &[[None::<usize>; 0]; 0])
        .await
        .ok();
    sum == Some((3,))
}

/// Calls per second `CONCURRENCY` tasks, each running `worker` until [`WINDOW`] ends (the
/// worker counts its own calls), keep up.
async fn rate<F, Fut>(worker: F) -> f64
where
    F: Fn(Instant) -> Fut,
    Fut: Future<Output = u64> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| tokio::spawn(worker(started)))
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// HTTP requests a keep-alive connection to `port` makes until [`WINDOW`] after `started`.
async fn http_worker(port: u16, started: Instant) -> u64 {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut done = 0u64;
    while started.elapsed() < WINDOW && done < 1_000_000 {
        let request = http::Request::builder()
            .uri("/hello")
            .header(http::header::HOST, "bench")
            .body(Empty::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert!(response.status().is_success());
        response.into_body().collect().await.unwrap();
        done += 1;
    }
    done
}

/// wRPC `front.add` calls one caller makes until [`WINDOW`] after `started`.
async fn wrpc_worker(front: Arc<wrpc_transport_nats::Client>, started: Instant) -> u64 {
    let mut done = 0u64;
    while started.elapsed() < WINDOW && done < 1_000_000 {
        assert!(add(&front).await, "add failed");
        done += 1;
    }
    done
}

async fn measure(build: &Build, server: &NatsServer, lattice: &str) -> Sample {
    let nats = async_nats::connect(server.url()).await.unwrap();
    let one = start_host(build, &nats, &server.url(), lattice, "one").await;
    let two = start_host(build, &nats, &server.url(), lattice, "two").await;
    let subject = |operation: &str| format!("wasmbus.ctl.v1.{lattice}.{operation}");
    scale(
        &nats,
        lattice,
        &two.id,
        "callee",
        &trellis_tests::component_ref("exporter"),
        64,
    )
    .await;
    scale(
        &nats,
        lattice,
        &one.id,
        "caller",
        &trellis_tests::component_ref("importer"),
        64,
    )
    .await;
    scale(
        &nats,
        lattice,
        &one.id,
        "hello",
        &trellis_tests::component_ref("http_server"),
        64,
    )
    .await;
    let link = json!({"source_id": "caller", "target": "callee", "name": "default",
        "wit_namespace": "trellis", "wit_package": "example", "interfaces": ["adder"],
        "source_config": [], "target_config": []});
    ctl(&nats, subject("link.put"), link).await;
    let port = trellis_tests::http::free_port();
    ctl(
        &nats,
        subject("config.put.hello-listen"),
        json!({"address": format!("127.0.0.1:{port}")}),
    )
    .await;
    ctl(
        &nats,
        subject(&format!("provider.start.{}", one.id)),
        json!({"provider_ref": "wasmcloud+builtin://http-server", "provider_id": "httpserver"}),
    )
    .await;
    let link = json!({"source_id": "httpserver", "target": "hello", "name": "default",
        "wit_namespace": "wasi", "wit_package": "http", "interfaces": ["incoming-handler"],
        "source_config": ["hello-listen"], "target_config": []});
    ctl(&nats, subject("link.put"), link).await;

    let front = Arc::new(client(&nats, lattice, "caller").await);
    let started = Instant::now();
    while !add(&front).await || trellis_tests::http::get(port, "/hello").await.is_err() {
        assert!(
            started.elapsed() < peers::WAIT,
            "the links never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Sample {
        http_per_second: rate(|started| http_worker(port, started)).await,
        wrpc_per_second: rate(|started| wrpc_worker(front.clone(), started)).await,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = NatsServer::start();
    let receiver = OtlpReceiver::start().await;
    let variants = variants(&receiver.endpoint());
    let mut samples: Vec<Vec<Sample>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..ROUNDS {
        for (i, variant) in variants.iter().enumerate() {
            let sample = measure(variant, &server, &format!("telemetry{round}x{i}")).await;
            eprintln!(
                "round {round}, {}: HTTP {:.0} req/s, wRPC {:.0} calls/s",
                variant.name, sample.http_per_second, sample.wrpc_per_second
            );
            samples[i].push(sample);
        }
    }
    let medians: Vec<(f64, f64)> = samples
        .iter()
        .map(|rounds| {
            (
                median(rounds.iter().map(|s| s.http_per_second).collect()),
                median(rounds.iter().map(|s| s.wrpc_per_second).collect()),
            )
        })
        .collect();
    let (http_off, wrpc_off) = medians[0];
    println!("| variant | HTTP hello req/s | vs off | wRPC add calls/s | vs off |");
    println!("|---|---|---|---|---|");
    for (variant, (http, wrpc)) in variants.iter().zip(&medians) {
        println!(
            "| {} | {http:.0} | {:.2} | {wrpc:.0} | {:.2} |",
            variant.name,
            http / http_off,
            wrpc / wrpc_off
        );
    }
    println!("spans received: {}", receiver.span_count());
}
