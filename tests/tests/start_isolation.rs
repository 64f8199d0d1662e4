//! Starting a component never stalls calls to the other components of its host: the start
//! compiles and binds with no lock that the call path takes.
//!
//! A component whose compilation takes seconds (generated here) starts on the serving host while
//! a caller on another host keeps calling a component there over wRPC. Every call made during the
//! start must stay within 50 ms of the slowest call before it (the figures are printed).

use std::time::{Duration, Instant};

use trellis_host::{HostConfig, LatticeHost};
use trellis_runtime::{ImportRoute, Val};
use trellis_tests::component_ref;
use trellis_tests::lattice::{ctl_client, eventually, in_inventory};
use trellis_tests::nats::NatsServer;
use wasmcloud_control_interface::{Client, Link};

const LATTICE: &str = "isolation";
const FRONT: &str = "trellis:example/front@0.1.0";
const ADDER: &str = "trellis:example/adder@0.1.0";

/// How much slower than the slowest baseline call a call during the start may be: generous for
/// a shared 2-core machine, far below the seconds a lock held across the compile would cost.
const MARGIN: Duration = Duration::from_millis(50);

async fn start_host(server: &NatsServer) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        heartbeat_interval: Duration::from_secs(5),
        rpc_timeout: Duration::from_secs(5),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

async fn scale(client: &Client, host: &LatticeHost, id: &str, reference: &str) {
    let ack = client
        .scale_component(host.host_id(), reference, id, 4, None, vec![], false)
        .await
        .unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
}

/// A component with one export, `noop`, and enough code that compiling it takes seconds in a
/// debug build (Cranelift itself is optimized in the dev profile, so it takes many):
/// `functions` core functions of a few hundred instructions each.
fn large_component(functions: usize) -> Vec<u8> {
    let mut wat = String::from("(component (core module $m\n");
    for f in 0..functions {
        wat.push_str(&format!(
            "(func $f{f} (param i32) (result i32) local.get 0\n"
        ));
        for k in 0..300 {
            wat.push_str(&format!("i32.const {k} i32.add i32.const 3 i32.mul\n"));
        }
        wat.push_str(")\n");
    }
    wat.push_str("(func (export \"noop\") (result i32) i32.const 0 call $f0))\n");
    wat.push_str("(core instance $i (instantiate $m))\n");
    wat.push_str("(func (export \"noop\") (result u32) (canon lift (core func $i \"noop\"))))");
    wat::parse_str(&wat).expect("valid component text")
}

/// One caller invocation with one wRPC call inside, timed.
async fn timed_call(caller: &LatticeHost) -> Duration {
    let started = Instant::now();
    let results = caller
        .runtime()
        .invoke("caller", FRONT, "add", &[Val::U32(2), Val::U32(3)], None)
        .await
        .expect("the call goes through");
    assert_eq!(results, vec![Val::U32(5)]);
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_start_does_not_stall_calls_to_other_components() {
    let server = NatsServer::start();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let (home, away) = (start_host(&server).await, start_host(&server).await);
    scale(&client, &away, "callee", &component_ref("exporter")).await;
    scale(&client, &home, "caller", &component_ref("importer")).await;
    in_inventory(&client, away.host_id(), "callee", 4).await;
    in_inventory(&client, home.host_id(), "caller", 4).await;
    let link = Link::builder()
        .source_id("caller")
        .target("callee")
        .name("default")
        .wit_namespace("trellis")
        .wit_package("example")
        .interfaces(vec!["adder".into(), "greeter".into()])
        .build()
        .unwrap();
    assert!(client.put_link(link).await.unwrap().succeeded());
    eventually("the caller reaches the callee over wRPC", || async {
        let routes = home.runtime().routes("caller").await?;
        let remote = routes
            .iter()
            .any(|(import, route)| import == ADDER && *route == ImportRoute::Remote);
        (remote
            && home
                .runtime()
                .invoke("caller", FRONT, "add", &[Val::U32(0), Val::U32(0)], None)
                .await
                .is_ok())
        .then_some(())
    })
    .await;

    let mut baseline = Vec::new();
    for _ in 0..100 {
        baseline.push(timed_call(&home).await);
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.wasm");
    std::fs::write(&path, large_component(600)).unwrap();
    let compile_started = Instant::now();
    let engine = trellis_runtime::Engine::new(Default::default()).unwrap();
    engine.compile(&std::fs::read(&path).unwrap()).unwrap();
    let compile_time = compile_started.elapsed();
    assert!(
        compile_time >= Duration::from_millis(500),
        "the large component compiles in {compile_time:?}: make it larger"
    );

    // Start it on the serving host, calling all the while until it runs there.
    let started = Instant::now();
    scale(
        &client,
        &away,
        "large",
        &format!("file://{}", path.display()),
    )
    .await;
    let mut during = Vec::new();
    while away.runtime().component("large").is_none() {
        during.push(timed_call(&home).await);
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the large component never started"
        );
    }
    let start_time = started.elapsed();

    let slowest_before = *baseline.iter().max().unwrap();
    let slowest_during = *during.iter().max().unwrap_or(&Duration::ZERO);
    let median = |samples: &mut Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    println!(
        "compile alone {compile_time:?}; start on the serving host {start_time:?}; \
         baseline calls: median {:?}, max {slowest_before:?}; {} calls during the start: \
         median {:?}, max {slowest_during:?}",
        median(&mut baseline),
        during.len(),
        median(&mut during.clone()),
    );
    assert!(
        during.len() >= 5,
        "only {} calls completed during a {start_time:?} start",
        during.len()
    );
    assert!(
        slowest_during <= slowest_before + MARGIN,
        "a call during the start took {slowest_during:?}, the slowest before it {slowest_before:?}"
    );
    home.stop(None).await.unwrap();
    away.stop(None).await.unwrap();
}
