//! The server half: a keyvalue built-in started here as provider `P` serves
//! `wrpc:keyvalue/{store,atomics,batch}@0.2.0-draft` on `{lattice}.{P}.wrpc.0.0.1.…`, queue
//! group `{lattice}.{P}`, as wasmCloud's keyvalue providers do.
//!
//! The caller's link to `P` selects its backend and bucket exactly as the in-process binding
//! does ([`crate::translated::caller_config`]), so a component gets the same results wherever
//! it runs. A caller without such a link gets `error::other` saying so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::task::JoinSet;
use trellis_providers::keyvalue::{BuiltinKeyvalue, KvAccess, KvBucket, KvError};
use wit_bindgen_wrpc::bytes::Bytes;
use wrpc_transport_nats::NatsContext;

use super::wrpc_bindings::exports::wrpc::keyvalue::{atomics, batch, store};
use crate::builtins::ConfigMap;
use crate::state::HostState;
use crate::translated::{accept_calls, caller_config, provider_server};

/// Subscribes provider `provider_id`'s keyvalue functions; each call runs on its own task.
pub async fn serve(state: &Arc<HostState>, provider_id: &str) -> anyhow::Result<JoinSet<()>> {
    let plugin = state
        .plugins
        .keyvalue
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the keyvalue built-in is switched off on this host"))?;
    let server = provider_server(state, provider_id).await?;
    let handler = KvHandler {
        state: Arc::downgrade(state),
        provider: provider_id.into(),
        plugin,
        access: Default::default(),
    };
    let subscribed = super::wrpc_bindings::serve(&server, handler).await?;
    Ok(accept_calls(provider_id, "keyvalue", subscribed))
}

/// Answers the calls of every component linked to one keyvalue provider.
#[derive(Clone)]
struct KvHandler {
    /// Weak: the provider's server lives in the host state, and must not keep it alive.
    state: Weak<HostState>,
    provider: Arc<str>,
    plugin: Arc<BuiltinKeyvalue>,
    /// What each link config opens, kept so that a call costs no bucket lookup.
    access: Arc<Mutex<HashMap<ConfigMap, Arc<KvAccess>>>>,
}

fn other(message: String) -> store::Error {
    store::Error::Other(message)
}

fn remote_error(error: KvError) -> store::Error {
    match error {
        KvError::NoSuchStore(_) => store::Error::NoSuchStore,
        other => store::Error::Other(other.to_string()),
    }
}

impl KvHandler {
    /// The bucket `name` as the caller of `cx` may open it, per its link to this provider.
    async fn bucket(&self, cx: &NatsContext, name: &str) -> Result<KvBucket, store::Error> {
        let config = caller_config(&self.state, &self.provider, cx, "keyvalue").map_err(other)?;
        let cached = self.access.lock().unwrap().get(&config).cloned();
        let access = match cached {
            Some(access) => access,
            None => {
                let access = Arc::new(
                    self.plugin
                        .access(&config)
                        .await
                        .map_err(|e| other(e.to_string()))?,
                );
                self.access
                    .lock()
                    .unwrap()
                    .entry(config)
                    .or_insert(access)
                    .clone()
            }
        };
        access.open(name).map_err(remote_error)
    }
}

type Answer<T> = anyhow::Result<Result<T, store::Error>>;

impl store::Handler<NatsContext> for KvHandler {
    async fn get(&self, cx: NatsContext, bucket: String, key: String) -> Answer<Option<Bytes>> {
        let bucket = match self.bucket(&cx, &bucket).await {
            Ok(bucket) => bucket,
            Err(error) => return Ok(Err(error)),
        };
        Ok(bucket
            .get(&key)
            .await
            .map(|value| value.map(Bytes::from))
            .map_err(remote_error))
    }

    async fn set(&self, cx: NatsContext, bucket: String, key: String, value: Bytes) -> Answer<()> {
        let bucket = match self.bucket(&cx, &bucket).await {
            Ok(bucket) => bucket,
            Err(error) => return Ok(Err(error)),
        };
        Ok(bucket.set(&key, value.into()).await.map_err(remote_error))
    }

    async fn delete(&self, cx: NatsContext, bucket: String, key: String) -> Answer<()> {
        let bucket = match self.bucket(&cx, &bucket).await {
            Ok(bucket) => bucket,
            Err(error) => return Ok(Err(error)),
        };
        Ok(bucket.delete(&key).await.map_err(remote_error))
    }

    async fn exists(&self, cx: NatsContext, bucket: String, key: String) -> Answer<bool> {
        let bucket = match self.bucket(&cx, &bucket).await {
            Ok(bucket) => bucket,
            Err(error) => return Ok(Err(error)),
        };
        Ok(bucket.exists(&key).await.map_err(remote_error))
    }

    async fn list_keys(
        &self,
        cx: NatsContext,
        bucket: String,
        cursor: Option<u64>,
    ) -> Answer<store::KeyResponse> {
        let bucket = match self.bucket(&cx, &bucket).await {
            Ok(bucket) => bucket,
            Err(error) => return Ok(Err(error)),
        };
        Ok(bucket
            .list_keys(cursor)
            .await
            .map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            })
            .map_err(remote_error))
    }
}

impl atomics::Handler<NatsContext> for KvHandler {
    async fn increment(
        &self,
        cx: NatsContext,
        bucket: String,
        key: String,
        delta: u64,
    ) -> Answer<u64> {
        let bucket = match self.bucket(&cx, &bucket).await {
            Ok(bucket) => bucket,
            Err(error) => return Ok(Err(error)),
        };
        Ok(bucket.increment(&key, delta).await.map_err(remote_error))
    }
}

impl batch::Handler<NatsContext> for KvHandler {
    async fn get_many(
        &self,
        cx: NatsContext,
        bucket: String,
        keys: Vec<String>,
    ) -> Answer<Vec<Option<(String, Bytes)>>> {
        let bucket = match self.bucket(&cx, &bucket).await {
            Ok(bucket) => bucket,
            Err(error) => return Ok(Err(error)),
        };
        Ok(bucket
            .get_many(keys)
            .await
            .map(|values| {
                values
                    .into_iter()
                    .map(|entry| entry.map(|(key, value)| (key, Bytes::from(value))))
                    .collect()
            })
            .map_err(remote_error))
    }

    async fn set_many(
        &self,
        cx: NatsContext,
        bucket: String,
        key_values: Vec<(String, Bytes)>,
    ) -> Answer<()> {
        let bucket = match self.bucket(&cx, &bucket).await {
            Ok(bucket) => bucket,
            Err(error) => return Ok(Err(error)),
        };
        let key_values = key_values
            .into_iter()
            .map(|(key, value)| (key, Vec::from(value)))
            .collect();
        Ok(bucket.set_many(key_values).await.map_err(remote_error))
    }

    async fn delete_many(&self, cx: NatsContext, bucket: String, keys: Vec<String>) -> Answer<()> {
        let bucket = match self.bucket(&cx, &bucket).await {
            Ok(bucket) => bucket,
            Err(error) => return Ok(Err(error)),
        };
        Ok(bucket.delete_many(keys).await.map_err(remote_error))
    }
}
