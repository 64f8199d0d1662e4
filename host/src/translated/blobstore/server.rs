//! The server half: a blobstore built-in started here as provider `P` serves
//! `wrpc:blobstore/blobstore@0.2.0` and `@0.1.0` on `{lattice}.{P}.wrpc.0.0.1.…`, queue group
//! `{lattice}.{P}`, as wasmCloud's blobstore providers do.
//!
//! A caller is identified by its `source-id` header; the link from it to `P` (named by the
//! `link-name` header, `default` when absent) selects its backend exactly as the in-process
//! binding does ([`crate::reconcile::derive::link_config`]), so a component gets the same results
//! wherever it runs. A caller without such a link gets an error saying so.
//!
//! Objects are whole values in the backends, so written data is gathered (up to
//! [`MAX_OBJECT_BYTES`], as the in-process `outgoing-value` does) before it is stored, and read
//! data is sent from the object in [`super::CHUNK`]-sized pieces.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tokio::task::JoinSet;
use trellis_providers::blobstore::BuiltinBlobstore;
use trellis_providers::blobstore::{BlobAccess, BlobError, MAX_OBJECT_BYTES, Meta, ObjectId};
use wit_bindgen_wrpc::bytes::{Bytes, BytesMut};
use wrpc_transport_nats::NatsContext;

use super::wrpc_bindings::exports::wrpc::{blobstore0_1_0 as v1, blobstore0_2_0 as v2};
use super::wrpc_bindings::wasi::blobstore::types::ObjectId as WireObjectId;
use crate::builtins::ConfigMap;
use crate::state::HostState;
use crate::translated::{accept_calls, caller_config, provider_server};

/// Subscribes provider `provider_id`'s blobstore functions; each call runs on its own task.
pub async fn serve(state: &Arc<HostState>, provider_id: &str) -> anyhow::Result<JoinSet<()>> {
    let plugin =
        state.plugins.blobstore.clone().ok_or_else(|| {
            anyhow::anyhow!("the blobstore built-in is switched off on this host")
        })?;
    let server = provider_server(state, provider_id).await?;
    let handler = BlobHandler {
        state: Arc::downgrade(state),
        provider: provider_id.into(),
        plugin,
        idle: state.rpc.timeout,
        access: Default::default(),
    };
    let subscribed = subscribe(server, handler).await?;
    Ok(accept_calls(provider_id, "blobstore", subscribed))
}

pub(super) type Invocations = Pin<
    Box<
        dyn Stream<Item = anyhow::Result<Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>>>
            + Send,
    >,
>;

/// Subscribes `handler`'s functions of both versions, on a thread of its own: in unoptimized
/// builds, polling the generated subscription of fourteen functions takes a stack frame larger
/// than a runtime thread's whole stack.
pub(super) async fn subscribe<H>(
    server: wrpc_transport_nats::Client,
    handler: H,
) -> anyhow::Result<Vec<(&'static str, &'static str, Invocations)>>
where
    H: v2::blobstore::Handler<NatsContext>
        + v1::blobstore::Handler<NatsContext>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("blobstore-subscribe".into())
        .stack_size(16 << 20)
        .spawn(move || {
            let subscribed = runtime.block_on(super::wrpc_bindings::serve(&server, handler));
            // The caller may be gone; then there is nobody to serve for.
            let _ = tx.send(subscribed.map(|all| all.into_iter().collect()));
        })?;
    rx.await?
}

/// Answers the calls of every component linked to one blobstore provider.
#[derive(Clone)]
struct BlobHandler {
    /// Weak: the provider's server lives in the host state, and must not keep it alive.
    state: Weak<HostState>,
    provider: Arc<str>,
    plugin: Arc<BuiltinBlobstore>,
    /// How long a write may wait for its next piece of data before it is abandoned.
    idle: Duration,
    /// What each link config reaches, kept so that a call opens no store.
    access: Arc<Mutex<HashMap<ConfigMap, BlobAccess>>>,
}

pub(super) type Answer<T> = anyhow::Result<Result<T, String>>;
pub(super) type ByteStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;
pub(super) type NameStream = Pin<Box<dyn Stream<Item = Vec<String>> + Send>>;
pub(super) type Outcome = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

fn object(id: WireObjectId) -> ObjectId {
    ObjectId {
        container: id.container,
        object: id.object,
    }
}

fn text(error: BlobError) -> String {
    error.to_string()
}

/// Object names in batches, after `offset` and at most `limit` of them.
pub(super) fn names(names: Vec<String>, limit: Option<u64>, offset: Option<u64>) -> NameStream {
    let skip = usize::try_from(offset.unwrap_or(0)).unwrap_or(usize::MAX);
    let take = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let names: Vec<String> = names.into_iter().skip(skip).take(take).collect();
    let batches: Vec<Vec<String>> = names.chunks(1000).map(<[String]>::to_vec).collect();
    Box::pin(futures::stream::iter(batches))
}

/// An object's bytes as stream items.
pub(super) fn chunks(data: Bytes) -> ByteStream {
    let pieces: Vec<Bytes> = (0..data.len())
        .step_by(super::CHUNK)
        .map(|start| data.slice(start..(start + super::CHUNK).min(data.len())))
        .collect();
    Box::pin(futures::stream::iter(pieces))
}

pub(super) fn done() -> Outcome {
    Box::pin(async { Ok(()) })
}

impl BlobHandler {
    /// What the caller of `cx` may reach, per its link to this provider.
    async fn access(&self, cx: &NatsContext) -> Result<BlobAccess, String> {
        let config = caller_config(&self.state, &self.provider, cx, "blobstore")?;
        let cached = self.access.lock().unwrap().get(&config).cloned();
        if let Some(access) = cached {
            return Ok(access);
        }
        let access = self
            .plugin
            .access(&config)
            .await
            .map_err(|e| e.to_string())?;
        Ok(self
            .access
            .lock()
            .unwrap()
            .entry(config)
            .or_insert(access)
            .clone())
    }

    /// Runs `op` on the caller's store; a caller without a store gets the reason as its error.
    async fn with<T, F, Fut>(&self, cx: &NatsContext, op: F) -> Answer<T>
    where
        F: FnOnce(BlobAccess) -> Fut,
        Fut: Future<Output = Result<T, BlobError>>,
    {
        Ok(match self.access(cx).await {
            Ok(access) => op(access).await.map_err(text),
            Err(error) => Err(error),
        })
    }

    async fn container_info(&self, cx: &NatsContext, name: String) -> Answer<Meta> {
        self.with(cx, |s| async move { s.container_info(&name).await })
            .await
    }

    async fn object_info(&self, cx: &NatsContext, id: WireObjectId) -> Answer<Meta> {
        self.with(cx, |s| async move { s.object_info(&object(id)).await })
            .await
    }

    async fn list(&self, cx: &NatsContext, name: String) -> Answer<Vec<String>> {
        self.with(cx, |s| async move { s.list(&name).await }).await
    }

    async fn read(
        &self,
        cx: &NatsContext,
        id: WireObjectId,
        start: u64,
        end: u64,
    ) -> Answer<Bytes> {
        self.with(cx, |s| async move {
            s.read_range(&object(id), start, end).await
        })
        .await
    }
}

/// Gathers a written object from its stream and stores it.
async fn store(
    access: BlobAccess,
    id: ObjectId,
    data: ByteStream,
    idle: Duration,
) -> Result<(), String> {
    let object = gather(data, idle).await?;
    access.write(&id, object).await.map_err(text)
}

/// A written object's data, gathered from its stream: refused at [`MAX_OBJECT_BYTES`],
/// abandoned when no data comes for `idle`.
pub(super) async fn gather(mut data: ByteStream, idle: Duration) -> Result<Bytes, String> {
    let mut object = BytesMut::new();
    loop {
        match tokio::time::timeout(idle, data.next()).await {
            Err(_) => {
                return Err(format!(
                    "no object data for {idle:?}: the write was abandoned"
                ));
            }
            Ok(None) => return Ok(object.freeze()),
            Ok(Some(chunk)) => {
                if object.len() + chunk.len() >= MAX_OBJECT_BYTES {
                    return Err(BlobError::TooLarge.to_string());
                }
                object.extend_from_slice(&chunk);
            }
        }
    }
}

/// The functions both versions share, under their WIT names.
macro_rules! common_functions {
    ($version:ident) => {
        async fn clear_container(&self, cx: NatsContext, name: String) -> Answer<()> {
            self.with(&cx, |s| async move { s.clear(&name).await })
                .await
        }

        async fn container_exists(&self, cx: NatsContext, name: String) -> Answer<bool> {
            self.with(&cx, |s| async move { s.container_exists(&name).await })
                .await
        }

        async fn create_container(&self, cx: NatsContext, name: String) -> Answer<()> {
            self.with(&cx, |s| async move { s.create_container(&name).await })
                .await
        }

        async fn delete_container(&self, cx: NatsContext, name: String) -> Answer<()> {
            self.with(&cx, |s| async move { s.delete_container(&name).await })
                .await
        }

        async fn get_container_info(
            &self,
            cx: NatsContext,
            name: String,
        ) -> Answer<$version::blobstore::ContainerMetadata> {
            Ok(self.container_info(&cx, name).await?.map(|meta| {
                $version::blobstore::ContainerMetadata {
                    created_at: meta.created_at,
                }
            }))
        }

        async fn copy_object(
            &self,
            cx: NatsContext,
            src: WireObjectId,
            dest: WireObjectId,
        ) -> Answer<()> {
            self.with(&cx, |s| async move {
                s.copy_object(&object(src), &object(dest)).await
            })
            .await
        }

        async fn delete_object(&self, cx: NatsContext, id: WireObjectId) -> Answer<()> {
            self.with(&cx, |s| async move {
                s.delete_objects(&id.container, &[id.object]).await
            })
            .await
        }

        async fn delete_objects(
            &self,
            cx: NatsContext,
            container: String,
            objects: Vec<String>,
        ) -> Answer<()> {
            self.with(&cx, |s| async move {
                s.delete_objects(&container, &objects).await
            })
            .await
        }

        async fn get_object_info(
            &self,
            cx: NatsContext,
            id: WireObjectId,
        ) -> Answer<$version::blobstore::ObjectMetadata> {
            Ok(self
                .object_info(&cx, id)
                .await?
                .map(|meta| $version::blobstore::ObjectMetadata {
                    created_at: meta.created_at,
                    size: meta.size,
                }))
        }

        async fn has_object(&self, cx: NatsContext, id: WireObjectId) -> Answer<bool> {
            self.with(&cx, |s| async move { s.has_object(&object(id)).await })
                .await
        }

        async fn move_object(
            &self,
            cx: NatsContext,
            src: WireObjectId,
            dest: WireObjectId,
        ) -> Answer<()> {
            self.with(&cx, |s| async move {
                s.move_object(&object(src), &object(dest)).await
            })
            .await
        }
    };
}

impl v2::blobstore::Handler<NatsContext> for BlobHandler {
    common_functions!(v2);

    async fn list_container_objects(
        &self,
        cx: NatsContext,
        name: String,
        limit: Option<u64>,
        offset: Option<u64>,
    ) -> Answer<(NameStream, Outcome)> {
        Ok(self
            .list(&cx, name)
            .await?
            .map(|all| (names(all, limit, offset), done())))
    }

    async fn get_container_data(
        &self,
        cx: NatsContext,
        id: WireObjectId,
        start: u64,
        end: u64,
    ) -> Answer<(ByteStream, Outcome)> {
        Ok(self
            .read(&cx, id, start, end)
            .await?
            .map(|data| (chunks(data), done())))
    }

    /// Answers as soon as the container is known to exist, so the caller streams the data
    /// while the outcome is pending.
    async fn write_container_data(
        &self,
        cx: NatsContext,
        id: WireObjectId,
        data: ByteStream,
    ) -> Answer<Outcome> {
        let access = match self.access(&cx).await {
            Ok(access) => access,
            Err(error) => return Ok(Err(error)),
        };
        if let Err(error) = access.container_info(&id.container).await {
            return Ok(Err(text(error)));
        }
        let outcome = store(access, object(id), data, self.idle);
        Ok(Ok(Box::pin(outcome)))
    }
}

impl v1::blobstore::Handler<NatsContext> for BlobHandler {
    common_functions!(v1);

    async fn list_container_objects(
        &self,
        cx: NatsContext,
        name: String,
        limit: Option<u64>,
        offset: Option<u64>,
    ) -> Answer<NameStream> {
        Ok(self
            .list(&cx, name)
            .await?
            .map(|all| names(all, limit, offset)))
    }

    async fn get_container_data(
        &self,
        cx: NatsContext,
        id: WireObjectId,
        start: u64,
        end: u64,
    ) -> Answer<ByteStream> {
        Ok(self.read(&cx, id, start, end).await?.map(chunks))
    }

    /// Answers once all the data is stored (0.1.0 has no outcome future).
    async fn write_container_data(
        &self,
        cx: NatsContext,
        id: WireObjectId,
        data: ByteStream,
    ) -> Answer<()> {
        Ok(match self.access(&cx).await {
            Ok(access) => store(access, object(id), data, self.idle).await,
            Err(error) => Err(error),
        })
    }
}
