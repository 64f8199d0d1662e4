//! Hostile input on the control interface of a live `trellis host` process: names that would
//! become wildcard subjects are refused with the field and the rule named, and thousands of
//! malformed, oversized and wrong-typed requests each get an error envelope while the host
//! stays up, its inventory unchanged and its memory (the process's resident set) bounded.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use trellis_tests::nats::NatsServer;

mod common;

const LATTICE: &str = "hostile";

/// A `trellis host` process and its ID.
struct Host {
    process: tokio::process::Child,
    id: String,
}

impl Host {
    async fn start(server: &NatsServer, nats: &async_nats::Client) -> Self {
        let process = common::trellis()
            .args(["host", "--nats-url", &server.url(), "--lattice", LATTICE])
            .args(["--allow-file-load"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("starting trellis host");
        let started = Instant::now();
        loop {
            let reply = nats
                .request(format!("wasmbus.ctl.v1.{LATTICE}.host.ping"), "".into())
                .await;
            if let Ok(reply) = reply
                && let Ok(envelope) = serde_json::from_slice::<Value>(&reply.payload)
                && let Some(id) = envelope["response"]["id"].as_str()
            {
                return Self {
                    process,
                    id: id.to_string(),
                };
            }
            assert!(started.elapsed() < common::WAIT, "the host never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process's resident memory.
    fn rss_bytes(&self) -> u64 {
        let pid = self.process.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib * 1024
    }
}

async fn request(nats: &async_nats::Client, subject: &str, payload: Vec<u8>) -> Value {
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        nats.request(subject.to_string(), payload.into()),
    )
    .await
    .unwrap_or_else(|_| panic!("no reply to {subject}"))
    .unwrap_or_else(|e| panic!("request to {subject}: {e}"));
    serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|e| panic!("reply to {subject} is not an envelope ({e})"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_would_be_wildcards_are_refused_naming_field_and_rule() {
    let server = NatsServer::start();
    let nats = async_nats::connect(server.url()).await.unwrap();
    let host = Host::start(&server, &nats).await;
    let prefix = format!("wasmbus.ctl.v1.{LATTICE}");
    let reference = trellis_tests::component_ref("exporter");
    let mut subscribed = nats.subscribe(format!("{LATTICE}.>")).await.unwrap();

    for id in ["*", "x.*", ">", "a b", "a.b"] {
        let scale = json!({"component_ref": reference, "component_id": id, "count": 1});
        let reply = request(
            &nats,
            &format!("{prefix}.component.scale.{}", host.id),
            serde_json::to_vec(&scale).unwrap(),
        )
        .await;
        assert_eq!(reply["success"], false, "{reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("component_id `{id}` is invalid"))
                && message.contains("NATS subject token"),
            "{message}"
        );
    }
    let start = json!({"provider_id": "p.*", "provider_ref": "trellis+builtin://keyvalue"});
    let reply = request(
        &nats,
        &format!("{prefix}.provider.start.{}", host.id),
        serde_json::to_vec(&start).unwrap(),
    )
    .await;
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("provider_id `p.*` is invalid")
    );
    let link = json!({"source_id": "a", "target": "b.>", "wit_namespace": "wasi",
        "wit_package": "keyvalue", "interfaces": ["store"]});
    let reply = request(
        &nats,
        &format!("{prefix}.link.put"),
        serde_json::to_vec(&link).unwrap(),
    )
    .await;
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("target `b.>` is invalid")
    );
    let reply = request(
        &nats,
        &format!("{prefix}.config.put.bad:name"),
        b"{}".to_vec(),
    )
    .await;
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("config name `bad:name` is invalid")
    );

    // Nothing started, so nothing serves on the lattice: not under any of those names.
    let inventory = request(&nats, &format!("{prefix}.host.get.{}", host.id), vec![]).await;
    assert_eq!(inventory["response"]["components"], json!([]));
    assert_eq!(inventory["response"]["providers"], json!([]));
    nats.publish(format!("{LATTICE}.x.wrpc.0.0.1.f"), "".into())
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_millis(300), subscribed.next()).await;
    assert!(seen.is_ok(), "the probe comes back to this subscriber");
}

/// Bodies that no operation accepts: random bytes, JSON of the wrong shape or types, deeply
/// nested or oversized documents.
fn malformed_body() -> impl Strategy<Value = Vec<u8>> {
    let wrong_typed = prop_oneof![
        Just(json!({"component_id": 5, "count": "many"})),
        Just(json!({"provider_id": ["x"], "provider_ref": {}})),
        Just(json!({"source_id": null, "target": 1, "interfaces": "store"})),
        Just(json!([1, 2, 3])),
        Just(json!("just a string")),
        Just(json!({"key": 1, "value": false})),
        any::<i64>().prop_map(|n| json!(n)),
    ]
    .prop_map(|value| serde_json::to_vec(&value).unwrap());
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..512),
        3 => wrong_typed,
        1 => (1usize..2000).prop_map(|depth| {
            let mut nested = "[".repeat(depth);
            nested.push_str(&"]".repeat(depth));
            nested.into_bytes()
        }),
        1 => (100_000usize..900_000).prop_map(|len| {
            let mut body = br#"{"component_id": ""#.to_vec();
            body.extend(std::iter::repeat_n(b'x', len));
            body
        }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_malformed_requests_each_get_an_envelope_and_change_nothing() {
    let server = NatsServer::start();
    let nats = async_nats::connect(server.url()).await.unwrap();
    let host = Host::start(&server, &nats).await;
    let prefix = format!("wasmbus.ctl.v1.{LATTICE}");
    let id = host.id.clone();
    // Every operation that takes a body, except host.stop (a well-formed stop stops the host).
    let subjects: Vec<String> = [
        format!("component.scale.{id}"),
        format!("component.update.{id}"),
        "component.auction".to_string(),
        format!("provider.start.{id}"),
        format!("provider.stop.{id}"),
        "provider.auction".to_string(),
        "link.put".to_string(),
        "link.del".to_string(),
        "config.put.fuzzed".to_string(),
        format!("label.put.{id}"),
        format!("label.del.{id}"),
        "registry.put".to_string(),
    ]
    .into_iter()
    .map(|operation| format!("{prefix}.{operation}"))
    .collect();
    let inventory = |reply: Value| reply["response"].clone();
    let before = inventory(request(&nats, &format!("{prefix}.host.get.{id}"), vec![]).await);
    let rss_before = host.rss_bytes();

    let mut runner = TestRunner::deterministic();
    let strategy = malformed_body();
    let started = Instant::now();
    let replies: Vec<Value> = futures::stream::iter(0..2000)
        .map(|i| {
            let body = strategy.new_tree(&mut runner).unwrap().current();
            let (nats, subject) = (nats.clone(), subjects[i % subjects.len()].clone());
            async move { request(&nats, &subject, body).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let took = started.elapsed();
    assert_eq!(replies.len(), 2000);
    let refused = replies.iter().filter(|r| r["success"] == false).count();
    // A label put or delete with a body that happens to parse could succeed; nothing else may.
    assert!(refused >= 1900, "only {refused} of 2000 refused");
    for reply in &replies {
        assert!(reply["message"].is_string(), "{reply}");
    }

    let ping = request(&nats, &format!("{prefix}.host.ping"), vec![]).await;
    assert_eq!(ping["response"]["id"], id.as_str());
    let after = inventory(request(&nats, &format!("{prefix}.host.get.{id}"), vec![]).await);
    assert_eq!(after["components"], before["components"]);
    assert_eq!(after["providers"], before["providers"]);
    let grown = host.rss_bytes().saturating_sub(rss_before);
    println!(
        "2000 malformed requests in {took:?}; resident memory grew {} KiB",
        grown / 1024
    );
    assert!(grown < 64 << 20, "resident memory grew {grown} bytes");
}
