//! What each component's built-in plugins are configured with, derived from lattice state, and
//! keeping it current.
//!
//! A component's plugin config ([`PluginConfig`], interface → map) comes from:
//! - its named config (`config` in `component.scale`, CONFIGDATA merged in list order), for
//!   `wasi:config/store` and `wasi:config/runtime`;
//! - each `default` link between it and a built-in provider started here (either direction):
//!   the built-in reference's defaults (e.g. `?backend=nats`), the provider's named config
//!   from `provider.start`, then the component side's named config, then the provider side's (`target_config` of a component → provider link, `source_config` of a provider →
//!   component link), merged in order, for each linked interface. So an http-server provider's
//!   link to a component carries the `address` (and `path`, `host`) the server routes by.
//!
//! [`follow`] recomputes it whenever links, named config or built-in providers change: a
//! change to the named config alone is handed to the config plugin (`update_config`); any other
//! change re-binds the component's plugins ([`trellis_runtime::Runtime::rebind`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use trellis_runtime::HostInterface;

use crate::builtins::{ConfigMap, RunningProvider};
use crate::state::HostState;

/// The link name whose links configure built-in plugins.
const DEFAULT_LINK: &str = "default";

/// The interfaces the named config is served under.
const CONFIG_INTERFACES: [&str; 2] = ["wasi:config/store", "wasi:config/runtime"];

/// Interface (`ns:pkg/iface`) → the config of the plugin serving it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginConfig(BTreeMap<String, ConfigMap>);

impl PluginConfig {
    /// The merged named config (what `wasi:config` serves).
    pub fn named(&self) -> ConfigMap {
        self.0
            .get(CONFIG_INTERFACES[0])
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `other` differs only in the named config.
    pub fn same_links(&self, other: &PluginConfig) -> bool {
        let links = |c: &PluginConfig| {
            c.0.iter()
                .filter(|(i, _)| !CONFIG_INTERFACES.contains(&i.as_str()))
                .map(|(i, m)| (i.clone(), m.clone()))
                .collect::<Vec<_>>()
        };
        links(self) == links(other)
    }

    pub fn host_interfaces(&self) -> Vec<HostInterface> {
        self.0
            .iter()
            .map(|(interface, config)| HostInterface {
                interface: interface.clone(),
                config: config.clone(),
            })
            .collect()
    }
}

/// The named configs `names` merged in order (missing ones contribute nothing).
fn merged(state: &HostState, names: &[String]) -> ConfigMap {
    names
        .iter()
        .filter_map(|name| state.config.get(name))
        .flatten()
        .collect()
}

/// The plugin config component `id`, scaled with named config `config`, should have now.
pub fn desired(state: &HostState, id: &str, config: &[String]) -> PluginConfig {
    let named = merged(state, config);
    let mut interfaces: BTreeMap<String, ConfigMap> = CONFIG_INTERFACES
        .iter()
        .map(|i| (i.to_string(), named.clone()))
        .collect();
    for link in state.links.links() {
        if link.name != DEFAULT_LINK {
            continue;
        }
        let (provider, component_side, provider_side) = if link.source_id == id {
            (&link.target, &link.source_config, &link.target_config)
        } else if link.target == id {
            (&link.source_id, &link.target_config, &link.source_config)
        } else {
            continue;
        };
        let Some(provider) = state.providers.get(provider) else {
            continue;
        };
        let map = link_config(state, &provider, component_side, provider_side);
        for interface in &link.interfaces {
            let name = format!("{}:{}/{interface}", link.wit_namespace, link.wit_package);
            interfaces.entry(name).or_insert_with(|| map.clone());
        }
    }
    PluginConfig(interfaces)
}

/// The plugin config a link between a component and built-in `provider` gives: the built-in
/// reference's defaults, the provider's named config, then the named configs on the
/// component's side of the link and on the provider's side, merged in that order.
pub fn link_config(
    state: &HostState,
    provider: &RunningProvider,
    component_side: &[String],
    provider_side: &[String],
) -> ConfigMap {
    let mut map = provider.builtin.defaults.clone();
    map.extend(merged(state, &provider.config));
    map.extend(merged(state, component_side));
    map.extend(merged(state, provider_side));
    map
}

/// Keeps every running component's plugin config current until the host stops (the caller
/// aborts the task).
pub async fn follow(state: Arc<HostState>) {
    let mut links = state.links.subscribe();
    let mut config = state.config.subscribe();
    let mut providers = state.providers.subscribe();
    loop {
        crate::components::reconfigure(&state).await;
        crate::http_bridge::routes::sync(&state).await;
        let changed = tokio::select! {
            changed = links.changed() => changed,
            changed = config.changed() => changed,
            changed = providers.changed() => changed,
        };
        if changed.is_err() {
            return;
        }
    }
}
