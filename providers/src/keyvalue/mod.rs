//! `wasi:keyvalue@0.2.0-draft` (store, atomics, batch) with a backend per component chosen by
//! its binding config:
//!
//! | key | values | default |
//! |---|---|---|
//! | `backend` | `memory` or `nats` (JetStream KV) | `memory` |
//! | `bucket` | the bucket the component may open | `default` |
//!
//! `open(identifier)` succeeds for the configured bucket's name, `default`, or the empty string,
//! and fails with `no-such-store` for anything else. Counters (`atomics.increment`) are stored
//! as decimal text, so `get` on a counter reads e.g. `"3"`.
//!
//! The in-memory backend keeps one map per bucket name for as long as the plugin lives (shared by
//! the components that name the same bucket); the NATS backend uses a JetStream KV bucket, created
//! on first bind if missing, so its data outlives the host.
//!
//! The same buckets are reachable without a component invocation through [`KeyvaluePlugin::access`]
//! (the lattice host serves `wrpc:keyvalue` with it), with the same rules and results.

mod memory;
mod nats;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use trellis_runtime::{Binding, Extensions, InterfaceName, InvocationCtx, Plugin};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::bound::Bound;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// Keys per `list-keys` page.
const PAGE: usize = 1000;

/// What can go wrong in a key-value operation (shown to the guest as `store.error`).
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("no such bucket `{0}`")]
    NoSuchStore(String),
    #[error("value at `{0}` is not a counter (decimal u64 text)")]
    NotACounter(String),
    #[error("counter at `{0}` would overflow")]
    Overflow(String),
    #[error("{0}")]
    Backend(String),
}

/// Why a binding was refused.
#[derive(Debug, thiserror::Error)]
pub enum KvConfigError {
    #[error("unknown keyvalue backend `{0}` (expected `memory` or `nats`)")]
    UnknownBackend(String),
    #[error("the nats keyvalue backend needs a NATS connection, and this plugin has none")]
    NoNats,
    #[error("opening JetStream KV bucket `{bucket}`: {message}")]
    Bucket { bucket: String, message: String },
}

/// One bucket, as a backend serves it.
#[derive(Clone)]
enum Backend {
    Memory(Arc<memory::MemoryBucket>),
    Nats(Arc<nats::NatsBucket>),
}

impl Backend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            Self::Memory(b) => Ok(b.get(key)),
            Self::Nats(b) => b.get(key).await,
        }
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        match self {
            Self::Memory(b) => {
                b.set(key, value);
                Ok(())
            }
            Self::Nats(b) => b.set(key, value).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        match self {
            Self::Memory(b) => {
                b.delete(key);
                Ok(())
            }
            Self::Nats(b) => b.delete(key).await,
        }
    }

    /// All keys, sorted.
    async fn keys(&self) -> Result<Vec<String>, KvError> {
        match self {
            Self::Memory(b) => Ok(b.keys()),
            Self::Nats(b) => b.keys().await,
        }
    }

    async fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        match self {
            Self::Memory(b) => b.increment(key, delta),
            Self::Nats(b) => b.increment(key, delta).await,
        }
    }
}

/// One opened bucket: the operations of `wasi:keyvalue` store, atomics and batch on it.
#[derive(Clone)]
pub struct KvBucket(Backend);

/// One page of `list-keys`: up to 1000 keys, and the cursor of the next page if any.
pub struct KeyPage {
    pub keys: Vec<String>,
    pub cursor: Option<u64>,
}

impl KvBucket {
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.0.get(key).await
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.0.set(key, value).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.0.delete(key).await
    }

    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        Ok(self.0.get(key).await?.is_some())
    }

    /// Keys in sorted order, a page at a time; `cursor` is where the page starts.
    pub async fn list_keys(&self, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        let keys = self.0.keys().await?;
        let start = usize::try_from(cursor.unwrap_or(0))
            .unwrap_or(usize::MAX)
            .min(keys.len());
        let end = start.saturating_add(PAGE).min(keys.len());
        Ok(KeyPage {
            keys: keys[start..end].to_vec(),
            cursor: (end < keys.len()).then_some(end as u64),
        })
    }

    pub async fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        self.0.increment(key, delta).await
    }

    /// Each key's value (`None` when absent), in the order asked.
    pub async fn get_many(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            let value = self.0.get(&key).await?;
            values.push(value.map(|v| (key, v)));
        }
        Ok(values)
    }

    /// Stops at the first failure; earlier writes stay (the WIT promises no atomicity).
    pub async fn set_many(&self, key_values: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        for (key, value) in key_values {
            self.0.set(&key, value).await?;
        }
        Ok(())
    }

    pub async fn delete_many(&self, keys: Vec<String>) -> Result<(), KvError> {
        for key in keys {
            self.0.delete(&key).await?;
        }
        Ok(())
    }
}

/// Adds `delta` to a counter stored as decimal text (absent = 0).
fn add_to_counter(key: &str, current: Option<&[u8]>, delta: u64) -> Result<u64, KvError> {
    let current = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| KvError::NotACounter(key.to_string()))?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| KvError::Overflow(key.to_string()))
}

/// The `bucket` resource: an opened bucket.
pub struct Bucket(KvBucket);

/// What one caller may open: the configured bucket, under its name, `default` or `""`.
pub struct KvAccess {
    bucket: String,
    backend: Backend,
}

impl KvAccess {
    /// The bucket `identifier` names, or `NoSuchStore`.
    pub fn open(&self, identifier: &str) -> Result<KvBucket, KvError> {
        if identifier.is_empty() || identifier == "default" || identifier == self.bucket {
            Ok(KvBucket(self.backend.clone()))
        } else {
            Err(KvError::NoSuchStore(identifier.to_string()))
        }
    }
}

/// Serves `wasi:keyvalue` from memory or NATS JetStream KV.
pub struct KeyvaluePlugin {
    jetstream: Option<async_nats::jetstream::Context>,
    memory: Mutex<BTreeMap<String, Arc<memory::MemoryBucket>>>,
    bindings: Bound<KvAccess>,
}

impl KeyvaluePlugin {
    /// A plugin that only offers the in-memory backend.
    pub fn memory_only() -> Self {
        Self {
            jetstream: None,
            memory: Mutex::default(),
            bindings: Bound::default(),
        }
    }

    /// A plugin offering both backends; `nats` buckets live on `client`'s JetStream.
    pub fn with_nats(client: async_nats::Client) -> Self {
        Self {
            jetstream: Some(async_nats::jetstream::new(client)),
            ..Self::memory_only()
        }
    }

    async fn backend(&self, kind: &str, bucket: &str) -> Result<Backend, KvConfigError> {
        match kind {
            "memory" => {
                let mut memory = self.memory.lock().unwrap();
                Ok(Backend::Memory(
                    memory.entry(bucket.to_string()).or_default().clone(),
                ))
            }
            "nats" => {
                let jetstream = self.jetstream.as_ref().ok_or(KvConfigError::NoNats)?;
                Ok(Backend::Nats(Arc::new(
                    nats::NatsBucket::open(jetstream, bucket).await?,
                )))
            }
            other => Err(KvConfigError::UnknownBackend(other.to_string())),
        }
    }

    /// What a caller with plugin config `config` (keys as in the module docs) may open.
    pub async fn access(
        &self,
        config: &BTreeMap<String, String>,
    ) -> Result<KvAccess, KvConfigError> {
        let kind = config.get("backend").map_or("memory", String::as_str);
        let bucket = config.get("bucket").map_or("default", String::as_str);
        Ok(KvAccess {
            bucket: bucket.to_string(),
            backend: self.backend(kind, bucket).await?,
        })
    }
}

/// Per-invocation state: what the component may open.
struct KvState(Option<Arc<KvAccess>>);

/// What the generated host traits are implemented for.
pub struct KvView<'a> {
    table: &'a mut ResourceTable,
    state: &'a KvState,
}

struct KvData;

impl HasData for KvData {
    type Data<'a> = KvView<'a>;
}

fn view(ctx: &mut InvocationCtx) -> KvView<'_> {
    let (table, extensions) = ctx.table_and_extensions();
    let state = extensions.get_or_insert_with(|| KvState(None));
    KvView { table, state }
}

impl KvView<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<KvBucket> {
        Ok(self.table.get(bucket)?.0.clone())
    }
}

fn guest_error(error: KvError) -> store::Error {
    match error {
        KvError::NoSuchStore(_) => store::Error::NoSuchStore,
        other => store::Error::Other(other.to_string()),
    }
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        let Some(access) = &self.state.0 else {
            return Ok(Err(store::Error::AccessDenied));
        };
        match access.open(&identifier) {
            Ok(bucket) => Ok(Ok(self.table.push(Bucket(bucket))?)),
            Err(error) => Ok(Err(guest_error(error))),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket.get(&key).await.map_err(guest_error))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket.set(&key, value).await.map_err(guest_error))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket.delete(&key).await.map_err(guest_error))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket.exists(&key).await.map_err(guest_error))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket
            .list_keys(cursor)
            .await
            .map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            })
            .map_err(guest_error))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> KvResult<u64> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket.increment(&key, delta).await.map_err(guest_error))
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket.get_many(keys).await.map_err(guest_error))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket.set_many(key_values).await.map_err(guest_error))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket.delete_many(keys).await.map_err(guest_error))
    }
}

#[async_trait::async_trait]
impl Plugin for KeyvaluePlugin {
    fn id(&self) -> &str {
        "keyvalue"
    }

    fn imports(&self) -> Vec<InterfaceName> {
        ["store", "atomics", "batch"]
            .iter()
            .map(|i| {
                InterfaceName::parse(&format!("wasi:keyvalue/{i}@0.2.0-draft")).expect("valid name")
            })
            .collect()
    }

    async fn bind(&self, binding: &Binding) -> anyhow::Result<()> {
        let access = self.access(&binding.config).await?;
        self.bindings.insert(&binding.component_id, access);
        Ok(())
    }

    async fn unbind(&self, component_id: &str) {
        self.bindings.remove(component_id);
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
            other => anyhow::bail!("the keyvalue plugin does not serve `{other}`"),
        }
        Ok(())
    }

    fn prepare(&self, component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        extensions.insert(KvState(self.bindings.get(component_id)));
        Ok(())
    }
}
