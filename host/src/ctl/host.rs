//! Host operations: ping, inventory, stop, labels and registry credentials.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{CtlError, Reply, decode};
use crate::ctl::subjects::Operation;
use crate::identity::is_reserved_label;
use crate::inventory;
use crate::oci::RegistryCredential;
use crate::state::{HostState, StopRequest};
use trellis_deployer::wire::{HostLabel, HostLabelIdentifier, StopHostCommand};

pub fn ping(state: &HostState) -> Result<Reply, CtlError> {
    Reply::with(inventory::summary(state))
}

pub fn get(state: &HostState) -> Result<Reply, CtlError> {
    Reply::with(inventory::inventory(state))
}

/// Asks the host to stop; the reply goes out before the shutdown starts.
pub fn stop(state: &HostState, operation: &Operation, payload: &[u8]) -> Result<Reply, CtlError> {
    let command = if payload.iter().all(u8::is_ascii_whitespace) {
        StopHostCommand::default()
    } else {
        decode::<StopHostCommand>(operation, payload)?
    };
    if !command.host_id.is_empty() && command.host_id != state.host_id {
        return Err(CtlError::Refused(format!(
            "stop request for host `{}` reached host `{}`",
            command.host_id, state.host_id
        )));
    }
    state.stop.send_replace(Some(StopRequest {
        timeout: command.timeout.map(Duration::from_millis),
    }));
    Ok(Reply::note("successfully handled stop host"))
}

pub async fn label_put(
    state: &Arc<HostState>,
    operation: &Operation<'_>,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let label: HostLabel = decode(operation, payload)?;
    refuse_reserved(&label.key)?;
    let labels = {
        let mut labels = state.labels.write().unwrap();
        labels.insert(label.key, label.value);
        labels.clone()
    };
    labels_changed(state, labels).await;
    Ok(Reply::ok())
}

pub async fn label_del(
    state: &Arc<HostState>,
    operation: &Operation<'_>,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let label: HostLabelIdentifier = decode(operation, payload)?;
    refuse_reserved(&label.key)?;
    let labels = {
        let mut labels = state.labels.write().unwrap();
        labels.remove(&label.key).map(|_| labels.clone())
    };
    match labels {
        Some(labels) => {
            labels_changed(state, labels).await;
            Ok(Reply::ok())
        }
        None => Ok(Reply::note(format!("no label `{}` to delete", label.key))),
    }
}

/// Accepts registry credentials without storing them: this host fetches no registry artifacts.
/// Merges credentials per registry host; later OCI pulls from that registry use them.
pub fn registry_put(
    state: &HostState,
    operation: &Operation,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let credentials: BTreeMap<String, RegistryCredential> = decode(operation, payload)?;
    tracing::info!(registries = ?credentials.keys().collect::<Vec<_>>(), "registry credentials updated");
    state.oci.put_credentials(credentials);
    Ok(Reply::ok())
}

async fn labels_changed(state: &HostState, labels: BTreeMap<String, String>) {
    let data = json!({ "host_id": state.host_id, "labels": labels });
    state.events.publish("labels_changed", data).await;
}

/// Labels under `hostcore.` describe the machine; only the host sets them.
fn refuse_reserved(key: &str) -> Result<(), CtlError> {
    if is_reserved_label(key) {
        return Err(CtlError::Refused(format!(
            "label `{key}` is reserved: keys starting with `hostcore.` are set by the host"
        )));
    }
    Ok(())
}
