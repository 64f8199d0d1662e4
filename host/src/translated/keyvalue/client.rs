//! The client half: a plugin that implements `wasi:keyvalue` for components on a host whose
//! keyvalue built-in is off, by calling `wrpc:keyvalue` on the target of the component's link.
//!
//! `open(name)` only remembers the name (as a wasmCloud host does); each operation is one wRPC
//! call with the bucket passed as that name, so an unknown bucket is reported by the first
//! operation. Anything that keeps a call from being answered (no link, nobody serving the
//! target, a transport failure, no answer within the rpc timeout) reaches the guest as
//! `error::other` saying why, never as a trap or a hang.

use std::future::Future;
use std::sync::Arc;

use async_nats::HeaderMap;
use trellis_runtime::{Extensions, InterfaceName, InvocationCtx, Plugin, RemoteCall};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wit_bindgen_wrpc::bytes::Bytes;

use super::wrpc_bindings::wrpc::keyvalue as remote;
use crate::rpc::Lattice;
use crate::translated::{LatticeAccess, table_and_caller};

mod host_bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::RemoteBucket,
        },
    });
}

use host_bindings::wasi::keyvalue::{atomics, batch, store};

/// The WASI instances this plugin implements; their names are the links' routing keys too.
const STORE: &str = "wasi:keyvalue/store@0.2.0-draft";
const ATOMICS: &str = "wasi:keyvalue/atomics@0.2.0-draft";
const BATCH: &str = "wasi:keyvalue/batch@0.2.0-draft";

/// The `bucket` resource: just the name, sent with every call.
pub struct RemoteBucket(String);

/// Sends a component's `wasi:keyvalue` calls to its link target as `wrpc:keyvalue` calls.
pub struct KeyvalueOverLattice {
    lattice: Arc<Lattice>,
}

impl KeyvalueOverLattice {
    pub fn new(lattice: Lattice) -> Self {
        Self {
            lattice: Arc::new(lattice),
        }
    }
}

/// One host call's caller: who calls, with the links it chose so far.
struct Caller {
    call: RemoteCall,
    lattice: Arc<Lattice>,
}

impl Caller {
    /// Runs one wRPC call to wherever the caller's `interface` import goes (its link, or what
    /// it chose through `wasmcloud:bus/lattice`). `call` gets the target's client and the
    /// headers; everything that keeps it from answering becomes `error::other`.
    async fn call<T, F, Fut>(&self, interface: &str, call: F) -> Result<T, store::Error>
    where
        F: FnOnce(wrpc_transport_nats::Client, Option<HeaderMap>) -> Fut,
        Fut: Future<Output = anyhow::Result<Result<T, remote::store::Error>>>,
    {
        let other = |message: String| store::Error::Other(message);
        let (target, headers) = self
            .lattice
            .route(&self.call, interface)
            .map_err(|e| other(e.to_string()))?;
        let timeout = self.lattice.timeout;
        // The bound covers reaching the target as well as its answer.
        let answer = tokio::time::timeout(timeout, async {
            let client = self.lattice.client(&target).await?;
            call(client, Some(headers)).await
        });
        match answer.await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(error))) => Err(match error {
                remote::store::Error::NoSuchStore => store::Error::NoSuchStore,
                remote::store::Error::AccessDenied => store::Error::AccessDenied,
                remote::store::Error::Other(message) => store::Error::Other(message),
            }),
            Ok(Err(error)) => Err(other(format!(
                "keyvalue call to `{target}` over the lattice failed: {error:#}"
            ))),
            Err(_) => Err(other(format!(
                "keyvalue target `{target}` did not answer within {timeout:?}"
            ))),
        }
    }
}

/// What the generated host traits are implemented for.
struct KvView<'a> {
    table: &'a mut ResourceTable,
    caller: Option<Caller>,
}

struct KvData;

impl HasData for KvData {
    type Data<'a> = KvView<'a>;
}

fn view(ctx: &mut InvocationCtx) -> KvView<'_> {
    let (table, caller) = table_and_caller(ctx);
    let caller = caller.map(|(call, lattice)| Caller { call, lattice });
    KvView { table, caller }
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl KvView<'_> {
    /// The caller and the name of an opened bucket.
    fn target(&self, bucket: &Resource<RemoteBucket>) -> wasmtime::Result<(&Caller, String)> {
        let caller = self
            .caller
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("keyvalue call outside a prepared invocation"))?;
        Ok((caller, self.table.get(bucket)?.0.clone()))
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<RemoteBucket>> {
        Ok(Ok(self.table.push(RemoteBucket(identifier))?))
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<RemoteBucket>,
        key: String,
    ) -> KvResult<Option<Vec<u8>>> {
        let (caller, bucket) = self.target(&bucket)?;
        let value = caller
            .call(STORE, |client, cx| async move {
                remote::store::get(&client, cx, &bucket, &key).await
            })
            .await;
        Ok(value.map(|value| value.map(Vec::from)))
    }

    async fn set(
        &mut self,
        bucket: Resource<RemoteBucket>,
        key: String,
        value: Vec<u8>,
    ) -> KvResult<()> {
        let (caller, bucket) = self.target(&bucket)?;
        let value = Bytes::from(value);
        Ok(caller
            .call(STORE, |client, cx| async move {
                remote::store::set(&client, cx, &bucket, &key, &value).await
            })
            .await)
    }

    async fn delete(&mut self, bucket: Resource<RemoteBucket>, key: String) -> KvResult<()> {
        let (caller, bucket) = self.target(&bucket)?;
        Ok(caller
            .call(STORE, |client, cx| async move {
                remote::store::delete(&client, cx, &bucket, &key).await
            })
            .await)
    }

    async fn exists(&mut self, bucket: Resource<RemoteBucket>, key: String) -> KvResult<bool> {
        let (caller, bucket) = self.target(&bucket)?;
        Ok(caller
            .call(STORE, |client, cx| async move {
                remote::store::exists(&client, cx, &bucket, &key).await
            })
            .await)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<RemoteBucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let (caller, bucket) = self.target(&bucket)?;
        let page = caller
            .call(STORE, |client, cx| async move {
                remote::store::list_keys(&client, cx, &bucket, cursor).await
            })
            .await;
        Ok(page.map(|page| store::KeyResponse {
            keys: page.keys,
            cursor: page.cursor,
        }))
    }

    async fn drop(&mut self, bucket: Resource<RemoteBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<RemoteBucket>,
        key: String,
        delta: u64,
    ) -> KvResult<u64> {
        let (caller, bucket) = self.target(&bucket)?;
        Ok(caller
            .call(ATOMICS, |client, cx| async move {
                remote::atomics::increment(&client, cx, &bucket, &key, delta).await
            })
            .await)
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<RemoteBucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let (caller, bucket) = self.target(&bucket)?;
        let values = caller
            .call(BATCH, |client, cx| async move {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                remote::batch::get_many(&client, cx, &bucket, &keys).await
            })
            .await;
        Ok(values.map(|values| {
            values
                .into_iter()
                .map(|entry| entry.map(|(key, value)| (key, Vec::from(value))))
                .collect()
        }))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<RemoteBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let (caller, bucket) = self.target(&bucket)?;
        let key_values: Vec<(String, Bytes)> = key_values
            .into_iter()
            .map(|(key, value)| (key, Bytes::from(value)))
            .collect();
        Ok(caller
            .call(BATCH, |client, cx| async move {
                let pairs: Vec<(&str, &Bytes)> = key_values
                    .iter()
                    .map(|(key, value)| (key.as_str(), value))
                    .collect();
                remote::batch::set_many(&client, cx, &bucket, &pairs).await
            })
            .await)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<RemoteBucket>,
        keys: Vec<String>,
    ) -> KvResult<()> {
        let (caller, bucket) = self.target(&bucket)?;
        Ok(caller
            .call(BATCH, |client, cx| async move {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                remote::batch::delete_many(&client, cx, &bucket, &keys).await
            })
            .await)
    }
}

#[async_trait::async_trait]
impl Plugin for KeyvalueOverLattice {
    fn id(&self) -> &str {
        "keyvalue-over-lattice"
    }

    fn imports(&self) -> Vec<InterfaceName> {
        [STORE, ATOMICS, BATCH]
            .iter()
            .map(|name| InterfaceName::parse(name).expect("valid name"))
            .collect()
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<InvocationCtx>,
        interface: &InterfaceName,
    ) -> anyhow::Result<()> {
        match interface.interface.as_str() {
            "store" => store::add_to_linker::<_, KvData>(linker, view)?,
            "atomics" => atomics::add_to_linker::<_, KvData>(linker, view)?,
            "batch" => batch::add_to_linker::<_, KvData>(linker, view)?,
            other => anyhow::bail!("keyvalue over the lattice does not cover `{other}`"),
        }
        Ok(())
    }

    fn prepare(&self, _component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        extensions.insert(LatticeAccess(self.lattice.clone()));
        Ok(())
    }
}
