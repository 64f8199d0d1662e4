//! wasmCloud's *translated instance names*: interfaces a host implements for its components but
//! forwards over wRPC under a `wrpc:` name, with the resources of the WASI interface turned into
//! plain values (a key-value bucket travels as its name). Both halves live here:
//!
//! - client: when a component links the interface to something other than a built-in provider
//!   here (or the built-in is switched off), a forwarding plugin sends the component's calls to
//!   the target of its link, as a wasmCloud host sends them to a capability provider;
//! - server: a built-in started as a provider (`provider.start trellis+builtin://…`) serves the
//!   translated interface under the provider ID, so wasmCloud hosts and other Trellis hosts reach
//!   it like an external provider.
//!
//! | component import | wRPC instance | module |
//! |---|---|---|
//! | `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft` | `wrpc:keyvalue/{store,atomics,batch}@0.2.0-draft` | [`keyvalue`] |
//! | `wasi:blobstore/{blobstore,container,types}@0.2.0-draft` | `wrpc:blobstore/blobstore@0.2.0` (client falls back to, server also serves, `@0.1.0`) | [`blobstore`] |
//! | `wasi:http/outgoing-handler@0.2.x` | `wrpc:http/outgoing-handler@0.1.0` | [`outgoing_http`] |

pub mod blobstore;
pub mod keyvalue;
pub mod outgoing_http;

use std::sync::{Arc, Weak};

use tokio::task::JoinSet;
use trellis_providers::{BlobstorePlugin, KeyvaluePlugin};
use trellis_runtime::Plugin;
use wrpc_transport_nats::NatsContext;

use crate::builtins::{Builtin, BuiltinRef, ConfigMap};
use crate::reconcile::derive::{self, LatticeView as _};
use crate::rpc::Lattice;
use crate::state::HostState;
use trellis_deployer::wire::DEFAULT_LINK_NAME;

/// The plugins that forward key-value, blobstore and outgoing HTTP to the lattice: what a
/// component's imports use when it links them to something other than a built-in provider
/// here, or when the built-in is switched off.
pub fn forwarding_plugins(lattice: &Lattice) -> Vec<Arc<dyn Plugin>> {
    vec![
        Arc::new(KeyvaluePlugin::with_backend(Arc::new(
            keyvalue::KeyvalueOverLattice::new(lattice.clone()),
        ))),
        Arc::new(BlobstorePlugin::with_backend(Arc::new(
            blobstore::BlobstoreOverLattice::new(lattice.clone()),
        ))),
        Arc::new(outgoing_http::OutgoingHttpOverLattice::new(lattice.clone())),
    ]
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
        Builtin::Blobstore => blobstore::serve(state, provider_id).await?,
        Builtin::HttpClient => outgoing_http::serve(state, provider_id).await?,
        _ => return Ok(None),
    };
    Ok(Some(ProviderServer { tasks }))
}

/// A wRPC server for built-in provider `provider_id`: subjects under `{lattice}.{provider_id}`,
/// the same as its queue group, as a capability provider serves them.
async fn provider_server(
    state: &HostState,
    provider_id: &str,
) -> anyhow::Result<wrpc_transport_nats::Client> {
    let prefix = format!("{}.{provider_id}", state.lattice);
    wrpc_transport_nats::Client::new(state.rpc.nats.clone(), prefix.clone(), Some(prefix.into()))
        .await
}

/// One accept loop per subscribed function, on the returned set: see [`spawn_accept_loops`].
fn accept_calls<S, F>(
    provider_id: &str,
    what: &'static str,
    subscribed: impl IntoIterator<Item = (&'static str, &'static str, S)>,
) -> JoinSet<()>
where
    S: futures::Stream<Item = anyhow::Result<F>> + Send + Unpin + 'static,
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    spawn_accept_loops(&mut tasks, provider_id, what, subscribed);
    tasks
}

/// One accept loop per subscribed function, on `tasks`. Each accepted call runs on its own
/// detached task, so a call in flight finishes even when serving stops; failures are logged as
/// `what` calls of the provider (a built-in, or a component serving as one).
fn spawn_accept_loops<S, F>(
    tasks: &mut JoinSet<()>,
    provider_id: &str,
    what: &'static str,
    subscribed: impl IntoIterator<Item = (&'static str, &'static str, S)>,
) where
    S: futures::Stream<Item = anyhow::Result<F>> + Send + Unpin + 'static,
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    use futures::StreamExt as _;
    for (instance, function, mut invocations) in subscribed {
        let provider = provider_id.to_string();
        tasks.spawn(async move {
            while let Some(invocation) = invocations.next().await {
                let provider = provider.clone();
                match invocation {
                    Ok(call) => drop(tokio::spawn(async move {
                        if let Err(error) = call.await {
                            tracing::warn!(%provider, instance, function, "{what} call failed: {error:#}");
                        }
                    })),
                    Err(error) => {
                        tracing::warn!(%provider, instance, function, "accepting a {what} call: {error:#}")
                    }
                }
            }
        });
    }
}

/// The plugin config of the link through which the caller of `cx` (its `source-id` header)
/// reaches built-in provider `provider_id` for `wasi:{wit_package}`, named by the `link-name`
/// header (`default` when absent): what the in-process binding would get, so a component gets
/// the same behaviour wherever it runs. The error says why there is none.
pub(crate) fn caller_config(
    state: &Weak<HostState>,
    provider_id: &str,
    cx: &NatsContext,
    wit_package: &str,
) -> Result<ConfigMap, String> {
    let header = |key: &str| {
        cx.headers
            .as_ref()
            .and_then(|headers| headers.get(key))
            .map(|value| value.as_str().to_string())
    };
    let source = header("source-id")
        .ok_or("the call has no `source-id` header: callers must say who they are")?;
    let link_name = header("link-name").unwrap_or_else(|| DEFAULT_LINK_NAME.to_string());
    let state = state.upgrade().ok_or("the host is stopping")?;
    let provider = state
        .builtin_provider(provider_id)
        .ok_or_else(|| format!("provider `{provider_id}` stopped"))?;
    let link = state
        .links
        .links_from(&source)
        .into_iter()
        .find(|link| {
            link.target == provider_id
                && link.name == link_name
                && link.wit_namespace == "wasi"
                && link.wit_package == wit_package
        })
        .ok_or_else(|| {
            format!(
                "component `{source}` has no `{link_name}` link to {wit_package} provider `{provider_id}`"
            )
        })?;
    Ok(derive::link_config(
        &*state,
        &provider,
        &link.source_config,
        &link.target_config,
    ))
}
