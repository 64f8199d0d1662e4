//! Durable manifests in JetStream KV, laid out as wadm does: bucket `wadm_manifests`, key
//! `<lattice>-<app>` holding every version in put order plus the deployed version, and key
//! `<lattice>` holding the list of app names. Writes are compare-and-set on the revision.
//!
//! Beyond wadm, an app record also holds the version being undeployed until its cleanup is
//! done (`trellis_undeploying`, which wadm ignores), so that a deployer taking over after a
//! failover finishes an undeploy (or a delete) that the previous one had only begun.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub const BUCKET: &str = "wadm_manifests";
const WRITE_ATTEMPTS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("manifest store `{BUCKET}`: {0}")]
    Bucket(String),
    #[error("reading `{key}`: {reason}")]
    Read { key: String, reason: String },
    #[error("writing `{key}`: {reason}")]
    Write { key: String, reason: String },
}

/// Versions in insertion order, serialized as a JSON object (wadm's IndexMap).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Versions(pub Vec<(String, Value)>);

impl Serialize for Versions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Versions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Versions;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of versions to manifests")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Versions, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = a.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(Versions(out))
            }
        }
        d.deserialize_map(Ordered)
    }
}

/// Everything stored for one app.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredApp {
    pub manifests: Versions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_version: Option<String>,
    /// An undeploy whose cleanup has not been confirmed yet. It carries its own copy of the
    /// manifest because a delete removes the version from `manifests`.
    #[serde(
        default,
        rename = "trellis_undeploying",
        skip_serializing_if = "Option::is_none"
    )]
    pub undeploying: Option<Undeploying>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Undeploying {
    pub version: String,
    pub manifest: Value,
}

impl StoredApp {
    /// Nothing left to keep: no versions and no cleanup pending.
    pub fn is_empty(&self) -> bool {
        self.manifests.0.is_empty() && self.undeploying.is_none()
    }

    /// Takes the deployed version away, remembering it for cleanup; `None` if none was.
    pub fn undeploy(&mut self) -> Option<String> {
        let version = self.deployed_version.take()?;
        if let Some(manifest) = self.get(&version).cloned() {
            self.undeploying = Some(Undeploying {
                version: version.clone(),
                manifest,
            });
        }
        Some(version)
    }

    pub fn get(&self, version: &str) -> Option<&Value> {
        self.manifests
            .0
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, m)| m)
    }

    pub fn latest(&self) -> Option<(&str, &Value)> {
        self.manifests.0.last().map(|(v, m)| (v.as_str(), m))
    }

    pub fn deployed(&self) -> Option<(&str, &Value)> {
        let version = self.deployed_version.as_deref()?;
        self.get(version).map(|m| (version, m))
    }
}

/// The manifest bucket, scoped to one lattice.
#[derive(Clone)]
pub struct ManifestStore {
    kv: kv::Store,
    lattice: String,
}

impl ManifestStore {
    pub async fn open(js: &jetstream::Context, lattice: &str) -> Result<Self, StoreError> {
        let kv = match js.get_key_value(BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: BUCKET.to_string(),
                    history: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| StoreError::Bucket(e.to_string()))?,
        };
        Ok(Self {
            kv,
            lattice: lattice.to_string(),
        })
    }

    fn key(&self, app: &str) -> String {
        format!("{}-{app}", self.lattice)
    }

    async fn read<T: for<'de> Deserialize<'de> + Default>(
        &self,
        key: &str,
    ) -> Result<(T, Option<u64>), StoreError> {
        let read_error = |reason: String| StoreError::Read {
            key: key.to_string(),
            reason,
        };
        match self
            .kv
            .entry(key)
            .await
            .map_err(|e| read_error(e.to_string()))?
        {
            Some(e) if e.operation == kv::Operation::Put => {
                let value =
                    serde_json::from_slice(&e.value).map_err(|e| read_error(e.to_string()))?;
                Ok((value, Some(e.revision)))
            }
            Some(e) => Ok((T::default(), Some(e.revision))),
            None => Ok((T::default(), None)),
        }
    }

    /// An app with at least one stored version.
    pub async fn app(&self, app: &str) -> Result<Option<StoredApp>, StoreError> {
        Ok(self
            .record(app)
            .await?
            .filter(|stored| !stored.manifests.0.is_empty()))
    }

    /// Whatever is stored for an app, including one deleted while its undeploy is pending.
    pub async fn record(&self, app: &str) -> Result<Option<StoredApp>, StoreError> {
        let (stored, _): (StoredApp, _) = self.read(&self.key(app)).await?;
        Ok((!stored.is_empty()).then_some(stored))
    }

    /// Read-modify-write of `key` with compare-and-set; `change` returns `None` to write nothing
    /// and its result otherwise. An empty value after the change deletes the key.
    async fn modify<T, R>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut T) -> Option<R>,
        empty: impl Fn(&T) -> bool,
    ) -> Result<Option<R>, StoreError>
    where
        T: Serialize + for<'de> Deserialize<'de> + Default,
    {
        let write_error = |reason: String| StoreError::Write {
            key: key.to_string(),
            reason,
        };
        for attempt in 0..WRITE_ATTEMPTS {
            let (mut value, revision) = self.read::<T>(key).await?;
            let Some(result) = change(&mut value) else {
                return Ok(None);
            };
            let written = if empty(&value) {
                match revision {
                    Some(_) => self
                        .kv
                        .purge(key)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    None => Ok(()),
                }
            } else {
                let body = serde_json::to_vec(&value).map_err(|e| write_error(e.to_string()))?;
                match revision {
                    Some(r) => self
                        .kv
                        .update(key, body.into(), r)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    None => self
                        .kv
                        .create(key, body.into())
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                }
            };
            match written {
                Ok(()) => return Ok(Some(result)),
                Err(reason) if attempt + 1 == WRITE_ATTEMPTS => return Err(write_error(reason)),
                Err(reason) => {
                    tracing::debug!(key, "retrying manifest write: {reason}");
                    tokio::time::sleep(Duration::from_millis(10 * (attempt as u64 + 1))).await;
                }
            }
        }
        Err(write_error("too many concurrent writers".into()))
    }

    /// Changes one app's record; an app left without versions (and no pending undeploy) is
    /// removed with its name.
    pub async fn update_app<R>(
        &self,
        app: &str,
        change: impl FnMut(&mut StoredApp) -> Option<R>,
    ) -> Result<Option<R>, StoreError> {
        let result = self
            .modify(&self.key(app), change, StoredApp::is_empty)
            .await?;
        if result.is_some() {
            let exists = self.record(app).await?.is_some();
            self.modify(
                &self.lattice,
                |names: &mut Vec<String>| {
                    let listed = names.iter().any(|n| n == app);
                    match (exists, listed) {
                        (true, false) => names.push(app.to_string()),
                        (false, true) => names.retain(|n| n != app),
                        _ => return None,
                    }
                    Some(())
                },
                |_| false,
            )
            .await?;
        }
        Ok(result)
    }

    /// Names of the apps stored for this lattice (with those deleted while undeploying), sorted
    /// as wadm lists them (from a `BTreeSet`).
    pub async fn names(&self) -> Result<Vec<String>, StoreError> {
        let mut names = self.read::<Vec<String>>(&self.lattice).await?.0;
        names.sort();
        Ok(names)
    }
}
