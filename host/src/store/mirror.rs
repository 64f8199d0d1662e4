//! A JetStream KV bucket with an in-memory mirror of its decoded values.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::StoreError;

/// Decoded values by mirror key, and the bucket revision each key was last set from, so a late
/// write acknowledgement never overwrites a newer value the watch already delivered.
struct Values<T> {
    values: BTreeMap<String, T>,
    revisions: BTreeMap<String, u64>,
}

impl<T> Default for Values<T> {
    fn default() -> Self {
        Self {
            values: BTreeMap::new(),
            revisions: BTreeMap::new(),
        }
    }
}

impl<T> Values<T> {
    /// Sets (or removes) `name` unless the mirror already holds a newer revision of it.
    fn set(&mut self, name: &str, value: Option<T>, revision: Option<u64>) {
        if let Some(revision) = revision {
            if self
                .revisions
                .get(name)
                .is_some_and(|seen| *seen > revision)
            {
                return;
            }
            self.revisions.insert(name.to_string(), revision);
        }
        match value {
            Some(value) => self.values.insert(name.to_string(), value),
            None => self.values.remove(name),
        };
    }
}

/// A bucket and the decoded values of the keys under `prefix` (mirror keys omit the prefix).
pub struct KvMirror<T> {
    pub kv: kv::Store,
    prefix: &'static str,
    values: Arc<RwLock<Values<T>>>,
    /// Bumped on every change, so followers can react to lattice state.
    changes: watch::Sender<u64>,
    watch: JoinHandle<()>,
}

impl<T: DeserializeOwned + Clone + Send + Sync + 'static> KvMirror<T> {
    /// Opens (or creates) `bucket`, starts watching it, then loads every key.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        prefix: &'static str,
    ) -> Result<Self, StoreError> {
        let bucket_error = |reason: String| StoreError::Bucket {
            bucket: bucket.to_string(),
            reason,
        };
        let kv = match js.get_key_value(bucket).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.to_string(),
                    history: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| bucket_error(e.to_string()))?,
        };
        let values = Arc::new(RwLock::new(Values::default()));
        // Watch first so nothing written while loading is missed; applying a value twice is
        // harmless because entries carry whole values.
        let mut updates = kv
            .watch_all()
            .await
            .map_err(|e| bucket_error(e.to_string()))?;
        let mut keys = kv.keys().await.map_err(|e| bucket_error(e.to_string()))?;
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| bucket_error(e.to_string()))?;
            // The bucket may hold other kinds of keys (links and claims share one).
            if !key.starts_with(prefix) {
                continue;
            }
            if let Some(entry) = kv.entry(&key).await.map_err(|e| StoreError::Read {
                key: key.clone(),
                reason: e.to_string(),
            })? && entry.operation == kv::Operation::Put
            {
                apply(&values, prefix, &key, Some(&entry.value), entry.revision);
            }
        }
        let mirror = values.clone();
        let changes = watch::Sender::new(0u64);
        let notify = changes.clone();
        let watch = tokio::spawn(async move {
            while let Some(entry) = updates.next().await {
                match entry {
                    Ok(entry) => {
                        let value = matches!(entry.operation, kv::Operation::Put)
                            .then_some(&entry.value[..]);
                        apply(&mirror, prefix, &entry.key, value, entry.revision);
                        notify.send_modify(|count| *count += 1);
                    }
                    Err(error) => tracing::warn!("watching lattice state: {error}"),
                }
            }
        });
        Ok(Self {
            kv,
            prefix,
            values,
            changes,
            watch,
        })
    }

    pub fn get(&self, name: &str) -> Option<T> {
        self.values.read().unwrap().values.get(name).cloned()
    }

    pub fn values(&self) -> Vec<T> {
        self.values
            .read()
            .unwrap()
            .values
            .values()
            .cloned()
            .collect()
    }

    /// What `pick` takes from each value, collected under one read lock: for callers that want
    /// a little of every value (a dense lattice holds thousands) without cloning them all.
    pub fn flat_map<U, I: IntoIterator<Item = U>>(&self, pick: impl FnMut(&T) -> I) -> Vec<U> {
        self.values
            .read()
            .unwrap()
            .values
            .values()
            .flat_map(pick)
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.values.read().unwrap().values.contains_key(name)
    }

    /// Records a write this host just made (at `revision`, when the write reported one), so its
    /// own answers do not wait for the watch.
    pub fn remember(&self, name: &str, value: Option<T>, revision: Option<u64>) {
        self.values.write().unwrap().set(name, value, revision);
        self.changes.send_modify(|count| *count += 1);
    }

    /// Resolves on every change after the call.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Stops following the bucket (before the connection is drained at shutdown).
    pub fn stop_watching(&self) {
        self.watch.abort();
    }

    /// The bucket key of mirror entry `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl<T> Drop for KvMirror<T> {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// Applies one bucket entry (`None` = deleted) to the mirror; undecodable values are skipped.
fn apply<T: DeserializeOwned>(
    values: &RwLock<Values<T>>,
    prefix: &str,
    key: &str,
    value: Option<&[u8]>,
    revision: u64,
) {
    let Some(name) = key.strip_prefix(prefix) else {
        return;
    };
    let mut values = values.write().unwrap();
    match value.map(serde_json::from_slice::<T>) {
        Some(Ok(value)) => values.set(name, Some(value), Some(revision)),
        Some(Err(error)) => tracing::warn!(key, "ignoring undecodable lattice state: {error}"),
        None => values.set(name, None, Some(revision)),
    }
}
