//! Provider operations. A `provider.start` whose reference names a switched-on built-in plugin
//! (see [`crate::builtins`]) records the provider ID, which then shows in the inventory and is
//! configured by its links. A `file://` or OCI reference (not matched by a built-in alias)
//! starts an external provider process (see [`crate::provider`]) in the background. Any other
//! reference, and a switched-off built-in, is refused with a clear error; provider auctions get
//! a bid for switched-on built-ins and for `file://` and OCI references.

use std::sync::Arc;

use serde_json::json;

use super::{CtlError, Reply, constraints_match, decode_checked};
use crate::builtins::{self, BuiltinError, RunningProvider};
use crate::ctl::subjects::Operation;
use crate::provider::{self, ExternalProviders, ProviderInfo};
use crate::state::HostState;
use crate::translated;
use trellis_deployer::wire::{
    DEFAULT_LINK_NAME, ProviderAuctionAck, ProviderAuctionRequest, StartProviderCommand,
    StopProviderCommand,
};

/// The built-in a reference names on this host, if it is switched on.
fn builtin(state: &HostState, reference: &str) -> Result<builtins::BuiltinRef, BuiltinError> {
    let resolved = builtins::resolve(reference, &state.builtin_aliases)?;
    if !state.plugins.enabled.contains(&resolved.builtin) {
        return Err(BuiltinError::Disabled(resolved.builtin));
    }
    Ok(resolved)
}

fn refused(provider: &str, error: BuiltinError) -> CtlError {
    let hint = match error {
        BuiltinError::NotBuiltin(_) => {
            " (use a built-in provider: wasmcloud+builtin://http-server, \
             trellis+builtin://NAME or --builtin-alias; or a provider archive or executable: \
             file:///path; or a provider archive in a registry: registry/repository:tag)"
        }
        _ => "",
    };
    CtlError::Refused(format!("cannot start provider `{provider}`: {error}{hint}"))
}

pub async fn start(
    state: &Arc<HostState>,
    operation: &Operation<'_>,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let command: StartProviderCommand = decode_checked(operation, payload)?;
    let id = command.provider_id.trim();
    if id.is_empty() {
        return Err(CtlError::Refused("provider_id must not be empty".into()));
    }
    let resolved = match builtin(state, &command.provider_ref) {
        Ok(resolved) => Some(resolved),
        Err(BuiltinError::NotBuiltin(_)) if provider::is_external(&command.provider_ref) => None,
        Err(error) => return Err(refused(id, error)),
    };
    if resolved.is_none() && !command.provider_ref.starts_with("file://") {
        state
            .oci
            .check(&command.provider_ref)
            .map_err(|e| CtlError::Refused(format!("cannot start provider `{id}`: {e}")))?;
    }
    let missing = state.config.missing(&command.config);
    if !missing.is_empty() {
        return Err(CtlError::Refused(format!(
            "cannot start provider `{id}`: configuration does not exist: {}",
            missing.join(", ")
        )));
    }
    let annotations = command.annotations.unwrap_or_default();
    let running = || CtlError::Refused("provider with that ID is already running".into());
    let Some(resolved) = resolved else {
        if state.providers.get(id).is_some() {
            return Err(running());
        }
        let info = ProviderInfo {
            image_ref: command.provider_ref.clone(),
            annotations,
            config: command.config,
            claims: None,
        };
        if !ExternalProviders::start(state, id, info) {
            return Err(running());
        }
        let url = provider::reported_ref(&command.provider_ref);
        if let Err(error) = state.links.ensure_spec(id, &url).await {
            tracing::warn!(provider = id, "recording the provider spec: {error}");
        }
        return Ok(Reply::ok());
    };
    if state.external.contains(id) || state.providers.get(id).is_some() {
        return Err(running());
    }
    // Serving before the ack, so that callers may use the provider as soon as it is started.
    let serving = translated::serve_provider(state, id, &resolved)
        .await
        .map_err(|e| {
            CtlError::Refused(format!(
                "cannot start provider `{id}`: serving it on the lattice: {e:#}"
            ))
        })?;
    let provider = RunningProvider {
        image_ref: command.provider_ref.clone(),
        annotations: annotations.clone(),
        builtin: resolved.clone(),
        config: command.config.clone(),
        _serving: serving.map(Arc::new),
    };
    if !state.providers.insert(id, provider) {
        return Err(running());
    }
    if let Err(error) = state.links.ensure_spec(id, &command.provider_ref).await {
        tracing::warn!(provider = id, "recording the provider spec: {error}");
    }
    tracing::info!(provider = id, reference = %command.provider_ref, builtin = %resolved.builtin, "built-in provider started");
    let data = json!({
        "host_id": state.host_id,
        "image_ref": command.provider_ref,
        "provider_id": id,
        "annotations": annotations,
    });
    state.events.publish("provider_started", data).await;
    Ok(Reply::ok())
}

pub async fn stop(
    state: &HostState,
    operation: &Operation<'_>,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let command: StopProviderCommand = decode_checked(operation, payload)?;
    if ExternalProviders::stop(state, &command.provider_id)
        .await
        .is_some()
    {
        return Ok(Reply::ok());
    }
    let Some(provider) = state.providers.remove(&command.provider_id) else {
        return Err(CtlError::Refused(
            "provider with that ID is not running".into(),
        ));
    };
    tracing::info!(provider = %command.provider_id, "built-in provider stopped");
    let data = json!({
        "host_id": state.host_id,
        "provider_id": command.provider_id,
        "annotations": provider.annotations,
        "reason": "stop",
        "instance_id": command.provider_id,
        "public_key": command.provider_id,
        "link_name": DEFAULT_LINK_NAME,
    });
    state.events.publish("provider_stopped", data).await;
    Ok(Reply::ok())
}

/// Bids iff the reference names a switched-on built-in or is a `file://` reference, every
/// constraint matches a label and the provider is not already running here.
pub fn auction(
    state: &HostState,
    operation: &Operation,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let request: ProviderAuctionRequest = decode_checked(operation, payload)?;
    if (builtin(state, &request.provider_ref).is_err()
        && !provider::is_external(&request.provider_ref))
        || !constraints_match(&request.constraints, &state.labels())
        || state.providers.get(&request.provider_id).is_some()
        || state.external.contains(&request.provider_id)
    {
        tracing::debug!(provider = %request.provider_id, reference = %request.provider_ref, "not bidding for a provider");
        return Ok(Reply::Silent);
    }
    Reply::with(ProviderAuctionAck {
        host_id: state.host_id.clone(),
        provider_ref: request.provider_ref,
        provider_id: request.provider_id,
        constraints: request.constraints,
    })
}
