//! `wasi:blobstore@0.2.0-draft` (blobstore, container, types): one binding over a backend.
//!
//! The binding ([`BlobstorePlugin`]) implements the WASI interfaces and their resources once;
//! where the calls go is a [`BlobstoreBackend`]:
//! - [`builtin`]: containers in a directory or in memory, chosen per component by its binding
//!   config (the built-in provider);
//! - the lattice host's wRPC backend, which sends each call to the target of the component's link
//!   (when the built-in is switched off).
//!
//! Data moves the same way whatever the backend ([`data`]): what a backend answers with is
//! pulled as the guest reads it (`size` and `consume-sync` gather the whole object first, up to
//! [`MAX_OBJECT_BYTES`]); data written to an `outgoing-value` before `write-data` is held (up to
//! the same bound), `write-data` opens the transfer, what is written after it follows, and
//! `finish` ends it and says whether the object was stored. Failures reach the guest as the
//! function's error string.

pub mod builtin;
pub mod data;
mod fs;
mod memory;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use trellis_runtime::{Binding, Extensions, InterfaceName, InvocationCtx, Plugin, RemoteCall};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

pub use builtin::{BlobAccess, BlobConfigError, BuiltinBlobstore};
use data::{Incoming, IncomingValue, ObjectNames, OutgoingValue, Queue, Writing};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:blobstore/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:blobstore/container.container": super::Container,
            "wasi:blobstore/container.stream-object-names": super::data::ObjectNames,
            "wasi:blobstore/types.outgoing-value": super::data::OutgoingValue,
            "wasi:blobstore/types.incoming-value": super::data::IncomingValue,
        },
    });
}

use bindings::wasi::blobstore::{blobstore, container, types};

/// The largest object one `outgoing-value` may carry.
pub const MAX_OBJECT_BYTES: usize = 64 << 20;

/// The interfaces of the binding.
const INTERFACES: [&str; 3] = ["blobstore", "container", "types"];

/// What can go wrong in a built-in blobstore operation (the guest sees the message).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid name `{0}`: names are relative, without `.` or `..` segments")]
    InvalidName(String),
    #[error("`{0}` resolves outside the blobstore root")]
    Escape(String),
    #[error("no container `{0}`")]
    NoSuchContainer(String),
    #[error("container `{0}` already exists")]
    ContainerExists(String),
    #[error("no object `{object}` in container `{container}`")]
    NoSuchObject { container: String, object: String },
    #[error("object larger than {MAX_OBJECT_BYTES} bytes")]
    TooLarge,
    #[error("this component is not bound to the blobstore plugin")]
    NotBound,
    #[error("{0}")]
    Io(String),
}

/// Creation time (seconds since the Unix epoch) and size of a container or object: an
/// object's size is its length in bytes.
pub struct Meta {
    pub created_at: u64,
    pub size: u64,
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An object's address: its container and its name in it.
#[derive(Clone, Debug)]
pub struct ObjectId {
    pub container: String,
    pub object: String,
}

/// Where the blobstore calls of the components bound to a [`BlobstorePlugin`] go.
#[async_trait::async_trait]
pub trait BlobstoreBackend: Send + Sync + 'static {
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

    /// The store an invocation of `component_id` works on; `None`: it is not bound.
    fn store(&self, component_id: &str) -> Option<Arc<dyn BlobStore>>;
}

/// The operations of `wasi:blobstore` on one component's store. `caller` is the invocation
/// calling now, with the links it chose so far; errors are the text the guest sees.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    async fn create_container(&self, caller: &RemoteCall, name: &str) -> Result<(), String>;
    /// Fails for a container that does not exist.
    async fn container_info(&self, caller: &RemoteCall, name: &str) -> Result<Meta, String>;
    async fn delete_container(&self, caller: &RemoteCall, name: &str) -> Result<(), String>;
    async fn container_exists(&self, caller: &RemoteCall, name: &str) -> Result<bool, String>;
    async fn copy_object(
        &self,
        caller: &RemoteCall,
        src: &ObjectId,
        dest: &ObjectId,
    ) -> Result<(), String>;
    async fn move_object(
        &self,
        caller: &RemoteCall,
        src: &ObjectId,
        dest: &ObjectId,
    ) -> Result<(), String>;
    /// Bytes `start..=end` of an object, as they arrive.
    async fn get_data(
        &self,
        caller: &RemoteCall,
        id: &ObjectId,
        start: u64,
        end: u64,
    ) -> Result<Incoming<Bytes>, String>;
    /// Opens the transfer of an object's data: what `data` holds now and what the guest writes
    /// until it finishes the value.
    async fn write_data(
        &self,
        caller: &RemoteCall,
        id: &ObjectId,
        data: Arc<Queue>,
    ) -> Result<Writing, String>;
    /// The container's object names, in batches as they arrive.
    async fn list_objects(
        &self,
        caller: &RemoteCall,
        container: &str,
    ) -> Result<Incoming<Vec<String>>, String>;
    async fn delete_object(&self, caller: &RemoteCall, id: &ObjectId) -> Result<(), String>;
    async fn delete_objects(
        &self,
        caller: &RemoteCall,
        container: &str,
        names: Vec<String>,
    ) -> Result<(), String>;
    async fn has_object(&self, caller: &RemoteCall, id: &ObjectId) -> Result<bool, String>;
    async fn object_info(&self, caller: &RemoteCall, id: &ObjectId) -> Result<Meta, String>;
    async fn clear(&self, caller: &RemoteCall, container: &str) -> Result<(), String>;
}

/// Serves `wasi:blobstore` from a [`BlobstoreBackend`].
pub struct BlobstorePlugin {
    backend: Arc<dyn BlobstoreBackend>,
}

impl BlobstorePlugin {
    /// The built-in stores (memory, or a directory per component config).
    pub fn new() -> Self {
        Self::with_backend(Arc::new(BuiltinBlobstore::default()))
    }

    pub fn with_backend(backend: Arc<dyn BlobstoreBackend>) -> Self {
        Self { backend }
    }
}

impl Default for BlobstorePlugin {
    fn default() -> Self {
        Self::new()
    }
}

/// The `container` resource: an open container of the invocation's store.
pub struct Container {
    store: Arc<dyn BlobStore>,
    name: String,
}

/// Per-invocation state: the component's store, if it has one.
struct BlobState(Option<Arc<dyn BlobStore>>);

/// What the generated host traits are implemented for.
struct BlobView<'a> {
    table: &'a mut ResourceTable,
    store: Option<Arc<dyn BlobStore>>,
    caller: RemoteCall,
}

struct BlobData;

impl HasData for BlobData {
    type Data<'a> = BlobView<'a>;
}

fn view(ctx: &mut InvocationCtx) -> BlobView<'_> {
    let caller = ctx.caller();
    let (table, extensions) = ctx.table_and_extensions();
    let store = extensions.get_or_insert_with(|| BlobState(None)).0.clone();
    BlobView {
        table,
        store,
        caller,
    }
}

type BlobResult<T> = wasmtime::Result<Result<T, String>>;

fn object_id(id: types::ObjectId) -> ObjectId {
    ObjectId {
        container: id.container,
        object: id.object,
    }
}

impl BlobView<'_> {
    fn store(&self) -> Result<Arc<dyn BlobStore>, String> {
        self.store
            .clone()
            .ok_or_else(|| BlobError::NotBound.to_string())
    }

    /// The store and name of an open container.
    fn container(
        &self,
        container: &Resource<Container>,
    ) -> wasmtime::Result<(Arc<dyn BlobStore>, String)> {
        let container = self.table.get(container)?;
        Ok((container.store.clone(), container.name.clone()))
    }

    /// The store and the address of object `object` in an open container.
    fn object(
        &self,
        container: &Resource<Container>,
        object: String,
    ) -> wasmtime::Result<(Arc<dyn BlobStore>, ObjectId)> {
        let (store, container) = self.container(container)?;
        Ok((store, ObjectId { container, object }))
    }

    fn open(&mut self, store: Arc<dyn BlobStore>, name: String) -> BlobResult<Resource<Container>> {
        Ok(Ok(self.table.push(Container { store, name })?))
    }
}

impl blobstore::Host for BlobView<'_> {
    async fn create_container(&mut self, name: String) -> BlobResult<Resource<Container>> {
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        match store.create_container(&self.caller, &name).await {
            Ok(()) => self.open(store, name),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Opens only what exists.
    async fn get_container(&mut self, name: String) -> BlobResult<Resource<Container>> {
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e)),
        };
        match store.container_info(&self.caller, &name).await {
            Ok(_) => self.open(store, name),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn delete_container(&mut self, name: String) -> BlobResult<()> {
        Ok(match self.store() {
            Ok(store) => store.delete_container(&self.caller, &name).await,
            Err(e) => Err(e),
        })
    }

    async fn container_exists(&mut self, name: String) -> BlobResult<bool> {
        Ok(match self.store() {
            Ok(store) => store.container_exists(&self.caller, &name).await,
            Err(e) => Err(e),
        })
    }

    async fn copy_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> BlobResult<()> {
        Ok(match self.store() {
            Ok(store) => {
                let (src, dest) = (object_id(src), object_id(dest));
                store.copy_object(&self.caller, &src, &dest).await
            }
            Err(e) => Err(e),
        })
    }

    async fn move_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> BlobResult<()> {
        Ok(match self.store() {
            Ok(store) => {
                let (src, dest) = (object_id(src), object_id(dest));
                store.move_object(&self.caller, &src, &dest).await
            }
            Err(e) => Err(e),
        })
    }
}

impl container::Host for BlobView<'_> {}

impl container::HostContainer for BlobView<'_> {
    async fn name(&mut self, this: Resource<Container>) -> BlobResult<String> {
        Ok(Ok(self.table.get(&this)?.name.clone()))
    }

    async fn info(&mut self, this: Resource<Container>) -> BlobResult<types::ContainerMetadata> {
        let (store, name) = self.container(&this)?;
        let info = store.container_info(&self.caller, &name).await;
        Ok(info.map(|meta| types::ContainerMetadata {
            name,
            created_at: meta.created_at,
        }))
    }

    async fn get_data(
        &mut self,
        this: Resource<Container>,
        name: String,
        start: u64,
        end: u64,
    ) -> BlobResult<Resource<IncomingValue>> {
        let (store, id) = self.object(&this, name)?;
        // Both offsets are inclusive.
        match store.get_data(&self.caller, &id, start, end).await {
            Ok(incoming) => Ok(Ok(self.table.push(IncomingValue::new(incoming))?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn write_data(
        &mut self,
        this: Resource<Container>,
        name: String,
        data: Resource<OutgoingValue>,
    ) -> BlobResult<()> {
        let Some(queue) = self.table.get(&data)?.start_sending() else {
            return Ok(Err(
                "write-data was already called with this outgoing-value".into(),
            ));
        };
        let (store, id) = self.object(&this, name)?;
        match store.write_data(&self.caller, &id, queue).await {
            Ok(writing) => {
                self.table.get_mut(&data)?.sending(writing);
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    async fn list_objects(
        &mut self,
        this: Resource<Container>,
    ) -> BlobResult<Resource<ObjectNames>> {
        let (store, container) = self.container(&this)?;
        match store.list_objects(&self.caller, &container).await {
            Ok(incoming) => Ok(Ok(self.table.push(ObjectNames::new(incoming))?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn delete_object(&mut self, this: Resource<Container>, name: String) -> BlobResult<()> {
        let (store, id) = self.object(&this, name)?;
        Ok(store.delete_object(&self.caller, &id).await)
    }

    async fn delete_objects(
        &mut self,
        this: Resource<Container>,
        names: Vec<String>,
    ) -> BlobResult<()> {
        let (store, container) = self.container(&this)?;
        Ok(store.delete_objects(&self.caller, &container, names).await)
    }

    async fn has_object(&mut self, this: Resource<Container>, name: String) -> BlobResult<bool> {
        let (store, id) = self.object(&this, name)?;
        Ok(store.has_object(&self.caller, &id).await)
    }

    async fn object_info(
        &mut self,
        this: Resource<Container>,
        name: String,
    ) -> BlobResult<types::ObjectMetadata> {
        let (store, id) = self.object(&this, name)?;
        let info = store.object_info(&self.caller, &id).await;
        Ok(info.map(|meta| types::ObjectMetadata {
            name: id.object,
            container: id.container,
            created_at: meta.created_at,
            size: meta.size,
        }))
    }

    async fn clear(&mut self, this: Resource<Container>) -> BlobResult<()> {
        let (store, container) = self.container(&this)?;
        Ok(store.clear(&self.caller, &container).await)
    }

    async fn drop(&mut self, this: Resource<Container>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl container::HostStreamObjectNames for BlobView<'_> {
    async fn read_stream_object_names(
        &mut self,
        this: Resource<ObjectNames>,
        len: u64,
    ) -> BlobResult<(Vec<String>, bool)> {
        Ok(self.table.get_mut(&this)?.take(len).await)
    }

    async fn skip_stream_object_names(
        &mut self,
        this: Resource<ObjectNames>,
        num: u64,
    ) -> BlobResult<(u64, bool)> {
        let skipped = self.table.get_mut(&this)?.take(num).await;
        Ok(skipped.map(|(names, done)| (names.len() as u64, done)))
    }

    async fn drop(&mut self, this: Resource<ObjectNames>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl types::Host for BlobView<'_> {}

impl types::HostOutgoingValue for BlobView<'_> {
    async fn new_outgoing_value(&mut self) -> wasmtime::Result<Resource<OutgoingValue>> {
        Ok(self.table.push(OutgoingValue::default())?)
    }

    async fn outgoing_value_write_body(
        &mut self,
        this: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let Some(body) = self.table.get_mut(&this)?.body() else {
            return Ok(Err(()));
        };
        let stream: DynOutputStream = Box::new(body);
        Ok(Ok(self.table.push(stream)?))
    }

    async fn finish(&mut self, this: Resource<OutgoingValue>) -> BlobResult<()> {
        Ok(self.table.delete(this)?.finish().await)
    }

    /// Ends the transfer without waiting for its outcome: what was written is stored.
    async fn drop(&mut self, this: Resource<OutgoingValue>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl types::HostIncomingValue for BlobView<'_> {
    async fn incoming_value_consume_sync(
        &mut self,
        this: Resource<IncomingValue>,
    ) -> BlobResult<Vec<u8>> {
        let mut value = self.table.delete(this)?;
        Ok(value.gather().await.map(|()| value.gathered().to_vec()))
    }

    async fn incoming_value_consume_async(
        &mut self,
        this: Resource<IncomingValue>,
    ) -> BlobResult<Resource<DynInputStream>> {
        match self.table.delete(this)?.into_input() {
            Ok(input) => {
                let stream: DynInputStream = Box::new(input);
                Ok(Ok(self.table.push(stream)?))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// Backends need not say in advance: the data is gathered to count it (a failure to gather
    /// is reported by the consume that follows).
    async fn size(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<u64> {
        let value = self.table.get_mut(&this)?;
        let _ = value.gather().await;
        Ok(value.gathered().len() as u64)
    }

    async fn drop(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Plugin for BlobstorePlugin {
    fn id(&self) -> &str {
        self.backend.id()
    }

    fn forwards(&self) -> bool {
        self.backend.forwards()
    }

    fn imports(&self) -> Vec<InterfaceName> {
        INTERFACES
            .iter()
            .map(|i| {
                InterfaceName::parse(&format!("wasi:blobstore/{i}@0.2.0-draft"))
                    .expect("valid name")
            })
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
            "blobstore" => blobstore::add_to_linker::<_, BlobData>(linker, view)?,
            "container" => container::add_to_linker::<_, BlobData>(linker, view)?,
            "types" => types::add_to_linker::<_, BlobData>(linker, view)?,
            other => anyhow::bail!("blobstore does not serve `{other}`"),
        }
        Ok(())
    }

    fn prepare(&self, component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        extensions.insert(BlobState(self.backend.store(component_id)));
        Ok(())
    }
}
