//! Built-in providers: the plugins of `trellis-providers` served inside this host, which of them
//! are switched on, how provider references name them, and the providers started from them.
//!
//! A switched-off built-in is not registered on the runtime at all (no listener, no binding);
//! component imports it would have served go over wRPC to their link target instead.
//!
//! `provider.start` with a built-in reference starts no process: it records a provider ID whose
//! links configure the plugin (see [`crate::reconcile`]). References:
//!
//! | reference | built-in |
//! |---|---|
//! | `wasmcloud+builtin://http-server` | [`Builtin::HttpServer`] |
//! | `wasmcloud+builtin://messaging-nats` | [`Builtin::Messaging`] |
//! | `trellis+builtin://{http-server,http-client,keyvalue,blobstore,config,logging,messaging}` | that one |
//! | an alias pattern (`--builtin-alias PATTERN=BUILTIN`), e.g. `ghcr.io/wasmcloud/http-server:*` | its target |
//!
//! A target may carry default plugin config as a query: `keyvalue?backend=nats`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use trellis_providers::blobstore::BuiltinBlobstore;
use trellis_providers::http_server::RemoteHttpHandler;
use trellis_providers::keyvalue::BuiltinKeyvalue;
use trellis_providers::{
    BlobstorePlugin, ConfigPlugin, HttpClientPlugin, HttpServerPlugin, KeyvaluePlugin,
    LoggingPlugin, MessagingPlugin, SecretsPlugin,
};
use trellis_runtime::Plugin;

use crate::translated::ProviderServer;
use trellis_deployer::wire::Annotations;

/// Plugin configuration: key → value.
pub type ConfigMap = BTreeMap<String, String>;

/// One built-in provider plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Builtin {
    HttpServer,
    HttpClient,
    Keyvalue,
    Blobstore,
    Config,
    Logging,
    Messaging,
}

impl Builtin {
    pub const ALL: [Builtin; 7] = [
        Builtin::HttpServer,
        Builtin::HttpClient,
        Builtin::Keyvalue,
        Builtin::Blobstore,
        Builtin::Config,
        Builtin::Logging,
        Builtin::Messaging,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::HttpServer => "http-server",
            Builtin::HttpClient => "http-client",
            Builtin::Keyvalue => "keyvalue",
            Builtin::Blobstore => "blobstore",
            Builtin::Config => "config",
            Builtin::Logging => "logging",
            Builtin::Messaging => "messaging",
        }
    }

    /// The built-ins a host switches on unless told otherwise: all of them.
    pub fn default_set() -> BTreeSet<Builtin> {
        Self::ALL.into_iter().collect()
    }
}

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with a built-in switch, reference or alias.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuiltinError {
    #[error(
        "unknown built-in `{0}` (known: http-server, http-client, keyvalue, blobstore, config, logging, messaging)"
    )]
    Unknown(String),
    #[error("expected NAME=on|off, got `{0}`")]
    BadSwitch(String),
    #[error("expected PATTERN=BUILTIN[?key=value&…] (or `wasmcloud`), got `{0}`")]
    BadAlias(String),
    #[error("`{0}` is not a built-in provider reference and matches no alias")]
    NotBuiltin(String),
    #[error("built-in `{0}` is switched off on this host (enable it with --builtin {0}=on)")]
    Disabled(Builtin),
}

impl FromStr for Builtin {
    type Err = BuiltinError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Builtin::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| BuiltinError::Unknown(name.to_string()))
    }
}

/// Applies `name=on|off` switches (in order) to the default set.
pub fn parse_switches<'a>(
    switches: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeSet<Builtin>, BuiltinError> {
    let mut set = Builtin::default_set();
    for switch in switches {
        let (name, value) = switch
            .split_once('=')
            .ok_or_else(|| BuiltinError::BadSwitch(switch.to_string()))?;
        let builtin: Builtin = name.trim().parse()?;
        match value.trim() {
            "on" | "true" => set.insert(builtin),
            "off" | "false" => set.remove(&builtin),
            _ => return Err(BuiltinError::BadSwitch(switch.to_string())),
        };
    }
    Ok(set)
}

/// A built-in and the plugin config its provider starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltinRef {
    pub builtin: Builtin,
    pub defaults: ConfigMap,
}

impl FromStr for BuiltinRef {
    type Err = BuiltinError;

    /// `NAME[?key=value&…]`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, query) = text.split_once('?').unwrap_or((text, ""));
        let builtin = name.parse()?;
        let mut defaults = ConfigMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| BuiltinError::BadAlias(text.to_string()))?;
            defaults.insert(key.to_string(), value.to_string());
        }
        Ok(Self { builtin, defaults })
    }
}

/// Maps provider references matching `pattern` (exact, or a prefix ending in `*`) to a built-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltinAlias {
    pub pattern: String,
    pub target: BuiltinRef,
}

impl BuiltinAlias {
    /// The well-known wasmCloud provider images Trellis can stand in for.
    pub fn wasmcloud() -> Vec<BuiltinAlias> {
        [
            ("ghcr.io/wasmcloud/http-server:*", "http-server"),
            ("ghcr.io/wasmcloud/http-client:*", "http-client"),
            ("ghcr.io/wasmcloud/keyvalue-nats:*", "keyvalue?backend=nats"),
            ("ghcr.io/wasmcloud/blobstore-fs:*", "blobstore"),
            ("ghcr.io/wasmcloud/messaging-nats:*", "messaging"),
        ]
        .into_iter()
        .map(|(pattern, target)| BuiltinAlias {
            pattern: pattern.to_string(),
            target: target.parse().expect("valid built-in"),
        })
        .collect()
    }

    /// Parses `PATTERN=BUILTIN[?key=value&…]`, or `wasmcloud` for [`Self::wasmcloud`].
    pub fn parse_all(text: &str) -> Result<Vec<BuiltinAlias>, BuiltinError> {
        if text == "wasmcloud" {
            return Ok(Self::wasmcloud());
        }
        match text.split_once('=') {
            Some((pattern, target)) if !pattern.is_empty() => Ok(vec![BuiltinAlias {
                pattern: pattern.to_string(),
                target: target.parse()?,
            }]),
            _ => Err(BuiltinError::BadAlias(text.to_string())),
        }
    }

    fn matches(&self, reference: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => reference.starts_with(prefix),
            None => reference == self.pattern,
        }
    }
}

/// Which built-in a provider reference names: the `wasmcloud+builtin://` and
/// `trellis+builtin://` schemes, then the aliases in order.
pub fn resolve(reference: &str, aliases: &[BuiltinAlias]) -> Result<BuiltinRef, BuiltinError> {
    if let Some(name) = reference.strip_prefix("wasmcloud+builtin://") {
        let builtin = match name {
            "http-server" => Builtin::HttpServer,
            "messaging-nats" => Builtin::Messaging,
            other => return Err(BuiltinError::Unknown(other.to_string())),
        };
        return Ok(BuiltinRef {
            builtin,
            defaults: ConfigMap::new(),
        });
    }
    if let Some(target) = reference.strip_prefix("trellis+builtin://") {
        return target.parse();
    }
    aliases
        .iter()
        .find(|alias| alias.matches(reference))
        .map(|alias| alias.target.clone())
        .ok_or_else(|| BuiltinError::NotBuiltin(reference.to_string()))
}

/// The plugins a host runs, one per switched-on built-in.
#[derive(Clone)]
pub struct Plugins {
    pub enabled: BTreeSet<Builtin>,
    /// The config plugin, when on: named config reaches components through it.
    pub config: Option<Arc<ConfigPlugin>>,
    /// The keyvalue plugin, when on: a keyvalue provider started here serves the lattice with it.
    pub keyvalue: Option<Arc<BuiltinKeyvalue>>,
    /// The blobstore plugin, when on: a blobstore provider started here serves the lattice with
    /// it.
    pub blobstore: Option<Arc<BuiltinBlobstore>>,
    /// The HTTP server, when on: links from http-server providers started here give it routes.
    pub http_server: Option<Arc<HttpServerPlugin>>,
    /// `wasmcloud:secrets`, always on: a host function, not a provider. The host grants each
    /// component the secrets its config names (see [`crate::secrets`]).
    pub secrets: Arc<SecretsPlugin>,
    pub all: Vec<Arc<dyn Plugin>>,
}

impl Plugins {
    /// Makes the switched-on plugins, in the order the runtime consults them. The keyvalue
    /// plugin's `nats` backend and the messaging plugin use the host's connection; the HTTP
    /// server only serves components a link from an http-server provider configures, and
    /// sends requests for those running elsewhere to `remote_http`.
    pub fn new(
        enabled: &BTreeSet<Builtin>,
        nats: &async_nats::Client,
        remote_http: Arc<dyn RemoteHttpHandler>,
    ) -> Self {
        let mut all: Vec<Arc<dyn Plugin>> = Vec::new();
        let mut config = None;
        let mut keyvalue = None;
        let mut blobstore = None;
        let mut http_server = None;
        for builtin in enabled {
            let plugin: Arc<dyn Plugin> = match builtin {
                Builtin::Logging => Arc::new(LoggingPlugin::new()),
                Builtin::Config => {
                    let plugin = Arc::new(ConfigPlugin::new());
                    config = Some(plugin.clone());
                    plugin
                }
                Builtin::Keyvalue => {
                    let builtin = Arc::new(BuiltinKeyvalue::with_nats(nats.clone()));
                    keyvalue = Some(builtin.clone());
                    Arc::new(KeyvaluePlugin::with_backend(builtin))
                }
                Builtin::Blobstore => {
                    let builtin = Arc::new(BuiltinBlobstore::default());
                    blobstore = Some(builtin.clone());
                    Arc::new(BlobstorePlugin::with_backend(builtin))
                }
                Builtin::HttpClient => Arc::new(HttpClientPlugin::new()),
                Builtin::HttpServer => {
                    let plugin = Arc::new(
                        HttpServerPlugin::configured_only().with_remote(remote_http.clone()),
                    );
                    http_server = Some(plugin.clone());
                    plugin
                }
                Builtin::Messaging => Arc::new(MessagingPlugin::new(nats.clone())),
            };
            all.push(plugin);
        }
        let secrets = Arc::new(SecretsPlugin::new());
        all.push(secrets.clone());
        // The client first, so components importing `wasi:http/types` for outgoing requests get
        // the client's allowed hosts.
        all.sort_by_key(|p| p.id() == "http-server");
        Self {
            enabled: enabled.clone(),
            config,
            keyvalue,
            blobstore,
            http_server,
            secrets,
            all,
        }
    }
}

/// A built-in provider started by `provider.start`.
#[derive(Clone, Debug)]
pub struct RunningProvider {
    pub image_ref: String,
    pub annotations: Annotations,
    pub builtin: BuiltinRef,
    /// Named config given at start: defaults for every link's plugin config.
    pub config: Vec<String>,
    /// Its translated interfaces on the lattice (keyvalue, blobstore); dropped with the last
    /// clone.
    pub _serving: Option<Arc<ProviderServer>>,
}

/// The built-in providers started on this host, with change notification.
pub struct Providers {
    table: RwLock<BTreeMap<String, RunningProvider>>,
    changes: watch::Sender<u64>,
}

impl Default for Providers {
    fn default() -> Self {
        Self {
            table: RwLock::default(),
            changes: watch::Sender::new(0),
        }
    }
}

impl Providers {
    pub fn get(&self, id: &str) -> Option<RunningProvider> {
        self.table.read().unwrap().get(id).cloned()
    }

    pub fn list(&self) -> Vec<(String, RunningProvider)> {
        self.table
            .read()
            .unwrap()
            .iter()
            .map(|(id, p)| (id.clone(), p.clone()))
            .collect()
    }

    /// Records a started provider; `false` when the ID is already running.
    pub fn insert(&self, id: &str, provider: RunningProvider) -> bool {
        {
            let mut table = self.table.write().unwrap();
            if table.contains_key(id) {
                return false;
            }
            table.insert(id.to_string(), provider);
        }
        self.changes.send_modify(|count| *count += 1);
        true
    }

    pub fn remove(&self, id: &str) -> Option<RunningProvider> {
        let removed = self.table.write().unwrap().remove(id);
        if removed.is_some() {
            self.changes.send_modify(|count| *count += 1);
        }
        removed
    }

    /// Resolves on every change after the call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_apply_to_the_default_set() {
        let set = parse_switches(["http-server=off", "keyvalue=on"]).unwrap();
        assert!(!set.contains(&Builtin::HttpServer) && set.contains(&Builtin::Keyvalue));
        assert_eq!(set.len(), Builtin::ALL.len() - 1);
        assert_eq!(
            parse_switches(["nope=on"]),
            Err(BuiltinError::Unknown("nope".into()))
        );
        assert_eq!(
            parse_switches(["keyvalue"]),
            Err(BuiltinError::BadSwitch("keyvalue".into()))
        );
    }

    #[test]
    fn references_and_aliases() {
        let http = resolve("wasmcloud+builtin://http-server", &[]).unwrap();
        assert_eq!(http.builtin, Builtin::HttpServer);
        let kv = resolve("trellis+builtin://keyvalue?backend=nats", &[]).unwrap();
        assert_eq!(kv.builtin, Builtin::Keyvalue);
        assert_eq!(kv.defaults["backend"], "nats");
        let messaging = resolve("wasmcloud+builtin://messaging-nats", &[]).unwrap();
        assert_eq!(messaging.builtin, Builtin::Messaging);
        assert_eq!(
            resolve("trellis+builtin://messaging", &[]).unwrap().builtin,
            Builtin::Messaging
        );
        let image = "ghcr.io/wasmcloud/keyvalue-nats:0.3.1";
        assert!(matches!(
            resolve(image, &[]),
            Err(BuiltinError::NotBuiltin(_))
        ));
        let aliases = BuiltinAlias::parse_all("wasmcloud").unwrap();
        assert_eq!(
            resolve(image, &aliases).unwrap().defaults["backend"],
            "nats"
        );
        assert_eq!(
            resolve("ghcr.io/wasmcloud/messaging-nats:0.23.1", &aliases)
                .unwrap()
                .builtin,
            Builtin::Messaging
        );
        let custom = BuiltinAlias::parse_all("my/http:1=http-server").unwrap();
        assert!(resolve("my/http:1", &custom).is_ok());
        assert!(resolve("my/http:2", &custom).is_err());
    }
}
