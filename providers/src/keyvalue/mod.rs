//! `wasi:keyvalue@0.2.0-draft` (store, atomics, batch): one binding over a backend.
//!
//! The binding ([`KeyvaluePlugin`]) implements the WASI interfaces once; where the calls go is a
//! [`KeyvalueBackend`]:
//! - [`builtin`]: buckets in memory or in NATS JetStream KV, chosen per component by its binding
//!   config (the built-in provider);
//! - the lattice host's wRPC backend, which sends each call to the target of the component's link
//!   (when the built-in is switched off).
//!
//! Errors reach the guest as `store.error`: `no-such-store`, `access-denied` (a component the
//! backend does not serve), or `other` with the reason.

pub mod builtin;
mod memory;
mod nats;

use std::sync::Arc;

use tracing::Instrument as _;
use trellis_runtime::{Binding, Extensions, InterfaceName, InvocationCtx, Plugin, RemoteCall};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::trace_context;

pub use builtin::{BuiltinKeyvalue, KvAccess, KvBucket, KvConfigError};

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

/// The interfaces of the binding, as component imports name them.
pub const INTERFACES: [&str; 3] = [
    "wasi:keyvalue/store@0.2.0-draft",
    "wasi:keyvalue/atomics@0.2.0-draft",
    "wasi:keyvalue/batch@0.2.0-draft",
];

/// What can go wrong in a key-value operation (shown to the guest as `store.error`).
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("no such bucket `{0}`")]
    NoSuchStore(String),
    #[error("access denied")]
    AccessDenied,
    #[error("value at `{0}` is not a counter (decimal u64 text)")]
    NotACounter(String),
    #[error("counter at `{0}` would overflow")]
    Overflow(String),
    #[error("{0}")]
    Backend(String),
}

/// One page of `list-keys`: up to 1000 keys, and the cursor of the next page if any.
pub struct KeyPage {
    pub keys: Vec<String>,
    pub cursor: Option<u64>,
}

/// Where the key-value calls of the components bound to a [`KeyvaluePlugin`] go.
#[async_trait::async_trait]
pub trait KeyvalueBackend: Send + Sync + 'static {
    /// The plugin's name in import routes.
    fn id(&self) -> &str;

    /// Whether it forwards calls to the target of the component's link (see
    /// [`Plugin::forwards`]) instead of serving them.
    fn forwards(&self) -> bool {
        false
    }

    /// A component starts using the backend; an error refuses it.
    async fn bind(&self, _binding: &Binding) -> anyhow::Result<()> {
        Ok(())
    }

    async fn unbind(&self, _component_id: &str) {}

    /// Where an invocation of `component_id` opens its buckets; `None` denies it.
    fn store(&self, component_id: &str) -> Option<Arc<dyn KeyvalueStore>>;
}

/// Opens buckets for one component.
#[async_trait::async_trait]
pub trait KeyvalueStore: Send + Sync + 'static {
    async fn open(&self, identifier: &str) -> Result<Arc<dyn KeyvalueBucket>, KvError>;
}

/// An opened bucket. `caller` is the invocation calling now, with the links it chose so far:
/// backends that route by it read it at every call.
#[async_trait::async_trait]
pub trait KeyvalueBucket: Send + Sync + 'static {
    async fn get(&self, caller: &RemoteCall, key: String) -> Result<Option<Vec<u8>>, KvError>;
    async fn set(&self, caller: &RemoteCall, key: String, value: Vec<u8>) -> Result<(), KvError>;
    async fn delete(&self, caller: &RemoteCall, key: String) -> Result<(), KvError>;
    async fn exists(&self, caller: &RemoteCall, key: String) -> Result<bool, KvError>;
    /// Keys in sorted order, a page at a time; `cursor` is where the page starts.
    async fn list_keys(&self, caller: &RemoteCall, cursor: Option<u64>)
    -> Result<KeyPage, KvError>;
    async fn increment(&self, caller: &RemoteCall, key: String, delta: u64)
    -> Result<u64, KvError>;
    /// Each key's value (`None` when absent), in the order asked.
    async fn get_many(
        &self,
        caller: &RemoteCall,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError>;
    async fn set_many(
        &self,
        caller: &RemoteCall,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError>;
    async fn delete_many(&self, caller: &RemoteCall, keys: Vec<String>) -> Result<(), KvError>;
}

/// Serves `wasi:keyvalue` from a [`KeyvalueBackend`].
pub struct KeyvaluePlugin {
    backend: Arc<dyn KeyvalueBackend>,
}

impl KeyvaluePlugin {
    pub fn with_backend(backend: Arc<dyn KeyvalueBackend>) -> Self {
        Self { backend }
    }

    /// The built-in with only the in-memory buckets.
    pub fn memory_only() -> Self {
        Self::with_backend(Arc::new(BuiltinKeyvalue::memory_only()))
    }

    /// The built-in with in-memory buckets and `nats` buckets on `client`'s JetStream.
    pub fn with_nats(client: async_nats::Client) -> Self {
        Self::with_backend(Arc::new(BuiltinKeyvalue::with_nats(client)))
    }
}

/// The `bucket` resource: an opened bucket.
pub struct Bucket(Arc<dyn KeyvalueBucket>);

/// Per-invocation state: where the component opens buckets.
struct KvState(Option<Arc<dyn KeyvalueStore>>);

/// What the generated host traits are implemented for.
struct KvView<'a> {
    table: &'a mut ResourceTable,
    store: Option<Arc<dyn KeyvalueStore>>,
    caller: RemoteCall,
}

struct KvData;

impl HasData for KvData {
    type Data<'a> = KvView<'a>;
}

fn view(ctx: &mut InvocationCtx) -> KvView<'_> {
    let caller = ctx.caller();
    let (table, extensions) = ctx.table_and_extensions();
    let store = extensions.get_or_insert_with(|| KvState(None)).0.clone();
    KvView {
        table,
        store,
        caller,
    }
}

impl KvView<'_> {
    /// The span of one call on a bucket (exported as a trace; free when tracing is off).
    fn span(&self, operation: &'static str) -> tracing::Span {
        tracing::info_span!(
            target: trace_context::TARGET,
            "keyvalue",
            otel.name = %format_args!("wasi:keyvalue {operation}"),
            otel.kind = "client",
            db.operation.name = operation,
            wasmcloud.component.id = &*self.caller.caller,
        )
    }

    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<Arc<dyn KeyvalueBucket>> {
        Ok(self.table.get(bucket)?.0.clone())
    }
}

fn guest_error(error: KvError) -> store::Error {
    match error {
        KvError::NoSuchStore(_) => store::Error::NoSuchStore,
        KvError::AccessDenied => store::Error::AccessDenied,
        other => store::Error::Other(other.to_string()),
    }
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        let Some(store) = &self.store else {
            return Ok(Err(store::Error::AccessDenied));
        };
        match store.open(&identifier).await {
            Ok(bucket) => Ok(Ok(self.table.push(Bucket(bucket))?)),
            Err(error) => Ok(Err(guest_error(error))),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket
            .get(&self.caller, key)
            .instrument(self.span("get"))
            .await
            .map_err(guest_error))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket
            .set(&self.caller, key, value)
            .instrument(self.span("set"))
            .await
            .map_err(guest_error))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket
            .delete(&self.caller, key)
            .instrument(self.span("delete"))
            .await
            .map_err(guest_error))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket
            .exists(&self.caller, key)
            .instrument(self.span("exists"))
            .await
            .map_err(guest_error))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket
            .list_keys(&self.caller, cursor)
            .instrument(self.span("list_keys"))
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
        Ok(bucket
            .increment(&self.caller, key, delta)
            .instrument(self.span("increment"))
            .await
            .map_err(guest_error))
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket
            .get_many(&self.caller, keys)
            .instrument(self.span("get_many"))
            .await
            .map_err(guest_error))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket
            .set_many(&self.caller, key_values)
            .instrument(self.span("set_many"))
            .await
            .map_err(guest_error))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let bucket = self.bucket(&bucket)?;
        Ok(bucket
            .delete_many(&self.caller, keys)
            .instrument(self.span("delete_many"))
            .await
            .map_err(guest_error))
    }
}

#[async_trait::async_trait]
impl Plugin for KeyvaluePlugin {
    fn id(&self) -> &str {
        self.backend.id()
    }

    fn forwards(&self) -> bool {
        self.backend.forwards()
    }

    fn imports(&self) -> Vec<InterfaceName> {
        INTERFACES
            .iter()
            .map(|name| InterfaceName::parse(name).expect("valid name"))
            .collect()
    }

    async fn bind(&self, binding: &Binding) -> anyhow::Result<()> {
        self.backend.bind(binding).await
    }

    async fn unbind(&self, component_id: &str) {
        self.backend.unbind(component_id).await;
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
            other => anyhow::bail!("keyvalue does not serve `{other}`"),
        }
        Ok(())
    }

    fn prepare(&self, component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        extensions.insert(KvState(self.backend.store(component_id)));
        Ok(())
    }
}
