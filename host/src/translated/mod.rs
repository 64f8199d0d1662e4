//! wasmCloud's *translated instance names*: interfaces a host implements for its components but
//! forwards over wRPC under a `wrpc:` name, with the resources of the WASI interface turned into
//! plain values (a key-value bucket travels as its name). Both halves live here:
//!
//! - client: when a built-in is switched off, a plugin stands in for it and sends the
//!   component's calls to the target of its link, as a wasmCloud host sends them to a
//!   capability provider;
//! - server: a built-in started as a provider (`provider.start trellis+builtin://…`) serves the
//!   translated interface under the provider ID, so wasmCloud hosts and other Trellis hosts reach
//!   it like an external provider.
//!
//! | component import | wRPC instance | module |
//! |---|---|---|
//! | `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft` | `wrpc:keyvalue/{store,atomics,batch}@0.2.0-draft` | [`keyvalue`] |

pub mod keyvalue;

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::task::JoinSet;
use trellis_runtime::Plugin;

use crate::builtins::{Builtin, BuiltinRef};
use crate::rpc::Lattice;
use crate::state::HostState;

/// The plugins that forward the interfaces of switched-off built-ins to the lattice.
pub fn fallback_plugins(enabled: &BTreeSet<Builtin>, lattice: &Lattice) -> Vec<Arc<dyn Plugin>> {
    let mut plugins: Vec<Arc<dyn Plugin>> = Vec::new();
    if !enabled.contains(&Builtin::Keyvalue) {
        plugins.push(Arc::new(keyvalue::KeyvalueOverLattice::new(
            lattice.clone(),
        )));
    }
    plugins
}

/// A built-in provider's translated interfaces on the lattice; dropping it stops serving
/// (calls in flight finish).
#[derive(Debug)]
pub struct ProviderServer {
    tasks: JoinSet<()>,
}

impl Drop for ProviderServer {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Starts serving what built-in provider `provider_id` offers on the lattice, if anything.
pub async fn serve_provider(
    state: &Arc<HostState>,
    provider_id: &str,
    builtin: &BuiltinRef,
) -> anyhow::Result<Option<ProviderServer>> {
    let tasks = match builtin.builtin {
        Builtin::Keyvalue => keyvalue::serve(state, provider_id).await?,
        _ => return Ok(None),
    };
    Ok(Some(ProviderServer { tasks }))
}
