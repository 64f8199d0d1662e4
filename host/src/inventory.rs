//! What this host reports about itself: the `host.ping` summary, the inventory (`host.get` and
//! heartbeat) and the heartbeat loop.

use std::sync::Arc;
use std::time::Duration;

use crate::state::HostState;
use trellis_deployer::wire::{HostInventory, HostSummary, ProviderDescription};

/// Whole seconds since start, and their human rendering (`1h 2m 3s`).
fn uptime(state: &HostState) -> (u64, String) {
    let seconds = state.started.elapsed().as_secs();
    let human = humantime::format_duration(Duration::from_secs(seconds)).to_string();
    (seconds, human)
}

pub fn inventory(state: &HostState) -> HostInventory {
    let (uptime_seconds, uptime_human) = uptime(state);
    HostInventory {
        components: state.components.describe(&state.runtime),
        providers: state
            .providers
            .list()
            .into_iter()
            .map(|(id, p)| ProviderDescription {
                id,
                image_ref: p.image_ref,
                name: None,
                revision: 0,
                annotations: p.annotations,
            })
            .chain(
                state
                    .external
                    .list()
                    .into_iter()
                    .map(|(id, p)| ProviderDescription {
                        id,
                        image_ref: crate::provider::reported_ref(&p.image_ref),
                        name: p.claims.as_ref().map(|c| c.name.clone()),
                        revision: p.claims.map_or(0, |c| c.revision),
                        annotations: p.annotations,
                    }),
            )
            .collect(),
        host_id: state.host_id.clone(),
        friendly_name: state.identity.friendly_name.clone(),
        labels: state.labels(),
        version: state.identity.version.to_string(),
        uptime_human,
        uptime_seconds,
    }
}

pub fn summary(state: &HostState) -> HostSummary {
    let (uptime_seconds, uptime_human) = uptime(state);
    HostSummary {
        ctl_host: state.nats_url.clone(),
        rpc_host: state.nats_url.clone(),
        friendly_name: state.identity.friendly_name.clone(),
        id: state.host_id.clone(),
        labels: state.labels(),
        lattice: state.lattice.clone(),
        uptime_human,
        uptime_seconds,
        version: state.identity.version.to_string(),
    }
}

/// Publishes `host_heartbeat` with the full inventory now and then every `interval`.
pub async fn heartbeat(state: Arc<HostState>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        state
            .events
            .publish("host_heartbeat", inventory(&state))
            .await;
    }
}
