//! Component commands. The host acknowledges them before it carries them out, so what is
//! printed is the request accepted; the outcome comes later as lattice events.

use std::collections::BTreeMap;

use super::client::{Ctl, CtlError, To};

/// `ctl scale`.
pub(super) async fn scale(
    ctl: &Ctl,
    host_id: &str,
    component_id: &str,
    reference: &str,
    count: u32,
    pairs: Vec<(String, String)>,
    config: Vec<String>,
) -> Result<(), CtlError> {
    let result = ctl
        .client
        .scale_component(
            host_id,
            reference,
            component_id,
            count,
            annotations(pairs),
            config,
            false,
        )
        .await;
    let response = ctl.answered("scale", To::Host(host_id), result)?;
    ctl.acked(
        &response,
        format!("scaling {component_id} to {count} on {host_id}"),
    )
}

/// `ctl update`.
pub(super) async fn update(
    ctl: &Ctl,
    host_id: &str,
    component_id: &str,
    new_reference: &str,
    pairs: Vec<(String, String)>,
) -> Result<(), CtlError> {
    let result = ctl
        .client
        .update_component(host_id, component_id, new_reference, annotations(pairs))
        .await;
    let response = ctl.answered("update", To::Host(host_id), result)?;
    ctl.acked(
        &response,
        format!("updating {component_id} on {host_id} to {new_reference}"),
    )
}

fn annotations(pairs: Vec<(String, String)>) -> Option<BTreeMap<String, String>> {
    (!pairs.is_empty()).then(|| pairs.into_iter().collect())
}
