//! The client half: the blobstore binding's lattice backend, for hosts whose blobstore built-in
//! is off. Each `wasi:blobstore` call of a component becomes a `wrpc:blobstore/blobstore` call to
//! the target of its link (`@0.2.0`, or `@0.1.0` when nobody answers that).
//!
//! A container is just its name (as on a wasmCloud host): `get-container` asks the target whether
//! it exists, every operation is one wRPC call. Object data and listings arrive as wRPC streams;
//! an object's data leaves as one, opened by `write-data` and ended by `finish` (see
//! [`trellis_providers::blobstore::data`]).
//!
//! Anything that keeps a call from being answered (no link, nobody serving the target, a
//! transport failure, no answer within the rpc timeout, a stream that stalls for as long)
//! reaches the guest as the function's error string saying why, never as a trap or a hang.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use trellis_providers::blobstore::data::{Incoming, Queue, Writing};
use trellis_providers::blobstore::{BlobStore, BlobstoreBackend, Meta, ObjectId};
use trellis_runtime::RemoteCall;
use wasmtime_wasi::runtime::spawn;
use wit_bindgen_wrpc::bytes::Bytes;

use super::wrpc_bindings::wasi::blobstore::types::ObjectId as WireObjectId;
use super::wrpc_bindings::wrpc::blobstore0_1_0::blobstore as v1;
use super::wrpc_bindings::wrpc::blobstore0_2_0::blobstore as v2;
use crate::rpc::Lattice;

/// The routing key of all three interfaces: the link for `wasi:blobstore/blobstore`, as on
/// wasmCloud.
const ROUTE: &str = "wasi:blobstore/blobstore@0.2.0-draft";

/// Whether NATS answered that nobody serves the subject (wRPC reports it as `NotConnected`):
/// the target does not serve that version.
fn no_responders(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotConnected)
    })
}

/// Sends a component's `wasi:blobstore` calls to its link target as `wrpc:blobstore` calls.
pub struct BlobstoreOverLattice {
    lattice: Arc<Lattice>,
}

impl BlobstoreOverLattice {
    pub fn new(lattice: Lattice) -> Self {
        Self {
            lattice: Arc::new(lattice),
        }
    }
}

impl BlobstoreBackend for BlobstoreOverLattice {
    fn id(&self) -> &str {
        "blobstore-over-lattice"
    }

    fn forwards(&self) -> bool {
        true
    }

    fn store(&self, _component_id: &str) -> Option<Arc<dyn BlobStore>> {
        Some(Arc::new(RemoteStore(self.lattice.clone())))
    }
}

/// Whatever blobstore each call's caller is linked to.
struct RemoteStore(Arc<Lattice>);

type Client = wrpc_transport_nats::Client;

impl RemoteStore {
    /// Runs one call to wherever `caller`'s blobstore goes: `v2` (`@0.2.0`), or `v1` (`@0.1.0`)
    /// when nobody answers that. Everything that keeps it from answering within the rpc timeout
    /// becomes an error string.
    async fn call<T, F2, Fut2, F1, Fut1>(
        &self,
        caller: &RemoteCall,
        v2: F2,
        v1: F1,
    ) -> Result<T, String>
    where
        F2: FnOnce(Client, Option<HeaderMap>) -> Fut2,
        Fut2: Future<Output = anyhow::Result<Result<T, String>>>,
        F1: FnOnce(Client, Option<HeaderMap>) -> Fut1,
        Fut1: Future<Output = anyhow::Result<Result<T, String>>>,
    {
        let lattice = &self.0;
        let (target, mut headers) = lattice.route(caller, ROUTE).map_err(|e| e.to_string())?;
        // The guest's invocation span is current: the provider continues its trace.
        trellis_providers::trace_context::inject_nats(&tracing::Span::current(), &mut headers);
        let timeout = lattice.timeout;
        // The bound covers reaching the target, the fallback, and the answer.
        let answer = tokio::time::timeout(timeout, async {
            let client = lattice.client(&target).await?;
            match v2(client.clone(), Some(headers.clone())).await {
                Err(error) if no_responders(&error) => v1(client, Some(headers)).await,
                answer => answer,
            }
        });
        match answer.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => Err(format!(
                "blobstore call to `{target}` over the lattice failed: {error:#}"
            )),
            Err(_) => Err(format!(
                "blobstore target `{target}` did not answer within {timeout:?}"
            )),
        }
    }

    /// How long a stream may stall, or an outcome keep the guest waiting.
    fn idle(&self) -> Option<Duration> {
        Some(self.0.timeout)
    }
}

/// The same call on both versions: `$v` names `v2`, then (when nobody answers that) `v1`.
macro_rules! on_both_versions {
    ($store:expr, $caller:expr, |$c:ident, $cx:ident, $v:ident| $call:expr) => {
        $store
            .call(
                $caller,
                |$c, $cx| async move {
                    use v2 as $v;
                    $call
                },
                |$c, $cx| async move {
                    use v1 as $v;
                    $call
                },
            )
            .await
    };
}

fn wire(id: &ObjectId) -> WireObjectId {
    WireObjectId {
        container: id.container.clone(),
        object: id.object.clone(),
    }
}

#[async_trait::async_trait]
impl BlobStore for RemoteStore {
    async fn create_container(&self, caller: &RemoteCall, name: &str) -> Result<(), String> {
        on_both_versions!(self, caller, |c, cx, api| api::create_container(
            &c, cx, name
        )
        .await)
    }

    /// The target's container info; its size is not told.
    async fn container_info(&self, caller: &RemoteCall, name: &str) -> Result<Meta, String> {
        let created_at = on_both_versions!(self, caller, |c, cx, api| Ok(
            api::get_container_info(&c, cx, name)
                .await?
                .map(|info| info.created_at)
        ))?;
        Ok(Meta {
            created_at,
            size: 0,
        })
    }

    async fn delete_container(&self, caller: &RemoteCall, name: &str) -> Result<(), String> {
        on_both_versions!(self, caller, |c, cx, api| api::delete_container(
            &c, cx, name
        )
        .await)
    }

    async fn container_exists(&self, caller: &RemoteCall, name: &str) -> Result<bool, String> {
        on_both_versions!(self, caller, |c, cx, api| api::container_exists(
            &c, cx, name
        )
        .await)
    }

    async fn copy_object(
        &self,
        caller: &RemoteCall,
        src: &ObjectId,
        dest: &ObjectId,
    ) -> Result<(), String> {
        let (src, dest) = (&wire(src), &wire(dest));
        on_both_versions!(self, caller, |c, cx, api| api::copy_object(
            &c, cx, src, dest
        )
        .await)
    }

    async fn move_object(
        &self,
        caller: &RemoteCall,
        src: &ObjectId,
        dest: &ObjectId,
    ) -> Result<(), String> {
        let (src, dest) = (&wire(src), &wire(dest));
        on_both_versions!(self, caller, |c, cx, api| api::move_object(
            &c, cx, src, dest
        )
        .await)
    }

    async fn get_data(
        &self,
        caller: &RemoteCall,
        id: &ObjectId,
        start: u64,
        end: u64,
    ) -> Result<Incoming<Bytes>, String> {
        let (id, idle) = (&wire(id), self.idle());
        self.call(
            caller,
            |c, cx| async move {
                let (answer, io) = v2::get_container_data(&c, cx, id, start, end).await?;
                Ok(answer.map(|(data, outcome)| {
                    Incoming::streamed(data, Some(outcome), io.map(|io| Box::pin(io) as _), idle)
                }))
            },
            |c, cx| async move {
                let (answer, io) = v1::get_container_data(&c, cx, id, start, end).await?;
                Ok(answer.map(|data| {
                    Incoming::streamed(data, None, io.map(|io| Box::pin(io) as _), idle)
                }))
            },
        )
        .await
    }

    /// Opens the transfer: the data already written goes first, what is written later
    /// follows, and the outcome says whether the object was stored.
    async fn write_data(
        &self,
        caller: &RemoteCall,
        id: &ObjectId,
        data: Arc<Queue>,
    ) -> Result<Writing, String> {
        let (id, data, idle) = (&wire(id), &data, self.idle());
        self.call(
            caller,
            |c, cx| async move {
                let (answer, io) = v2::write_container_data(&c, cx, id, data.stream()).await?;
                Ok(answer.map(|outcome| Writing::new(outcome, io.map(spawn), idle)))
            },
            |c, cx| async move {
                // `@0.1.0` answers only once it has all the data, which ends at `finish`: the
                // call runs on its own until then.
                let (id, data) = (id.clone(), data.stream());
                let call = spawn(async move {
                    let (answer, io) = v1::write_container_data(&c, cx, &id, data).await?;
                    if let Some(io) = io {
                        io.await?;
                    }
                    anyhow::Ok(answer)
                });
                let outcome = async move {
                    call.await
                        .unwrap_or_else(|e| Err(format!("writing over the lattice failed: {e:#}")))
                };
                Ok(Ok(Writing::new(Box::pin(outcome), None, idle)))
            },
        )
        .await
    }

    async fn list_objects(
        &self,
        caller: &RemoteCall,
        container: &str,
    ) -> Result<Incoming<Vec<String>>, String> {
        let idle = self.idle();
        self.call(
            caller,
            |c, cx| async move {
                let (answer, io) =
                    v2::list_container_objects(&c, cx, container, None, None).await?;
                Ok(answer.map(|(names, outcome)| {
                    Incoming::streamed(names, Some(outcome), io.map(|io| Box::pin(io) as _), idle)
                }))
            },
            |c, cx| async move {
                let (answer, io) =
                    v1::list_container_objects(&c, cx, container, None, None).await?;
                Ok(answer.map(|names| {
                    Incoming::streamed(names, None, io.map(|io| Box::pin(io) as _), idle)
                }))
            },
        )
        .await
    }

    async fn delete_object(&self, caller: &RemoteCall, id: &ObjectId) -> Result<(), String> {
        let id = &wire(id);
        on_both_versions!(self, caller, |c, cx, api| api::delete_object(&c, cx, id)
            .await)
    }

    async fn delete_objects(
        &self,
        caller: &RemoteCall,
        container: &str,
        names: Vec<String>,
    ) -> Result<(), String> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let names = &names;
        on_both_versions!(self, caller, |c, cx, api| api::delete_objects(
            &c, cx, container, names
        )
        .await)
    }

    async fn has_object(&self, caller: &RemoteCall, id: &ObjectId) -> Result<bool, String> {
        let id = &wire(id);
        on_both_versions!(self, caller, |c, cx, api| api::has_object(&c, cx, id).await)
    }

    async fn object_info(&self, caller: &RemoteCall, id: &ObjectId) -> Result<Meta, String> {
        let id = &wire(id);
        on_both_versions!(self, caller, |c, cx, api| {
            let info = api::get_object_info(&c, cx, id).await?;
            Ok(info.map(|info| Meta {
                created_at: info.created_at,
                size: info.size,
            }))
        })
    }

    async fn clear(&self, caller: &RemoteCall, container: &str) -> Result<(), String> {
        on_both_versions!(self, caller, |c, cx, api| api::clear_container(
            &c, cx, container
        )
        .await)
    }
}
