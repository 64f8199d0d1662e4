//! Test capability provider built with the real `wasmcloud-provider-sdk` 0.17.
//!
//! It exports `trellis:example/greeter@0.1.0` over wRPC. `greet` answers
//! `provider says hello, {name}`, except for a few probe names that make the provider's state
//! observable to tests:
//! - `links?` → `links: source=[…] target=[…]`, the links this process currently holds,
//!   as `{source_id}->{target}:{name}` lists, sorted;
//! - `config?` → the provider's current config as sorted `key=value` pairs;
//! - `pid?` → this process's ID (tests kill it to exercise restarts);
//! - `config-updates?` → how many config updates this process has received;
//! - `secret?NAME` → the value of secret `NAME` from HostData, `secret?LINK/NAME` → from the
//!   secrets of link `LINK`, reversed (a test provider shows what it was given);
//! - `host-data?` → what the SDK read from HostData:
//!   `log_level={level|none} structured_logging={bool} secrets={count} user_jwt={set|empty}
//!   user_seed={set|empty}`;
//! - `add:{a},{b}` → calls `trellis:example/adder@0.1.0.add` on the target of the provider's
//!   `trellis:example/adder` source link (provider → component over wRPC);
//! - `echo?` → calls `trellis:example/echo@0.1.0.echo-everything` there with a value of every
//!   WIT type family and answers `echo ok` when it comes back equal.
//!
//! It also exports `trellis:example/echo@0.1.0`: `echo-everything` returns its argument.
//!
//! Every received or deleted link and config update is also logged to stderr, which the host
//! captures into its own logs.
//!
//! Telemetry is set up from `HostData.otel_config` as any SDK provider's is
//! (`initialize_observability!`); each `greet` is a span continuing the caller's trace.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _};
use wasmcloud_provider_sdk::core::secrets::SecretValue;
use wasmcloud_provider_sdk::{
    get_connection, load_host_data, run_provider, serve_provider_exports, Context, LinkConfig,
    LinkDeleteInfo, Provider, ProviderConfigUpdate, ProviderInitConfig,
};

mod bindings {
    wit_bindgen_wrpc::generate!({
        world: "greeter-provider",
        path: "../wit",
        generate_all,
    });
}

use bindings::trellis::example::{adder, echo};

/// A link as this provider sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LinkKey {
    source_id: String,
    target: String,
    name: String,
    package: String,
}

impl LinkKey {
    fn render(&self) -> String {
        format!("{}->{}:{}", self.source_id, self.target, self.name)
    }
}

/// What the provider has been told by the host.
#[derive(Default)]
struct Observed {
    as_source: BTreeSet<LinkKey>,
    as_target: BTreeSet<LinkKey>,
    config: BTreeMap<String, String>,
    config_updates: usize,
    /// Secrets received with links: `{link name}/{secret name}` → value (or `bytes:{len}`).
    link_secrets: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct GreeterProvider {
    observed: Arc<Mutex<Observed>>,
}

impl GreeterProvider {
    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn link_key(config: &LinkConfig<'_>) -> LinkKey {
        LinkKey {
            source_id: config.source_id.to_string(),
            target: config.target_id.to_string(),
            name: config.link_name.to_string(),
            package: format!("{}:{}", config.wit_metadata.0, config.wit_metadata.1),
        }
    }

    fn links_report(&self) -> String {
        let observed = self.observed();
        let render = |set: &BTreeSet<LinkKey>| {
            set.iter()
                .map(LinkKey::render)
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "links: source=[{}] target=[{}]",
            render(&observed.as_source),
            render(&observed.as_target)
        )
    }

    fn config_report(&self) -> String {
        let observed = self.observed();
        observed
            .config
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn remember_link_secrets(&self, config: &LinkConfig<'_>) {
        let mut observed = self.observed();
        for (name, value) in config.secrets {
            observed
                .link_secrets
                .insert(format!("{}/{name}", config.link_name), reveal(value));
        }
    }

    /// A secret from HostData (`secret?NAME`) or from a link (`secret?LINK/NAME`).
    fn secret_report(&self, name: &str) -> anyhow::Result<String> {
        if let Some(value) = self.observed().link_secrets.get(name) {
            return Ok(value.clone());
        }
        let data = load_host_data()?;
        Ok(data
            .secrets
            .get(name)
            .map_or_else(|| "no such secret".to_string(), reveal))
    }

    fn host_data_report() -> anyhow::Result<String> {
        let data = load_host_data()?;
        let set = |value: &str| if value.is_empty() { "empty" } else { "set" };
        let log_level = data.log_level.as_ref().map_or("none".to_string(), |level| {
            format!("{level:?}").to_lowercase()
        });
        Ok(format!(
            "log_level={log_level} structured_logging={} secrets={} user_jwt={} user_seed={}",
            data.structured_logging,
            data.secrets.len(),
            set(&data.lattice_rpc_user_jwt),
            set(&data.lattice_rpc_user_seed),
        ))
    }

    /// The target of the provider's `trellis:example` source link.
    fn example_target(&self) -> anyhow::Result<String> {
        let observed = self.observed();
        observed
            .as_source
            .iter()
            .find(|l| l.package == "trellis:example")
            .map(|l| l.target.clone())
            .ok_or_else(|| anyhow!("no trellis:example source link"))
    }

    async fn add_via_link(&self, args: &str) -> anyhow::Result<String> {
        let (a, b) = args.split_once(',').context("expected add:{a},{b}")?;
        let (a, b): (u32, u32) = (a.trim().parse()?, b.trim().parse()?);
        let target = self.example_target()?;
        let client = get_connection().get_wrpc_client(&target).await?;
        let sum = adder::add(&client, None, a, b).await?;
        Ok(format!("{target} says {a}+{b}={sum}"))
    }

    async fn echo_via_link(&self) -> anyhow::Result<String> {
        let target = self.example_target()?;
        let client = get_connection().get_wrpc_client(&target).await?;
        let sent = everything();
        let back = echo::echo_everything(&client, None, &sent).await?;
        // The generated types have `Debug`, which shows every field exactly.
        Ok(if format!("{back:?}") == format!("{sent:?}") {
            "echo ok".to_string()
        } else {
            format!("echo mismatch: sent {sent:?}, got {back:?}")
        })
    }
}

/// A value with every WIT type family in it, multi-byte characters and bit patterns included.
fn everything() -> echo::Everything {
    use bindings::trellis::example::adder::{Color, Perms, Point, Shape};
    echo::Everything {
        flag: true,
        letter: '😀',
        tiny: -7,
        small: 65_000,
        signed: -2_000_000_000,
        big: u64::MAX - 1,
        negative: i64::MIN + 1,
        ratio: 1.5,
        precise: -0.1,
        text: "héllo, 中文".to_string(),
        bytes: (0..=255u8).collect::<Vec<_>>().into(),
        names: vec!["".to_string(), "ß".to_string()],
        at: Point {
            x: -1,
            y: 2,
            label: "p".to_string(),
        },
        shapes: vec![
            Shape::Circle(2.5),
            Shape::Rect(Point {
                x: 3,
                y: 4,
                label: "r".to_string(),
            }),
            Shape::Empty,
        ],
        perms: Perms::READ | Perms::EXEC,
        color: Color::Blue,
        maybe: Some(42),
        outcome: Err(9),
        pair: (-300, 200),
    }
}

impl Provider for GreeterProvider {
    async fn init(&self, init: impl ProviderInitConfig) -> anyhow::Result<()> {
        eprintln!("test-provider: init {}", init.get_provider_id());
        self.observed().config = init.get_config().clone().into_iter().collect();
        Ok(())
    }

    async fn on_config_update(&self, update: impl ProviderConfigUpdate) -> anyhow::Result<()> {
        let config: BTreeMap<_, _> = update.get_values().clone().into_iter().collect();
        eprintln!("test-provider: config update {config:?}");
        let mut observed = self.observed();
        observed.config = config;
        observed.config_updates += 1;
        Ok(())
    }

    async fn receive_link_config_as_source(&self, config: LinkConfig<'_>) -> anyhow::Result<()> {
        let key = Self::link_key(&config);
        eprintln!("test-provider: link put as source {}", key.render());
        self.remember_link_secrets(&config);
        self.observed().as_source.insert(key);
        Ok(())
    }

    async fn receive_link_config_as_target(&self, config: LinkConfig<'_>) -> anyhow::Result<()> {
        let key = Self::link_key(&config);
        eprintln!("test-provider: link put as target {}", key.render());
        self.remember_link_secrets(&config);
        self.observed().as_target.insert(key);
        Ok(())
    }

    async fn delete_link_as_source(&self, info: impl LinkDeleteInfo) -> anyhow::Result<()> {
        eprintln!(
            "test-provider: link del as source {}->{}:{}",
            info.get_source_id(),
            info.get_target_id(),
            info.get_link_name()
        );
        self.observed()
            .as_source
            .retain(|l| !(l.target == info.get_target_id() && l.name == info.get_link_name()));
        Ok(())
    }

    async fn delete_link_as_target(&self, info: impl LinkDeleteInfo) -> anyhow::Result<()> {
        eprintln!(
            "test-provider: link del as target {}->{}:{}",
            info.get_source_id(),
            info.get_target_id(),
            info.get_link_name()
        );
        self.observed()
            .as_target
            .retain(|l| !(l.source_id == info.get_source_id() && l.name == info.get_link_name()));
        Ok(())
    }

    async fn shutdown(&self) -> anyhow::Result<()> {
        eprintln!("test-provider: shutdown");
        Ok(())
    }
}

impl bindings::exports::trellis::example::greeter::Handler<Option<Context>> for GreeterProvider {
    async fn greet(&self, cx: Option<Context>, name: String) -> anyhow::Result<String> {
        use tracing::Instrument as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let span = tracing::info_span!("greet", otel.kind = "server", greeting.name = %name);
        if let Some(cx) = &cx {
            let headers = cx
                .tracing
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let parent = wasmcloud_provider_sdk::wasmcloud_tracing::context::get_span_context(&headers);
            let _ = span.set_parent(parent);
        }
        self.greet_in_span(cx, name).instrument(span).await
    }
}

impl GreeterProvider {
    async fn greet_in_span(&self, cx: Option<Context>, name: String) -> anyhow::Result<String> {
        let caller = cx.and_then(|cx| cx.component).unwrap_or_default();
        eprintln!("test-provider: greet({name}) from {caller}");
        match name.as_str() {
            "links?" => Ok(self.links_report()),
            "config?" => Ok(self.config_report()),
            "pid?" => Ok(std::process::id().to_string()),
            "config-updates?" => Ok(self.observed().config_updates.to_string()),
            _ if name.starts_with("secret?") => self
                .secret_report(&name["secret?".len()..])
                .or_else(|e| Ok(format!("error: {e:#}"))),
            "host-data?" => Self::host_data_report().or_else(|e| Ok(format!("error: {e:#}"))),
            "echo?" => self
                .echo_via_link()
                .await
                .or_else(|e| Ok(format!("error: {e:#}"))),
            _ => match name.strip_prefix("add:") {
                Some(args) => self
                    .add_via_link(args)
                    .await
                    .or_else(|e| Ok(format!("error: {e:#}"))),
                None => Ok(format!("provider says hello, {name}")),
            },
        }
    }
}

impl bindings::exports::trellis::example::echo::Handler<Option<Context>> for GreeterProvider {
    async fn echo_everything(
        &self,
        _cx: Option<Context>,
        e: bindings::exports::trellis::example::echo::Everything,
    ) -> anyhow::Result<bindings::exports::trellis::example::echo::Everything> {
        Ok(e)
    }
}

/// A secret's value as the probes report it: reversed, so that a test sees what the provider
/// received without the value itself crossing the lattice (where trace logs would show it).
fn reveal(value: &SecretValue) -> String {
    match (value.as_string(), value.as_bytes()) {
        (Some(text), _) => text.chars().rev().collect(),
        (None, Some(bytes)) => format!("bytes:{}", bytes.len()),
        (None, None) => String::new(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wasmcloud_provider_sdk::initialize_observability!("trellis-test-greeter", None::<&str>);
    let provider = GreeterProvider::default();
    let shutdown = run_provider(provider.clone(), "trellis-test-greeter")
        .await
        .context("failed to run provider")?;
    let connection = get_connection();
    let wrpc = connection
        .get_wrpc_client(connection.provider_key())
        .await
        .context("failed to get wRPC client")?;
    serve_provider_exports(&wrpc, provider, shutdown, bindings::serve)
        .await
        .context("failed to serve exports")
}
