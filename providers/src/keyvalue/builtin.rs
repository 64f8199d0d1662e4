//! The built-in key-value backend: buckets in memory or in NATS JetStream KV, chosen per component
//! by its binding config.
//!
//! | key | values | default |
//! |---|---|---|
//! | `backend` | `memory` or `nats` (JetStream KV) | `memory` |
//! | `bucket` | the bucket the component may open | `default` |
//! | `cluster_uri` | `nats`: the NATS server holding the bucket | the host's own connection |
//! | `client_jwt`, `client_seed` | `nats`: a user JWT and its nkey seed for `cluster_uri` (as wasmCloud's keyvalue-nats provider names them; typically secrets) | none |
//!
//! `open(identifier)` succeeds for the configured bucket's name, `default`, or the empty string,
//! and fails with `no-such-store` for anything else. Counters (`atomics.increment`) are stored
//! as decimal text, so `get` on a counter reads e.g. `"3"`.
//!
//! The in-memory backend keeps one map per bucket name for as long as the plugin lives (shared by
//! the components that name the same bucket); the NATS backend uses a JetStream KV bucket, created
//! on first bind if missing, so its data outlives the host. One connection is kept per distinct
//! `cluster_uri` and credentials, shared by the components that name them.
//!
//! The same buckets are reachable without a component invocation through
//! [`BuiltinKeyvalue::access`] (the lattice host serves `wrpc:keyvalue` with it), with the same
//! rules and results.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use trellis_runtime::{Binding, RemoteCall};

use super::{KeyPage, KeyvalueBackend, KeyvalueBucket, KeyvalueStore, KvError, memory, nats};
use crate::bound::Bound;

/// Keys per `list-keys` page.
const PAGE: usize = 1000;

/// Why a binding was refused.
#[derive(Debug, thiserror::Error)]
pub enum KvConfigError {
    #[error("unknown keyvalue backend `{0}` (expected `memory` or `nats`)")]
    UnknownBackend(String),
    #[error("the nats keyvalue backend needs a NATS connection, and this plugin has none")]
    NoNats,
    #[error("opening JetStream KV bucket `{bucket}`: {message}")]
    Bucket { bucket: String, message: String },
    #[error("`client_jwt` and `client_seed` go together: give both or neither")]
    HalfCredentials,
    #[error("`client_jwt` and `client_seed` are credentials for `cluster_uri`, which is not set")]
    CredentialsWithoutServer,
    #[error("`client_seed` is not a user nkey seed: {0}")]
    BadSeed(String),
    #[error("connecting to the keyvalue NATS server {uri}: {message}")]
    Connect { uri: String, message: String },
}

/// One bucket, as a backend serves it.
#[derive(Clone)]
enum Backend {
    Memory(Arc<memory::MemoryBucket>),
    Nats(Arc<nats::NatsBucket>),
}

/// One opened bucket: the operations of `wasi:keyvalue` store, atomics and batch on it.
#[derive(Clone)]
pub struct KvBucket(Backend);

impl KvBucket {
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match &self.0 {
            Backend::Memory(b) => Ok(b.get(key)),
            Backend::Nats(b) => b.get(key).await,
        }
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        match &self.0 {
            Backend::Memory(b) => {
                b.set(key, value);
                Ok(())
            }
            Backend::Nats(b) => b.set(key, value).await,
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        match &self.0 {
            Backend::Memory(b) => {
                b.delete(key);
                Ok(())
            }
            Backend::Nats(b) => b.delete(key).await,
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        Ok(self.get(key).await?.is_some())
    }

    /// Keys in sorted order, a page at a time; `cursor` is where the page starts.
    pub async fn list_keys(&self, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        let keys = match &self.0 {
            Backend::Memory(b) => b.keys(),
            Backend::Nats(b) => b.keys().await?,
        };
        let start = usize::try_from(cursor.unwrap_or(0))
            .unwrap_or(usize::MAX)
            .min(keys.len());
        let end = start.saturating_add(PAGE).min(keys.len());
        Ok(KeyPage {
            keys: keys[start..end].to_vec(),
            cursor: (end < keys.len()).then_some(end as u64),
        })
    }

    pub async fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        match &self.0 {
            Backend::Memory(b) => b.increment(key, delta),
            Backend::Nats(b) => b.increment(key, delta).await,
        }
    }

    /// Each key's value (`None` when absent), in the order asked.
    pub async fn get_many(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            let value = self.get(&key).await?;
            values.push(value.map(|v| (key, v)));
        }
        Ok(values)
    }

    /// Stops at the first failure; earlier writes stay (the WIT promises no atomicity).
    pub async fn set_many(&self, key_values: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        for (key, value) in key_values {
            self.set(&key, value).await?;
        }
        Ok(())
    }

    pub async fn delete_many(&self, keys: Vec<String>) -> Result<(), KvError> {
        for key in keys {
            self.delete(&key).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl KeyvalueBucket for KvBucket {
    async fn get(&self, _: &RemoteCall, key: String) -> Result<Option<Vec<u8>>, KvError> {
        KvBucket::get(self, &key).await
    }
    async fn set(&self, _: &RemoteCall, key: String, value: Vec<u8>) -> Result<(), KvError> {
        KvBucket::set(self, &key, value).await
    }
    async fn delete(&self, _: &RemoteCall, key: String) -> Result<(), KvError> {
        KvBucket::delete(self, &key).await
    }
    async fn exists(&self, _: &RemoteCall, key: String) -> Result<bool, KvError> {
        KvBucket::exists(self, &key).await
    }
    async fn list_keys(&self, _: &RemoteCall, cursor: Option<u64>) -> Result<KeyPage, KvError> {
        KvBucket::list_keys(self, cursor).await
    }
    async fn increment(&self, _: &RemoteCall, key: String, delta: u64) -> Result<u64, KvError> {
        KvBucket::increment(self, &key, delta).await
    }
    async fn get_many(
        &self,
        _: &RemoteCall,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        KvBucket::get_many(self, keys).await
    }
    async fn set_many(
        &self,
        _: &RemoteCall,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError> {
        KvBucket::set_many(self, key_values).await
    }
    async fn delete_many(&self, _: &RemoteCall, keys: Vec<String>) -> Result<(), KvError> {
        KvBucket::delete_many(self, keys).await
    }
}

/// Adds `delta` to a counter stored as decimal text (absent = 0).
pub(super) fn add_to_counter(
    key: &str,
    current: Option<&[u8]>,
    delta: u64,
) -> Result<u64, KvError> {
    let current = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| KvError::NotACounter(key.to_string()))?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| KvError::Overflow(key.to_string()))
}

/// What one caller may open: the configured bucket, under its name, `default` or `""`.
pub struct KvAccess {
    bucket: String,
    backend: Backend,
}

impl KvAccess {
    /// The bucket `identifier` names, or `NoSuchStore`.
    pub fn open(&self, identifier: &str) -> Result<KvBucket, KvError> {
        if identifier.is_empty() || identifier == "default" || identifier == self.bucket {
            Ok(KvBucket(self.backend.clone()))
        } else {
            Err(KvError::NoSuchStore(identifier.to_string()))
        }
    }
}

#[async_trait::async_trait]
impl KeyvalueStore for KvAccess {
    async fn open(&self, identifier: &str) -> Result<Arc<dyn KeyvalueBucket>, KvError> {
        Ok(Arc::new(KvAccess::open(self, identifier)?))
    }
}

/// Where a `nats` bucket lives when its config names a server: the server and the credentials.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RemoteServer {
    uri: String,
    credentials: Option<(String, String)>,
}

/// The built-in buckets.
pub struct BuiltinKeyvalue {
    jetstream: Option<async_nats::jetstream::Context>,
    /// Connections to the servers configs name, by server and credentials.
    remote: tokio::sync::Mutex<BTreeMap<RemoteServer, async_nats::jetstream::Context>>,
    memory: Mutex<BTreeMap<String, Arc<memory::MemoryBucket>>>,
    bindings: Bound<KvAccess>,
}

impl BuiltinKeyvalue {
    /// Only the in-memory backend.
    pub fn memory_only() -> Self {
        Self {
            jetstream: None,
            remote: tokio::sync::Mutex::default(),
            memory: Mutex::default(),
            bindings: Bound::default(),
        }
    }

    /// Both backends; `nats` buckets live on `client`'s JetStream.
    pub fn with_nats(client: async_nats::Client) -> Self {
        Self {
            jetstream: Some(async_nats::jetstream::new(client)),
            ..Self::memory_only()
        }
    }

    async fn backend(
        &self,
        kind: &str,
        bucket: &str,
        server: Option<RemoteServer>,
    ) -> Result<Backend, KvConfigError> {
        match kind {
            "memory" => {
                let mut memory = self.memory.lock().unwrap();
                Ok(Backend::Memory(
                    memory.entry(bucket.to_string()).or_default().clone(),
                ))
            }
            "nats" => {
                let jetstream = match server {
                    Some(server) => self.remote_jetstream(server).await?,
                    None => self.jetstream.clone().ok_or(KvConfigError::NoNats)?,
                };
                Ok(Backend::Nats(Arc::new(
                    nats::NatsBucket::open(&jetstream, bucket).await?,
                )))
            }
            other => Err(KvConfigError::UnknownBackend(other.to_string())),
        }
    }

    /// JetStream on `server`, connecting on first use.
    async fn remote_jetstream(
        &self,
        server: RemoteServer,
    ) -> Result<async_nats::jetstream::Context, KvConfigError> {
        let mut remote = self.remote.lock().await;
        if let Some(jetstream) = remote.get(&server) {
            return Ok(jetstream.clone());
        }
        let options = match &server.credentials {
            Some((jwt, seed)) => {
                let key = nkeys::KeyPair::from_seed(seed)
                    .map_err(|e| KvConfigError::BadSeed(e.to_string()))?;
                let key = Arc::new(key);
                async_nats::ConnectOptions::with_jwt(jwt.clone(), move |nonce| {
                    let key = key.clone();
                    async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
                })
            }
            None => async_nats::ConnectOptions::new(),
        };
        let client =
            options
                .connect(server.uri.as_str())
                .await
                .map_err(|e| KvConfigError::Connect {
                    uri: server.uri.clone(),
                    message: e.to_string(),
                })?;
        let jetstream = async_nats::jetstream::new(client);
        remote.insert(server, jetstream.clone());
        Ok(jetstream)
    }

    /// What a caller with plugin config `config` (keys as in the module docs) may open.
    pub async fn access(
        &self,
        config: &BTreeMap<String, String>,
    ) -> Result<KvAccess, KvConfigError> {
        let kind = config.get("backend").map_or("memory", String::as_str);
        let bucket = config.get("bucket").map_or("default", String::as_str);
        let credentials = match (config.get("client_jwt"), config.get("client_seed")) {
            (Some(jwt), Some(seed)) => Some((jwt.clone(), seed.clone())),
            (None, None) => None,
            _ => return Err(KvConfigError::HalfCredentials),
        };
        let server = match (config.get("cluster_uri"), credentials) {
            (Some(uri), credentials) => Some(RemoteServer {
                uri: uri.clone(),
                credentials,
            }),
            (None, Some(_)) => return Err(KvConfigError::CredentialsWithoutServer),
            (None, None) => None,
        };
        Ok(KvAccess {
            bucket: bucket.to_string(),
            backend: self.backend(kind, bucket, server).await?,
        })
    }
}

#[async_trait::async_trait]
impl KeyvalueBackend for BuiltinKeyvalue {
    fn id(&self) -> &str {
        "keyvalue"
    }

    async fn bind(&self, binding: &Binding) -> anyhow::Result<()> {
        let access = self.access(&binding.config).await?;
        self.bindings.insert(&binding.component_id, access);
        Ok(())
    }

    async fn unbind(&self, component_id: &str) {
        self.bindings.remove(component_id);
    }

    fn store(&self, component_id: &str) -> Option<Arc<dyn KeyvalueStore>> {
        self.bindings
            .get(component_id)
            .map(|access| access as Arc<dyn KeyvalueStore>)
    }
}
