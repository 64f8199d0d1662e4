//! `trellis ctl …`: every wasmCloud control-interface operation from the command line, as a
//! client of the real `wasmcloud-control-interface` 3.0.1
//! [`Client`](wasmcloud_control_interface::Client) over its own NATS connection (async-nats
//! 0.39, the version that client is built on).
//!
//! Each subcommand takes `--nats-url` / `--lattice` (env `TRELLIS_NATS_URL` /
//! `TRELLIS_LATTICE`), prints a table by default and JSON with `-o json`. A failure is one line
//! with a hint (see [`CtlError`]) and a non-zero exit code.
//!
//! - [`args`]: the command line.
//! - [`client`]: the connection, the errors, and how an acknowledgement or JSON is printed.
//! - [`host`], [`components`], [`providers`], [`lattice`]: one function per command, grouped
//!   as the host's control-interface server groups its operations.
//! - [`top`]: `ctl top`, the live view, from every host's `trellis.stats`.
//! - [`call`]: `ctl call`, a wRPC call of a component's export, with [`values`] reading and
//!   printing its arguments and results.

mod args;
mod call;
mod client;
mod components;
mod host;
mod lattice;
mod providers;
mod top;
mod values;

pub use args::CtlArgs;
pub use client::CtlError;

use args::{CtlCommand, common};
use client::Ctl;

/// Runs one `trellis ctl` subcommand.
pub async fn run(args: CtlArgs) -> Result<(), CtlError> {
    let ctl = Ctl::connect(common(&args.command)).await?;
    match args.command {
        CtlCommand::Hosts { .. } => host::hosts(&ctl).await,
        CtlCommand::Top { interval_ms, .. } => {
            top::top(&ctl, std::time::Duration::from_millis(interval_ms.max(100))).await
        }
        CtlCommand::Inventory { host_id, .. } => host::inventory(&ctl, &host_id).await,
        CtlCommand::Scale {
            host_id,
            component_id,
            reference,
            count,
            annotations: pairs,
            config,
            limits,
            ..
        } => {
            let request = components::Scale {
                host_id: &host_id,
                component_id: &component_id,
                reference: &reference,
                count,
                annotations: pairs,
                config,
                limits,
            };
            components::scale(&ctl, request).await
        }
        CtlCommand::Update {
            host_id,
            component_id,
            new_reference,
            annotations: pairs,
            ..
        } => components::update(&ctl, &host_id, &component_id, &new_reference, pairs).await,
        CtlCommand::Call {
            component_id,
            function,
            args,
            json,
            allowed_insecure,
            common,
        } => {
            let request = call::CallRequest {
                component_id,
                function,
                args,
                json_args: json,
                allowed_insecure,
                timeout: std::time::Duration::from_millis(common.timeout_ms.max(1)),
            };
            call::call(&ctl, request).await
        }
        CtlCommand::Claims { .. } => lattice::claims(&ctl).await,
        CtlCommand::Link(command) => lattice::link(&ctl, command).await,
        CtlCommand::Config(command) => lattice::config(&ctl, command).await,
        CtlCommand::Provider(command) => providers::provider(&ctl, command).await,
        CtlCommand::Label(command) => host::label(&ctl, command).await,
        CtlCommand::Host(command) => host::host(&ctl, command).await,
        CtlCommand::Registry(command) => host::registry(&ctl, command).await,
    }
}
