//! Provider operations. This host cannot run capability providers yet, so starts and stops are
//! refused with a clear error and provider auctions get no bid (a host that cannot start a
//! provider must not win its auction).

use super::{CtlError, Reply, decode};
use crate::ctl::subjects::Operation;
use crate::types::{ProviderAuctionRequest, StartProviderCommand, StopProviderCommand};

fn not_supported(provider: &str) -> CtlError {
    CtlError::Refused(format!(
        "capability providers are not supported yet by this host (provider `{provider}`)"
    ))
}

pub fn start(operation: &Operation, payload: &[u8]) -> Result<Reply, CtlError> {
    let command: StartProviderCommand = decode(operation, payload)?;
    tracing::info!(provider = %command.provider_id, reference = %command.provider_ref, "refused provider start");
    Err(not_supported(&command.provider_id))
}

pub fn stop(operation: &Operation, payload: &[u8]) -> Result<Reply, CtlError> {
    let command: StopProviderCommand = decode(operation, payload)?;
    Err(CtlError::Refused(format!(
        "provider `{}` is not running: {}",
        command.provider_id,
        not_supported(&command.provider_id)
    )))
}

/// Validates the request and stays silent.
pub fn auction(operation: &Operation, payload: &[u8]) -> Result<Reply, CtlError> {
    let request: ProviderAuctionRequest = decode(operation, payload)?;
    tracing::debug!(provider = %request.provider_id, reference = %request.provider_ref, constraints = ?request.constraints, "not bidding for a provider");
    Ok(Reply::Silent)
}
