//! A component as a keyvalue provider on the lattice: a component exporting `wasi:keyvalue`
//! (`store`, and `atomics` / `batch` if it has them) also answers the translated
//! `wrpc:keyvalue/…@0.2.0-draft` functions on its own subjects, so components on other hosts
//! (and wasmCloud hosts) whose link points at it reach it as they reach a keyvalue provider.
//!
//! Each call runs on a fresh instance, as every invocation does: `open` the named bucket, run
//! the one operation on it, drop it. A trap or a budget stop fails that call alone.

use tokio::task::JoinSet;
use trellis_runtime::{ComponentHandle, InvocationCtx};
use wasmtime::Store;
use wasmtime::component::ResourceAny;
use wit_bindgen_wrpc::bytes::Bytes;

use super::wrpc_bindings::exports::wrpc::keyvalue::{atomics, batch, store};
use guest::exports::wasi::keyvalue::{
    atomics as guest_atomics, batch as guest_batch, store as guest_store,
};

mod guest {
    wasmtime::component::bindgen!({
        inline: "
            package trellis:keyvalue-component;

            world provider {
                export wasi:keyvalue/store@0.2.0-draft;
                export wasi:keyvalue/atomics@0.2.0-draft;
                export wasi:keyvalue/batch@0.2.0-draft;
            }
        ",
        path: "../wit/deps/keyvalue",
        exports: { default: async },
    });
}

const STORE: &str = "wasi:keyvalue/store@0.2.0-draft";
const ATOMICS: &str = "wasi:keyvalue/atomics@0.2.0-draft";
const BATCH: &str = "wasi:keyvalue/batch@0.2.0-draft";

/// Serves the translated functions of what `component` exports of `wasi:keyvalue` on `server`
/// (its prefix and queue group); nothing when it does not export `store`. The accept loops
/// join `tasks`; each call runs detached, so that it finishes even when serving stops.
pub async fn serve(
    server: &wrpc_transport_nats::Client,
    component: &ComponentHandle,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let exported = component.exported_instances();
    if !exported.iter().any(|i| i == STORE) {
        return Ok(());
    }
    let handler = ComponentKeyvalue {
        component: component.clone(),
    };
    let mut subscribed = Vec::from(store::serve_interface(server, handler.clone()).await?);
    if exported.iter().any(|i| i == ATOMICS) {
        subscribed.extend(atomics::serve_interface(server, handler.clone()).await?);
    }
    if exported.iter().any(|i| i == BATCH) {
        subscribed.extend(batch::serve_interface(server, handler).await?);
    }
    crate::translated::spawn_accept_loops(tasks, component.id(), "keyvalue", subscribed);
    Ok(())
}

/// Answers the translated calls with the component's exports.
#[derive(Clone)]
struct ComponentKeyvalue {
    component: ComponentHandle,
}

/// The component's `wasi:keyvalue` exports on one instance.
struct Exports {
    store: guest_store::Guest,
    atomics: Option<guest_atomics::Guest>,
    batch: Option<guest_batch::Guest>,
}

type Answer<T> = anyhow::Result<Result<T, store::Error>>;

fn to_wire(error: guest_store::Error) -> store::Error {
    match error {
        guest_store::Error::NoSuchStore => store::Error::NoSuchStore,
        guest_store::Error::AccessDenied => store::Error::AccessDenied,
        guest_store::Error::Other(message) => store::Error::Other(message),
    }
}

/// The export this component does not have (its interface was served, so this is a bug).
fn missing(interface: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!("the component does not export `{interface}`"))
}

impl ComponentKeyvalue {
    /// Runs `operation` on bucket `name`, opened on a fresh instance of the component and
    /// dropped after. A guest error (from `open` or the operation) is the answer; a trap or a
    /// budget stop fails the call.
    async fn on_bucket<T>(
        &self,
        name: &str,
        operation: impl AsyncFnOnce(
            &mut Store<InvocationCtx>,
            &Exports,
            ResourceAny,
        ) -> wasmtime::Result<Result<T, guest_store::Error>>,
    ) -> Answer<T> {
        let component = &self.component;
        let (mut instance, _permit) = component.new_instance_store(STORE, None).await?;
        let pre = instance.pre().clone();
        let store_indices = guest_store::GuestIndices::new(&pre)?;
        let atomics_indices = guest_atomics::GuestIndices::new(&pre).ok();
        let batch_indices = guest_batch::GuestIndices::new(&pre).ok();
        let answer = component
            .call(&mut instance, async |store| {
                let guest = pre.instantiate_async(&mut *store).await?;
                let exports = Exports {
                    store: store_indices.load(&mut *store, &guest)?,
                    atomics: atomics_indices
                        .map(|i| i.load(&mut *store, &guest))
                        .transpose()?,
                    batch: batch_indices
                        .map(|i| i.load(&mut *store, &guest))
                        .transpose()?,
                };
                let bucket = match exports.store.call_open(&mut *store, name).await? {
                    Ok(bucket) => bucket,
                    Err(error) => return Ok(Err(error)),
                };
                let answer = operation(&mut *store, &exports, bucket).await?;
                bucket.resource_drop_async(&mut *store).await?;
                Ok(answer)
            })
            .await?;
        Ok(answer.map_err(to_wire))
    }
}

impl<Ctx: Send> store::Handler<Ctx> for ComponentKeyvalue {
    async fn get(&self, _cx: Ctx, bucket: String, key: String) -> Answer<Option<Bytes>> {
        self.on_bucket(&bucket, async |store, exports, bucket| {
            let value = exports.store.bucket().call_get(store, bucket, &key).await?;
            Ok(value.map(|value| value.map(Bytes::from)))
        })
        .await
    }

    async fn set(&self, _cx: Ctx, bucket: String, key: String, value: Bytes) -> Answer<()> {
        self.on_bucket(&bucket, async |store, exports, bucket| {
            exports
                .store
                .bucket()
                .call_set(store, bucket, &key, &value)
                .await
        })
        .await
    }

    async fn delete(&self, _cx: Ctx, bucket: String, key: String) -> Answer<()> {
        self.on_bucket(&bucket, async |store, exports, bucket| {
            exports
                .store
                .bucket()
                .call_delete(store, bucket, &key)
                .await
        })
        .await
    }

    async fn exists(&self, _cx: Ctx, bucket: String, key: String) -> Answer<bool> {
        self.on_bucket(&bucket, async |store, exports, bucket| {
            exports
                .store
                .bucket()
                .call_exists(store, bucket, &key)
                .await
        })
        .await
    }

    async fn list_keys(
        &self,
        _cx: Ctx,
        bucket: String,
        cursor: Option<u64>,
    ) -> Answer<store::KeyResponse> {
        self.on_bucket(&bucket, async |store, exports, bucket| {
            let page = exports
                .store
                .bucket()
                .call_list_keys(store, bucket, cursor)
                .await?;
            Ok(page.map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            }))
        })
        .await
    }
}

impl<Ctx: Send> atomics::Handler<Ctx> for ComponentKeyvalue {
    async fn increment(&self, _cx: Ctx, bucket: String, key: String, delta: u64) -> Answer<u64> {
        self.on_bucket(&bucket, async |store, exports, bucket| {
            let atomics = exports.atomics.as_ref().ok_or_else(|| missing(ATOMICS))?;
            atomics.call_increment(store, bucket, &key, delta).await
        })
        .await
    }
}

impl<Ctx: Send> batch::Handler<Ctx> for ComponentKeyvalue {
    async fn get_many(
        &self,
        _cx: Ctx,
        bucket: String,
        keys: Vec<String>,
    ) -> Answer<Vec<Option<(String, Bytes)>>> {
        self.on_bucket(&bucket, async |store, exports, bucket| {
            let batch = exports.batch.as_ref().ok_or_else(|| missing(BATCH))?;
            let values = batch.call_get_many(store, bucket, &keys).await?;
            Ok(values.map(|values| {
                values
                    .into_iter()
                    .map(|entry| entry.map(|(key, value)| (key, Bytes::from(value))))
                    .collect()
            }))
        })
        .await
    }

    async fn set_many(
        &self,
        _cx: Ctx,
        bucket: String,
        key_values: Vec<(String, Bytes)>,
    ) -> Answer<()> {
        let key_values: Vec<(String, Vec<u8>)> = key_values
            .into_iter()
            .map(|(key, value)| (key, value.into()))
            .collect();
        self.on_bucket(&bucket, async |store, exports, bucket| {
            let batch = exports.batch.as_ref().ok_or_else(|| missing(BATCH))?;
            batch.call_set_many(store, bucket, &key_values).await
        })
        .await
    }

    async fn delete_many(&self, _cx: Ctx, bucket: String, keys: Vec<String>) -> Answer<()> {
        self.on_bucket(&bucket, async |store, exports, bucket| {
            let batch = exports.batch.as_ref().ok_or_else(|| missing(BATCH))?;
            batch.call_delete_many(store, bucket, &keys).await
        })
        .await
    }
}
