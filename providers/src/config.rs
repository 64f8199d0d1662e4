//! `wasi:config/store@0.2.0-draft` (`get`, `get-all`) and its legacy name
//! `wasi:config/runtime@0.2.0-draft`, served from the component's config map.
//!
//! The map is the binding config (the workload's host-interface config for `wasi:config`) when
//! the component binds; the embedder replaces it with [`ConfigPlugin::update_config`] (the
//! lattice host hands in the merged named config, CONFIGDATA). An invocation sees the map as it
//! was when the invocation started.

use std::collections::BTreeMap;
use std::sync::Arc;

use trellis_runtime::{Binding, Extensions, InterfaceName, InvocationCtx, Plugin};
use wasmtime::component::{HasSelf, Linker};

use crate::bound::Bound;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "trellis:providers/config-host",
        imports: { default: trappable },
    });
}

use bindings::wasi::config::{runtime, store};

/// A component's config, as one invocation sees it.
pub type ConfigMap = BTreeMap<String, String>;

/// Serves each component its config map.
#[derive(Default)]
pub struct ConfigPlugin {
    maps: Bound<ConfigMap>,
}

impl ConfigPlugin {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the config of a bound component; later invocations see `map`. Returns `false`
    /// (and keeps nothing) when the component is not bound to this plugin.
    pub fn update_config(&self, component_id: &str, map: ConfigMap) -> bool {
        if !self.maps.contains(component_id) {
            return false;
        }
        self.maps.insert(component_id, map);
        true
    }
}

/// Per-invocation state: the map the invocation started with.
struct ConfigState(Arc<ConfigMap>);

fn state(ctx: &mut InvocationCtx) -> &mut ConfigState {
    ctx.extensions()
        .get_or_insert_with(|| ConfigState(Arc::default()))
}

impl store::Host for ConfigState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self.0.get(&key).cloned()))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        Ok(Ok(self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}

impl runtime::Host for ConfigState {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, runtime::ConfigError>> {
        Ok(Ok(self.0.get(&key).cloned()))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, runtime::ConfigError>> {
        Ok(Ok(self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}

#[async_trait::async_trait]
impl Plugin for ConfigPlugin {
    fn id(&self) -> &str {
        "config"
    }

    fn imports(&self) -> Vec<InterfaceName> {
        [
            "wasi:config/store@0.2.0-draft",
            "wasi:config/runtime@0.2.0-draft",
        ]
        .iter()
        .map(|name| InterfaceName::parse(name).expect("valid name"))
        .collect()
    }

    async fn bind(&self, binding: &Binding) -> anyhow::Result<()> {
        self.maps
            .insert(&binding.component_id, binding.config.clone());
        Ok(())
    }

    async fn unbind(&self, component_id: &str) {
        self.maps.remove(component_id);
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<InvocationCtx>,
        interface: &InterfaceName,
    ) -> anyhow::Result<()> {
        match interface.interface.as_str() {
            "store" => store::add_to_linker::<_, HasSelf<ConfigState>>(linker, state)?,
            "runtime" => runtime::add_to_linker::<_, HasSelf<ConfigState>>(linker, state)?,
            other => anyhow::bail!("the config plugin does not serve `{other}`"),
        }
        Ok(())
    }

    fn prepare(&self, component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        let map = self.maps.get(component_id).unwrap_or_default();
        extensions.insert(ConfigState(map));
        Ok(())
    }
}
