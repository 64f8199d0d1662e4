//! `trellis ctl …`: every wasmCloud control-interface operation from the command line, as a
//! client of the real `wasmcloud-control-interface` 3.0.1 [`Client`] over its own NATS
//! connection (async-nats 0.39, the version that client is built on).
//!
//! Each subcommand takes `--nats-url` / `--lattice` (env `TRELLIS_NATS_URL` /
//! `TRELLIS_LATTICE`), prints a table by default and JSON with `-o json`. A failure is one line
//! with a hint (see [`CtlError`]) and a non-zero exit code.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::time::Duration;

use async_nats_039 as nats;
use serde::Serialize;
use serde_json::json;
use trellis_deployer::cli::{LatticeArgs, Output, OutputArgs};
use wasmcloud_control_interface::{Client, ClientBuilder, CtlResponse, Link, RegistryCredential};

use super::table;

/// `trellis ctl`.
#[derive(clap::Args)]
pub struct CtlArgs {
    #[command(subcommand)]
    command: CtlCommand,
}

/// Where the lattice is, how to print, how long to wait: on every `ctl` subcommand.
#[derive(clap::Args)]
struct Common {
    #[command(flatten)]
    lattice: LatticeArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Milliseconds to wait for a reply (`hosts` collects answers for this long).
    #[arg(long, env = "TRELLIS_CTL_TIMEOUT_MS", default_value_t = 2000)]
    timeout_ms: u64,
}

#[derive(clap::Subcommand)]
enum CtlCommand {
    /// List the hosts of the lattice (ping).
    Hosts {
        #[command(flatten)]
        common: Common,
    },
    /// Show what a host runs: components, providers, labels.
    Inventory {
        host_id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Run a component on a host with at most COUNT instances (0 stops it).
    Scale {
        host_id: String,
        component_id: String,
        /// Component reference (`file:///…` on Trellis hosts).
        reference: String,
        /// Maximum concurrent instances; 0 stops the component.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// An annotation `key=value` (repeatable).
        #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = parse_pair)]
        annotations: Vec<(String, String)>,
        /// A named config to give the component (repeatable).
        #[arg(long = "config", value_name = "NAME")]
        config: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Replace a running component's reference.
    Update {
        host_id: String,
        component_id: String,
        new_reference: String,
        /// An annotation `key=value` for the updated component (repeatable).
        #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = parse_pair)]
        annotations: Vec<(String, String)>,
        #[command(flatten)]
        common: Common,
    },
    /// List the claims of the lattice's signed components and provider archives.
    Claims {
        #[command(flatten)]
        common: Common,
    },
    /// Links between components and providers.
    #[command(subcommand)]
    Link(LinkCommand),
    /// Named configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Capability providers.
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// Host labels.
    #[command(subcommand)]
    Label(LabelCommand),
    /// Hosts.
    #[command(subcommand)]
    Host(HostCommand),
    /// Registry credentials for the hosts' OCI pulls.
    #[command(subcommand)]
    Registry(RegistryCommand),
}

#[derive(clap::Subcommand)]
enum RegistryCommand {
    /// Give every host credentials for REGISTRY (`host[:port]`), used by its later pulls.
    Put {
        registry: String,
        /// User (basic auth; with --password).
        #[arg(
            long,
            env = "TRELLIS_OCI_USER",
            requires = "password",
            conflicts_with = "token"
        )]
        user: Option<String>,
        #[arg(
            long,
            env = "TRELLIS_OCI_PASSWORD",
            hide_env_values = true,
            requires = "user"
        )]
        password: Option<String>,
        /// A bearer token instead of user and password.
        #[arg(long, hide_env_values = true, required_unless_present = "user")]
        token: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Subcommand)]
enum LinkCommand {
    /// Link SOURCE's import of NAMESPACE:PACKAGE to TARGET.
    Put {
        source: String,
        target: String,
        #[arg(value_name = "NAMESPACE:PACKAGE", value_parser = parse_package)]
        package: (String, String),
        /// An interface of the package, e.g. `store` (repeatable, at least one).
        #[arg(long = "interface", value_name = "INTERFACE", required = true)]
        interfaces: Vec<String>,
        /// Link name.
        #[arg(long, default_value = "default")]
        name: String,
        /// A named config for the source side (repeatable).
        #[arg(long = "source-config", value_name = "NAME")]
        source_config: Vec<String>,
        /// A named config for the target side (repeatable).
        #[arg(long = "target-config", value_name = "NAME")]
        target_config: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List every link of the lattice.
    Get {
        #[command(flatten)]
        common: Common,
    },
    /// Delete SOURCE's link for NAMESPACE:PACKAGE.
    Del {
        source: String,
        #[arg(value_name = "NAMESPACE:PACKAGE", value_parser = parse_package)]
        package: (String, String),
        /// Link name.
        #[arg(long, default_value = "default")]
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Subcommand)]
enum ConfigCommand {
    /// Create or replace a named config.
    Put {
        name: String,
        #[arg(value_name = "KEY=VALUE", value_parser = parse_pair, required = true)]
        values: Vec<(String, String)>,
        #[command(flatten)]
        common: Common,
    },
    /// Show a named config.
    Get {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a named config.
    Del {
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Subcommand)]
enum ProviderCommand {
    /// Start a provider on a host (`trellis+builtin://NAME` for a built-in).
    Start {
        host_id: String,
        provider_id: String,
        reference: String,
        /// A named config for the provider (repeatable).
        #[arg(long = "config", value_name = "NAME")]
        config: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Stop a provider on a host.
    Stop {
        host_id: String,
        provider_id: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Subcommand)]
enum LabelCommand {
    /// Set a label on a host.
    Put {
        host_id: String,
        #[arg(value_name = "KEY=VALUE", value_parser = parse_pair)]
        label: (String, String),
        #[command(flatten)]
        common: Common,
    },
    /// Remove a label from a host.
    Del {
        host_id: String,
        key: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Subcommand)]
enum HostCommand {
    /// Ask a host to stop gracefully.
    Stop {
        host_id: String,
        /// Milliseconds the host may take to stop (its own default when absent).
        #[arg(long)]
        grace_ms: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
}

fn parse_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{raw}`")),
    }
}

fn parse_package(raw: &str) -> Result<(String, String), String> {
    match raw.split_once(':') {
        Some((namespace, package))
            if !namespace.is_empty() && !package.is_empty() && !package.contains(['/', '@']) =>
        {
            Ok((namespace.to_string(), package.to_string()))
        }
        _ => Err(format!(
            "expected NAMESPACE:PACKAGE such as `wasi:keyvalue`, got `{raw}` (interfaces go in --interface)"
        )),
    }
}

/// Why a `ctl` command failed: one line, ending with a hint where one helps.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error(
        "cannot connect to NATS at {url}: {reason}; is nats-server running there? (`trellis up` starts one; --nats-url or TRELLIS_NATS_URL picks another)"
    )]
    Connect { url: String, reason: String },
    #[error(
        "no host answered on lattice `{lattice}` at {url}; is a host running? (trellis host / trellis up)"
    )]
    NoHost { lattice: String, url: String },
    #[error(
        "host {host_id} did not answer on lattice `{lattice}` at {url}; is the ID right? (`trellis ctl hosts` lists the hosts)"
    )]
    UnknownHost {
        host_id: String,
        lattice: String,
        url: String,
    },
    #[error(
        "no reply to {what} within {ms} ms; is the host overloaded? (--timeout-ms waits longer)"
    )]
    Timeout { what: &'static str, ms: u64 },
    #[error("{what} failed: {reason}")]
    Client { what: &'static str, reason: String },
    #[error("{what} refused by the host: {reason}")]
    Refused { what: &'static str, reason: String },
    #[error(
        "no config named `{name}` on lattice `{lattice}`; `trellis ctl config put {name} KEY=VALUE` creates it"
    )]
    NoConfig { name: String, lattice: String },
    #[error("writing the output: {0}")]
    Output(#[from] serde_json::Error),
}

/// Who a request is addressed to, for naming the one that did not answer.
enum To<'a> {
    AnyHost,
    Host(&'a str),
}

/// A connected control-interface client and what it needs to word its errors.
struct Ctl {
    client: Client,
    url: String,
    lattice: String,
    timeout: Duration,
    output: Output,
}

impl Ctl {
    async fn connect(common: &Common) -> Result<Self, CtlError> {
        let url = common.lattice.nats_url.clone();
        let timeout = Duration::from_millis(common.timeout_ms.max(1));
        let connect = nats::ConnectOptions::new()
            .name("trellis ctl")
            .connection_timeout(timeout)
            .connect(url.as_str());
        let nc = match tokio::time::timeout(timeout + Duration::from_secs(1), connect).await {
            Ok(Ok(nc)) => nc,
            Ok(Err(error)) => {
                return Err(CtlError::Connect {
                    url,
                    reason: error.to_string(),
                });
            }
            Err(_) => {
                return Err(CtlError::Connect {
                    url,
                    reason: format!("no connection within {} ms", timeout.as_millis()),
                });
            }
        };
        let client = ClientBuilder::new(nc)
            .lattice(common.lattice.lattice.clone())
            .timeout(timeout)
            .auction_timeout(timeout)
            .build();
        Ok(Self {
            client,
            url,
            lattice: common.lattice.lattice.clone(),
            timeout,
            output: common.output.output,
        })
    }

    /// Turns the client's boxed error into one that says who did not answer.
    fn failed(
        &self,
        what: &'static str,
        to: To<'_>,
        error: Box<dyn StdError + Send + Sync>,
    ) -> CtlError {
        let reason = error.to_string();
        if reason.contains("no responders") {
            match to {
                To::AnyHost => CtlError::NoHost {
                    lattice: self.lattice.clone(),
                    url: self.url.clone(),
                },
                To::Host(host_id) => CtlError::UnknownHost {
                    host_id: host_id.to_string(),
                    lattice: self.lattice.clone(),
                    url: self.url.clone(),
                },
            }
        } else if reason.contains("timed out") {
            CtlError::Timeout {
                what,
                ms: self.timeout.as_millis() as u64,
            }
        } else {
            CtlError::Client { what, reason }
        }
    }

    /// The response of a request that succeeded on the wire, or why not.
    fn answered<T>(
        &self,
        what: &'static str,
        to: To<'_>,
        result: Result<CtlResponse<T>, Box<dyn StdError + Send + Sync>>,
    ) -> Result<CtlResponse<T>, CtlError> {
        let response = result.map_err(|error| self.failed(what, to, error))?;
        if response.succeeded() {
            Ok(response)
        } else {
            Err(CtlError::Refused {
                what,
                reason: response.message().to_string(),
            })
        }
    }

    /// Prints an acknowledged command: `{"success": true, "message": …}` or `done` and the
    /// host's note.
    fn acked(&self, response: &CtlResponse<()>, done: String) -> Result<(), CtlError> {
        match self.output {
            Output::Json => print_json(&json!({
                "success": true,
                "message": response.message(),
            })),
            Output::Table if response.message().is_empty() => {
                println!("{done}");
                Ok(())
            }
            Output::Table => {
                println!("{done} ({})", response.message());
                Ok(())
            }
        }
    }
}

fn print_json(value: &impl Serialize) -> Result<(), CtlError> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn annotations(pairs: Vec<(String, String)>) -> Option<BTreeMap<String, String>> {
    (!pairs.is_empty()).then(|| pairs.into_iter().collect())
}

fn common(command: &CtlCommand) -> &Common {
    match command {
        CtlCommand::Hosts { common }
        | CtlCommand::Claims { common }
        | CtlCommand::Inventory { common, .. }
        | CtlCommand::Scale { common, .. }
        | CtlCommand::Update { common, .. }
        | CtlCommand::Link(
            LinkCommand::Put { common, .. }
            | LinkCommand::Get { common }
            | LinkCommand::Del { common, .. },
        )
        | CtlCommand::Config(
            ConfigCommand::Put { common, .. }
            | ConfigCommand::Get { common, .. }
            | ConfigCommand::Del { common, .. },
        )
        | CtlCommand::Provider(
            ProviderCommand::Start { common, .. } | ProviderCommand::Stop { common, .. },
        )
        | CtlCommand::Label(LabelCommand::Put { common, .. } | LabelCommand::Del { common, .. })
        | CtlCommand::Host(HostCommand::Stop { common, .. })
        | CtlCommand::Registry(RegistryCommand::Put { common, .. }) => common,
    }
}

/// Runs one `trellis ctl` subcommand.
pub async fn run(args: CtlArgs) -> Result<(), CtlError> {
    let ctl = Ctl::connect(common(&args.command)).await?;
    match args.command {
        CtlCommand::Hosts { .. } => hosts(&ctl).await,
        CtlCommand::Inventory { host_id, .. } => inventory(&ctl, &host_id).await,
        CtlCommand::Scale {
            host_id,
            component_id,
            reference,
            count,
            annotations: pairs,
            config,
            ..
        } => {
            let result = ctl
                .client
                .scale_component(
                    &host_id,
                    &reference,
                    &component_id,
                    count,
                    annotations(pairs),
                    config,
                    false,
                )
                .await;
            let response = ctl.answered("scale", To::Host(&host_id), result)?;
            ctl.acked(
                &response,
                format!("scaling {component_id} to {count} on {host_id}"),
            )
        }
        CtlCommand::Update {
            host_id,
            component_id,
            new_reference,
            annotations: pairs,
            ..
        } => {
            let result = ctl
                .client
                .update_component(&host_id, &component_id, &new_reference, annotations(pairs))
                .await;
            let response = ctl.answered("update", To::Host(&host_id), result)?;
            ctl.acked(
                &response,
                format!("updating {component_id} on {host_id} to {new_reference}"),
            )
        }
        CtlCommand::Claims { .. } => claims(&ctl).await,
        CtlCommand::Link(command) => link(&ctl, command).await,
        CtlCommand::Config(command) => config(&ctl, command).await,
        CtlCommand::Provider(ProviderCommand::Start {
            host_id,
            provider_id,
            reference,
            config,
            ..
        }) => {
            let result = ctl
                .client
                .start_provider(&host_id, &reference, &provider_id, None, config)
                .await;
            let response = ctl.answered("provider start", To::Host(&host_id), result)?;
            ctl.acked(
                &response,
                format!("starting provider {provider_id} ({reference}) on {host_id}"),
            )
        }
        CtlCommand::Provider(ProviderCommand::Stop {
            host_id,
            provider_id,
            ..
        }) => {
            let result = ctl.client.stop_provider(&host_id, &provider_id).await;
            let response = ctl.answered("provider stop", To::Host(&host_id), result)?;
            ctl.acked(
                &response,
                format!("stopping provider {provider_id} on {host_id}"),
            )
        }
        CtlCommand::Label(LabelCommand::Put {
            host_id,
            label: (key, value),
            ..
        }) => {
            let result = ctl.client.put_label(&host_id, &key, &value).await;
            let response = ctl.answered("label put", To::Host(&host_id), result)?;
            ctl.acked(&response, format!("label {key}={value} set on {host_id}"))
        }
        CtlCommand::Label(LabelCommand::Del { host_id, key, .. }) => {
            let result = ctl.client.delete_label(&host_id, &key).await;
            let response = ctl.answered("label del", To::Host(&host_id), result)?;
            ctl.acked(&response, format!("label {key} removed from {host_id}"))
        }
        CtlCommand::Host(HostCommand::Stop {
            host_id, grace_ms, ..
        }) => {
            let result = ctl.client.stop_host(&host_id, grace_ms).await;
            let response = ctl.answered("host stop", To::Host(&host_id), result)?;
            ctl.acked(&response, format!("host {host_id} is stopping"))
        }
        CtlCommand::Registry(RegistryCommand::Put {
            registry,
            user,
            password,
            token,
            ..
        }) => {
            let credential = match (user, password, token) {
                (Some(user), Some(password), _) => {
                    RegistryCredential::from_username_password(&user, &password, "oci")
                }
                (_, _, token) => RegistryCredential::from_token(&token.unwrap_or_default(), "oci"),
            };
            let credentials = HashMap::from([(registry.clone(), credential)]);
            // A plain publish, which hosts do not answer: flushed so that it leaves before the
            // process exits.
            let result = ctl.client.put_registries(credentials).await;
            let response = ctl.answered("registry put", To::AnyHost, result)?;
            let flushed = ctl.client.nats_client().flush().await;
            flushed.map_err(|e| ctl.failed("registry put", To::AnyHost, e.into()))?;
            ctl.acked(
                &response,
                format!("credentials for {registry} sent to the hosts"),
            )
        }
    }
}

async fn hosts(ctl: &Ctl) -> Result<(), CtlError> {
    let answers = ctl
        .client
        .get_hosts()
        .await
        .map_err(|error| ctl.failed("hosts", To::AnyHost, error))?;
    let mut hosts: Vec<_> = answers.iter().filter_map(|a| a.data().cloned()).collect();
    if hosts.is_empty() {
        return Err(CtlError::NoHost {
            lattice: ctl.lattice.clone(),
            url: ctl.url.clone(),
        });
    }
    hosts.sort_by(|a, b| a.id().cmp(b.id()));
    if ctl.output == Output::Json {
        return print_json(&hosts);
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|host| {
            vec![
                host.id().to_string(),
                host.friendly_name().to_string(),
                host.uptime_human().unwrap_or("-").to_string(),
                host.version().unwrap_or("-").to_string(),
                table::pairs(user_labels(host.labels())),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["HOST ID", "NAME", "UPTIME", "VERSION", "LABELS"], &rows)
    );
    Ok(())
}

/// Labels other than the built-in `hostcore.*` ones.
fn user_labels(labels: &BTreeMap<String, String>) -> impl Iterator<Item = (&String, &String)> {
    labels
        .iter()
        .filter(|(key, _)| !key.starts_with("hostcore."))
}

async fn inventory(ctl: &Ctl, host_id: &str) -> Result<(), CtlError> {
    let result = ctl.client.get_host_inventory(host_id).await;
    let response = ctl.answered("inventory", To::Host(host_id), result)?;
    let Some(inventory) = response.data() else {
        return Err(CtlError::Client {
            what: "inventory",
            reason: "the host answered without an inventory".into(),
        });
    };
    if ctl.output == Output::Json {
        return print_json(inventory);
    }
    println!(
        "host {} ({}), up {}",
        inventory.host_id(),
        inventory.friendly_name(),
        inventory.uptime_human()
    );
    println!("labels: {}\n", table::pairs(inventory.labels()));
    let components: Vec<Vec<String>> = inventory
        .components()
        .iter()
        .map(|c| {
            vec![
                c.id().to_string(),
                c.image_ref().to_string(),
                c.max_instances().to_string(),
                c.revision().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["COMPONENT ID", "REFERENCE", "MAX", "REVISION"],
            &components
        )
    );
    let providers: Vec<Vec<String>> = inventory
        .providers()
        .iter()
        .map(|p| {
            vec![
                p.id().to_string(),
                p.image_ref().unwrap_or("-").to_string(),
                p.name().unwrap_or("-").to_string(),
            ]
        })
        .collect();
    print!(
        "\n{}",
        table::render(&["PROVIDER ID", "REFERENCE", "NAME"], &providers)
    );
    Ok(())
}

async fn claims(ctl: &Ctl) -> Result<(), CtlError> {
    let result = ctl.client.get_claims().await;
    let response = ctl.answered("claims", To::AnyHost, result)?;
    let mut claims: Vec<BTreeMap<String, String>> = response
        .data()
        .into_iter()
        .flatten()
        .map(|claim| claim.clone().into_iter().collect())
        .collect();
    let field = |claim: &BTreeMap<String, String>, key: &str| {
        claim
            .get(key)
            .filter(|value| !value.is_empty())
            .cloned()
            .unwrap_or_else(|| "-".to_string())
    };
    claims.sort_by_key(|claim| (field(claim, "name"), field(claim, "subject")));
    if ctl.output == Output::Json {
        return print_json(&claims);
    }
    let rows: Vec<Vec<String>> = claims
        .iter()
        .map(|claim| {
            ["subject", "name", "version", "revision", "issuer"]
                .iter()
                .map(|key| field(claim, key))
                .collect()
        })
        .collect();
    print!(
        "{}",
        table::render(&["SUBJECT", "NAME", "VERSION", "REVISION", "ISSUER"], &rows)
    );
    Ok(())
}

async fn link(ctl: &Ctl, command: LinkCommand) -> Result<(), CtlError> {
    match command {
        LinkCommand::Put {
            source,
            target,
            package: (namespace, package),
            interfaces,
            name,
            source_config,
            target_config,
            ..
        } => {
            let link = Link::builder()
                .source_id(&source)
                .target(&target)
                .name(&name)
                .wit_namespace(&namespace)
                .wit_package(&package)
                .interfaces(interfaces.clone())
                .source_config(source_config)
                .target_config(target_config)
                .build()
                .map_err(|error| CtlError::Client {
                    what: "link put",
                    reason: error.to_string(),
                })?;
            let result = ctl.client.put_link(link).await;
            let response = ctl.answered("link put", To::AnyHost, result)?;
            ctl.acked(
                &response,
                format!(
                    "linked {source} → {target} for {namespace}:{package}/{{{}}} (name {name})",
                    interfaces.join(",")
                ),
            )
        }
        LinkCommand::Get { .. } => {
            let result = ctl.client.get_links().await;
            let response = ctl.answered("link get", To::AnyHost, result)?;
            let mut links = response.data().cloned().unwrap_or_default();
            links.sort_by(|a, b| {
                (a.source_id(), a.wit_namespace(), a.wit_package(), a.name()).cmp(&(
                    b.source_id(),
                    b.wit_namespace(),
                    b.wit_package(),
                    b.name(),
                ))
            });
            if ctl.output == Output::Json {
                return print_json(&links);
            }
            let rows: Vec<Vec<String>> = links
                .iter()
                .map(|link| {
                    vec![
                        link.source_id().to_string(),
                        link.target().to_string(),
                        format!(
                            "{}:{}/{{{}}}",
                            link.wit_namespace(),
                            link.wit_package(),
                            link.interfaces().join(",")
                        ),
                        link.name().to_string(),
                        table::list(link.source_config().iter().map(String::as_str)),
                        table::list(link.target_config().iter().map(String::as_str)),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &[
                        "SOURCE",
                        "TARGET",
                        "INTERFACES",
                        "NAME",
                        "SOURCE CONFIG",
                        "TARGET CONFIG"
                    ],
                    &rows,
                )
            );
            Ok(())
        }
        LinkCommand::Del {
            source,
            package: (namespace, package),
            name,
            ..
        } => {
            let result = ctl
                .client
                .delete_link(&source, &name, &namespace, &package)
                .await;
            let response = ctl.answered("link del", To::AnyHost, result)?;
            ctl.acked(
                &response,
                format!("deleted {source}'s link for {namespace}:{package} (name {name})"),
            )
        }
    }
}

async fn config(ctl: &Ctl, command: ConfigCommand) -> Result<(), CtlError> {
    match command {
        ConfigCommand::Put { name, values, .. } => {
            let count = values.len();
            let values: std::collections::HashMap<String, String> = values.into_iter().collect();
            let result = ctl.client.put_config(&name, values).await;
            let response = ctl.answered("config put", To::AnyHost, result)?;
            ctl.acked(&response, format!("config {name} set ({count} keys)"))
        }
        ConfigCommand::Get { name, .. } => {
            let result = ctl.client.get_config(&name).await;
            let response = ctl.answered("config get", To::AnyHost, result)?;
            let Some(values) = response.data() else {
                return Err(CtlError::NoConfig {
                    name,
                    lattice: ctl.lattice.clone(),
                });
            };
            let values: BTreeMap<&String, &String> = values.iter().collect();
            if ctl.output == Output::Json {
                return print_json(&values);
            }
            let rows: Vec<Vec<String>> = values
                .iter()
                .map(|(k, v)| vec![k.to_string(), v.to_string()])
                .collect();
            print!("{}", table::render(&["KEY", "VALUE"], &rows));
            Ok(())
        }
        ConfigCommand::Del { name, .. } => {
            let result = ctl.client.delete_config(&name).await;
            let response = ctl.answered("config del", To::AnyHost, result)?;
            ctl.acked(&response, format!("config {name} deleted"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_and_pairs_parse_strictly() {
        assert_eq!(
            parse_package("wasi:keyvalue"),
            Ok(("wasi".into(), "keyvalue".into()))
        );
        assert!(parse_package("wasi:keyvalue/store").is_err());
        assert!(parse_package("keyvalue").is_err());
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_pair("=x").is_err());
    }
}
