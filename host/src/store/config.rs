//! Named configuration in `CONFIGDATA_{lattice}`: key = config name, value = a JSON object of
//! strings stored byte-for-byte as `config.put` received it.

use std::collections::BTreeMap;

use async_nats::jetstream;
use bytes::Bytes;

use super::StoreError;
use super::mirror::KvMirror;

pub type ConfigMap = BTreeMap<String, String>;

pub struct ConfigStore(KvMirror<ConfigMap>);

impl ConfigStore {
    pub fn stop_watching(&self) {
        self.0.stop_watching();
    }

    pub async fn open(js: &jetstream::Context, lattice: &str) -> Result<Self, StoreError> {
        Ok(Self(
            KvMirror::open(js, &format!("CONFIGDATA_{lattice}"), "").await?,
        ))
    }

    /// Wakes on every change of the lattice's named config.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }

    pub fn get(&self, name: &str) -> Option<ConfigMap> {
        self.0.get(name)
    }

    /// The names in `names` that hold no configuration, in order.
    pub fn missing<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        names
            .into_iter()
            .filter(|name| !self.0.contains(name))
            .cloned()
            .collect()
    }

    /// Stores `raw` (already validated to decode as `map`) under `name`.
    pub async fn put(&self, name: &str, raw: Bytes, map: ConfigMap) -> Result<(), StoreError> {
        let revision = self
            .0
            .kv
            .put(name, raw)
            .await
            .map_err(|e| StoreError::Write {
                key: name.to_string(),
                reason: e.to_string(),
            })?;
        self.0.remember(name, Some(map), Some(revision));
        Ok(())
    }

    /// Purges `name`; succeeds when it did not exist.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.0.kv.purge(name).await.map_err(|e| StoreError::Write {
            key: name.to_string(),
            reason: e.to_string(),
        })?;
        self.0.remember(name, None, None);
        Ok(())
    }
}
