//! The client half: the keyvalue binding's lattice backend, for hosts whose keyvalue built-in is
//! off. Each `wasi:keyvalue` call of a component becomes a `wrpc:keyvalue` call to the target of
//! its link.
//!
//! `open(name)` only remembers the name (as a wasmCloud host does); each operation is one wRPC
//! call with the bucket passed as that name, so an unknown bucket is reported by the first
//! operation. Anything that keeps a call from being answered (no link, nobody serving the
//! target, a transport failure, no answer within the rpc timeout) reaches the guest as
//! `error::other` saying why, never as a trap or a hang.

use std::future::Future;
use std::sync::Arc;

use async_nats::HeaderMap;
use trellis_providers::keyvalue::{
    KeyPage, KeyvalueBackend, KeyvalueBucket, KeyvalueStore, KvError,
};
use trellis_runtime::RemoteCall;
use wit_bindgen_wrpc::bytes::Bytes;

use super::wrpc_bindings::wrpc::keyvalue as remote;
use crate::rpc::Lattice;

/// The WASI instances of the binding; their names are the links' routing keys too.
const STORE: &str = "wasi:keyvalue/store@0.2.0-draft";
const ATOMICS: &str = "wasi:keyvalue/atomics@0.2.0-draft";
const BATCH: &str = "wasi:keyvalue/batch@0.2.0-draft";

/// Sends a component's `wasi:keyvalue` calls to its link target as `wrpc:keyvalue` calls.
pub struct KeyvalueOverLattice {
    lattice: Arc<Lattice>,
}

impl KeyvalueOverLattice {
    pub fn new(lattice: Lattice) -> Self {
        Self {
            lattice: Arc::new(lattice),
        }
    }
}

impl KeyvalueBackend for KeyvalueOverLattice {
    fn id(&self) -> &str {
        "keyvalue-over-lattice"
    }

    fn forwards(&self) -> bool {
        true
    }

    fn store(&self, _component_id: &str) -> Option<Arc<dyn KeyvalueStore>> {
        Some(Arc::new(RemoteStore(self.lattice.clone())))
    }
}

struct RemoteStore(Arc<Lattice>);

#[async_trait::async_trait]
impl KeyvalueStore for RemoteStore {
    async fn open(&self, identifier: &str) -> Result<Arc<dyn KeyvalueBucket>, KvError> {
        Ok(Arc::new(RemoteBucket {
            name: identifier.to_string(),
            lattice: self.0.clone(),
        }))
    }
}

/// An opened bucket: just the name, sent with every call.
struct RemoteBucket {
    name: String,
    lattice: Arc<Lattice>,
}

impl RemoteBucket {
    /// Runs one wRPC call to wherever `caller`'s `interface` import goes (its link, or what it
    /// chose through `wasmcloud:bus/lattice`). `call` gets the target's client and the headers;
    /// everything that keeps it from answering becomes `error::other`.
    async fn call<T, F, Fut>(
        &self,
        caller: &RemoteCall,
        interface: &str,
        call: F,
    ) -> Result<T, KvError>
    where
        F: FnOnce(wrpc_transport_nats::Client, Option<HeaderMap>) -> Fut,
        Fut: Future<Output = anyhow::Result<Result<T, remote::store::Error>>>,
    {
        let (target, mut headers) = self
            .lattice
            .route(caller, interface)
            .map_err(|e| KvError::Backend(e.to_string()))?;
        // The call's span (the plugin's) continues on the provider.
        trellis_providers::trace_context::inject_nats(&tracing::Span::current(), &mut headers);
        let timeout = self.lattice.timeout;
        // The bound covers reaching the target as well as its answer.
        let answer = tokio::time::timeout(timeout, async {
            let client = self.lattice.client(&target).await?;
            call(client, Some(headers)).await
        });
        match answer.await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(error))) => Err(match error {
                remote::store::Error::NoSuchStore => KvError::NoSuchStore(self.name.clone()),
                remote::store::Error::AccessDenied => KvError::AccessDenied,
                remote::store::Error::Other(message) => KvError::Backend(message),
            }),
            Ok(Err(error)) => Err(KvError::Backend(format!(
                "keyvalue call to `{target}` over the lattice failed: {error:#}"
            ))),
            Err(_) => Err(KvError::Backend(format!(
                "keyvalue target `{target}` did not answer within {timeout:?}"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl KeyvalueBucket for RemoteBucket {
    async fn get(&self, caller: &RemoteCall, key: String) -> Result<Option<Vec<u8>>, KvError> {
        let bucket = &self.name;
        let value = self
            .call(caller, STORE, |client, cx| async move {
                remote::store::get(&client, cx, bucket, &key).await
            })
            .await?;
        Ok(value.map(Vec::from))
    }

    async fn set(&self, caller: &RemoteCall, key: String, value: Vec<u8>) -> Result<(), KvError> {
        let (bucket, value) = (&self.name, Bytes::from(value));
        self.call(caller, STORE, |client, cx| async move {
            remote::store::set(&client, cx, bucket, &key, &value).await
        })
        .await
    }

    async fn delete(&self, caller: &RemoteCall, key: String) -> Result<(), KvError> {
        let bucket = &self.name;
        self.call(caller, STORE, |client, cx| async move {
            remote::store::delete(&client, cx, bucket, &key).await
        })
        .await
    }

    async fn exists(&self, caller: &RemoteCall, key: String) -> Result<bool, KvError> {
        let bucket = &self.name;
        self.call(caller, STORE, |client, cx| async move {
            remote::store::exists(&client, cx, bucket, &key).await
        })
        .await
    }

    async fn list_keys(
        &self,
        caller: &RemoteCall,
        cursor: Option<u64>,
    ) -> Result<KeyPage, KvError> {
        let bucket = &self.name;
        let page = self
            .call(caller, STORE, |client, cx| async move {
                remote::store::list_keys(&client, cx, bucket, cursor).await
            })
            .await?;
        Ok(KeyPage {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    async fn increment(
        &self,
        caller: &RemoteCall,
        key: String,
        delta: u64,
    ) -> Result<u64, KvError> {
        let bucket = &self.name;
        self.call(caller, ATOMICS, |client, cx| async move {
            remote::atomics::increment(&client, cx, bucket, &key, delta).await
        })
        .await
    }

    async fn get_many(
        &self,
        caller: &RemoteCall,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let bucket = &self.name;
        let values = self
            .call(caller, BATCH, |client, cx| async move {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                remote::batch::get_many(&client, cx, bucket, &keys).await
            })
            .await?;
        Ok(values
            .into_iter()
            .map(|entry| entry.map(|(key, value)| (key, Vec::from(value))))
            .collect())
    }

    async fn set_many(
        &self,
        caller: &RemoteCall,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError> {
        let bucket = &self.name;
        let key_values: Vec<(String, Bytes)> = key_values
            .into_iter()
            .map(|(key, value)| (key, Bytes::from(value)))
            .collect();
        self.call(caller, BATCH, |client, cx| async move {
            let pairs: Vec<(&str, &Bytes)> = key_values
                .iter()
                .map(|(key, value)| (key.as_str(), value))
                .collect();
            remote::batch::set_many(&client, cx, bucket, &pairs).await
        })
        .await
    }

    async fn delete_many(&self, caller: &RemoteCall, keys: Vec<String>) -> Result<(), KvError> {
        let bucket = &self.name;
        self.call(caller, BATCH, |client, cx| async move {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            remote::batch::delete_many(&client, cx, bucket, &keys).await
        })
        .await
    }
}
