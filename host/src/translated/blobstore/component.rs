//! A component as a blobstore provider on the lattice: a component exporting `wasi:blobstore`
//! (`blobstore`, `container`, `types`) also answers the translated
//! `wrpc:blobstore/blobstore@0.2.0` and `@0.1.0` functions on its own subjects, so components on
//! other hosts (and wasmCloud hosts) whose link points at it reach it as they reach a blobstore
//! provider.
//!
//! Each call runs on a fresh instance, as every invocation does: open the container, run the
//! one operation, drop what it opened. Object data crosses as `wasi:io` streams, which only the
//! host can read and write: a written object is gathered from the wRPC stream, then written into
//! the body stream the component hands out for it; a read object is consumed whole
//! (`incoming-value-consume-sync`) and sent in pieces. A trap or a budget stop fails that call
//! alone.

use std::time::Duration;

use tokio::task::JoinSet;
use trellis_runtime::{ComponentHandle, InvocationCtx};
use wasmtime::Store;
use wasmtime::component::ResourceAny;
use wit_bindgen_wrpc::bytes::Bytes;
use wrpc_transport_nats::NatsContext;

use super::server::{Answer, ByteStream, NameStream, Outcome, chunks, done, gather, names};
use super::wrpc_bindings::exports::wrpc::{blobstore0_1_0 as v1, blobstore0_2_0 as v2};
use super::wrpc_bindings::wasi::blobstore::types::ObjectId as WireObjectId;
use guest::exports::wasi::blobstore::{
    blobstore as guest_blobstore, container as guest_container, types as guest_types,
};

mod guest {
    wasmtime::component::bindgen!({
        inline: "
            package trellis:blobstore-component;

            world provider {
                export wasi:blobstore/types@0.2.0-draft;
                export wasi:blobstore/container@0.2.0-draft;
                export wasi:blobstore/blobstore@0.2.0-draft;
            }
        ",
        path: "../wit",
        exports: { default: async },
        with: { "wasi:io": wasmtime_wasi::p2::bindings::io },
    });
}

const BLOBSTORE: &str = "wasi:blobstore/blobstore@0.2.0-draft";
const CONTAINER: &str = "wasi:blobstore/container@0.2.0-draft";
const TYPES: &str = "wasi:blobstore/types@0.2.0-draft";

/// How many names one read of a listing asks the component for, and how many reads a listing
/// may take: a component that never says it is done cannot hold a call forever.
const NAMES_PER_READ: u64 = 1000;
const MAX_NAME_READS: usize = 10_000;

/// Serves the translated functions of `component`'s `wasi:blobstore` export on `server` (its
/// prefix and queue group); nothing unless it exports all three interfaces. The accept loops
/// join `tasks`; each call runs detached, so that it finishes even when serving stops.
pub async fn serve(
    server: &wrpc_transport_nats::Client,
    component: &ComponentHandle,
    idle: Duration,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let exported = component.exported_instances();
    if ![BLOBSTORE, CONTAINER, TYPES]
        .iter()
        .all(|interface| exported.iter().any(|i| i == interface))
    {
        return Ok(());
    }
    let handler = ComponentBlobstore {
        component: component.clone(),
        idle,
    };
    let subscribed = super::server::subscribe(server.clone(), handler).await?;
    crate::translated::spawn_accept_loops(tasks, component.id(), "blobstore", subscribed);
    Ok(())
}

/// Answers the translated calls with the component's exports.
#[derive(Clone)]
struct ComponentBlobstore {
    component: ComponentHandle,
    /// How long a write may wait for its next piece of data before it is abandoned.
    idle: Duration,
}

/// The component's `wasi:blobstore` exports on one instance.
struct Exports {
    blobstore: guest_blobstore::Guest,
    container: guest_container::Guest,
    types: guest_types::Guest,
}

type Guest<T> = wasmtime::Result<Result<T, String>>;

fn guest_id(id: &WireObjectId) -> guest_types::ObjectId {
    guest_types::ObjectId {
        container: id.container.clone(),
        object: id.object.clone(),
    }
}

impl ComponentBlobstore {
    /// Runs `operation` on a fresh instance of the component. A guest error is the answer; a
    /// trap or a budget stop fails the call.
    async fn on_instance<T>(
        &self,
        operation: impl AsyncFnOnce(&mut Store<InvocationCtx>, &Exports) -> Guest<T>,
    ) -> Answer<T> {
        let component = &self.component;
        let (mut instance, _permit) = component.new_instance_store(BLOBSTORE, None).await?;
        let pre = instance.pre().clone();
        let blobstore = guest_blobstore::GuestIndices::new(&pre)?;
        let container = guest_container::GuestIndices::new(&pre)?;
        let types = guest_types::GuestIndices::new(&pre)?;
        let answer = component
            .call(&mut instance, async |store| {
                let guest = pre.instantiate_async(&mut *store).await?;
                let exports = Exports {
                    blobstore: blobstore.load(&mut *store, &guest)?,
                    container: container.load(&mut *store, &guest)?,
                    types: types.load(&mut *store, &guest)?,
                };
                operation(store, &exports).await
            })
            .await?;
        Ok(answer)
    }

    /// Runs `operation` on container `name`, opened on a fresh instance and dropped after.
    async fn on_container<T>(
        &self,
        name: &str,
        operation: impl AsyncFnOnce(&mut Store<InvocationCtx>, &Exports, ResourceAny) -> Guest<T>,
    ) -> Answer<T> {
        self.on_instance(async |store, exports| {
            let container = match exports
                .blobstore
                .call_get_container(&mut *store, &name.to_string())
                .await?
            {
                Ok(container) => container,
                Err(error) => return Ok(Err(error)),
            };
            let answer = operation(&mut *store, exports, container).await?;
            container.resource_drop_async(&mut *store).await?;
            Ok(answer)
        })
        .await
    }

    async fn container_info(&self, name: &str) -> Answer<guest_types::ContainerMetadata> {
        self.on_container(name, async |store, exports, container| {
            exports
                .container
                .container()
                .call_info(store, container)
                .await
        })
        .await
    }

    async fn object_info(&self, id: &WireObjectId) -> Answer<guest_types::ObjectMetadata> {
        self.on_container(&id.container, async |store, exports, container| {
            exports
                .container
                .container()
                .call_object_info(store, container, &id.object)
                .await
        })
        .await
    }

    /// Every name in container `name`, read page by page from the component's listing.
    async fn list(&self, name: &str) -> Answer<Vec<String>> {
        self.on_container(name, async |store, exports, container| {
            let listing = exports.container.container();
            let names = match listing.call_list_objects(&mut *store, container).await? {
                Ok(names) => names,
                Err(error) => return Ok(Err(error)),
            };
            let reader = exports.container.stream_object_names();
            let mut all = Vec::new();
            let mut finished = false;
            for _ in 0..MAX_NAME_READS {
                match reader
                    .call_read_stream_object_names(&mut *store, names, NAMES_PER_READ)
                    .await?
                {
                    Ok((page, done)) => {
                        all.extend(page);
                        if done {
                            finished = true;
                            break;
                        }
                    }
                    Err(error) => return Ok(Err(error)),
                }
            }
            names.resource_drop_async(&mut *store).await?;
            Ok(if finished {
                Ok(all)
            } else {
                Err(format!(
                    "the listing did not end after {MAX_NAME_READS} reads"
                ))
            })
        })
        .await
    }

    /// Bytes `start..=end` of an object, consumed whole.
    async fn read(&self, id: &WireObjectId, start: u64, end: u64) -> Answer<Bytes> {
        self.on_container(&id.container, async |store, exports, container| {
            let value = match exports
                .container
                .container()
                .call_get_data(&mut *store, container, &id.object, start, end)
                .await?
            {
                Ok(value) => value,
                Err(error) => return Ok(Err(error)),
            };
            let data = exports
                .types
                .incoming_value()
                .call_incoming_value_consume_sync(&mut *store, value)
                .await?;
            Ok(data.map(Bytes::from))
        })
        .await
    }

    /// Stores `data` as object `id`: written into the body stream the component hands out for
    /// a new value, which then becomes the object.
    async fn write(&self, id: &WireObjectId, data: Bytes) -> Answer<()> {
        self.on_container(&id.container, async |store, exports, container| {
            let values = exports.types.outgoing_value();
            let value = values.call_new_outgoing_value(&mut *store).await?;
            let stored = match values
                .call_outgoing_value_write_body(&mut *store, value)
                .await?
            {
                Ok(body) => {
                    let stream = store.data_mut().table().get_mut(&body)?;
                    let written = stream.blocking_write_and_flush(data).await;
                    // Closed before the value is stored, so that everything written is in it.
                    store.data_mut().table().delete(body)?.cancel().await;
                    match written {
                        Ok(()) => {
                            exports
                                .container
                                .container()
                                .call_write_data(&mut *store, container, &id.object, value)
                                .await?
                        }
                        Err(error) => Err(format!("writing the object's data: {error}")),
                    }
                }
                Err(()) => Err("the provider component gave no body to write to".into()),
            };
            match stored {
                Ok(()) => values.call_finish(&mut *store, value).await,
                // Dropped, not finished: the component discards what it set aside for it.
                Err(error) => {
                    value.resource_drop_async(&mut *store).await?;
                    Ok(Err(error))
                }
            }
        })
        .await
    }

    /// Gathers the written data, then stores it (abandoned when the data stops coming).
    async fn gather_and_write(&self, id: WireObjectId, data: ByteStream) -> Result<(), String> {
        let data = gather(data, self.idle).await?;
        match self.write(&id, data).await {
            Ok(answer) => answer,
            Err(error) => Err(format!("{error:#}")),
        }
    }
}

/// The functions both versions share, under their WIT names.
macro_rules! common_functions {
    ($version:ident) => {
        async fn clear_container(&self, _cx: NatsContext, name: String) -> Answer<()> {
            self.on_container(&name, async |store, exports, container| {
                exports
                    .container
                    .container()
                    .call_clear(store, container)
                    .await
            })
            .await
        }

        async fn container_exists(&self, _cx: NatsContext, name: String) -> Answer<bool> {
            self.on_instance(async |store, exports| {
                exports.blobstore.call_container_exists(store, &name).await
            })
            .await
        }

        async fn create_container(&self, _cx: NatsContext, name: String) -> Answer<()> {
            self.on_instance(async |store, exports| {
                let created = exports
                    .blobstore
                    .call_create_container(&mut *store, &name)
                    .await?;
                match created {
                    Ok(container) => {
                        container.resource_drop_async(&mut *store).await?;
                        Ok(Ok(()))
                    }
                    Err(error) => Ok(Err(error)),
                }
            })
            .await
        }

        async fn delete_container(&self, _cx: NatsContext, name: String) -> Answer<()> {
            self.on_instance(async |store, exports| {
                exports.blobstore.call_delete_container(store, &name).await
            })
            .await
        }

        async fn get_container_info(
            &self,
            _cx: NatsContext,
            name: String,
        ) -> Answer<$version::blobstore::ContainerMetadata> {
            Ok(self.container_info(&name).await?.map(|meta| {
                $version::blobstore::ContainerMetadata {
                    created_at: meta.created_at,
                }
            }))
        }

        async fn copy_object(
            &self,
            _cx: NatsContext,
            src: WireObjectId,
            dest: WireObjectId,
        ) -> Answer<()> {
            self.on_instance(async |store, exports| {
                let (src, dest) = (guest_id(&src), guest_id(&dest));
                exports.blobstore.call_copy_object(store, &src, &dest).await
            })
            .await
        }

        async fn delete_object(&self, _cx: NatsContext, id: WireObjectId) -> Answer<()> {
            self.on_container(&id.container, async |store, exports, container| {
                exports
                    .container
                    .container()
                    .call_delete_object(store, container, &id.object)
                    .await
            })
            .await
        }

        async fn delete_objects(
            &self,
            _cx: NatsContext,
            container: String,
            objects: Vec<String>,
        ) -> Answer<()> {
            self.on_container(&container, async |store, exports, container| {
                exports
                    .container
                    .container()
                    .call_delete_objects(store, container, &objects)
                    .await
            })
            .await
        }

        async fn get_object_info(
            &self,
            _cx: NatsContext,
            id: WireObjectId,
        ) -> Answer<$version::blobstore::ObjectMetadata> {
            Ok(self
                .object_info(&id)
                .await?
                .map(|meta| $version::blobstore::ObjectMetadata {
                    created_at: meta.created_at,
                    size: meta.size,
                }))
        }

        async fn has_object(&self, _cx: NatsContext, id: WireObjectId) -> Answer<bool> {
            self.on_container(&id.container, async |store, exports, container| {
                exports
                    .container
                    .container()
                    .call_has_object(store, container, &id.object)
                    .await
            })
            .await
        }

        async fn move_object(
            &self,
            _cx: NatsContext,
            src: WireObjectId,
            dest: WireObjectId,
        ) -> Answer<()> {
            self.on_instance(async |store, exports| {
                let (src, dest) = (guest_id(&src), guest_id(&dest));
                exports.blobstore.call_move_object(store, &src, &dest).await
            })
            .await
        }
    };
}

impl v2::blobstore::Handler<NatsContext> for ComponentBlobstore {
    common_functions!(v2);

    async fn list_container_objects(
        &self,
        _cx: NatsContext,
        name: String,
        limit: Option<u64>,
        offset: Option<u64>,
    ) -> Answer<(NameStream, Outcome)> {
        Ok(self
            .list(&name)
            .await?
            .map(|all| (names(all, limit, offset), done())))
    }

    async fn get_container_data(
        &self,
        _cx: NatsContext,
        id: WireObjectId,
        start: u64,
        end: u64,
    ) -> Answer<(ByteStream, Outcome)> {
        Ok(self
            .read(&id, start, end)
            .await?
            .map(|data| (chunks(data), done())))
    }

    /// Answers as soon as the container is known to exist, so the caller streams the data
    /// while the outcome is pending.
    async fn write_container_data(
        &self,
        _cx: NatsContext,
        id: WireObjectId,
        data: ByteStream,
    ) -> Answer<Outcome> {
        if let Err(error) = self.container_info(&id.container).await? {
            return Ok(Err(error));
        }
        let this = self.clone();
        Ok(Ok(Box::pin(async move {
            this.gather_and_write(id, data).await
        })))
    }
}

impl v1::blobstore::Handler<NatsContext> for ComponentBlobstore {
    common_functions!(v1);

    async fn list_container_objects(
        &self,
        _cx: NatsContext,
        name: String,
        limit: Option<u64>,
        offset: Option<u64>,
    ) -> Answer<NameStream> {
        Ok(self.list(&name).await?.map(|all| names(all, limit, offset)))
    }

    async fn get_container_data(
        &self,
        _cx: NatsContext,
        id: WireObjectId,
        start: u64,
        end: u64,
    ) -> Answer<ByteStream> {
        Ok(self.read(&id, start, end).await?.map(chunks))
    }

    /// Answers once all the data is stored (0.1.0 has no outcome future).
    async fn write_container_data(
        &self,
        _cx: NatsContext,
        id: WireObjectId,
        data: ByteStream,
    ) -> Answer<()> {
        Ok(self.gather_and_write(id, data).await)
    }
}
