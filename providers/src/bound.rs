//! Per-component state of a plugin: set when a component binds, dropped when it unbinds, and
//! read (cheaply, as an `Arc`) when an invocation is prepared.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Component id → that component's state in one plugin.
pub(crate) struct Bound<T>(RwLock<HashMap<String, Arc<T>>>);

impl<T> Default for Bound<T> {
    fn default() -> Self {
        Self(RwLock::new(HashMap::new()))
    }
}

impl<T> Bound<T> {
    pub fn insert(&self, component_id: &str, state: T) {
        self.0
            .write()
            .unwrap()
            .insert(component_id.to_string(), Arc::new(state));
    }

    pub fn remove(&self, component_id: &str) -> Option<Arc<T>> {
        self.0.write().unwrap().remove(component_id)
    }

    pub fn get(&self, component_id: &str) -> Option<Arc<T>> {
        self.0.read().unwrap().get(component_id).cloned()
    }

    pub fn contains(&self, component_id: &str) -> bool {
        self.0.read().unwrap().contains_key(component_id)
    }
}
