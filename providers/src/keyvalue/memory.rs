//! The in-memory key-value backend: one ordered map per bucket.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::KvError;
use super::builtin::add_to_counter;

#[derive(Default)]
pub(super) struct MemoryBucket(Mutex<BTreeMap<String, Vec<u8>>>);

impl MemoryBucket {
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.lock().unwrap().get(key).cloned()
    }

    pub fn set(&self, key: &str, value: Vec<u8>) {
        self.0.lock().unwrap().insert(key.to_string(), value);
    }

    pub fn delete(&self, key: &str) {
        self.0.lock().unwrap().remove(key);
    }

    pub fn keys(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }

    /// Atomic: the map stays locked between read and write.
    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        let mut map = self.0.lock().unwrap();
        let value = add_to_counter(key, map.get(key).map(Vec::as_slice), delta)?;
        map.insert(key.to_string(), value.to_string().into_bytes());
        Ok(value)
    }
}
