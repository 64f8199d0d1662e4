//! The runtime on its own (no NATS): linking, resolution order, budgets, sandboxing, services,
//! teardown, driven through the `Host` API with real guest components.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use trellis_runtime::{
    Binding, Budget, BudgetExceeded, ComponentSource, ComponentState, EngineConfig, Host,
    HostInterface, ImportFallback, ImportRoute, InterfaceName, InvocationCtx, InvokeError, Plugin,
    RestartPolicy, Runtime, StartError, StopError, Val, Volume, VolumeKind, VolumeMount, Workload,
    WorkloadComponent, WorkloadService, WorkloadState,
};
use trellis_tests::component;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Linker, ResourceType};

const FRONT: &str = "trellis:example/front@0.1.0";
const PROBE: &str = "trellis:example/probe@0.1.0";
const GREETER: &str = "trellis:example/greeter@0.1.0";

fn workload(name: &str, components: Vec<WorkloadComponent>) -> Workload {
    Workload {
        namespace: "test".into(),
        name: name.into(),
        components,
        ..Default::default()
    }
}

fn pair(name: &str) -> Workload {
    workload(
        name,
        vec![
            WorkloadComponent::new(format!("{name}-importer"), component("importer")),
            WorkloadComponent::new(format!("{name}-exporter"), component("exporter")),
        ],
    )
}

async fn plain_runtime() -> Runtime {
    Runtime::builder().build().await.unwrap()
}

fn string(value: &str) -> Val {
    Val::String(value.into())
}

/// Implements `greeter` as a plugin; refuses components whose config says `refuse`.
#[derive(Default)]
struct GreeterPlugin {
    bound: Mutex<Vec<(String, BTreeMap<String, String>)>>,
}

#[async_trait::async_trait]
impl Plugin for GreeterPlugin {
    fn id(&self) -> &str {
        "greeter"
    }
    fn imports(&self) -> Vec<InterfaceName> {
        vec![InterfaceName::parse("trellis:example/greeter").unwrap()]
    }
    async fn bind(&self, binding: &Binding) -> anyhow::Result<()> {
        anyhow::ensure!(
            !binding.config.contains_key("refuse"),
            "this component is not welcome"
        );
        self.bound
            .lock()
            .unwrap()
            .push((binding.component_id.clone(), binding.config.clone()));
        Ok(())
    }
    async fn unbind(&self, component_id: &str) {
        self.bound
            .lock()
            .unwrap()
            .retain(|(id, _)| id != component_id);
    }
    fn add_to_linker(
        &self,
        linker: &mut Linker<InvocationCtx>,
        interface: &InterfaceName,
    ) -> anyhow::Result<()> {
        linker.instance(&interface.to_string())?.func_wrap(
            "greet",
            |store, (name,): (String,)| {
                Ok((format!(
                    "plugin says hello to {name} from {}",
                    store.data().component_id()
                ),))
            },
        )?;
        Ok(())
    }
}

/// Links `greeter` to a host function and anything else to functions that fail: what the lattice
/// host's wRPC fallback does when no link matches.
struct TestFallback;

impl ImportFallback for TestFallback {
    fn link(
        &self,
        engine: &wasmtime::Engine,
        linker: &mut Linker<InvocationCtx>,
        _component_id: &str,
        import: &str,
        ty: &ComponentItem,
    ) -> anyhow::Result<bool> {
        let ComponentItem::ComponentInstance(instance_ty) = ty else {
            return Ok(false);
        };
        let mut instance = linker.instance(import)?;
        if import == GREETER {
            instance.func_wrap("greet", |_, (name,): (String,)| {
                Ok((format!("fallback says hello to {name}"),))
            })?;
            return Ok(true);
        }
        for (name, item) in instance_ty.exports(engine) {
            let what = format!("{import}#{name}");
            match item.ty {
                ComponentItem::Resource(_) => {
                    instance.resource(name, ResourceType::host::<()>(), |_, _| Ok(()))?
                }
                ComponentItem::ComponentFunc(_) => instance.func_new(name, move |_, _, _, _| {
                    Err(wasmtime::Error::msg(format!("no route for {what}")))
                })?,
                _ => {}
            }
        }
        Ok(true)
    }
}

#[tokio::test]
async fn in_process_calls_carry_every_type_family() {
    let runtime = plain_runtime().await;
    runtime.workload_start(pair("types")).await.unwrap();
    let call = |f: &'static str, params: Vec<Val>| {
        let runtime = runtime.clone();
        async move {
            runtime
                .invoke("types-importer", FRONT, f, &params, None)
                .await
                .unwrap()
        }
    };

    let routes = runtime.routes("types-importer").await.unwrap();
    assert!(routes.contains(&(
        "trellis:example/adder@0.1.0".into(),
        ImportRoute::InProcess("types-exporter".into())
    )));

    assert_eq!(
        call("add", vec![Val::U32(40), Val::U32(2)]).await,
        [Val::U32(42)]
    );
    assert_eq!(call("echo", vec![string("héllo")]).await, [string("héllo")]);
    let bytes: Vec<Val> = (0..=255u8).map(Val::U8).collect();
    assert_eq!(
        call("echo-bytes", vec![Val::List(bytes.clone())]).await,
        [Val::List(bytes)]
    );
    let point = |x, y, label: &str| {
        Val::Record(vec![
            ("x".into(), Val::S32(x)),
            ("y".into(), Val::S32(y)),
            ("label".into(), string(label)),
        ])
    };
    assert_eq!(
        call("flip", vec![point(1, 2, "ab")]).await,
        [point(2, 1, "ba")]
    );
    assert_eq!(
        call(
            "area",
            vec![Val::Variant("rect".into(), Some(Box::new(point(3, 4, ""))))]
        )
        .await,
        [Val::Option(Some(Box::new(Val::Float64(12.0))))]
    );
    assert_eq!(
        call("area", vec![Val::Variant("empty".into(), None)]).await,
        [Val::Option(None)]
    );
    assert_eq!(
        call("checked-div", vec![Val::S32(7), Val::S32(2)]).await,
        [Val::Result(Ok(Some(Box::new(Val::S32(3)))))]
    );
    assert_eq!(
        call("checked-div", vec![Val::S32(1), Val::S32(0)]).await,
        [Val::Result(Err(Some(Box::new(string(
            "cannot divide 1 by 0"
        )))))]
    );
    assert_eq!(
        call(
            "maybe-double",
            vec![Val::Option(Some(Box::new(Val::U32(21))))]
        )
        .await,
        [Val::Option(Some(Box::new(Val::U32(42))))]
    );
    assert_eq!(
        call(
            "toggle",
            vec![Val::Flags(vec!["read".into()]), Val::Enum("blue".into())]
        )
        .await,
        [Val::Tuple(vec![
            Val::Flags(vec!["write".into(), "exec".into()]),
            Val::Enum("red".into())
        ])]
    );
    assert_eq!(
        call("greet", vec![string("ann")]).await,
        [string("component says hello, ann")]
    );
}

#[tokio::test]
async fn resources_cross_the_link_and_drops_reach_the_exporter() {
    let runtime = plain_runtime().await;
    runtime.workload_start(pair("res")).await.unwrap();
    let counted = runtime
        .invoke(
            "res-importer",
            FRONT,
            "count",
            &[Val::U64(10), Val::U32(5)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(counted, [Val::U64(15)]);
    let live = runtime
        .invoke(
            "res-importer",
            FRONT,
            "live-after-drops",
            &[Val::U32(8)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        live,
        [Val::U32(0)],
        "every dropped counter must be dropped in the exporter"
    );
}

#[tokio::test]
async fn a_trap_in_the_exporter_fails_one_call_and_names_the_exporter() {
    let runtime = plain_runtime().await;
    runtime.workload_start(pair("trap")).await.unwrap();
    let error = runtime
        .invoke("trap-importer", FRONT, "crash-exporter", &[], None)
        .await
        .unwrap_err();
    match &error {
        InvokeError::LinkedTrap {
            component,
            exporter,
            ..
        } => {
            assert_eq!(component, "trap-importer");
            assert_eq!(exporter, "trap-exporter");
        }
        other => panic!("expected a linked trap, got {other:?}"),
    }
    assert!(error.to_string().contains("trap-exporter"), "{error}");
    let next = runtime
        .invoke(
            "trap-importer",
            FRONT,
            "add",
            &[Val::U32(1), Val::U32(2)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(next, [Val::U32(3)]);
    let direct = runtime.invoke(
        "trap-exporter",
        "trellis:example/adder@0.1.0",
        "add",
        &[Val::U32(2), Val::U32(2)],
        None,
    );
    assert_eq!(direct.await.unwrap(), [Val::U32(4)]);
}

#[tokio::test]
async fn imports_resolve_plugin_then_in_process_then_fallback() {
    let greet = |runtime: Runtime, id: &'static str| async move {
        match runtime
            .invoke(id, FRONT, "greet", &[string("bo")], None)
            .await
            .unwrap()
            .pop()
        {
            Some(Val::String(s)) => s,
            other => panic!("unexpected {other:?}"),
        }
    };
    // A plugin beats a co-located exporter.
    let plugin = Arc::new(GreeterPlugin::default());
    let with_plugin = Runtime::builder()
        .plugin(plugin.clone())
        .fallback(Arc::new(TestFallback))
        .build()
        .await
        .unwrap();
    let mut w = pair("order");
    w.host_interfaces = vec![HostInterface {
        interface: "trellis:example/greeter".into(),
        config: BTreeMap::from([("greeting".into(), "hi".into())]),
    }];
    with_plugin.workload_start(w).await.unwrap();
    assert_eq!(
        greet(with_plugin.clone(), "order-importer").await,
        "plugin says hello to bo from order-importer"
    );
    assert_eq!(
        plugin.bound.lock().unwrap().clone(),
        vec![(
            "order-importer".to_string(),
            BTreeMap::from([("greeting".into(), "hi".into())])
        )]
    );
    with_plugin
        .workload_stop("test/order", false)
        .await
        .unwrap();
    assert!(plugin.bound.lock().unwrap().is_empty(), "stop must unbind");

    // A plugin may refuse a binding, which fails the start with its reason.
    let mut refused = pair("refused");
    refused.host_interfaces = vec![HostInterface {
        interface: GREETER.into(),
        config: BTreeMap::from([("refuse".into(), "yes".into())]),
    }];
    let error = with_plugin.workload_start(refused).await.unwrap_err();
    assert!(
        matches!(error, StartError::BindingRefused { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("not welcome"), "{error}");
    assert!(
        with_plugin.component("refused-exporter").is_none(),
        "a refused start leaves nothing behind"
    );

    // Without the plugin, the co-located exporter serves.
    let runtime = Runtime::builder()
        .fallback(Arc::new(TestFallback))
        .build()
        .await
        .unwrap();
    runtime.workload_start(pair("local")).await.unwrap();
    assert_eq!(
        greet(runtime.clone(), "local-importer").await,
        "component says hello, bo"
    );

    // Without an exporter, the fallback serves.
    let alone = workload(
        "alone",
        vec![WorkloadComponent::new(
            "alone-importer",
            component("importer"),
        )],
    );
    runtime.workload_start(alone).await.unwrap();
    assert_eq!(
        greet(runtime.clone(), "alone-importer").await,
        "fallback says hello to bo"
    );
    let routes = runtime.routes("alone-importer").await.unwrap();
    assert!(routes.contains(&(GREETER.into(), ImportRoute::Fallback)));

    // Nobody at all: the start fails naming the interface.
    let bare = plain_runtime().await;
    let alone = workload(
        "alone",
        vec![WorkloadComponent::new(
            "alone-importer",
            component("importer"),
        )],
    );
    let error = bare.workload_start(alone).await.unwrap_err();
    assert!(
        matches!(error, StartError::UnresolvedImport { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("trellis:example/adder@0.1.0"),
        "{error}"
    );
}

fn prober(id: &str, budget: Budget) -> Workload {
    let mut probe = WorkloadComponent::new(id, component("prober"));
    probe.budget = budget;
    probe.max_instances = 4;
    workload(id, vec![probe])
}

async fn ok_after(runtime: &Runtime, id: &str) {
    let ok = runtime.invoke(id, PROBE, "ok", &[], None).await.unwrap();
    assert_eq!(
        ok,
        [Val::U32(42)],
        "the component must serve again after a failed call"
    );
}

#[tokio::test]
async fn wall_clock_budget_stops_a_spinning_call_and_the_next_call_succeeds() {
    let runtime = plain_runtime().await;
    let budget = Budget {
        wall_time: Some(Duration::from_millis(300)),
        ..Budget::default()
    };
    runtime
        .workload_start(prober("spin", budget))
        .await
        .unwrap();
    let error = runtime
        .invoke("spin", PROBE, "spin", &[], None)
        .await
        .unwrap_err();
    assert_eq!(
        error.budget_exceeded(),
        Some(&BudgetExceeded::DeadlineExceeded(Duration::from_millis(
            300
        ))),
        "{error}"
    );
    ok_after(&runtime, "spin").await;

    // A per-call override wins over the component's default.
    let quick = Budget {
        wall_time: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    let error = runtime
        .invoke("spin", PROBE, "spin", &[], Some(&quick))
        .await
        .unwrap_err();
    assert_eq!(
        error.budget_exceeded(),
        Some(&BudgetExceeded::DeadlineExceeded(Duration::from_millis(50)))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_yields_to_other_tasks() {
    let runtime = plain_runtime().await;
    let budget = Budget {
        wall_time: Some(Duration::from_millis(500)),
        ..Budget::default()
    };
    runtime
        .workload_start(prober("yield", budget))
        .await
        .unwrap();
    let ticks = Arc::new(Mutex::new(0u32));
    let counter = ticks.clone();
    let ticker = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            *counter.lock().unwrap() += 1;
        }
    });
    let error = runtime
        .invoke("yield", PROBE, "spin", &[], None)
        .await
        .unwrap_err();
    assert!(error.budget_exceeded().is_some());
    assert!(
        *ticks.lock().unwrap() >= 10,
        "a one-thread runtime must keep running other tasks while a guest spins"
    );
    ticker.abort();
}

#[tokio::test]
async fn fuel_budget_stops_a_call_and_the_next_call_succeeds() {
    let config = EngineConfig {
        fuel_metering: true,
        ..EngineConfig::default()
    };
    let runtime = Runtime::builder().engine(config).build().await.unwrap();
    let budget = Budget {
        fuel: Some(5_000_000),
        ..Budget::default()
    };
    runtime
        .workload_start(prober("fuel", budget))
        .await
        .unwrap();
    let error = runtime
        .invoke("fuel", PROBE, "spin", &[], None)
        .await
        .unwrap_err();
    assert_eq!(
        error.budget_exceeded(),
        Some(&BudgetExceeded::OutOfFuel(5_000_000)),
        "{error}"
    );
    ok_after(&runtime, "fuel").await;

    // Fuel budgets need the engine to meter fuel: a clear refusal otherwise.
    let plain = plain_runtime().await;
    let error = plain
        .workload_start(prober("nofuel", budget))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("fuel metering"), "{error}");
}

#[tokio::test]
async fn memory_budget_stops_a_hog_and_the_next_call_succeeds() {
    let runtime = plain_runtime().await;
    let budget = Budget {
        memory_bytes: Some(16 << 20),
        ..Budget::default()
    };
    runtime.workload_start(prober("hog", budget)).await.unwrap();
    let small = runtime
        .invoke("hog", PROBE, "hog", &[Val::U32(4)], None)
        .await
        .unwrap();
    assert_eq!(small, [Val::U32(4)]);
    let error = runtime
        .invoke("hog", PROBE, "hog", &[Val::U32(64)], None)
        .await
        .unwrap_err();
    assert!(
        matches!(error.budget_exceeded(), Some(BudgetExceeded::MemoryLimit { limit, .. }) if *limit == 16 << 20),
        "{error}"
    );
    ok_after(&runtime, "hog").await;
}

#[tokio::test]
async fn a_trapping_call_fails_alone() {
    let runtime = plain_runtime().await;
    runtime
        .workload_start(prober("trapper", Budget::default()))
        .await
        .unwrap();
    let error = runtime
        .invoke("trapper", PROBE, "trap", &[], None)
        .await
        .unwrap_err();
    assert!(matches!(error, InvokeError::Trap { .. }), "{error:?}");
    ok_after(&runtime, "trapper").await;
    let error = runtime
        .invoke("trapper", PROBE, "nope", &[], None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, InvokeError::NoSuchExport { .. }),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_instances_bounds_concurrent_calls() {
    let runtime = plain_runtime().await;
    let mut probe = WorkloadComponent::new("single", component("prober"));
    probe.max_instances = 1;
    runtime
        .workload_start(workload("single", vec![probe]))
        .await
        .unwrap();
    let long = Budget {
        wall_time: Some(Duration::from_millis(800)),
        ..Default::default()
    };
    let busy = {
        let runtime = runtime.clone();
        tokio::spawn(async move {
            runtime
                .invoke("single", PROBE, "spin", &[], Some(&long))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let short = Budget {
        wall_time: Some(Duration::from_millis(150)),
        ..Default::default()
    };
    let error = runtime
        .invoke("single", PROBE, "ok", &[], Some(&short))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            InvokeError::Busy {
                max_instances: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(busy.await.unwrap().unwrap_err().budget_exceeded().is_some());
    ok_after(&runtime, "single").await;
}

#[tokio::test]
async fn stopping_a_linked_exporter_is_refused_unless_forced() {
    let runtime = Runtime::builder()
        .fallback(Arc::new(TestFallback))
        .build()
        .await
        .unwrap();
    let exporter = workload(
        "lib",
        vec![WorkloadComponent::new(
            "lib-exporter",
            component("exporter"),
        )],
    );
    runtime.workload_start(exporter).await.unwrap();
    runtime
        .set_link("app-importer", "trellis:example/adder", "lib-exporter")
        .await
        .unwrap();
    runtime
        .set_link("app-importer", "trellis:example/greeter", "lib-exporter")
        .await
        .unwrap();
    let app = workload(
        "app",
        vec![WorkloadComponent::new(
            "app-importer",
            component("importer"),
        )],
    );
    runtime.workload_start(app).await.unwrap();
    let add = || {
        runtime.invoke(
            "app-importer",
            FRONT,
            "add",
            &[Val::U32(2), Val::U32(3)],
            None,
        )
    };
    assert_eq!(add().await.unwrap(), [Val::U32(5)]);

    let error = runtime.workload_stop("test/lib", false).await.unwrap_err();
    assert!(
        matches!(&error, StopError::HasDependents { dependents, .. } if dependents == &["app-importer"]),
        "{error}"
    );
    assert!(error.to_string().contains("app-importer"));
    assert_eq!(
        add().await.unwrap(),
        [Val::U32(5)],
        "a refused stop changes nothing"
    );

    runtime.workload_stop("test/lib", true).await.unwrap();
    let routes = runtime.routes("app-importer").await.unwrap();
    assert!(
        routes
            .iter()
            .all(|(_, route)| !matches!(route, ImportRoute::InProcess(_))),
        "{routes:?}"
    );
    let error = add().await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no route for trellis:example/adder@0.1.0#add"),
        "{error}"
    );
    let greeting = runtime
        .invoke("app-importer", FRONT, "greet", &[string("cy")], None)
        .await
        .unwrap();
    assert_eq!(greeting, [string("fallback says hello to cy")]);

    // And back in-process once the exporter returns.
    let exporter = workload(
        "lib",
        vec![WorkloadComponent::new(
            "lib-exporter",
            component("exporter"),
        )],
    );
    runtime.workload_start(exporter).await.unwrap();
    runtime
        .set_link("app-importer", "trellis:example/adder", "lib-exporter")
        .await
        .unwrap();
    assert_eq!(add().await.unwrap(), [Val::U32(5)]);
}

#[tokio::test]
async fn components_see_only_granted_files_and_env() {
    let runtime = plain_runtime().await;
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("hello.txt"), "from the host").unwrap();
    let mut probe = WorkloadComponent::new("sandboxed", component("prober"));
    probe.mounts = vec![
        VolumeMount {
            volume: "shared".into(),
            guest_path: "/data".into(),
            read_only: true,
        },
        VolumeMount {
            volume: "scratch".into(),
            guest_path: "/scratch".into(),
            read_only: false,
        },
    ];
    probe.grants.env = vec![("GRANTED".into(), "yes".into())];
    let mut w = workload("sandbox", vec![probe]);
    w.volumes = vec![
        Volume {
            name: "shared".into(),
            kind: VolumeKind::HostPath(shared.path().into()),
        },
        Volume {
            name: "scratch".into(),
            kind: VolumeKind::EmptyDir,
        },
    ];
    runtime.workload_start(w).await.unwrap();
    let call = |f: &'static str, params: Vec<Val>| {
        let runtime = runtime.clone();
        async move {
            runtime
                .invoke("sandboxed", PROBE, f, &params, None)
                .await
                .unwrap()
                .remove(0)
        }
    };
    let ok = |s: &str| Val::Result(Ok(Some(Box::new(string(s)))));

    assert_eq!(
        call("read-file", vec![string("/data/hello.txt")]).await,
        ok("from the host")
    );
    for outside in [
        "/etc/passwd",
        "/data/../../etc/passwd",
        "/proc/self/environ",
    ] {
        assert!(
            matches!(
                call("read-file", vec![string(outside)]).await,
                Val::Result(Err(_))
            ),
            "{outside} must be unreadable"
        );
    }
    assert!(matches!(
        call("write-file", vec![string("/data/new.txt"), string("x")]).await,
        Val::Result(Err(_))
    ));
    assert!(
        !shared.path().join("new.txt").exists(),
        "a read-only mount must stay unchanged"
    );
    assert_eq!(
        call("write-file", vec![string("/scratch/a.txt"), string("kept")]).await,
        Val::Result(Ok(None))
    );
    assert_eq!(
        call("read-file", vec![string("/scratch/a.txt")]).await,
        ok("kept")
    );

    assert_eq!(
        call("get-env", vec![string("GRANTED")]).await,
        Val::Option(Some(Box::new(string("yes"))))
    );
    assert_eq!(
        call("get-env", vec![string("PATH")]).await,
        Val::Option(None),
        "host env must not leak"
    );
    assert_eq!(
        call("get-env", vec![string("HOME")]).await,
        Val::Option(None)
    );
}

async fn wait_for(runtime: &Runtime, id: &str, state: WorkloadState) {
    for _ in 0..250 {
        if runtime.workload_status(id).await.unwrap().state == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{id} never reached {state:?}: {:?}",
        runtime.workload_status(id).await
    );
}

fn service_workload(name: &str, source: ComponentSource, data: &std::path::Path) -> Workload {
    Workload {
        namespace: "svc".into(),
        name: name.into(),
        service: Some(WorkloadService {
            id: format!("{name}-service"),
            source,
            grants: Default::default(),
            mounts: vec![VolumeMount {
                volume: "data".into(),
                guest_path: "/data".into(),
                read_only: false,
            }],
            restart: RestartPolicy::Never,
        }),
        volumes: vec![Volume {
            name: "data".into(),
            kind: VolumeKind::HostPath(data.into()),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_wasi_cli_run_component_runs_as_a_service() {
    let runtime = plain_runtime().await;
    let data = tempfile::tempdir().unwrap();
    runtime
        .workload_start(service_workload(
            "ticker",
            component("service"),
            data.path(),
        ))
        .await
        .unwrap();
    // The guest creates the file, then writes it: wait for the content, not the name.
    let started = || std::fs::read_to_string(data.path().join("started")).unwrap_or_default();
    for _ in 0..250 {
        if started() == "service started" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(started(), "service started");
    let status = runtime.workload_status("svc/ticker").await.unwrap();
    assert_eq!(status.state, WorkloadState::Running);
    assert_eq!(status.components["ticker-service"], ComponentState::Running);
    std::fs::write(data.path().join("stop"), "").unwrap();
    wait_for(&runtime, "svc/ticker", WorkloadState::Completed).await;
    assert!(data.path().join("stopped").exists());
    runtime.workload_stop("svc/ticker", false).await.unwrap();

    // Stopping a running service ends it.
    let again = tempfile::tempdir().unwrap();
    runtime
        .workload_start(service_workload(
            "ticker",
            component("service"),
            again.path(),
        ))
        .await
        .unwrap();
    runtime.workload_stop("svc/ticker", false).await.unwrap();
    assert!(runtime.workload_status("svc/ticker").await.is_none());
}

fn wat(source: &str) -> ComponentSource {
    ComponentSource::Bytes(wat::parse_str(source).unwrap().into())
}

#[tokio::test]
async fn preview1_core_modules_run_as_services_with_clear_errors() {
    let runtime = plain_runtime().await;
    let data = tempfile::tempdir().unwrap();
    let hello =
        std::fs::read_to_string(trellis_tests::components_dir().join("p1-start.wat")).unwrap();
    runtime
        .workload_start(service_workload("p1", wat(&hello), data.path()))
        .await
        .unwrap();
    wait_for(&runtime, "svc/p1", WorkloadState::Completed).await;

    let trapping = r#"(module (func (export "_start") unreachable))"#;
    runtime
        .workload_start(service_workload("p1trap", wat(trapping), data.path()))
        .await
        .unwrap();
    for _ in 0..250 {
        if matches!(
            runtime.workload_status("svc/p1trap").await.unwrap().state,
            WorkloadState::Failed(_)
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let WorkloadState::Failed(reason) = runtime.workload_status("svc/p1trap").await.unwrap().state
    else {
        panic!("a trapping service must fail")
    };
    assert!(reason.contains("unreachable"), "{reason}");

    let no_start = r#"(module (func (export "main")))"#;
    let error = runtime
        .workload_start(service_workload("nostart", wat(no_start), data.path()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no `_start` export"), "{error}");
    assert!(
        runtime.workload_status("svc/nostart").await.is_none(),
        "a failed start leaves nothing behind"
    );

    let garbage = ComponentSource::Bytes(Arc::from(&b"definitely not wasm"[..]));
    let error = runtime
        .workload_start(service_workload("garbage", garbage, data.path()))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("not a WebAssembly binary"),
        "{error}"
    );
}

#[tokio::test]
async fn same_bytes_compile_once_and_heartbeat_reports_workloads() {
    let runtime = plain_runtime().await;
    runtime
        .workload_start(prober("cache-a", Budget::default()))
        .await
        .unwrap();
    let cached = runtime.engine().cached_components();
    runtime
        .workload_start(prober("cache-b", Budget::default()))
        .await
        .unwrap();
    assert_eq!(
        runtime.engine().cached_components(),
        cached,
        "identical bytes must hit the cache"
    );
    let file = ComponentSource::from_reference(&trellis_tests::component_ref("prober")).unwrap();
    let mut from_file = WorkloadComponent::new("cache-c", file);
    from_file.max_instances = 2;
    runtime
        .workload_start(workload("cache-c", vec![from_file]))
        .await
        .unwrap();
    assert_eq!(
        runtime.engine().cached_components(),
        cached,
        "file:// loads go through the same cache"
    );
    assert!(ComponentSource::from_reference("oci://ghcr.io/x:1").is_err());

    let heartbeat = runtime.heartbeat().await;
    let ids: Vec<_> = heartbeat.workloads.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["test/cache-a", "test/cache-b", "test/cache-c"]);
    assert!(
        heartbeat
            .workloads
            .iter()
            .all(|w| w.state == WorkloadState::Running)
    );
    let error = runtime
        .workload_start(prober("cache-a", Budget::default()))
        .await
        .unwrap_err();
    assert!(matches!(error, StartError::WorkloadExists(_)), "{error}");
    assert!(matches!(
        runtime.workload_stop("test/nope", false).await,
        Err(StopError::NotFound(_))
    ));
}

#[tokio::test]
async fn loaded_components_report_imports_and_exports_by_wit_name() {
    let engine = trellis_runtime::Engine::new(EngineConfig::default()).unwrap();
    let bytes = std::fs::read(trellis_tests::component_path("importer")).unwrap();
    let loaded = trellis_runtime::LoadedComponent::compile(&engine, bytes.into()).unwrap();
    assert!(
        loaded
            .imports
            .iter()
            .any(|i| i == "trellis:example/adder@0.1.0"),
        "{:?}",
        loaded.imports
    );
    assert!(loaded.imports.iter().any(|i| i == GREETER));
    let (name, functions) = loaded
        .exports
        .iter()
        .find(|(name, _)| name == FRONT)
        .expect("exports front");
    assert_eq!(name, FRONT);
    assert!(
        functions.iter().any(|f| f == "checked-div"),
        "{functions:?}"
    );

    let core = wat::parse_str("(module)").unwrap();
    let error = trellis_runtime::LoadedComponent::compile(&engine, core.into())
        .err()
        .unwrap();
    assert!(error.to_string().contains("found a core module"), "{error}");
}

/// Two starts of the same component id racing: one runs, the other is refused while the first
/// is still compiling, and a stop leaves the id free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_start_of_the_same_id_is_refused() {
    let runtime = plain_runtime().await;
    let start = |name: &str| {
        let runtime = runtime.clone();
        let workload = workload(
            name,
            vec![WorkloadComponent::new("shared-id", component("exporter"))],
        );
        tokio::spawn(async move { runtime.workload_start(workload).await })
    };
    let (first, second) = (start("first"), start("second"));
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    let refused = match (&first, &second) {
        (Ok(_), Err(error)) | (Err(error), Ok(_)) => error,
        _ => panic!("exactly one start must win: {first:?} / {second:?}"),
    };
    assert!(
        matches!(refused, StartError::ComponentExists(id) if id == "shared-id"),
        "{refused}"
    );
    let winner = if first.is_ok() {
        "test/first"
    } else {
        "test/second"
    };
    runtime.workload_stop(winner, false).await.unwrap();
    runtime
        .workload_start(workload(
            "again",
            vec![WorkloadComponent::new("shared-id", component("exporter"))],
        ))
        .await
        .expect("the id is free after the stop");
}
