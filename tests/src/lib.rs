//! Shared test harness: builds the guest components under `tests/components` and the test
//! providers under `tests/providers` (once per test process; cargo makes it a no-op when
//! nothing changed) and finds them; [`nats`] starts a real NATS server for the lattice tests;
//! [`registry`] a real OCI registry; [`http`] makes plain HTTP requests to what the hosts serve;
//! [`wadm`] runs the real wadm (built by `tests/wadm/build.sh`); [`secrets`] the real
//! `secrets-nats-kv` backend (installed by `tests/secrets/build.sh`); [`kv`] and [`blob`] drive
//! the `kv` and `blob` guests; [`logs`] captures what the hosts log.

pub mod blob;
pub mod http;
pub mod kv;
pub mod lattice;
pub mod logs;
pub mod nats;
pub mod otlp;
pub mod registry;
pub mod secrets;
pub mod wadm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use trellis_runtime::ComponentSource;

/// Installs the process's global `tracing` subscriber (once; `RUST_LOG`, else warnings and the
/// hosts' provider output, into the test's captured output), as the `trellis` binary installs
/// one. Without it, tracing's `log` feature (enabled by oci-client) evaluates the fields of
/// disabled spans, and wrpc-transport-nats's writers hex-format every buffer they publish: bulk
/// data over the lattice would move many times slower than in a real host.
pub fn install_tracing() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "warn,trellis_host::provider=debug".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

/// Root of the guest component workspace.
pub fn components_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("components")
}

/// Builds the guest components (once per process) and returns the path of `name`.wasm.
pub fn component_path(name: &str) -> PathBuf {
    install_tracing();
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(components_dir().join("build.sh"))
            .status()
            .expect("running tests/components/build.sh");
        assert!(status.success(), "building guest components failed");
    });
    let path = components_dir()
        .join("target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The bytes of a guest component, as a runtime source.
pub fn component(name: &str) -> ComponentSource {
    let bytes = std::fs::read(component_path(name)).expect("reading component");
    ComponentSource::Bytes(Arc::from(bytes))
}

/// Builds the native test providers (once per process; a no-op when unchanged) and returns
/// the provider archive of `name` (`tests/providers/target/release/{name}.par.gz`).
pub fn provider_archive(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("providers");
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(dir.join("build.sh"))
            .status()
            .expect("running tests/providers/build.sh");
        assert!(status.success(), "building the test providers failed");
    });
    dir.join("target/release").join(format!("{name}.par.gz"))
}

/// The real wadm as a test binary (`tests/wadm/target/release/trellis-test-wadm`). Not built
/// here: wadm's dependency tree takes minutes to compile, longer than a test should wait.
pub fn wadm_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("wadm/target/release/trellis-test-wadm");
    assert!(
        path.exists(),
        "{} is missing: build it with `bash tests/wadm/build.sh` (or `bash .ci/setup-tests`)",
        path.display()
    );
    path
}

/// A `file://` reference to a guest component.
pub fn component_ref(name: &str) -> String {
    format!("file://{}", component_path(name).display())
}
