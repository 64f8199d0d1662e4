//! The NATS JetStream KV backend: one JetStream KV bucket per configured bucket name.
//! `increment` is a compare-and-set loop on the key's revision.

use async_nats::jetstream::kv::{self, Operation};
use futures::TryStreamExt as _;

use super::KvError;
use super::builtin::{KvConfigError, add_to_counter};

/// How often `increment` retries when another writer got in between.
const INCREMENT_ATTEMPTS: usize = 32;

pub(super) struct NatsBucket(kv::Store);

fn backend(error: impl std::fmt::Display) -> KvError {
    KvError::Backend(error.to_string())
}

impl NatsBucket {
    /// The bucket `name`, created (history 1, file storage) if it does not exist.
    pub async fn open(
        jetstream: &async_nats::jetstream::Context,
        name: &str,
    ) -> Result<Self, KvConfigError> {
        let failed = |message: String| KvConfigError::Bucket {
            bucket: name.to_string(),
            message,
        };
        if let Ok(store) = jetstream.get_key_value(name).await {
            return Ok(Self(store));
        }
        let store = jetstream
            .create_key_value(kv::Config {
                bucket: name.to_string(),
                history: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(Self(store))
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let value = self.0.get(key).await.map_err(backend)?;
        Ok(value.map(|bytes| bytes.to_vec()))
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.0.put(key, value.into()).await.map_err(backend)?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.0.delete(key).await.map_err(backend)
    }

    pub async fn keys(&self) -> Result<Vec<String>, KvError> {
        let mut keys: Vec<String> = self
            .0
            .keys()
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        keys.sort();
        Ok(keys)
    }

    pub async fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        for _ in 0..INCREMENT_ATTEMPTS {
            let entry = self.0.entry(key).await.map_err(backend)?;
            let (current, revision) = match &entry {
                Some(e) if e.operation == Operation::Put => (Some(&e.value[..]), Some(e.revision)),
                Some(e) => (None, Some(e.revision)),
                None => (None, None),
            };
            let value = add_to_counter(key, current, delta)?;
            let bytes = value.to_string().into_bytes().into();
            let written = match revision {
                Some(revision) => {
                    self.0
                        .update(key, bytes, revision)
                        .await
                        .map(drop)
                        .map_err(|e| {
                            (
                                e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                                e.to_string(),
                            )
                        })
                }
                None => self.0.create(key, bytes).await.map(drop).map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                }),
            };
            match written {
                Ok(()) => return Ok(value),
                Err((true, _)) => continue,
                Err((false, message)) => return Err(KvError::Backend(message)),
            }
        }
        Err(KvError::Backend(format!(
            "`{key}` changed under {INCREMENT_ATTEMPTS} increments in a row"
        )))
    }
}
