//! Component commands. The host acknowledges them before it carries them out, so what is
//! printed is the request accepted; the outcome comes later as lattice events.

use std::collections::BTreeMap;

use wasmcloud_control_interface::ScaleComponentCommand;

use super::client::{Ctl, CtlError, To};

/// What `ctl scale` asks for.
pub(super) struct Scale<'a> {
    pub host_id: &'a str,
    pub component_id: &'a str,
    pub reference: &'a str,
    pub count: u32,
    pub annotations: Vec<(String, String)>,
    pub config: Vec<String>,
    pub limits: Vec<(String, String)>,
}

/// `ctl scale`.
pub(super) async fn scale(ctl: &Ctl, request: Scale<'_>) -> Result<(), CtlError> {
    let Scale {
        host_id,
        component_id,
        count,
        ..
    } = request;
    let result = if request.limits.is_empty() {
        ctl.client
            .scale_component(
                host_id,
                request.reference,
                component_id,
                count,
                annotations(request.annotations),
                request.config,
                false,
            )
            .await
    } else {
        // The client has no parameter for limits: the command type carries them.
        let command = ScaleComponentCommand::builder()
            .host_id(host_id)
            .component_id(component_id)
            .component_ref(request.reference)
            .max_instances(count)
            .annotations(annotations(request.annotations).unwrap_or_default())
            .config(request.config)
            .component_limits(Some(request.limits.into_iter().collect()))
            .build()
            .map_err(|e| CtlError::Call(e.to_string()))?;
        ctl.request(&format!("component.scale.{host_id}"), &command)
            .await
    };
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
