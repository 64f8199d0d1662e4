//! The data every invocation's store carries: WASI state, the resource table, the memory
//! ceiling, and the per-invocation state of plugins.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::budget::MemoryCeiling;
use crate::remote::{RemoteCall, RemoteCtx};

/// Store data of one invocation.
pub struct InvocationCtx {
    pub(crate) component_id: Arc<str>,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) memory: MemoryCeiling,
    pub(crate) extensions: Extensions,
    /// Present when the runtime can reach the lattice.
    pub(crate) remote: Option<RemoteCtx>,
}

impl InvocationCtx {
    /// The component this invocation runs, as the workload named it.
    pub fn component_id(&self) -> &str {
        &self.component_id
    }

    /// Who calls the lattice in this invocation and which links it chose so far, when the
    /// runtime has a remote invoker: for plugins that forward calls to link targets themselves.
    pub fn remote_call(&self) -> Option<&RemoteCall> {
        self.remote.as_ref().map(|remote| &remote.call)
    }

    /// Who calls in this invocation, with the links it chose so far (no choices when the
    /// runtime has no remote invoker): for host functions that route each call by it.
    pub fn caller(&self) -> RemoteCall {
        self.remote_call().cloned().unwrap_or_else(|| RemoteCall {
            caller: self.component_id.clone(),
            selection: Default::default(),
        })
    }

    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    pub fn extensions(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// The resource table and the plugins' state at once, for host functions that need both
    /// (e.g. a plugin's resources live in the table and its context in [`Extensions`]).
    pub fn table_and_extensions(&mut self) -> (&mut ResourceTable, &mut Extensions) {
        (&mut self.table, &mut self.extensions)
    }
}

impl WasiView for InvocationCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Per-invocation state of plugins, one value per type, so no plugin reaches into another's.
#[derive(Default)]
pub struct Extensions(HashMap<TypeId, Box<dyn Any + Send>>);

impl Extensions {
    pub fn insert<T: Any + Send>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// The value of type `T`, inserting `default()` first if there is none.
    pub fn get_or_insert_with<T: Any + Send>(&mut self, default: impl FnOnce() -> T) -> &mut T {
        self.0
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(default()))
            .downcast_mut()
            .expect("values are stored under their own type id")
    }

    pub fn get_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        self.0
            .get_mut(&TypeId::of::<T>())
            .and_then(|value| value.downcast_mut())
    }
}
