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
pub struct Bucket {
    backend: Backend,
}

/// What one component may open.
struct KvBinding {
    bucket: String,
    backend: Backend,
}

/// Serves `wasi:keyvalue` from memory or NATS JetStream KV.
pub struct KeyvaluePlugin {
    jetstream: Option<async_nats::jetstream::Context>,
    memory: Mutex<BTreeMap<String, Arc<memory::MemoryBucket>>>,
    bindings: Bound<KvBinding>,
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
}

/// Per-invocation state: what the component may open.
struct KvState(Option<Arc<KvBinding>>);

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
    fn backend(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<Backend> {
        Ok(self.table.get(bucket)?.backend.clone())
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
        let Some(binding) = &self.state.0 else {
            return Ok(Err(store::Error::AccessDenied));
        };
        if !(identifier.is_empty() || identifier == "default" || identifier == binding.bucket) {
            return Ok(Err(guest_error(KvError::NoSuchStore(identifier))));
        }
        let backend = binding.backend.clone();
        Ok(Ok(self.table.push(Bucket { backend })?))
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let backend = self.backend(&bucket)?;
        Ok(backend.get(&key).await.map_err(guest_error))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let backend = self.backend(&bucket)?;
        Ok(backend.set(&key, value).await.map_err(guest_error))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let backend = self.backend(&bucket)?;
        Ok(backend.delete(&key).await.map_err(guest_error))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        let backend = self.backend(&bucket)?;
        Ok(backend
            .get(&key)
            .await
            .map(|v| v.is_some())
            .map_err(guest_error))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let backend = self.backend(&bucket)?;
        let keys = match backend.keys().await {
            Ok(keys) => keys,
            Err(error) => return Ok(Err(guest_error(error))),
        };
        let start = usize::try_from(cursor.unwrap_or(0))
            .unwrap_or(usize::MAX)
            .min(keys.len());
        let end = start.saturating_add(PAGE).min(keys.len());
        Ok(Ok(store::KeyResponse {
            keys: keys[start..end].to_vec(),
            cursor: (end < keys.len()).then_some(end as u64),
        }))
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
        let backend = self.backend(&bucket)?;
        Ok(backend.increment(&key, delta).await.map_err(guest_error))
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let backend = self.backend(&bucket)?;
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            match backend.get(&key).await {
                Ok(value) => values.push(value.map(|v| (key, v))),
                Err(error) => return Ok(Err(guest_error(error))),
            }
        }
        Ok(Ok(values))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let backend = self.backend(&bucket)?;
        for (key, value) in key_values {
            if let Err(error) = backend.set(&key, value).await {
                return Ok(Err(guest_error(error)));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let backend = self.backend(&bucket)?;
        for key in keys {
            if let Err(error) = backend.delete(&key).await {
                return Ok(Err(guest_error(error)));
            }
        }
        Ok(Ok(()))
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
        let kind = binding
            .config
            .get("backend")
            .map_or("memory", String::as_str);
        let bucket = binding
            .config
            .get("bucket")
            .map_or("default", String::as_str);
        let backend = self.backend(kind, bucket).await?;
        self.bindings.insert(
            &binding.component_id,
            KvBinding {
                bucket: bucket.to_string(),
                backend,
            },
        );
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
