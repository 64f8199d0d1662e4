//! The one loop that keeps this host in line with the lattice state.
//!
//! Whenever links, named config, the built-in providers or the components running here change,
//! [`run`] derives what each component should have ([`mod@derive`], a pure function of a read-only
//! view of the state) and applies the difference to what it has:
//! - links whose target moved or changed → the runtime re-links the component (in-process when
//!   the target runs here, over wRPC otherwise);
//! - named config alone changed → the config plugin gets the new map (no rebind);
//! - limits in named config changed → the component's next calls get them;
//! - a link's plugin config changed → the component's plugins are re-bound;
//! - the HTTP server's routes to linked components, wherever they run.
//!
//! A component's plan at start comes from the same derivation (see `components::start`).

pub mod derive;

use std::sync::Arc;

use trellis_runtime::{InterfaceName, LinkSource};

use crate::builtins::{ConfigMap, Providers};
use crate::components::NAMESPACE;
use crate::state::HostState;
use crate::store::LinkStore;
use derive::{BuiltinProvider, LatticeView};
use trellis_deployer::wire::{DEFAULT_LINK_NAME, Link};

/// Reconciles until the host stops (the caller aborts the task).
pub async fn run(state: Arc<HostState>) {
    let mut links = state.links.subscribe();
    let mut config = state.config.subscribe();
    let mut providers = state.providers.subscribe();
    let mut components = state.components.subscribe();
    loop {
        apply(&state).await;
        let changed = tokio::select! {
            changed = links.changed() => changed,
            changed = config.changed() => changed,
            changed = providers.changed() => changed,
            changed = components.changed() => changed,
        };
        if changed.is_err() {
            return;
        }
    }
}

/// Brings every running component, and the HTTP server's routes, in line with the state now.
async fn apply(state: &HostState) {
    {
        let _order = state.components.lifecycle().await;
        for (id, current) in state.components.running() {
            let desired = derive::component_plan(state, &id, &current.config);
            if desired == current.plan {
                continue;
            }
            if desired.limits != current.plan.limits {
                let applied =
                    crate::components::set_budget(state, &id, &desired, current.limits.as_ref());
                if let Err(error) = applied.await {
                    tracing::warn!(component = %id, "limits from config not applied: {error}");
                }
            }
            if desired.grants != current.plan.grants {
                tracing::warn!(component = %id, "environment and volumes in named config changed: they apply from the component's next start");
            }
            if desired.links != current.plan.links
                && let Err(error) = state.runtime.relink(std::slice::from_ref(&id)).await
            {
                tracing::warn!(component = %id, "re-linking after a link change: {error}");
            }
            if desired.plugins != current.plan.plugins {
                if desired.plugins.same_links(&current.plan.plugins) {
                    if let Some(plugin) = &state.plugins.config {
                        plugin.update_config(&id, desired.plugins.named());
                    }
                } else {
                    let workload = format!("{NAMESPACE}/{id}");
                    let identity = crate::components::SecretsIdentity::new(
                        &id,
                        current.code(),
                        &current.annotations,
                    );
                    let rebound = match identity.plugin_interfaces(state, &desired).await {
                        Ok(interfaces) => state
                            .runtime
                            .rebind(&workload, &interfaces)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(error) => Err(error.to_string()),
                    };
                    match rebound {
                        Ok(()) => {
                            tracing::info!(component = %id, "plugins re-bound with new link config")
                        }
                        Err(error) => {
                            tracing::warn!(component = %id, "re-binding plugins: {error}")
                        }
                    }
                }
            }
            state.components.set_plan(&id, desired);
        }
    }
    if let Some(server) = &state.plugins.http_server {
        for (route, error) in server.set_remote_routes(derive::http_routes(state)).await {
            tracing::warn!(provider = %route.source_id, component = %route.component_id, "HTTP route: {error}");
        }
    }
}

impl LatticeView for HostState {
    fn links(&self) -> Vec<Link> {
        self.links.links()
    }

    fn config(&self, name: &str) -> Option<ConfigMap> {
        self.config.get(name)
    }

    fn builtin_provider(&self, id: &str) -> Option<BuiltinProvider> {
        self.providers.get(id).map(|provider| BuiltinProvider {
            builtin: provider.builtin,
            config: provider.config,
        })
    }

    fn runs_here(&self, id: &str) -> bool {
        self.components.get(id).is_some()
    }
}

/// What the runtime reads of the lattice's links: the target of a component's `default` link
/// for an interface (composed in-process when it runs here, else called over the lattice) and
/// whether a target is a built-in provider started here (its links stay on the plugin).
pub struct RuntimeLinks {
    pub store: Arc<LinkStore>,
    pub providers: Arc<Providers>,
}

impl LinkSource for RuntimeLinks {
    fn target(&self, source: &str, interface: &str) -> Option<String> {
        let interface = InterfaceName::parse(interface)?;
        self.store
            .links_from(source)
            .into_iter()
            .find(|link| {
                link.name == DEFAULT_LINK_NAME
                    && link.covers(
                        &interface.namespace,
                        &interface.package,
                        &interface.interface,
                    )
            })
            .map(|link| link.target)
    }

    fn sources_linking_to(&self, targets: &[String]) -> Vec<String> {
        let mut sources: Vec<String> = self
            .store
            .links()
            .into_iter()
            .filter(|link| link.name == DEFAULT_LINK_NAME && targets.contains(&link.target))
            .map(|link| link.source_id)
            .collect();
        sources.dedup();
        sources
    }

    fn served_by_plugins(&self, target: &str) -> bool {
        self.providers.get(target).is_some()
    }
}
