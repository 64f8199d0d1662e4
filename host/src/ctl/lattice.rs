//! Lattice-state operations, served by whichever host of the queue group gets the request:
//! links (`LATTICEDATA`), named configuration (`CONFIGDATA`) and claims.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::{CtlError, Reply, decode, decode_checked};
use crate::ctl::subjects::Operation;
use crate::state::HostState;
use crate::store::StoredClaims;
use trellis_deployer::wire::{DeleteLinkRequest, Link};

pub async fn link_put(
    state: &Arc<HostState>,
    operation: &Operation<'_>,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let link: Link = decode_checked(operation, payload)?;
    match put_link(state, &link).await {
        Ok(()) => {
            state.events.publish("linkdef_set", &link).await;
            Ok(Reply::ok())
        }
        Err(error) => {
            let mut data = serde_json::to_value(&link).map_err(CtlError::Encode)?;
            data["error"] = error.to_string().into();
            state.events.publish("linkdef_set_failed", data).await;
            Err(error)
        }
    }
}

async fn put_link(state: &HostState, link: &Link) -> Result<(), CtlError> {
    for (field, value) in [
        ("source_id", &link.source_id),
        ("target", &link.target),
        ("name", &link.name),
    ] {
        if value.trim().is_empty() {
            return Err(CtlError::Refused(format!("link {field} must not be empty")));
        }
    }
    let missing = state
        .config
        .missing(link.source_config.iter().chain(&link.target_config));
    if !missing.is_empty() {
        return Err(CtlError::Refused(format!(
            "link refers to configuration that does not exist: {}",
            missing.join(", ")
        )));
    }
    state.links.put(link).await?;
    Ok(())
}

pub async fn link_del(
    state: &Arc<HostState>,
    operation: &Operation<'_>,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let request: DeleteLinkRequest = decode_checked(operation, payload)?;
    if !state.links.has_spec(&request.source_id) {
        return Ok(Reply::note(format!(
            "no links are stored for source `{}`",
            request.source_id
        )));
    }
    let removed = state.links.delete(&request).await?;
    let mut data = json!({
        "source_id": request.source_id,
        "name": request.name,
        "wit_namespace": request.wit_namespace,
        "wit_package": request.wit_package,
    });
    if let Some(link) = removed {
        data["target"] = link.target.into();
        data["interfaces"] = link.interfaces.into();
    }
    state.events.publish("linkdef_deleted", data).await;
    Ok(Reply::ok())
}

pub fn link_get(state: &HostState) -> Result<Reply, CtlError> {
    Reply::with(state.links.links())
}

/// Every claim stored in the lattice (by any host), as the string maps wasmCloud answers.
pub fn claims_get(state: &HostState) -> Result<Reply, CtlError> {
    let claims: Vec<BTreeMap<String, String>> = state
        .claims
        .all()
        .iter()
        .map(StoredClaims::to_map)
        .collect();
    Reply::with(claims)
}

pub async fn config_put(
    state: &Arc<HostState>,
    operation: &Operation<'_>,
    name: &str,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let map: BTreeMap<String, String> = decode(operation, payload)?;
    state.config.put(name, payload.to_vec().into(), map).await?;
    state
        .events
        .publish("config_set", json!({ "config_name": name }))
        .await;
    Ok(Reply::ok())
}

pub fn config_get(state: &HostState, name: &str) -> Result<Reply, CtlError> {
    match state.config.get(name) {
        Some(map) => Reply::with(map),
        None => Ok(Reply::note("Configuration not found")),
    }
}

pub async fn config_del(state: &Arc<HostState>, name: &str) -> Result<Reply, CtlError> {
    state.config.delete(name).await?;
    state
        .events
        .publish("config_deleted", json!({ "config_name": name }))
        .await;
    Ok(Reply::ok())
}
