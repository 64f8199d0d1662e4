//! Commands about the hosts themselves: listing them, a host's inventory and labels, stopping
//! one, and the registry credentials they all pull with.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize as _;
use serde_json::Value;
use trellis_deployer::cli::Output;
use wasmcloud_control_interface::{HostInventory, RegistryCredential};

use super::args::{HostCommand, LabelCommand, RegistryCommand};
use super::client::{Ctl, CtlError, To, print_json};
use crate::cli::table;

pub(super) async fn hosts(ctl: &Ctl) -> Result<(), CtlError> {
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

/// A host's inventory. Read as JSON rather than through the client's types, which drop what
/// Trellis adds: a service's state (running / exited / restarting), shown in its own column.
pub(super) async fn inventory(ctl: &Ctl, host_id: &str) -> Result<(), CtlError> {
    let result = ctl
        .request::<_, Value>(&format!("host.get.{host_id}"), &())
        .await;
    let response = ctl.answered("inventory", To::Host(host_id), result)?;
    let Some(raw) = response.data() else {
        return Err(CtlError::Client {
            what: "inventory",
            reason: "the host answered without an inventory".into(),
        });
    };
    if ctl.output == Output::Json {
        return print_json(raw);
    }
    let inventory = HostInventory::deserialize(raw).map_err(|error| CtlError::Client {
        what: "inventory",
        reason: format!("the host answered an inventory that does not decode: {error}"),
    })?;
    println!(
        "host {} ({}), up {}",
        inventory.host_id(),
        inventory.friendly_name(),
        inventory.uptime_human()
    );
    println!("labels: {}\n", table::pairs(inventory.labels()));
    let states = service_states(raw);
    let components: Vec<Vec<String>> = inventory
        .components()
        .iter()
        .map(|c| {
            vec![
                c.id().to_string(),
                c.image_ref().to_string(),
                c.max_instances().to_string(),
                c.revision().to_string(),
                states.get(c.id()).cloned().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["COMPONENT ID", "REFERENCE", "MAX", "REVISION", "SERVICE"],
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

/// The `state` of each component that is a service, by component ID.
fn service_states(inventory: &Value) -> HashMap<String, String> {
    let components = inventory["components"].as_array().into_iter().flatten();
    components
        .filter_map(|c| Some((c["id"].as_str()?.into(), c["state"].as_str()?.into())))
        .collect()
}

pub(super) async fn label(ctl: &Ctl, command: LabelCommand) -> Result<(), CtlError> {
    match command {
        LabelCommand::Put {
            host_id,
            label: (key, value),
            ..
        } => {
            let result = ctl.client.put_label(&host_id, &key, &value).await;
            let response = ctl.answered("label put", To::Host(&host_id), result)?;
            ctl.acked(&response, format!("label {key}={value} set on {host_id}"))
        }
        LabelCommand::Del { host_id, key, .. } => {
            let result = ctl.client.delete_label(&host_id, &key).await;
            let response = ctl.answered("label del", To::Host(&host_id), result)?;
            ctl.acked(&response, format!("label {key} removed from {host_id}"))
        }
    }
}

pub(super) async fn host(ctl: &Ctl, command: HostCommand) -> Result<(), CtlError> {
    match command {
        HostCommand::Stop {
            host_id, grace_ms, ..
        } => {
            let result = ctl.client.stop_host(&host_id, grace_ms).await;
            let response = ctl.answered("host stop", To::Host(&host_id), result)?;
            ctl.acked(&response, format!("host {host_id} is stopping"))
        }
    }
}

pub(super) async fn registry(ctl: &Ctl, command: RegistryCommand) -> Result<(), CtlError> {
    match command {
        RegistryCommand::Put {
            registry,
            user,
            password,
            token,
            ..
        } => {
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
