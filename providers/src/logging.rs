//! `wasi:logging/logging`: component log calls become `tracing` events with target
//! [`TARGET`], the component id, the guest's context string and the level.
//!
//! wasmCloud components import this interface both unversioned and as `0.1.0-draft`, two
//! instance names bindgen cannot serve from one package, so the one function is wrapped by hand
//! under whichever name the component imports; the `level` enum is lifted with the component
//! derive macros, matching `wit/deps/logging/logging.wit`.

use trellis_runtime::{InterfaceName, InvocationCtx, Plugin};
use wasmtime::component::{ComponentType, Lift, Linker};

/// The `tracing` target of every component log event.
pub const TARGET: &str = "trellis::component";

/// `wasi:logging/logging.level`.
#[derive(ComponentType, Lift, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum Level {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
    #[component(name = "critical")]
    Critical,
}

/// Sends component logs to `tracing`. Needs no configuration.
#[derive(Default)]
pub struct LoggingPlugin;

impl LoggingPlugin {
    pub fn new() -> Self {
        Self
    }
}

/// Emits one component log line. `critical` has no `tracing` level of its own: it is an error
/// event with `critical = true`.
fn emit(component: &str, level: Level, context: &str, message: &str) {
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(target: TARGET, $level, component, context, "{message}")
        };
    }
    match level {
        Level::Trace => event!(tracing::Level::TRACE),
        Level::Debug => event!(tracing::Level::DEBUG),
        Level::Info => event!(tracing::Level::INFO),
        Level::Warn => event!(tracing::Level::WARN),
        Level::Error => event!(tracing::Level::ERROR),
        Level::Critical => tracing::event!(
            target: TARGET,
            tracing::Level::ERROR,
            component,
            context,
            critical = true,
            "{message}"
        ),
    }
}

#[async_trait::async_trait]
impl Plugin for LoggingPlugin {
    fn id(&self) -> &str {
        "logging"
    }

    fn imports(&self) -> Vec<InterfaceName> {
        vec![InterfaceName::parse("wasi:logging/logging").expect("valid name")]
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<InvocationCtx>,
        interface: &InterfaceName,
    ) -> anyhow::Result<()> {
        linker.instance(&interface.to_string())?.func_wrap(
            "log",
            |store, (level, context, message): (Level, String, String)| {
                emit(store.data().component_id(), level, &context, &message);
                Ok(())
            },
        )?;
        Ok(())
    }
}
