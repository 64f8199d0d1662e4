//! Runs the example component pair through the runtime alone (no NATS): the importer calls the
//! exporter in-process, then a spinning call is stopped by its budget and the host keeps serving.
//!
//! `bash tests/components/build.sh && cargo run -p trellis-runtime --example demo`

use std::time::Duration;

use trellis_runtime::{Budget, ComponentSource, Host, Runtime, Val, Workload, WorkloadComponent};

const FRONT: &str = "trellis:example/front@0.1.0";
const PROBE: &str = "trellis:example/probe@0.1.0";

fn guest(name: &str) -> anyhow::Result<ComponentSource> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/components/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `bash tests/components/build.sh` first",
        path.display()
    );
    ComponentSource::from_reference(&format!("file://{}", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = Runtime::builder().build().await?;
    let workload = Workload {
        namespace: "demo".into(),
        name: "pair".into(),
        components: vec![
            WorkloadComponent::new("importer", guest("importer")?),
            WorkloadComponent::new("exporter", guest("exporter")?),
            WorkloadComponent::new("prober", guest("prober")?),
        ],
        ..Default::default()
    };
    let status = runtime.workload_start(workload).await?;
    println!("started {} ({:?})", status.id, status.state);
    for (import, route) in runtime.routes("importer").await.unwrap_or_default() {
        println!("  importer imports {import:<40} -> {route:?}");
    }
    let sum = runtime
        .invoke("importer", FRONT, "add", &[Val::U32(40), Val::U32(2)], None)
        .await?;
    println!("importer.add(40, 2) = {sum:?}");
    let greeting = runtime
        .invoke(
            "importer",
            FRONT,
            "greet",
            &[Val::String("lattice".into())],
            None,
        )
        .await?;
    println!("importer.greet(\"lattice\") = {greeting:?}");

    let budget = Budget {
        wall_time: Some(Duration::from_millis(200)),
        ..Budget::default()
    };
    match runtime
        .invoke("prober", PROBE, "spin", &[], Some(&budget))
        .await
    {
        Err(error) => println!("prober.spin() with a 200 ms budget: {error}"),
        Ok(values) => println!("prober.spin() unexpectedly returned {values:?}"),
    }
    let ok = runtime.invoke("prober", PROBE, "ok", &[], None).await?;
    println!("prober.ok() right after = {ok:?}");
    runtime.shutdown().await;
    Ok(())
}
