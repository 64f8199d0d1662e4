//! Imports linked to the lattice: every function of an imported instance that nothing on this
//! runtime provides becomes a wRPC invocation through the embedder's [`RemoteInvoker`], and every
//! resource it declares an opaque handle of the target's ([`RemoteResource`]).
//!
//! A call encodes its parameters, starts the invocation (bounded by the invoker's timeout),
//! sends the parameters and reads the results within what is left of it. A function without
//! results returns once the target has accepted the call, as on a wasmCloud host: wRPC has no
//! channel for a remote failure. Anything that fails traps the caller's invocation with the
//! reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wasmtime::StoreContextMut;
use wasmtime::component::types::{ComponentFunc, ComponentInstance, ComponentItem};
use wasmtime::component::{Linker, LinkerInstance, ResourceType, Type, Val};

use super::value::{self, RemoteResource};
use super::{RemoteCall, RemoteInvoker};
use crate::ctx::InvocationCtx;

/// Links the imported instance `import` (of type `instance`) to the lattice.
pub(crate) fn link(
    engine: &wasmtime::Engine,
    linker: &mut Linker<InvocationCtx>,
    import: &str,
    instance: &ComponentInstance,
) -> anyhow::Result<()> {
    let mut linked = linker.instance(import).map_err(|e| {
        anyhow::Error::from(e).context(format!("defining `{import}` in the linker"))
    })?;
    for (name, item) in instance.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => link_function(&mut linked, import, name, &func)?,
            ComponentItem::Resource(_) => {
                // Handles only travel: dropping one sends nothing, as on a wasmCloud host.
                linked.resource(name, ResourceType::host::<RemoteResource>(), |_, _| Ok(()))?
            }
            ComponentItem::Type(_) => {}
            other => anyhow::bail!("`{import}.{name}` cannot be called over wRPC ({other:?})"),
        }
    }
    Ok(())
}

/// The wRPC function name of a WIT function: `[method]r.f` is `r.f`, `[static]r.f` is `r.f`,
/// `[constructor]r` is `r`.
fn rpc_name(name: &str) -> &str {
    ["[constructor]", "[static]", "[method]"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name)
}

fn link_function(
    linked: &mut LinkerInstance<'_, InvocationCtx>,
    instance: &str,
    name: &str,
    func: &ComponentFunc,
) -> anyhow::Result<()> {
    let params: Arc<[Type]> = func.params().map(|(_, ty)| ty).collect();
    let results: Arc<[Type]> = func.results().collect();
    let with_resources = results.iter().any(crate::running::mentions_resource);
    let (instance, function) = (Arc::<str>::from(instance), Arc::<str>::from(rpc_name(name)));
    let described = format!("`{instance}.{name}`");
    linked.func_new_async(name, move |mut store, _ty, args, out| {
        let (params, results) = (params.clone(), results.clone());
        let (instance, function, described) =
            (instance.clone(), function.clone(), described.clone());
        Box::new(async move {
            let call = Call {
                instance: &instance,
                function: &function,
                params: &params,
                results: &results,
                with_resources,
            };
            call.run(&mut store, args, out)
                .await
                .with_context(|| format!("calling {described} over wRPC"))
                .map_err(wasmtime::Error::from_anyhow)
        })
    })?;
    Ok(())
}

/// One call of a polyfilled function.
struct Call<'a> {
    instance: &'a str,
    function: &'a str,
    params: &'a [Type],
    results: &'a [Type],
    /// Results carrying resources are read to the end of the stream before decoding.
    with_resources: bool,
}

impl Call<'_> {
    async fn run(
        &self,
        store: &mut StoreContextMut<'_, InvocationCtx>,
        args: &[Val],
        out: &mut [Val],
    ) -> anyhow::Result<()> {
        let mut params = BytesMut::new();
        for (i, (arg, ty)) in args.iter().zip(self.params).enumerate() {
            value::encode(store, arg, ty, &mut params)
                .with_context(|| format!("encoding parameter {i}"))?;
        }
        let (invoker, call): (Arc<dyn RemoteInvoker>, RemoteCall) = {
            let remote = store
                .data()
                .remote
                .as_ref()
                .context("this runtime has no lattice to call")?;
            (remote.invoker.clone(), remote.call.clone())
        };
        let timeout = invoker.timeout();
        let started = Instant::now();
        let invocation = invoker.invoke(call, self.instance, self.function, params.freeze());
        let (mut tx, mut rx) = tokio::time::timeout(timeout, invocation)
            .await
            .map_err(|_| anyhow::anyhow!("the invocation was not accepted within {timeout:?}"))?
            .context("invoking")?;
        let left = || timeout.saturating_sub(started.elapsed());
        // Parameters that did not fit the first message go out once the target has answered:
        // on the flush. Ending the stream tells the target they are complete.
        within(left(), async {
            tx.flush().await?;
            tx.shutdown().await
        })
        .await
        .context("sending the parameters")?;
        if self.results.is_empty() {
            return Ok(());
        }
        let values = within(left(), async {
            let values = if self.with_resources {
                let mut bytes = Vec::new();
                rx.read_to_end(&mut bytes).await?;
                value::decode_all(store, &bytes, self.results)?
            } else {
                value::read(&mut rx, self.results).await?
            };
            anyhow::Ok(values)
        })
        .await
        .context("receiving the results")?;
        for (slot, value) in out.iter_mut().zip(values) {
            *slot = value;
        }
        Ok(())
    }
}

/// `work` bounded by `limit`.
async fn within<T, E: Into<anyhow::Error>>(
    limit: Duration,
    work: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => anyhow::bail!("timed out"),
    }
}
