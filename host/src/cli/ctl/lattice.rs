//! Lattice-wide state: links, named configuration and claims. Whichever host gets the request
//! answers from the shared state, so these are addressed to no host in particular.

use std::collections::BTreeMap;

use trellis_deployer::cli::Output;
use wasmcloud_control_interface::Link;

use super::args::{ConfigCommand, LinkCommand};
use super::client::{Ctl, CtlError, To, print_json};
use crate::cli::table;

pub(super) async fn claims(ctl: &Ctl) -> Result<(), CtlError> {
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

pub(super) async fn link(ctl: &Ctl, command: LinkCommand) -> Result<(), CtlError> {
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

pub(super) async fn config(ctl: &Ctl, command: ConfigCommand) -> Result<(), CtlError> {
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
