//! Provider commands, each addressed to one host. A start is acknowledged before an external
//! provider's process is up, hence `starting …` rather than `started`.

use super::args::ProviderCommand;
use super::client::{Ctl, CtlError, To};

pub(super) async fn provider(ctl: &Ctl, command: ProviderCommand) -> Result<(), CtlError> {
    match command {
        ProviderCommand::Start {
            host_id,
            provider_id,
            reference,
            config,
            ..
        } => {
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
        ProviderCommand::Stop {
            host_id,
            provider_id,
            ..
        } => {
            let result = ctl.client.stop_provider(&host_id, &provider_id).await;
            let response = ctl.answered("provider stop", To::Host(&host_id), result)?;
            ctl.acked(
                &response,
                format!("stopping provider {provider_id} on {host_id}"),
            )
        }
    }
}
