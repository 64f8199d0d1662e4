//! `wasi:http/outgoing-handler` (and `wasi:http/types`) through wasmtime-wasi-http, deny by
//! default: a component may only reach the hosts listed in its binding config,
//! `allowed_hosts=host1,host2:port` (a host without a port allows every port). A request to
//! any other host fails with `error-code.http-request-denied`, which the guest sees as an
//! error value.
use std::collections::BTreeMap;

use trellis_runtime::{Binding, Extensions, InterfaceName, InvocationCtx, Plugin};
use wasmtime::component::Linker;

use crate::bound::Bound;
use crate::http::{self, AllowedHosts, HttpState};

/// Why a binding was refused.
#[derive(Debug, thiserror::Error)]
#[error("bad allowed_hosts: {0}")]
pub struct AllowedHostsError(String);

/// Outgoing HTTP for components, limited to their allowed hosts.
#[derive(Default)]
pub struct HttpClientPlugin {
    allowed: Bound<AllowedHosts>,
}

impl HttpClientPlugin {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The hosts a binding's (or a link's) `config` allows.
pub fn allowed_hosts(config: &BTreeMap<String, String>) -> Result<AllowedHosts, AllowedHostsError> {
    let list = config.get("allowed_hosts").map_or("", String::as_str);
    AllowedHosts::parse(list).map_err(AllowedHostsError)
}

#[async_trait::async_trait]
impl Plugin for HttpClientPlugin {
    fn id(&self) -> &str {
        "http-client"
    }

    fn imports(&self) -> Vec<InterfaceName> {
        ["wasi:http/outgoing-handler", "wasi:http/types"]
            .iter()
            .map(|name| InterfaceName::parse(name).expect("valid name"))
            .collect()
    }

    async fn bind(&self, binding: &Binding) -> anyhow::Result<()> {
        let allowed = allowed_hosts(&binding.config)?;
        self.allowed.insert(&binding.component_id, allowed);
        Ok(())
    }

    async fn unbind(&self, component_id: &str) {
        self.allowed.remove(component_id);
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<InvocationCtx>,
        interface: &InterfaceName,
    ) -> anyhow::Result<()> {
        match interface.interface.as_str() {
            "outgoing-handler" => http::add_outgoing_to_linker(linker)?,
            "types" => http::add_types_to_linker(linker)?,
            other => anyhow::bail!("the http-client plugin does not serve `{other}`"),
        }
        Ok(())
    }

    /// Sets the component's allowed hosts (replacing whatever another HTTP plugin prepared).
    fn prepare(&self, component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        let allowed = self.allowed.get(component_id).unwrap_or_default();
        extensions.insert(HttpState::new(allowed));
        Ok(())
    }
}
