//! `wasi:blobstore@0.2.0-draft` with a backend per component chosen by its binding config:
//!
//! | key | values | default |
//! |---|---|---|
//! | `backend` | `fs` or `memory` | `memory` |
//! | `root` | for `fs`: the directory containers live in (created if missing) | required for `fs` |
//!
//! Containers are directories under `root`, objects are files in them (an object name may have
//! `/`-separated segments). Names are checked before any file is touched: empty, absolute, `.`
//! and `..` segments are refused, and every path is resolved (symlinks included) and must stay
//! inside `root`. The in-memory backend keeps one set of containers for as long as the plugin
//! lives. Objects written through `outgoing-value` are buffered up to [`MAX_OBJECT_BYTES`].
//!
//! The same stores are reachable without a component invocation through
//! [`BlobstorePlugin::access`] (the lattice host serves `wrpc:blobstore` with it), with the same
//! rules and results.

mod fs;
mod memory;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use trellis_runtime::{Binding, Extensions, InterfaceName, InvocationCtx, Plugin};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use crate::bound::Bound;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:blobstore/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:blobstore/container.container": super::Container,
            "wasi:blobstore/container.stream-object-names": super::ObjectNames,
            "wasi:blobstore/types.outgoing-value": super::OutgoingValue,
            "wasi:blobstore/types.incoming-value": super::IncomingValue,
        },
    });
}

use bindings::wasi::blobstore::{blobstore, container, types};

/// The largest object one `outgoing-value` may carry.
pub const MAX_OBJECT_BYTES: usize = 64 << 20;

/// What can go wrong in a blobstore operation (the guest sees the message).
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

/// Why a binding was refused.
#[derive(Debug, thiserror::Error)]
pub enum BlobConfigError {
    #[error("unknown blobstore backend `{0}` (expected `fs` or `memory`)")]
    UnknownBackend(String),
    #[error("the fs blobstore backend needs a `root` directory")]
    NoRoot,
    #[error("blobstore root {path}: {message}")]
    Root { path: String, message: String },
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

/// Splits a name into its segments, refusing anything that is not a plain relative path.
fn segments(name: &str) -> Result<Vec<&str>, BlobError> {
    let invalid = || BlobError::InvalidName(name.to_string());
    if name.is_empty() || name.starts_with('/') || name.contains('\0') || name.contains('\\') {
        return Err(invalid());
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(invalid());
    }
    Ok(parts)
}

/// A container name is a single segment.
fn container_name(name: &str) -> Result<(), BlobError> {
    match segments(name)?.len() {
        1 => Ok(()),
        _ => Err(BlobError::InvalidName(name.to_string())),
    }
}

/// One component's store.
#[derive(Clone)]
enum Store {
    Fs(Arc<fs::FsStore>),
    Memory(Arc<memory::MemoryStore>),
}

impl Store {
    async fn create_container(&self, name: &str) -> Result<(), BlobError> {
        container_name(name)?;
        match self {
            Self::Fs(s) => s.create_container(name).await,
            Self::Memory(s) => s.create_container(name),
        }
    }

    async fn delete_container(&self, name: &str) -> Result<(), BlobError> {
        container_name(name)?;
        match self {
            Self::Fs(s) => s.delete_container(name).await,
            Self::Memory(s) => s.delete_container(name),
        }
    }

    async fn container_info(&self, name: &str) -> Result<Meta, BlobError> {
        container_name(name)?;
        match self {
            Self::Fs(s) => s.container_info(name).await,
            Self::Memory(s) => s.container_info(name),
        }
    }

    async fn container_exists(&self, name: &str) -> Result<bool, BlobError> {
        match self.container_info(name).await {
            Ok(_) => Ok(true),
            Err(BlobError::NoSuchContainer(_)) => Ok(false),
            Err(other) => Err(other),
        }
    }

    async fn write(&self, container: &str, object: &str, data: Bytes) -> Result<(), BlobError> {
        container_name(container)?;
        segments(object)?;
        match self {
            Self::Fs(s) => s.write(container, object, data).await,
            Self::Memory(s) => s.write(container, object, data),
        }
    }

    async fn read(&self, container: &str, object: &str) -> Result<Bytes, BlobError> {
        container_name(container)?;
        segments(object)?;
        match self {
            Self::Fs(s) => s.read(container, object).await,
            Self::Memory(s) => s.read(container, object),
        }
    }

    async fn object_info(&self, container: &str, object: &str) -> Result<Meta, BlobError> {
        container_name(container)?;
        segments(object)?;
        match self {
            Self::Fs(s) => s.object_info(container, object).await,
            Self::Memory(s) => s.object_info(container, object),
        }
    }

    async fn delete_object(&self, container: &str, object: &str) -> Result<(), BlobError> {
        container_name(container)?;
        segments(object)?;
        match self {
            Self::Fs(s) => s.delete_object(container, object).await,
            Self::Memory(s) => s.delete_object(container, object),
        }
    }

    /// Object names in a container, sorted.
    async fn list(&self, container: &str) -> Result<Vec<String>, BlobError> {
        container_name(container)?;
        match self {
            Self::Fs(s) => s.list(container).await,
            Self::Memory(s) => s.list(container),
        }
    }

    /// Bytes `start..=end` of an object; a range past the end is cut to what exists.
    async fn read_range(
        &self,
        container: &str,
        object: &str,
        start: u64,
        end: u64,
    ) -> Result<Bytes, BlobError> {
        let data = self.read(container, object).await?;
        let len = data.len() as u64;
        Ok(if start >= len || start > end {
            Bytes::new()
        } else {
            data.slice(start as usize..=end.min(len - 1) as usize)
        })
    }

    async fn has_object(&self, container: &str, object: &str) -> Result<bool, BlobError> {
        match self.object_info(container, object).await {
            Ok(_) => Ok(true),
            Err(BlobError::NoSuchObject { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn copy_object(&self, src: &ObjectId, dest: &ObjectId) -> Result<(), BlobError> {
        let data = self.read(&src.container, &src.object).await?;
        self.write(&dest.container, &dest.object, data).await
    }

    async fn move_object(&self, src: &ObjectId, dest: &ObjectId) -> Result<(), BlobError> {
        self.copy_object(src, dest).await?;
        self.delete_object(&src.container, &src.object).await
    }

    /// Deletes every object of a container; stops at the first failure.
    async fn clear(&self, container: &str) -> Result<(), BlobError> {
        for name in self.list(container).await? {
            self.delete_object(container, &name).await?;
        }
        Ok(())
    }

    /// Deletes `objects` in order; stops at the first failure.
    async fn delete_objects(&self, container: &str, objects: &[String]) -> Result<(), BlobError> {
        for object in objects {
            self.delete_object(container, object).await?;
        }
        Ok(())
    }
}

/// An object's address: its container and its name in it.
pub struct ObjectId {
    pub container: String,
    pub object: String,
}

/// What one caller may reach: the store its config selects, with the operations of
/// `wasi:blobstore` on it, names checked as for components.
#[derive(Clone)]
pub struct BlobAccess(Store);

impl BlobAccess {
    pub async fn create_container(&self, name: &str) -> Result<(), BlobError> {
        self.0.create_container(name).await
    }

    pub async fn delete_container(&self, name: &str) -> Result<(), BlobError> {
        self.0.delete_container(name).await
    }

    /// A container's creation time; its `size` is backend-specific (not a byte count).
    pub async fn container_info(&self, name: &str) -> Result<Meta, BlobError> {
        self.0.container_info(name).await
    }

    pub async fn container_exists(&self, name: &str) -> Result<bool, BlobError> {
        self.0.container_exists(name).await
    }

    /// Deletes every object of a container; stops at the first failure.
    pub async fn clear(&self, container: &str) -> Result<(), BlobError> {
        self.0.clear(container).await
    }

    /// Object names in a container, sorted.
    pub async fn list(&self, container: &str) -> Result<Vec<String>, BlobError> {
        self.0.list(container).await
    }

    /// Creates or replaces an object; refuses [`MAX_OBJECT_BYTES`] or more, as `finish` does.
    pub async fn write(&self, id: &ObjectId, data: Bytes) -> Result<(), BlobError> {
        if data.len() >= MAX_OBJECT_BYTES {
            return Err(BlobError::TooLarge);
        }
        self.0.write(&id.container, &id.object, data).await
    }

    /// Bytes `start..=end` of an object; a range past the end is cut to what exists.
    pub async fn read_range(
        &self,
        id: &ObjectId,
        start: u64,
        end: u64,
    ) -> Result<Bytes, BlobError> {
        self.0
            .read_range(&id.container, &id.object, start, end)
            .await
    }

    pub async fn object_info(&self, id: &ObjectId) -> Result<Meta, BlobError> {
        self.0.object_info(&id.container, &id.object).await
    }

    pub async fn has_object(&self, id: &ObjectId) -> Result<bool, BlobError> {
        self.0.has_object(&id.container, &id.object).await
    }

    /// Deleting what is not there is not an error.
    pub async fn delete_objects(
        &self,
        container: &str,
        objects: &[String],
    ) -> Result<(), BlobError> {
        self.0.delete_objects(container, objects).await
    }

    pub async fn copy_object(&self, src: &ObjectId, dest: &ObjectId) -> Result<(), BlobError> {
        self.0.copy_object(src, dest).await
    }

    pub async fn move_object(&self, src: &ObjectId, dest: &ObjectId) -> Result<(), BlobError> {
        self.0.move_object(src, dest).await
    }
}

/// The `container` resource: an open container of one store.
pub struct Container {
    store: Store,
    name: String,
}

/// The `stream-object-names` resource: a snapshot of names, read in order.
pub struct ObjectNames {
    names: Vec<String>,
    next: usize,
}

/// The `outgoing-value` resource: bytes the guest writes before `write-data`.
pub struct OutgoingValue {
    pipe: MemoryOutputPipe,
}

/// The `incoming-value` resource: bytes read from an object.
pub struct IncomingValue {
    bytes: Bytes,
}

/// Serves `wasi:blobstore` from a directory or from memory.
#[derive(Default)]
pub struct BlobstorePlugin {
    memory: Arc<memory::MemoryStore>,
    stores: Bound<Store>,
}

impl BlobstorePlugin {
    pub fn new() -> Self {
        Self::default()
    }

    /// What a caller with plugin config `config` (keys as in the module docs) may reach.
    pub async fn access(
        &self,
        config: &BTreeMap<String, String>,
    ) -> Result<BlobAccess, BlobConfigError> {
        let store = match config.get("backend").map_or("memory", String::as_str) {
            "memory" => Store::Memory(self.memory.clone()),
            "fs" => {
                let root = config.get("root").ok_or(BlobConfigError::NoRoot)?;
                Store::Fs(Arc::new(fs::FsStore::open(root.as_ref()).await?))
            }
            other => return Err(BlobConfigError::UnknownBackend(other.to_string())),
        };
        Ok(BlobAccess(store))
    }
}

/// Per-invocation state: the component's store, if it is bound.
struct BlobState(Option<Arc<Store>>);

/// What the generated host traits are implemented for.
pub struct BlobView<'a> {
    table: &'a mut ResourceTable,
    state: &'a BlobState,
}

struct BlobData;

impl HasData for BlobData {
    type Data<'a> = BlobView<'a>;
}

fn view(ctx: &mut InvocationCtx) -> BlobView<'_> {
    let (table, extensions) = ctx.table_and_extensions();
    let state = extensions.get_or_insert_with(|| BlobState(None));
    BlobView { table, state }
}

type BlobResult<T> = wasmtime::Result<Result<T, String>>;

fn guest<T>(result: Result<T, BlobError>) -> Result<T, String> {
    result.map_err(|e| e.to_string())
}

fn object_id(id: types::ObjectId) -> ObjectId {
    ObjectId {
        container: id.container,
        object: id.object,
    }
}

impl BlobView<'_> {
    fn store(&self) -> Result<Store, BlobError> {
        self.state.0.as_deref().cloned().ok_or(BlobError::NotBound)
    }

    fn container(&self, container: &Resource<Container>) -> wasmtime::Result<(Store, String)> {
        let container = self.table.get(container)?;
        Ok((container.store.clone(), container.name.clone()))
    }

    fn open(&mut self, store: Store, name: String) -> BlobResult<Resource<Container>> {
        Ok(Ok(self.table.push(Container { store, name })?))
    }
}

impl blobstore::Host for BlobView<'_> {
    async fn create_container(&mut self, name: String) -> BlobResult<Resource<Container>> {
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if let Err(e) = store.create_container(&name).await {
            return Ok(Err(e.to_string()));
        }
        self.open(store, name)
    }

    async fn get_container(&mut self, name: String) -> BlobResult<Resource<Container>> {
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if let Err(e) = store.container_info(&name).await {
            return Ok(Err(e.to_string()));
        }
        self.open(store, name)
    }

    async fn delete_container(&mut self, name: String) -> BlobResult<()> {
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(guest(store.delete_container(&name).await))
    }

    async fn container_exists(&mut self, name: String) -> BlobResult<bool> {
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(guest(store.container_exists(&name).await))
    }

    async fn copy_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> BlobResult<()> {
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(guest(
            store.copy_object(&object_id(src), &object_id(dest)).await,
        ))
    }

    async fn move_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> BlobResult<()> {
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(guest(
            store.move_object(&object_id(src), &object_id(dest)).await,
        ))
    }
}

impl container::Host for BlobView<'_> {}

impl container::HostContainer for BlobView<'_> {
    async fn name(&mut self, this: Resource<Container>) -> BlobResult<String> {
        Ok(Ok(self.table.get(&this)?.name.clone()))
    }

    async fn info(&mut self, this: Resource<Container>) -> BlobResult<types::ContainerMetadata> {
        let (store, name) = self.container(&this)?;
        Ok(guest(store.container_info(&name).await.map(|meta| {
            types::ContainerMetadata {
                name,
                created_at: meta.created_at,
            }
        })))
    }

    async fn get_data(
        &mut self,
        this: Resource<Container>,
        name: String,
        start: u64,
        end: u64,
    ) -> BlobResult<Resource<IncomingValue>> {
        let (store, container) = self.container(&this)?;
        // Both offsets are inclusive.
        let bytes = match store.read_range(&container, &name, start, end).await {
            Ok(bytes) => bytes,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(Ok(self.table.push(IncomingValue { bytes })?))
    }

    async fn write_data(
        &mut self,
        this: Resource<Container>,
        name: String,
        data: Resource<OutgoingValue>,
    ) -> BlobResult<()> {
        let (store, container) = self.container(&this)?;
        let bytes = self.table.get(&data)?.pipe.contents();
        Ok(guest(store.write(&container, &name, bytes).await))
    }

    async fn list_objects(
        &mut self,
        this: Resource<Container>,
    ) -> BlobResult<Resource<ObjectNames>> {
        let (store, container) = self.container(&this)?;
        let names = match store.list(&container).await {
            Ok(names) => names,
            Err(e) => return Ok(Err(e.to_string())),
        };
        Ok(Ok(self.table.push(ObjectNames { names, next: 0 })?))
    }

    async fn delete_object(&mut self, this: Resource<Container>, name: String) -> BlobResult<()> {
        let (store, container) = self.container(&this)?;
        Ok(guest(store.delete_object(&container, &name).await))
    }

    async fn delete_objects(
        &mut self,
        this: Resource<Container>,
        names: Vec<String>,
    ) -> BlobResult<()> {
        let (store, container) = self.container(&this)?;
        Ok(guest(store.delete_objects(&container, &names).await))
    }

    async fn has_object(&mut self, this: Resource<Container>, name: String) -> BlobResult<bool> {
        let (store, container) = self.container(&this)?;
        Ok(guest(store.has_object(&container, &name).await))
    }

    async fn object_info(
        &mut self,
        this: Resource<Container>,
        name: String,
    ) -> BlobResult<types::ObjectMetadata> {
        let (store, container) = self.container(&this)?;
        Ok(guest(store.object_info(&container, &name).await.map(
            |meta| types::ObjectMetadata {
                name,
                container,
                created_at: meta.created_at,
                size: meta.size,
            },
        )))
    }

    async fn clear(&mut self, this: Resource<Container>) -> BlobResult<()> {
        let (store, container) = self.container(&this)?;
        Ok(guest(store.clear(&container).await))
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
        let names = self.table.get_mut(&this)?;
        let end = names
            .next
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(names.names.len());
        let batch = names.names[names.next..end].to_vec();
        names.next = end;
        Ok(Ok((batch, end == names.names.len())))
    }

    async fn skip_stream_object_names(
        &mut self,
        this: Resource<ObjectNames>,
        num: u64,
    ) -> BlobResult<(u64, bool)> {
        let names = self.table.get_mut(&this)?;
        let end = names
            .next
            .saturating_add(usize::try_from(num).unwrap_or(usize::MAX))
            .min(names.names.len());
        let skipped = (end - names.next) as u64;
        names.next = end;
        Ok(Ok((skipped, end == names.names.len())))
    }

    async fn drop(&mut self, this: Resource<ObjectNames>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl types::Host for BlobView<'_> {}

impl types::HostOutgoingValue for BlobView<'_> {
    async fn new_outgoing_value(&mut self) -> wasmtime::Result<Resource<OutgoingValue>> {
        Ok(self.table.push(OutgoingValue {
            pipe: MemoryOutputPipe::new(MAX_OBJECT_BYTES),
        })?)
    }

    async fn outgoing_value_write_body(
        &mut self,
        this: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let pipe = self.table.get(&this)?.pipe.clone();
        let stream: DynOutputStream = Box::new(pipe);
        Ok(Ok(self.table.push(stream)?))
    }

    async fn finish(&mut self, this: Resource<OutgoingValue>) -> BlobResult<()> {
        let value = self.table.delete(this)?;
        Ok(if value.pipe.contents().len() >= MAX_OBJECT_BYTES {
            Err(BlobError::TooLarge.to_string())
        } else {
            Ok(())
        })
    }

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
        Ok(Ok(self.table.delete(this)?.bytes.to_vec()))
    }

    async fn incoming_value_consume_async(
        &mut self,
        this: Resource<IncomingValue>,
    ) -> BlobResult<Resource<DynInputStream>> {
        let bytes = self.table.delete(this)?.bytes;
        let stream: DynInputStream = Box::new(MemoryInputPipe::new(bytes));
        Ok(Ok(self.table.push(stream)?))
    }

    async fn size(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&this)?.bytes.len() as u64)
    }

    async fn drop(&mut self, this: Resource<IncomingValue>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Plugin for BlobstorePlugin {
    fn id(&self) -> &str {
        "blobstore"
    }

    fn imports(&self) -> Vec<InterfaceName> {
        ["blobstore", "container", "types"]
            .iter()
            .map(|i| {
                InterfaceName::parse(&format!("wasi:blobstore/{i}@0.2.0-draft"))
                    .expect("valid name")
            })
            .collect()
    }

    async fn bind(&self, binding: &Binding) -> anyhow::Result<()> {
        let BlobAccess(store) = self.access(&binding.config).await?;
        self.stores.insert(&binding.component_id, store);
        Ok(())
    }

    async fn unbind(&self, component_id: &str) {
        self.stores.remove(component_id);
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
            other => anyhow::bail!("the blobstore plugin does not serve `{other}`"),
        }
        Ok(())
    }

    fn prepare(&self, component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        extensions.insert(BlobState(self.stores.get(component_id)));
        Ok(())
    }
}
