//! Runtime benchmarks: in-process call latency (composed vs. a dynamic `Val` forwarder),
//! per-invocation instantiation (pooling vs. on-demand), compile time (cold vs. cached), the
//! wRPC value bridge's own cost (encode + decode of 1 KiB), and what limits cost (fuel
//! metering off and on, an execution limit or none).
//!
//! Run with `cargo bench -p trellis-runtime --bench runtime`; see BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use trellis_runtime::{
    Budget, ComponentSource, Engine, EngineConfig, Host, ImportFallback, InvocationCtx, Runtime,
    Val, Workload, WorkloadComponent,
};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceType};

const FRONT: &str = "trellis:example/front@0.1.0";
const ADDER: &str = "trellis:example/adder@0.1.0";
const MINIMAL: &str = "trellis:example/minimal@0.1.0";

/// `add` in a component with a single import-free core module.
const MINIMAL_ADDER: &str = r#"(component
  (core module $m (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
  (core instance $i (instantiate $m))
  (func $add (param "a" u32) (param "b" u32) (result u32) (canon lift (core func $i "add")))
  (instance $api (export "add" (func $add)))
  (export "trellis:example/minimal@0.1.0" (instance $api)))"#;

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

async fn start(runtime: &Runtime, name: &str, components: &[(&str, &str)]) {
    let components = components
        .iter()
        .map(|(id, guest)| WorkloadComponent::new(*id, trellis_tests::component(guest)))
        .collect();
    let workload = Workload {
        namespace: "bench".into(),
        name: name.into(),
        components,
        ..Default::default()
    };
    runtime.workload_start(workload).await.unwrap();
}

/// The exporter, instantiated lazily into the importer's store by [`DynamicForwarder`].
struct ExporterInstance(wasmtime::component::Instance);

/// The alternative to composition, as the prototype and wash do it: every imported function
/// is a dynamic host function that forwards `Val`s to an exporter instance in the same store.
struct DynamicForwarder {
    exporter: Vec<u8>,
}

impl ImportFallback for DynamicForwarder {
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
        let component = Component::new(engine, &self.exporter)?;
        let mut exporter_linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut exporter_linker)?;
        let exporter = exporter_linker.instantiate_pre(&component)?;
        let Some((_, parent)) = component.get_export(None, import) else {
            return Ok(false);
        };
        let mut instance = linker.instance(import)?;
        for (name, item) in instance_ty.exports(engine) {
            match item.ty {
                // The benchmark does not call the resource; it only has to link.
                ComponentItem::Resource(_) => {
                    instance.resource(name, ResourceType::host::<()>(), |_, _| Ok(()))?
                }
                ComponentItem::ComponentFunc(_) => {
                    let (_, index) = component.get_export(Some(&parent), name).unwrap();
                    let pre = exporter.clone();
                    instance.func_new_async(name, move |mut store, _ty, params, results| {
                        let pre = pre.clone();
                        Box::new(async move {
                            let exporter =
                                match store.data_mut().extensions().get_mut::<ExporterInstance>() {
                                    Some(ExporterInstance(instance)) => *instance,
                                    None => {
                                        let instance = pre.instantiate_async(&mut store).await?;
                                        store
                                            .data_mut()
                                            .extensions()
                                            .insert(ExporterInstance(instance));
                                        instance
                                    }
                                };
                            let func = exporter.get_func(&mut store, index).unwrap();
                            func.call_async(&mut store, params, results).await
                        })
                    })?
                }
                _ => {}
            }
        }
        Ok(true)
    }
}

/// Per-call latency of importer → exporter calls, looping inside the guest so the host's
/// invocation overhead is spread over `iters` calls.
fn in_process_calls(c: &mut Criterion) {
    let rt = tokio();
    let composed_with = |component_model_async| {
        rt.block_on(async {
            let runtime = Runtime::builder()
                .engine(EngineConfig {
                    component_model_async,
                    ..EngineConfig::default()
                })
                .build()
                .await
                .unwrap();
            start(
                &runtime,
                "composed",
                &[("c-importer", "importer"), ("c-exporter", "exporter")],
            )
            .await;
            runtime
        })
    };
    let composed = composed_with(false);
    let composed_async = composed_with(true);
    let dynamic = rt.block_on(async {
        let exporter = std::fs::read(trellis_tests::component_path("exporter")).unwrap();
        let runtime = Runtime::builder()
            .fallback(Arc::new(DynamicForwarder { exporter }))
            .build()
            .await
            .unwrap();
        start(&runtime, "dynamic", &[("d-importer", "importer")]).await;
        runtime
    });
    let mut group = c.benchmark_group("in-process call");
    group.measurement_time(Duration::from_secs(3));
    let cases: [(&str, &str, Vec<Val>); 3] = [
        ("add u32", "bench-add", vec![]),
        ("echo 1 KiB string", "bench-echo", vec![Val::U32(1024)]),
        ("echo 1 KiB list<u8>", "bench-bytes", vec![Val::U32(1024)]),
    ];
    for (label, function, extra) in &cases {
        for (path, runtime, id) in [
            ("composed", &composed, "c-importer"),
            (
                "composed, component-model async on",
                &composed_async,
                "c-importer",
            ),
            ("dynamic Val", &dynamic, "d-importer"),
        ] {
            group.bench_function(format!("{label} / {path}"), |b| {
                b.iter_custom(|iters| {
                    let mut params = vec![Val::U32(iters as u32)];
                    params.extend(extra.iter().cloned());
                    rt.block_on(async {
                        let started = Instant::now();
                        runtime
                            .invoke(id, FRONT, function, &params, None)
                            .await
                            .unwrap();
                        started.elapsed()
                    })
                })
            });
        }
    }
    group.finish();
}

/// New store + instantiate + one call: what every invocation pays.
fn instantiation(c: &mut Criterion) {
    let rt = tokio();
    let mut group = c.benchmark_group("invocation (new store + instantiate + add)");
    for (label, config) in [
        ("pooling", EngineConfig::default()),
        (
            "pooling, component-model async on",
            EngineConfig {
                component_model_async: true,
                ..EngineConfig::default()
            },
        ),
        (
            "on-demand",
            EngineConfig {
                pooling: None,
                ..EngineConfig::default()
            },
        ),
    ] {
        let runtime = rt.block_on(async {
            let runtime = Runtime::builder().engine(config).build().await.unwrap();
            start(&runtime, label, &[("exporter", "exporter")]).await;
            runtime
        });
        group.bench_function(label, |b| {
            b.to_async(&rt).iter(|| {
                runtime.invoke("exporter", ADDER, "add", &[Val::U32(1), Val::U32(2)], None)
            })
        });
    }
    // A minimal component (one core module, no imports): the runtime's own per-call floor.
    let minimal = wat::parse_str(MINIMAL_ADDER).unwrap();
    let runtime = rt.block_on(async {
        let runtime = Runtime::builder().build().await.unwrap();
        let component = WorkloadComponent::new("minimal", ComponentSource::Bytes(minimal.into()));
        let workload = Workload {
            namespace: "bench".into(),
            name: "minimal".into(),
            components: vec![component],
            ..Default::default()
        };
        runtime.workload_start(workload).await.unwrap();
        runtime
    });
    group.bench_function("pooling, minimal component", |b| {
        b.to_async(&rt)
            .iter(|| runtime.invoke("minimal", MINIMAL, "add", &[Val::U32(1), Val::U32(2)], None))
    });
    // The same work on bare wasmtime (default WASI context, no budget, no permit): the floor.
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let bytes = std::fs::read(trellis_tests::component_path("exporter")).unwrap();
    let (component, _) = engine.compile(&bytes).unwrap();
    let mut linker = Linker::<Bare>::new(engine.wasmtime());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    let pre = linker.instantiate_pre(&component).unwrap();
    let (_, adder) = component.get_export(None, ADDER).unwrap();
    let (_, add) = component.get_export(Some(&adder), "add").unwrap();
    group.bench_function("bare wasmtime, pooling", |b| {
        b.to_async(&rt).iter(|| async {
            let ctx = Bare {
                wasi: wasmtime_wasi::WasiCtx::builder().build(),
                table: Default::default(),
            };
            let mut store = wasmtime::Store::new(engine.wasmtime(), ctx);
            store.set_epoch_deadline(u64::MAX / 2);
            let instance = pre.instantiate_async(&mut store).await.unwrap();
            let func = instance.get_func(&mut store, add).unwrap();
            let mut results = [Val::U32(0)];
            func.call_async(&mut store, &[Val::U32(1), Val::U32(2)], &mut results)
                .await
                .unwrap();
            results
        })
    });
    group.finish();
}

/// Store data for the bare-wasmtime floor in [`instantiation`].
struct Bare {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for Bare {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Compiling the importer on a fresh engine vs. finding it in the digest cache.
fn compile(c: &mut Criterion) {
    let bytes = std::fs::read(trellis_tests::component_path("importer")).unwrap();
    let mut group = c.benchmark_group("compile importer");
    group.sample_size(10);
    group.bench_function("cold", |b| {
        b.iter_batched(
            || Engine::new(EngineConfig::default()).unwrap(),
            |engine| engine.compile(&bytes).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    let engine = Engine::new(EngineConfig::default()).unwrap();
    engine.compile(&bytes).unwrap();
    group.bench_function("cached", |b| b.iter(|| engine.compile(&bytes).unwrap()));
    group.finish();
}

/// Encoding a value for wRPC and decoding it back, with no transport: what the bridge itself
/// costs per call, for 1 KiB as a string, as `list<u8>`, and a small record.
fn value_bridge(c: &mut Criterion) {
    use trellis_runtime::value;
    use wasmtime::AsContextMut as _;
    use wasmtime::component::{ResourceTable, Type};

    let engine = wasmtime::Engine::default();
    let ty = |wat: &str| -> Type {
        let text = format!("(component (import \"f\" (func (param \"x\" {wat}))))");
        let component = Component::new(&engine, &text).unwrap();
        let component_type = component.component_type();
        let (_, item) = component_type.imports(&engine).next().unwrap();
        let ComponentItem::ComponentFunc(func) = item.ty else {
            unreachable!()
        };
        func.params().next().unwrap().1
    };
    let mut store = wasmtime::Store::new(&engine, ResourceTable::new());
    let cases = [
        ("string, 1 KiB", ty("string"), Val::String("x".repeat(1024))),
        (
            "list<u8>, 1 KiB",
            ty("(list u8)"),
            Val::List(vec![Val::U8(7); 1024]),
        ),
        (
            "tuple<u32, string, option<s64>>",
            ty("(tuple u32 string (option s64))"),
            Val::Tuple(vec![
                Val::U32(300),
                Val::String("label".into()),
                Val::Option(Some(Box::new(Val::S64(-5)))),
            ]),
        ),
    ];
    let mut group = c.benchmark_group("value bridge (encode + decode)");
    for (name, ty, val) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut out = bytes::BytesMut::new();
                value::encode(&mut store.as_context_mut(), &val, &ty, &mut out).unwrap();
                value::decode_all(&mut store.as_context_mut(), &out, std::slice::from_ref(&ty))
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// The cost of limits: 1000 in-process `add` calls in one invocation (call-heavy guest code,
/// where fuel metering costs most) and one invocation of the exporter's `add` (per-call set-up),
/// with no execution limit, with one (epochs tick either way), and with fuel metering on.
fn limits(c: &mut Criterion) {
    let rt = tokio();
    let no_limit = Budget {
        wall_time: None,
        fuel: None,
        memory_bytes: None,
    };
    let cases = [
        ("no execution limit", EngineConfig::default(), no_limit),
        (
            "execution limit 600 s",
            EngineConfig::default(),
            Budget {
                wall_time: Some(Duration::from_secs(600)),
                ..no_limit
            },
        ),
        (
            "fuel metering on",
            EngineConfig {
                fuel_metering: true,
                ..EngineConfig::default()
            },
            Budget {
                fuel: Some(u64::MAX / 2),
                ..no_limit
            },
        ),
    ];
    let mut group = c.benchmark_group("limits");
    group.measurement_time(Duration::from_secs(3));
    for (label, config, budget) in cases {
        let runtime = rt.block_on(async {
            let runtime = Runtime::builder().engine(config).build().await.unwrap();
            let components = ["importer", "exporter"]
                .map(|guest| {
                    let mut component =
                        WorkloadComponent::new(guest, trellis_tests::component(guest));
                    component.budget = budget;
                    component
                })
                .into();
            let workload = Workload {
                namespace: "bench".into(),
                name: label.into(),
                components,
                ..Default::default()
            };
            runtime.workload_start(workload).await.unwrap();
            runtime
        });
        group.bench_function(format!("1000 in-process add / {label}"), |b| {
            b.to_async(&rt)
                .iter(|| runtime.invoke("importer", FRONT, "bench-add", &[Val::U32(1000)], None))
        });
        group.bench_function(format!("invocation / {label}"), |b| {
            b.to_async(&rt).iter(|| {
                runtime.invoke("exporter", ADDER, "add", &[Val::U32(1), Val::U32(2)], None)
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    in_process_calls,
    instantiation,
    compile,
    value_bridge,
    limits
);
criterion_main!(benches);
