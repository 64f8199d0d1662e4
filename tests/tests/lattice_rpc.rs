//! Components on different hosts calling each other over wRPC on a real `nats-server`, and the
//! same calls going in-process when the target comes to the caller's host.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use trellis_host::{HostConfig, LatticeHost};
use trellis_runtime::{ImportRoute, InvokeError, Val};
use trellis_tests::component_ref;
use trellis_tests::lattice::{count_wrpc_messages, ctl_client, eventually, in_inventory};
use trellis_tests::nats::NatsServer;
use wasmcloud_control_interface::{Client, Link};

const LATTICE: &str = "rpc";
const FRONT: &str = "trellis:example/front@0.1.0";
const ADDER: &str = "trellis:example/adder@0.1.0";
const WAIT: Duration = Duration::from_secs(15);

async fn start_host(server: &NatsServer, in_process_links: bool) -> LatticeHost {
    LatticeHost::start(HostConfig {
        files: trellis_host::FilePolicy::allow_all(),
        nats_url: server.url(),
        lattice: LATTICE.into(),
        heartbeat_interval: Duration::from_secs(5),
        in_process_links,
        rpc_timeout: Duration::from_secs(5),
        ..HostConfig::default()
    })
    .await
    .expect("starting the host")
}

/// Scales `id` from the guest component `guest` on `host` and waits until it runs there.
async fn scale(client: &Client, host: &LatticeHost, id: &str, guest: &str, count: u32) {
    let ack = client
        .scale_component(
            host.host_id(),
            &component_ref(guest),
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

async fn link(client: &Client, source: &str, target: &str) {
    put_link(client, source, "default", target, &["adder", "greeter"]).await;
}

/// Puts `source`'s link `name` to `target` for `interfaces` of `trellis:example`.
async fn put_link(client: &Client, source: &str, name: &str, target: &str, interfaces: &[&str]) {
    let link = Link::builder()
        .source_id(source)
        .target(target)
        .name(name)
        .wit_namespace("trellis")
        .wit_package("example")
        .interfaces(interfaces.iter().map(|i| i.to_string()).collect())
        .build()
        .unwrap();
    let ack = client.put_link(link).await.unwrap();
    assert!(ack.succeeded(), "{}", ack.message());
}

async fn route(host: &LatticeHost, component: &str) -> ImportRoute {
    let routes = host.runtime().routes(component).await.unwrap_or_default();
    routes
        .into_iter()
        .find(|(import, _)| import == ADDER)
        .map(|(_, route)| route)
        .expect("adder import")
}

async fn wait_for_route(host: &LatticeHost, component: &str, wanted: ImportRoute) {
    eventually(&format!("{component} routed to {wanted:?}"), || async {
        (route(host, component).await == wanted).then_some(())
    })
    .await;
}

/// Waits until `caller`'s calls on `host` get through: the link may reach that host's copy of
/// the lattice state a moment after the put was acknowledged by another host.
async fn wait_for_link(host: &LatticeHost) {
    eventually("the link reached the caller's host", || async {
        call(host, "add", vec![Val::U32(0), Val::U32(0)]).await.ok()
    })
    .await;
}

async fn call(
    host: &LatticeHost,
    function: &str,
    params: Vec<Val>,
) -> Result<Vec<Val>, InvokeError> {
    host.runtime()
        .invoke("caller", FRONT, function, &params, None)
        .await
}

fn string(value: &str) -> Val {
    Val::String(value.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cross_hosts_over_wrpc_and_come_home_in_process() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let (home, away) = (
        start_host(&server, true).await,
        start_host(&server, true).await,
    );
    scale(&client, &away, "callee", "exporter", 4).await;
    scale(&client, &home, "caller", "importer", 4).await;
    link(&client, "caller", "callee").await;
    wait_for_route(&home, "caller", ImportRoute::Remote).await;
    wait_for_link(&home).await;
    let traffic = count_wrpc_messages(&nc, LATTICE, "callee").await;

    // Every type family crosses the lattice intact.
    let point = |x, y, label: &str| {
        Val::Record(vec![
            ("x".into(), Val::S32(x)),
            ("y".into(), Val::S32(y)),
            ("label".into(), string(label)),
        ])
    };
    let bytes: Vec<Val> = (0..=255u8).map(Val::U8).collect();
    let cases: Vec<(&str, Vec<Val>, Vec<Val>)> = vec![
        ("add", vec![Val::U32(40), Val::U32(2)], vec![Val::U32(42)]),
        ("echo", vec![string("héllo")], vec![string("héllo")]),
        (
            "echo-bytes",
            vec![Val::List(bytes.clone())],
            vec![Val::List(bytes)],
        ),
        ("flip", vec![point(1, 2, "ab")], vec![point(2, 1, "ba")]),
        (
            "area",
            vec![Val::Variant("rect".into(), Some(Box::new(point(3, 4, ""))))],
            vec![Val::Option(Some(Box::new(Val::Float64(12.0))))],
        ),
        (
            "checked-div",
            vec![Val::S32(1), Val::S32(0)],
            vec![Val::Result(Err(Some(Box::new(string(
                "cannot divide 1 by 0",
            )))))],
        ),
        (
            "maybe-double",
            vec![Val::Option(Some(Box::new(Val::U32(21))))],
            vec![Val::Option(Some(Box::new(Val::U32(42))))],
        ),
        (
            "toggle",
            vec![Val::Flags(vec!["read".into()]), Val::Enum("blue".into())],
            vec![Val::Tuple(vec![
                Val::Flags(vec!["write".into(), "exec".into()]),
                Val::Enum("red".into()),
            ])],
        ),
        (
            "greet",
            vec![string("ann")],
            vec![string("component says hello, ann")],
        ),
    ];
    for (function, params, expected) in cases {
        assert_eq!(
            call(&home, function, params).await.unwrap(),
            expected,
            "{function} over wRPC"
        );
    }
    let served = away.runtime().component("callee").unwrap().invocations();
    assert!(served >= 9, "the remote host served the calls ({served})");
    eventually("spy saw the calls", || async {
        (traffic.load(Ordering::SeqCst) >= 9).then_some(())
    })
    .await;

    // A trap on the far side ends that call and leaves the callee serving. wRPC carries no
    // error for a function without results, so the caller sees it return (see README).
    let crashed = tokio::time::timeout(WAIT, call(&home, "crash-exporter", vec![])).await;
    assert!(crashed.is_ok(), "a remote trap must not hang the caller");
    assert_eq!(
        call(&home, "add", vec![Val::U32(1), Val::U32(1)])
            .await
            .unwrap(),
        [Val::U32(2)]
    );

    // The callee arrives on the caller's host: calls go in-process, nothing on NATS.
    scale(&client, &home, "callee", "exporter", 4).await;
    wait_for_route(&home, "caller", ImportRoute::InProcess("callee".into())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = traffic.load(Ordering::SeqCst);
    for i in 0..20 {
        assert_eq!(
            call(&home, "add", vec![Val::U32(i), Val::U32(1)])
                .await
                .unwrap(),
            [Val::U32(i + 1)]
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        traffic.load(Ordering::SeqCst),
        before,
        "in-process calls must not touch NATS"
    );

    // It leaves again: calls re-route to the lattice without restarting the caller.
    scale(&client, &home, "callee", "exporter", 0).await;
    wait_for_route(&home, "caller", ImportRoute::Remote).await;
    assert_eq!(
        call(&home, "add", vec![Val::U32(5), Val::U32(5)])
            .await
            .unwrap(),
        [Val::U32(10)]
    );
    eventually("the call went over NATS", || async {
        (traffic.load(Ordering::SeqCst) > before).then_some(())
    })
    .await;

    home.stop(None).await.unwrap();
    away.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_link_fails_fast_and_calls_spread_over_replicas() {
    let server = NatsServer::start();
    let (client, _nc) = ctl_client(&server, LATTICE).await;
    let hosts = [
        start_host(&server, true).await,
        start_host(&server, true).await,
        start_host(&server, true).await,
    ];
    scale(&client, &hosts[0], "caller", "importer", 8).await;

    let started = Instant::now();
    let error = call(&hosts[0], "add", vec![Val::U32(1), Val::U32(2)])
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a missing link must not hang"
    );
    assert!(
        error
            .to_string()
            .contains("no `default` link for `trellis:example/adder`"),
        "{error}"
    );

    scale(&client, &hosts[1], "callee", "exporter", 8).await;
    scale(&client, &hosts[2], "callee", "exporter", 8).await;
    link(&client, "caller", "callee").await;
    wait_for_route(&hosts[0], "caller", ImportRoute::Remote).await;
    wait_for_link(&hosts[0]).await;
    let served = |host: &LatticeHost| {
        let runtime = host.runtime().clone();
        async move { runtime.component("callee").unwrap().invocations() }
    };
    let before = served(&hosts[1]).await + served(&hosts[2]).await;
    for i in 0..40u32 {
        assert_eq!(
            call(&hosts[0], "add", vec![Val::U32(i), Val::U32(i)])
                .await
                .unwrap(),
            [Val::U32(2 * i)]
        );
    }
    let (one, two) = (served(&hosts[1]).await, served(&hosts[2]).await);
    assert_eq!(one + two - before, 40);
    assert!(
        one > 0 && two > 0,
        "the queue group spreads calls over both replicas ({one} / {two})"
    );
    for host in hosts {
        host.stop(None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_links_can_be_switched_off() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let host = start_host(&server, false).await;
    scale(&client, &host, "callee", "exporter", 2).await;
    scale(&client, &host, "caller", "importer", 2).await;
    link(&client, "caller", "callee").await;
    let traffic = count_wrpc_messages(&nc, LATTICE, "callee").await;
    wait_for_route(&host, "caller", ImportRoute::Remote).await;
    wait_for_link(&host).await;
    assert_eq!(
        call(&host, "add", vec![Val::U32(2), Val::U32(3)])
            .await
            .unwrap(),
        [Val::U32(5)]
    );
    eventually("the co-located call went over NATS", || async {
        (traffic.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    host.stop(None).await.unwrap();
}

const CHOOSER: &str = "trellis:chooser/chooser";
const GREETING: &str = "component says hello, ada";

async fn choose(host: &LatticeHost, function: &str, choice: &str) -> Result<Val, InvokeError> {
    let mut results = host
        .runtime()
        .invoke(
            "chooser",
            CHOOSER,
            function,
            &[string(choice), string("ada")],
            None,
        )
        .await?;
    Ok(results.remove(0))
}

fn ok_string(value: &str) -> Val {
    Val::Result(Ok(Some(Box::new(string(value)))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_names_chosen_at_run_time_select_the_target() {
    let server = NatsServer::start();
    let (client, nc) = ctl_client(&server, LATTICE).await;
    let (home, away) = (
        start_host(&server, true).await,
        start_host(&server, true).await,
    );
    // `first` runs beside the chooser, `second` on the other host.
    scale(&client, &home, "first", "exporter", 2).await;
    scale(&client, &away, "second", "exporter", 2).await;
    scale(&client, &home, "chooser", "chooser", 2).await;
    put_link(&client, "chooser", "default", "first", &["greeter"]).await;
    put_link(&client, "chooser", "backup", "second", &["greeter"]).await;
    let (to_first, to_second) = (
        count_wrpc_messages(&nc, LATTICE, "first").await,
        count_wrpc_messages(&nc, LATTICE, "second").await,
    );
    let greeter_route = home
        .runtime()
        .routes("chooser")
        .await
        .unwrap()
        .into_iter()
        .find(|(import, _)| import == "trellis:example/greeter@0.1.0")
        .map(|(_, route)| route);
    assert_eq!(
        greeter_route,
        Some(ImportRoute::Remote),
        "a component that chooses links at run time is not composed with a co-located target"
    );
    eventually("both links reached the chooser's host", || async {
        choose(&home, "greet-checked", "backup")
            .await
            .ok()
            .filter(|greeting| *greeting == ok_string(GREETING))
    })
    .await;

    // 1.0.0: the chosen link decides where each call goes.
    let (first_before, second_before) = (
        to_first.load(Ordering::SeqCst),
        to_second.load(Ordering::SeqCst),
    );
    assert_eq!(
        choose(&home, "greet-via", "default").await.unwrap(),
        string(GREETING)
    );
    eventually("the default link's call reached `first`", || async {
        (to_first.load(Ordering::SeqCst) > first_before).then_some(())
    })
    .await;
    assert_eq!(to_second.load(Ordering::SeqCst), second_before);
    assert_eq!(
        choose(&home, "greet-via", "backup").await.unwrap(),
        string(GREETING)
    );
    eventually("the backup link's call reached `second`", || async {
        (to_second.load(Ordering::SeqCst) > second_before).then_some(())
    })
    .await;

    // 1.0.0 cannot report a missing link: the call itself fails fast, naming it.
    let started = Instant::now();
    let error = choose(&home, "greet-via", "missing").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a missing link must not hang"
    );
    assert!(
        error
            .to_string()
            .contains("no `missing` link for `trellis:example/greeter`"),
        "{error}"
    );

    // 2.0.0 reports it from set-link-name.
    let Val::Result(Err(Some(reason))) = choose(&home, "greet-checked", "missing").await.unwrap()
    else {
        panic!("set-link-name 2.0.0 must refuse a link that does not exist");
    };
    assert!(
        matches!(&*reason, Val::String(reason) if reason.contains("no `missing` link")),
        "{reason:?}"
    );

    // 2.0.0 can also address a target directly, without a link.
    let second_before = to_second.load(Ordering::SeqCst);
    assert_eq!(
        choose(&home, "greet-at", "second").await.unwrap(),
        ok_string(GREETING)
    );
    eventually("the targeted call reached `second`", || async {
        (to_second.load(Ordering::SeqCst) > second_before).then_some(())
    })
    .await;

    home.stop(None).await.unwrap();
    away.stop(None).await.unwrap();
}
