//! The built-in blobstore backend: containers in a directory or in memory, chosen per component
//! by its binding config.
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
//! lives. An object is stored once its outgoing value is finished (or dropped), up to
//! [`MAX_OBJECT_BYTES`].
//!
//! The same stores are reachable without a component invocation through
//! [`BuiltinBlobstore::access`] (the lattice host serves `wrpc:blobstore` with it), with the same
//! rules and results.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use trellis_runtime::{Binding, RemoteCall};

use super::data::{Incoming, Queue, Writing};
use super::{BlobError, BlobStore, BlobstoreBackend, MAX_OBJECT_BYTES, Meta, ObjectId, fs, memory};
use crate::bound::Bound;

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

    /// Whether an object may be written there: valid names, and the container exists.
    async fn writable(&self, container: &str, object: &str) -> Result<(), BlobError> {
        container_name(container)?;
        segments(object)?;
        if !self.container_exists(container).await? {
            return Err(BlobError::NoSuchContainer(container.to_string()));
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

/// The built-in stores, and which one each bound component uses.
#[derive(Default)]
pub struct BuiltinBlobstore {
    memory: Arc<memory::MemoryStore>,
    stores: Bound<BlobAccess>,
}

impl BuiltinBlobstore {
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

#[async_trait::async_trait]
impl BlobstoreBackend for BuiltinBlobstore {
    fn id(&self) -> &str {
        "blobstore"
    }

    async fn bind(&self, binding: &Binding) -> anyhow::Result<()> {
        let access = self.access(&binding.config).await?;
        self.stores.insert(&binding.component_id, access);
        Ok(())
    }

    async fn unbind(&self, component_id: &str) {
        self.stores.remove(component_id);
    }

    fn store(&self, component_id: &str) -> Option<Arc<dyn BlobStore>> {
        self.stores
            .get(component_id)
            .map(|access| access as Arc<dyn BlobStore>)
    }
}

fn guest<T>(result: Result<T, BlobError>) -> Result<T, String> {
    result.map_err(|e| e.to_string())
}

#[async_trait::async_trait]
impl BlobStore for BlobAccess {
    async fn create_container(&self, _: &RemoteCall, name: &str) -> Result<(), String> {
        guest(BlobAccess::create_container(self, name).await)
    }

    async fn container_info(&self, _: &RemoteCall, name: &str) -> Result<Meta, String> {
        guest(BlobAccess::container_info(self, name).await)
    }

    async fn delete_container(&self, _: &RemoteCall, name: &str) -> Result<(), String> {
        guest(BlobAccess::delete_container(self, name).await)
    }

    async fn container_exists(&self, _: &RemoteCall, name: &str) -> Result<bool, String> {
        guest(BlobAccess::container_exists(self, name).await)
    }

    async fn copy_object(
        &self,
        _: &RemoteCall,
        src: &ObjectId,
        dest: &ObjectId,
    ) -> Result<(), String> {
        guest(BlobAccess::copy_object(self, src, dest).await)
    }

    async fn move_object(
        &self,
        _: &RemoteCall,
        src: &ObjectId,
        dest: &ObjectId,
    ) -> Result<(), String> {
        guest(BlobAccess::move_object(self, src, dest).await)
    }

    async fn get_data(
        &self,
        _: &RemoteCall,
        id: &ObjectId,
        start: u64,
        end: u64,
    ) -> Result<Incoming<Bytes>, String> {
        let bytes = guest(self.read_range(id, start, end).await)?;
        Ok(Incoming::ready(vec![bytes]))
    }

    /// Checks where the object goes now, then collects the data until the value is finished
    /// and stores it.
    async fn write_data(
        &self,
        _: &RemoteCall,
        id: &ObjectId,
        data: Arc<Queue>,
    ) -> Result<Writing, String> {
        guest(self.0.writable(&id.container, &id.object).await)?;
        let (access, id) = (self.clone(), id.clone());
        let stored = async move {
            let mut data = data.stream();
            let mut object = BytesMut::new();
            while let Some(chunk) = data.next().await {
                object.extend_from_slice(&chunk);
            }
            guest(access.write(&id, object.freeze()).await)
        };
        Ok(Writing::new(Box::pin(stored), None, None))
    }

    async fn list_objects(
        &self,
        _: &RemoteCall,
        container: &str,
    ) -> Result<Incoming<Vec<String>>, String> {
        let names = guest(self.list(container).await)?;
        Ok(Incoming::ready(vec![names]))
    }

    async fn delete_object(&self, _: &RemoteCall, id: &ObjectId) -> Result<(), String> {
        guest(
            self.delete_objects(&id.container, std::slice::from_ref(&id.object))
                .await,
        )
    }

    async fn delete_objects(
        &self,
        _: &RemoteCall,
        container: &str,
        names: Vec<String>,
    ) -> Result<(), String> {
        guest(BlobAccess::delete_objects(self, container, &names).await)
    }

    async fn has_object(&self, _: &RemoteCall, id: &ObjectId) -> Result<bool, String> {
        guest(BlobAccess::has_object(self, id).await)
    }

    async fn object_info(&self, _: &RemoteCall, id: &ObjectId) -> Result<Meta, String> {
        guest(BlobAccess::object_info(self, id).await)
    }

    async fn clear(&self, _: &RemoteCall, container: &str) -> Result<(), String> {
        guest(BlobAccess::clear(self, container).await)
    }
}
