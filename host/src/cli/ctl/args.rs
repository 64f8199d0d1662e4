//! The `trellis ctl` command line: subcommands and their arguments, with value parsers that
//! reject a malformed `KEY=VALUE` or `NAMESPACE:PACKAGE` before anything connects.

use trellis_deployer::cli::{LatticeArgs, OutputArgs};

/// `trellis ctl`.
#[derive(clap::Args)]
pub struct CtlArgs {
    #[command(subcommand)]
    pub(super) command: CtlCommand,
}

/// Where the lattice is, how to print, how long to wait: on every `ctl` subcommand.
#[derive(clap::Args)]
pub(super) struct Common {
    #[command(flatten)]
    pub(super) lattice: LatticeArgs,
    #[command(flatten)]
    pub(super) output: OutputArgs,
    /// Milliseconds to wait for a reply (`hosts` collects answers for this long).
    #[arg(long, env = "TRELLIS_CTL_TIMEOUT_MS", default_value_t = 2000)]
    pub(super) timeout_ms: u64,
}

#[derive(clap::Subcommand)]
pub(super) enum CtlCommand {
    /// List the hosts of the lattice (ping).
    Hosts {
        #[command(flatten)]
        common: Common,
    },
    /// A live view of the lattice: per host and component, calls/s, p50/p99, errors,
    /// instances in use and budget stops, refreshed every interval (Ctrl-C ends it); off a
    /// terminal, or with `-o json`, one sample over one interval.
    Top {
        /// How long each sample lasts, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
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
        /// A limit of the component's own `key=value` (repeatable): `max_memory_limit` (bytes),
        /// `max_execution_time` (seconds), `max_execution_time_ms`, `max_fuel`.
        #[arg(long = "limit", value_name = "KEY=VALUE", value_parser = parse_pair)]
        limits: Vec<(String, String)>,
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
    /// Call an exported function of a running component over wRPC: arguments and results in
    /// WAVE (`2`, `"text"`, `{x: 1, y: 2, label: "p"}`, `some(3)`, `ok(1)`), or JSON.
    Call {
        component_id: String,
        /// `namespace:package/interface.function` (the version may be left out), or
        /// `interface.function`, or the function alone when only one export has that name.
        #[arg(value_name = "INTERFACE.FUNCTION")]
        function: String,
        /// One argument per parameter, checked against its WIT type (a string parameter also
        /// takes bare text).
        #[arg(value_name = "ARG", allow_negative_numbers = true)]
        args: Vec<String>,
        /// The arguments are JSON (`{"x": 1}`, `null` for none, `{"ok": 1}`) instead of WAVE.
        #[arg(long)]
        json: bool,
        /// A registry (`host[:port]`) pulled from over plain HTTP, to read the component's
        /// types (repeatable, or comma-separated).
        #[arg(long, env = "TRELLIS_ALLOWED_INSECURE", value_delimiter = ',')]
        allowed_insecure: Vec<String>,
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
pub(super) enum RegistryCommand {
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
pub(super) enum LinkCommand {
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
pub(super) enum ConfigCommand {
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
pub(super) enum ProviderCommand {
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
pub(super) enum LabelCommand {
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
pub(super) enum HostCommand {
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

/// The [`Common`] arguments, which every subcommand carries.
pub(super) fn common(command: &CtlCommand) -> &Common {
    match command {
        CtlCommand::Hosts { common }
        | CtlCommand::Top { common, .. }
        | CtlCommand::Claims { common }
        | CtlCommand::Inventory { common, .. }
        | CtlCommand::Scale { common, .. }
        | CtlCommand::Update { common, .. }
        | CtlCommand::Call { common, .. }
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
