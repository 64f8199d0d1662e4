//! Component operations: scale and update (acknowledged at once, carried out in the background
//! with the outcome published as events) and component auctions.

use std::sync::Arc;

use super::{CtlError, Reply, constraints_match, decode_checked};
use crate::components::{self, check_reference};
use crate::ctl::subjects::Operation;
use crate::limits::ComponentLimits;
use crate::state::HostState;
use trellis_deployer::wire::{
    ComponentAuctionAck, ComponentAuctionRequest, ScaleComponentCommand, UpdateComponentCommand,
};

pub fn scale(
    state: &Arc<HostState>,
    operation: &Operation,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let command: ScaleComponentCommand = decode_checked(operation, payload)?;
    if command.component_id.trim().is_empty() {
        return Err(CtlError::Refused("component_id must not be empty".into()));
    }
    let limits = match &command.component_limits {
        Some(map) => {
            let limits = ComponentLimits::parse(map)
                .and_then(|limits| state.limits.check(&limits).map(|()| limits))
                .map_err(|e| CtlError::Refused(format!("component_limits: {e}")))?;
            Some(limits)
        }
        None => None,
    };
    let running = state.components.get(&command.component_id);
    if command.max_instances > 0 && running.is_none() {
        check_reference(state, &command.component_ref)?;
    }
    let message = match &running {
        Some(current)
            if command.max_instances > 0
                && !command.allow_update
                && !command.component_ref.is_empty()
                && command.component_ref != current.image_ref =>
        {
            format!(
                "component `{}` keeps running `{}`: scaling does not change its reference \
                 unless allow_update is set (requested `{}`)",
                command.component_id, current.image_ref, command.component_ref
            )
        }
        _ => String::new(),
    };
    let state = state.clone();
    tokio::spawn(async move { components::scale(&state, command, limits).await });
    Ok(Reply::note(message))
}

pub fn update(
    state: &Arc<HostState>,
    operation: &Operation,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let command: UpdateComponentCommand = decode_checked(operation, payload)?;
    let Some(current) = state.components.get(&command.component_id) else {
        return Err(CtlError::Refused(format!(
            "component `{}` not found",
            command.component_id
        )));
    };
    if current.image_ref == command.new_component_ref {
        return Ok(Reply::note(format!(
            "component `{}` already runs `{}`",
            command.component_id, command.new_component_ref
        )));
    }
    check_reference(state, &command.new_component_ref)?;
    let state = state.clone();
    tokio::spawn(async move { components::update(&state, command).await });
    Ok(Reply::ok())
}

/// Bids iff every constraint matches a label and the component is not already running here.
pub fn auction(
    state: &HostState,
    operation: &Operation,
    payload: &[u8],
) -> Result<Reply, CtlError> {
    let request: ComponentAuctionRequest = decode_checked(operation, payload)?;
    if !constraints_match(&request.constraints, &state.labels())
        || state.components.get(&request.component_id).is_some()
    {
        return Ok(Reply::Silent);
    }
    Reply::with(ComponentAuctionAck {
        component_ref: request.component_ref,
        component_id: request.component_id,
        host_id: state.host_id.clone(),
        constraints: request.constraints,
    })
}
