//! `trellis ctl call`: the real binary calls the exports of the `exporter` test component,
//! running on an in-process host over a real nats-server, with arguments and results in WAVE
//! and JSON, and fails with one line naming what is wrong (the parameter of a type error, the
//! arity, an unknown function or component).

use std::time::{Duration, Instant};

use serde_json::json;
use trellis_host::{HostConfig, LatticeHost};
use trellis_tests::component_ref;
use trellis_tests::nats::NatsServer;

mod common;
use common::{Cli, WAIT};

const LATTICE: &str = "call";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_checks_arguments_against_the_wit_types_and_prints_results() {
    let server = NatsServer::start();
    let url = server.url();
    let host = LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: url.clone(),
        lattice: LATTICE.into(),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host");
    let ctl = Cli::new(&url, LATTICE, &["ctl"]);
    ctl.stdout(&["scale", host.host_id(), "adder", &component_ref("exporter")])
        .await;
    let deadline = Instant::now() + WAIT;
    while ctl.json(&["inventory", host.host_id()]).await["components"][0]["id"] != "adder" {
        assert!(Instant::now() < deadline, "the exporter did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // WAVE in and out, the function named in full, without the version, or alone.
    let call = |args: &'static [&'static str]| {
        let ctl = &ctl;
        async move { ctl.stdout(&[&["call", "adder"], args].concat()).await }
    };
    assert_eq!(
        call(&["trellis:example/adder@0.1.0.add", "2", "3"]).await,
        "5\n"
    );
    assert_eq!(call(&["trellis:example/adder.add", "2", "3"]).await, "5\n");
    assert_eq!(call(&["add", "2", "3"]).await, "5\n");
    assert_eq!(
        call(&["adder.flip", "{x: 1, y: -2, label: \"ab\"}"]).await,
        "{x: -2, y: 1, label: \"ba\"}\n"
    );
    assert_eq!(
        call(&["checked-div", "-7", "0"]).await,
        "err(\"cannot divide -7 by 0\")\n"
    );
    assert_eq!(call(&["maybe-double", "some(21)"]).await, "some(42)\n");
    // A string parameter also takes bare text.
    assert_eq!(
        call(&["greet", "Ada"]).await,
        "\"component says hello, Ada\"\n"
    );
    assert_eq!(call(&["live-counters"]).await, "0\n");

    // JSON in (--json) and out (-o json).
    let toggled = ctl
        .json(&["call", "adder", "toggle", "--json", "[\"read\"]", "\"red\""])
        .await;
    assert_eq!(toggled, json!([["write", "exec"], "green"]));
    let area = ctl
        .json(&[
            "call",
            "adder",
            "area",
            "--json",
            "{\"rect\": {\"x\": 2, \"y\": 3, \"label\": \"\"}}",
        ])
        .await;
    assert_eq!(area, json!(6.0));
    assert_eq!(
        ctl.json(&["call", "adder", "add", "2", "3"]).await,
        json!(5)
    );

    // Errors: one line each, naming what is wrong.
    let error = ctl.error_line(&["call", "adder", "add", "2", "x"]).await;
    assert!(
        error.starts_with(
            "trellis ctl: argument 2 (`b`: u32) of `add`: `x` is not a WAVE value of type u32"
        ),
        "{error}"
    );
    let error = ctl
        .error_line(&["call", "adder", "add", "--json", "2", "\"3\""])
        .await;
    assert!(
        error.contains("argument 2 (`b`: u32) of `add`: expected u32, got \"3\""),
        "{error}"
    );
    let error = ctl.error_line(&["call", "adder", "add", "2"]).await;
    assert_eq!(
        error,
        "trellis ctl: `add` takes 2 arguments, got 1: add(a: u32, b: u32) -> u32"
    );
    let error = ctl.error_line(&["call", "adder", "adder.nope"]).await;
    assert!(
        error.starts_with(
            "trellis ctl: component `adder`: it exports no function `adder.nope`; it exports \
             trellis:example/adder@0.1.0.{add, echo, "
        ),
        "{error}"
    );
    let error = ctl.error_line(&["call", "nobody", "add", "1", "2"]).await;
    assert_eq!(
        error,
        "trellis ctl: no host on lattice `call` runs a component `nobody` (`trellis ctl \
         inventory HOST` lists what a host runs)"
    );

    host.stop(None).await.unwrap();
}
