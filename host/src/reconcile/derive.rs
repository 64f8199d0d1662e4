//! What the lattice state asks of this host, derived from a read-only [`LatticeView`] of it:
//! for each component running here, where its links go and what its built-in plugins are
//! configured with ([`component_plan`]); for the HTTP server, the routes it keeps for linked
//! components wherever they run ([`http_routes`]). Pure functions of the view.
//!
//! A component's plugin config ([`PluginConfig`], interface → map) comes from:
//! - its named config (`config` in `component.scale`, CONFIGDATA merged in list order), for
//!   `wasi:config/store` and `wasi:config/runtime`, less the `trellis.limits.*` keys, which
//!   become the plan's limits (see [`crate::limits`]);
//! - each link between it and a built-in provider started here (either direction, whatever its
//!   name; the `default` link first, then by name, the first to configure an interface wins):
//!   the built-in reference's defaults (e.g. `?backend=nats`), the provider's named config from
//!   `provider.start`, then the component side's named config, then the provider side's
//!   (`target_config` of a component → provider link, `source_config` of a provider → component
//!   link), merged in order, for each linked interface. So an http-server provider's link to a
//!   component carries the `address` (and `path`, `host`) the server routes by. Secret
//!   references among those names are kept apart; their values join the map, under each
//!   secret's name, when the plugin is bound (fetched on behalf of the component).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use trellis_providers::http_server::RemoteRoute;
use trellis_runtime::HostInterface;

use crate::builtins::{Builtin, BuiltinRef, ConfigMap};
use crate::grants::{ComponentGrants, GrantError, is_grant_key};
use crate::limits::{ComponentLimits, LimitError, is_limit_key};
use crate::secrets::{ResolvedSecrets, SecretError, SecretValue};
use trellis_deployer::wire::{DEFAULT_LINK_NAME, Link};

/// The interfaces the named config is served under.
const CONFIG_INTERFACES: [&str; 2] = ["wasi:config/store", "wasi:config/runtime"];

/// What the derivation reads: the lattice's links and named config, and what runs here.
pub trait LatticeView {
    /// Every link in the lattice.
    fn links(&self) -> Vec<Link>;
    /// A named config (CONFIGDATA), if it exists.
    fn config(&self, name: &str) -> Option<ConfigMap>;
    /// The built-in provider started here under `id`, if any.
    fn builtin_provider(&self, id: &str) -> Option<BuiltinProvider>;
    /// Whether component `id` runs on this host.
    fn runs_here(&self, id: &str) -> bool;
}

/// A built-in provider as its links see it: the built-in (with its reference's defaults) and
/// the named config it was started with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltinProvider {
    pub builtin: BuiltinRef,
    pub config: Vec<String>,
}

/// What one component running here should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentPlan {
    /// `ns:pkg/iface` → where its `default` link for it goes.
    pub links: BTreeMap<String, LinkRoute>,
    pub plugins: PluginConfig,
    /// The limits its named config sets (`trellis.limits.*`), or why they cannot be applied.
    pub limits: Result<ComponentLimits, LimitError>,
    /// The environment and volumes its named config grants (`trellis.env.*`,
    /// `trellis.volume.*`), or why they cannot be given.
    pub grants: Result<ComponentGrants, GrantError>,
}

/// Where a link's target runs, as seen from this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkRoute {
    /// A component running here.
    Here(String),
    /// A built-in provider started here: its plugin serves the import.
    Builtin(String),
    Lattice(String),
}

/// Interface (`ns:pkg/iface`) → the config of the plugin serving it, and the secret references
/// its link names, whose values join that config when the plugin is bound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginConfig {
    maps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, Vec<String>>,
}

impl PluginConfig {
    /// The merged named config (what `wasi:config` serves).
    pub fn named(&self) -> ConfigMap {
        self.maps
            .get(CONFIG_INTERFACES[0])
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `other` differs only in the named config.
    pub fn same_links(&self, other: &PluginConfig) -> bool {
        let links = |c: &PluginConfig| {
            c.maps
                .iter()
                .filter(|(i, _)| !CONFIG_INTERFACES.contains(&i.as_str()))
                .map(|(i, m)| (i.clone(), m.clone()))
                .collect::<Vec<_>>()
        };
        links(self) == links(other) && self.secrets == other.secrets
    }

    /// Every secret reference the links to built-ins name.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.secrets.values().flatten().cloned().collect();
        names.sort();
        names.dedup();
        names
    }

    /// What the plugins are bound with: each interface's config, with the values of its link's
    /// secrets (`resolved`: reference → the secret's name and value) added under their names.
    pub fn host_interfaces(
        &self,
        resolved: &ResolvedSecrets,
    ) -> Result<Vec<HostInterface>, SecretError> {
        let mut interfaces = Vec::new();
        for (interface, config) in &self.maps {
            let mut config = config.clone();
            for reference in self.secrets.get(interface).into_iter().flatten() {
                let Some((name, value)) = resolved.get(reference) else {
                    continue;
                };
                match value {
                    SecretValue::String(text) => config.insert(name.clone(), text.clone()),
                    SecretValue::Bytes(_) => {
                        return Err(SecretError::NotText {
                            secret: name.clone(),
                            interface: interface.clone(),
                        });
                    }
                };
            }
            interfaces.push(HostInterface {
                interface: interface.clone(),
                config,
            });
        }
        Ok(interfaces)
    }
}

/// The named configs `names` merged in order (missing ones contribute nothing). Secret
/// references are not config: they are resolved apart (see [`crate::secrets`]).
fn merged(view: &impl LatticeView, names: &[String]) -> ConfigMap {
    names
        .iter()
        .filter(|name| !crate::secrets::is_secret(name))
        .filter_map(|name| view.config(name))
        .flatten()
        .collect()
}

/// What component `id`, scaled with named config `config`, should have now.
pub fn component_plan(view: &impl LatticeView, id: &str, config: &[String]) -> ComponentPlan {
    let mut named = merged(view, config);
    let limits = ComponentLimits::from_config(&named);
    let grants = ComponentGrants::from_config(&named);
    named.retain(|key, _| !is_limit_key(key) && !is_grant_key(key));
    let mut plugins: BTreeMap<String, ConfigMap> = CONFIG_INTERFACES
        .iter()
        .map(|i| (i.to_string(), named.clone()))
        .collect();
    let mut secrets = BTreeMap::new();
    let mut links = BTreeMap::new();
    for link in by_name(view.links()) {
        if link.source_id == id && link.name == DEFAULT_LINK_NAME {
            for interface in &link.interfaces {
                let target = link.target.clone();
                let route = if view.runs_here(&target) {
                    LinkRoute::Here(target)
                } else if view.builtin_provider(&target).is_some() {
                    LinkRoute::Builtin(target)
                } else {
                    LinkRoute::Lattice(target)
                };
                links.insert(link.interface_name(interface), route);
            }
        }
        let (provider, component_side, provider_side) = if link.source_id == id {
            (&link.target, &link.source_config, &link.target_config)
        } else if link.target == id {
            (&link.source_id, &link.target_config, &link.source_config)
        } else {
            continue;
        };
        let Some(provider) = view.builtin_provider(provider) else {
            continue;
        };
        let map = link_config(view, &provider, component_side, provider_side);
        let references = link_secrets(&provider, component_side, provider_side);
        for interface in &link.interfaces {
            let interface = link.interface_name(interface);
            if let Entry::Vacant(slot) = plugins.entry(interface.clone()) {
                slot.insert(map.clone());
                if !references.is_empty() {
                    secrets.insert(interface, references.clone());
                }
            }
        }
    }
    ComponentPlan {
        links,
        plugins: PluginConfig {
            maps: plugins,
            secrets,
        },
        limits,
        grants,
    }
}

/// `links` with the `default` ones first, then by name: where several links configure one
/// plugin interface of a component, the default link's config wins, else the first name's.
fn by_name(mut links: Vec<Link>) -> Vec<Link> {
    links.sort_by(|a, b| {
        let rank = |l: &Link| (l.name != DEFAULT_LINK_NAME, l.name.clone());
        rank(a).cmp(&rank(b))
    });
    links
}

/// The plugin config a link between a component and built-in `provider` gives: the built-in
/// reference's defaults, the provider's named config, then the named configs on the
/// component's side of the link and on the provider's side, merged in that order.
pub fn link_config(
    view: &impl LatticeView,
    provider: &BuiltinProvider,
    component_side: &[String],
    provider_side: &[String],
) -> ConfigMap {
    let mut map = provider.builtin.defaults.clone();
    map.extend(merged(view, &provider.config));
    map.extend(merged(view, component_side));
    map.extend(merged(view, provider_side));
    map
}

/// The secret references a link between a component and built-in `provider` names, in the
/// order [`link_config`] merges config: their values become plugin config (the credentials a
/// built-in needs, say), fetched on behalf of the component.
fn link_secrets(
    provider: &BuiltinProvider,
    component_side: &[String],
    provider_side: &[String],
) -> Vec<String> {
    [&provider.config[..], component_side, provider_side]
        .into_iter()
        .flatten()
        .filter(|name| crate::secrets::is_secret(name))
        .cloned()
        .collect()
}

/// The HTTP server's remote routes: one for each link, whatever its name (wasmCloud wants
/// distinct names for one server's links to several components), from an http-server provider
/// started here to a component's `wasi:http/incoming-handler`, configured like the local route
/// the same link gives (an `address` is required). The server serves a route in-process while
/// the component runs here (its plan's link: the default one, else the first by name) and
/// forwards it over wRPC otherwise.
pub fn http_routes(view: &impl LatticeView) -> Vec<RemoteRoute> {
    let mut routes = Vec::new();
    for link in view.links() {
        let incoming_handler = link.wit_namespace == "wasi"
            && link.wit_package == "http"
            && link.interfaces.iter().any(|i| i == "incoming-handler");
        if !incoming_handler {
            continue;
        }
        let Some(provider) = view.builtin_provider(&link.source_id) else {
            continue;
        };
        if provider.builtin.builtin != Builtin::HttpServer {
            continue;
        }
        let config = link_config(view, &provider, &link.target_config, &link.source_config);
        if config.contains_key("address") {
            routes.push(RemoteRoute {
                source_id: link.source_id,
                component_id: link.target,
                config,
            });
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A lattice state held in memory.
    #[derive(Default)]
    struct State {
        links: Vec<Link>,
        config: BTreeMap<String, ConfigMap>,
        providers: BTreeMap<String, BuiltinProvider>,
        here: BTreeSet<String>,
    }

    impl LatticeView for State {
        fn links(&self) -> Vec<Link> {
            self.links.clone()
        }
        fn config(&self, name: &str) -> Option<ConfigMap> {
            self.config.get(name).cloned()
        }
        fn builtin_provider(&self, id: &str) -> Option<BuiltinProvider> {
            self.providers.get(id).cloned()
        }
        fn runs_here(&self, id: &str) -> bool {
            self.here.contains(id)
        }
    }

    fn link(source: &str, target: &str, package: &str, interfaces: &[&str]) -> Link {
        let (namespace, package) = package.split_once(':').unwrap();
        Link {
            source_id: source.into(),
            target: target.into(),
            name: DEFAULT_LINK_NAME.into(),
            wit_namespace: namespace.into(),
            wit_package: package.into(),
            interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
            source_config: vec![],
            target_config: vec![],
        }
    }

    fn map(pairs: &[(&str, &str)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn provider(reference: &str, config: &[&str]) -> BuiltinProvider {
        BuiltinProvider {
            builtin: reference.parse().unwrap(),
            config: config.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn a_link_moving_between_hosts_changes_its_route() {
        let mut state = State {
            links: vec![link(
                "front",
                "math",
                "trellis:example",
                &["adder", "greeter"],
            )],
            here: ["front".to_string()].into(),
            ..State::default()
        };
        let away = component_plan(&state, "front", &[]);
        assert_eq!(
            away.links,
            BTreeMap::from([
                (
                    "trellis:example/adder".to_string(),
                    LinkRoute::Lattice("math".into())
                ),
                (
                    "trellis:example/greeter".to_string(),
                    LinkRoute::Lattice("math".into())
                ),
            ])
        );
        state.here.insert("math".into());
        let home = component_plan(&state, "front", &[]);
        assert_eq!(
            home.links["trellis:example/adder"],
            LinkRoute::Here("math".into())
        );
        assert_eq!(
            home.plugins, away.plugins,
            "moving a target rebinds nothing"
        );
        assert!(component_plan(&state, "math", &[]).links.is_empty());
    }

    #[test]
    fn plugin_config_merges_defaults_provider_and_both_sides_of_the_link() {
        let mut kv = link("counter", "kv", "wasi:keyvalue", &["store", "atomics"]);
        kv.source_config = vec!["component-side".into()];
        kv.target_config = vec!["provider-side".into()];
        let state = State {
            links: vec![kv],
            config: BTreeMap::from([
                ("at-start".into(), map(&[("bucket", "a"), ("x", "1")])),
                ("component-side".into(), map(&[("bucket", "b")])),
                ("provider-side".into(), map(&[("x", "2")])),
                ("mine".into(), map(&[("greeting", "hi")])),
            ]),
            providers: BTreeMap::from([(
                "kv".into(),
                provider("keyvalue?backend=nats", &["at-start"]),
            )]),
            here: ["counter".to_string()].into(),
        };
        let plan = component_plan(&state, "counter", &["mine".into()]);
        let expected = map(&[("backend", "nats"), ("bucket", "b"), ("x", "2")]);
        assert_eq!(plan.plugins.maps["wasi:keyvalue/store"], expected);
        assert_eq!(plan.plugins.maps["wasi:keyvalue/atomics"], expected);
        assert_eq!(plan.plugins.named(), map(&[("greeting", "hi")]));
        assert_eq!(
            plan.plugins.maps["wasi:config/runtime"],
            plan.plugins.named()
        );
    }

    #[test]
    fn a_named_config_change_does_not_rebind() {
        let mut state = State {
            links: vec![link("counter", "kv", "wasi:keyvalue", &["store"])],
            config: BTreeMap::from([("mine".into(), map(&[("greeting", "hi")]))]),
            providers: BTreeMap::from([("kv".into(), provider("keyvalue", &[]))]),
            ..State::default()
        };
        let before = component_plan(&state, "counter", &["mine".into()]);
        state
            .config
            .insert("mine".into(), map(&[("greeting", "hello")]));
        let after = component_plan(&state, "counter", &["mine".into()]);
        assert_ne!(before, after);
        assert!(after.plugins.same_links(&before.plugins));
        assert_eq!(after.links, before.links);

        // A change of the link's own config does rebind.
        state
            .config
            .insert("kv-config".into(), map(&[("bucket", "other")]));
        state.links[0].target_config = vec!["kv-config".into()];
        let relinked = component_plan(&state, "counter", &["mine".into()]);
        assert!(!relinked.plugins.same_links(&after.plugins));
    }

    #[test]
    fn named_links_to_built_ins_count_and_the_default_one_wins() {
        let mut named = link("counter", "kv", "wasi:keyvalue", &["store"]);
        named.name = "cache".into();
        named.target_config = vec!["named".into()];
        let mut web = link("web", "kv", "wasi:keyvalue", &["store"]);
        web.name = "a-first-name".into();
        web.target_config = vec!["named".into()];
        let mut web_default = link("web", "kv", "wasi:keyvalue", &["store"]);
        web_default.target_config = vec!["default".into()];
        let state = State {
            links: vec![
                named,
                web,
                web_default,
                link("counter", "elsewhere", "wasi:blobstore", &["blobstore"]),
            ],
            config: BTreeMap::from([
                ("named".into(), map(&[("bucket", "named")])),
                ("default".into(), map(&[("bucket", "default")])),
            ]),
            providers: BTreeMap::from([("kv".into(), provider("keyvalue", &[]))]),
            ..State::default()
        };
        let plan = component_plan(&state, "counter", &[]);
        assert_eq!(plan.plugins.maps["wasi:keyvalue/store"]["bucket"], "named");
        // Named links configure plugins but never route calls: that is the default link's.
        assert_eq!(
            plan.links.keys().collect::<Vec<_>>(),
            ["wasi:blobstore/blobstore"]
        );
        assert_eq!(
            plan.links["wasi:blobstore/blobstore"],
            LinkRoute::Lattice("elsewhere".into())
        );
        let web = component_plan(&state, "web", &[]);
        assert_eq!(web.plugins.maps["wasi:keyvalue/store"]["bucket"], "default");
    }

    #[test]
    fn http_routes_come_from_http_server_links_with_an_address() {
        let mut served = link("httpserver", "web", "wasi:http", &["incoming-handler"]);
        served.source_config = vec!["listen".into()];
        let unaddressed = link("httpserver", "api", "wasi:http", &["incoming-handler"]);
        let not_http = link("kv", "web", "wasi:http", &["incoming-handler"]);
        let state = State {
            links: vec![served, unaddressed, not_http],
            config: BTreeMap::from([("listen".into(), map(&[("address", "127.0.0.1:0")]))]),
            providers: BTreeMap::from([
                ("httpserver".into(), provider("http-server", &[])),
                ("kv".into(), provider("keyvalue", &[])),
            ]),
            ..State::default()
        };
        let routes = http_routes(&state);
        assert_eq!(
            routes,
            vec![RemoteRoute {
                source_id: "httpserver".into(),
                component_id: "web".into(),
                config: map(&[("address", "127.0.0.1:0")]),
            }]
        );
        // The component side of that link gets the same config, for its local route.
        let plan = component_plan(&state, "web", &[]);
        assert_eq!(
            plan.plugins.maps["wasi:http/incoming-handler"],
            routes[0].config
        );
    }

    #[test]
    fn secret_references_stay_out_of_config_and_join_it_by_name_when_resolved() {
        let mut kv = link("counter", "kv", "wasi:keyvalue", &["store"]);
        kv.target_config = vec!["remote".into(), "SECRET_app-seed".into()];
        let state = State {
            links: vec![kv],
            config: BTreeMap::from([
                ("remote".into(), map(&[("cluster_uri", "nats://x")])),
                ("SECRET_app-seed".into(), map(&[("name", "client_seed")])),
                ("SECRET_app-own".into(), map(&[("name", "own")])),
            ]),
            providers: BTreeMap::from([("kv".into(), provider("keyvalue?backend=nats", &[]))]),
            here: BTreeSet::new(),
        };
        let plan = component_plan(&state, "counter", &["SECRET_app-own".into()]);
        assert!(plan.plugins.named().is_empty(), "a reference is not config");
        assert_eq!(plan.plugins.secret_names(), ["SECRET_app-seed"]);
        let store = &plan.plugins.maps["wasi:keyvalue/store"];
        assert_eq!(
            store,
            &map(&[("backend", "nats"), ("cluster_uri", "nats://x")])
        );

        let resolved = ResolvedSecrets::from([(
            "SECRET_app-seed".to_string(),
            (
                "client_seed".to_string(),
                SecretValue::String("SUSEED".into()),
            ),
        )]);
        let bound = plan.plugins.host_interfaces(&resolved).unwrap();
        let store = bound
            .iter()
            .find(|i| i.interface == "wasi:keyvalue/store")
            .unwrap();
        assert_eq!(store.config["client_seed"], "SUSEED");
        let bytes = ResolvedSecrets::from([(
            "SECRET_app-seed".to_string(),
            ("client_seed".to_string(), SecretValue::Bytes(vec![1])),
        )]);
        assert!(matches!(
            plan.plugins.host_interfaces(&bytes),
            Err(SecretError::NotText { .. })
        ));
    }
}
