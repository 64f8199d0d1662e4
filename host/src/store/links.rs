//! Links in `LATTICEDATA_{lattice}`: each lattice ID's `COMPONENT_{id}` spec holds its URL and
//! the links whose source it is.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::mirror::KvMirror;
use trellis_deployer::wire::{DeleteLinkRequest, Link};

/// How many times a read-modify-write is retried when another writer got in between.
const WRITE_ATTEMPTS: usize = 5;

/// The value of `COMPONENT_{id}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ComponentSpec {
    pub url: String,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// Why a link could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "link name `{name}` of `{source_id}` for `{namespace}:{package}` is already bound to \
         target `{existing}`; delete that link first or choose another link name"
    )]
    Conflict {
        source_id: String,
        name: String,
        namespace: String,
        package: String,
        existing: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct LinkStore(KvMirror<ComponentSpec>);

impl LinkStore {
    pub async fn open(js: &jetstream::Context, lattice: &str) -> Result<Self, StoreError> {
        Ok(Self(
            KvMirror::open(js, &format!("LATTICEDATA_{lattice}"), "COMPONENT_").await?,
        ))
    }

    /// Whether `COMPONENT_{id}` exists.
    pub fn has_spec(&self, id: &str) -> bool {
        self.0.contains(id)
    }

    pub fn stop_watching(&self) {
        self.0.stop_watching();
    }

    /// Wakes on every change of the lattice's links.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }

    /// Every known link, in source-ID order.
    pub fn links(&self) -> Vec<Link> {
        self.0.flat_map(|spec| spec.links.clone())
    }

    /// The links whose source is `source_id` (its spec alone, not every link).
    pub fn links_from(&self, source_id: &str) -> Vec<Link> {
        self.0.get(source_id).map(|s| s.links).unwrap_or_default()
    }

    /// Creates `COMPONENT_{id}` with `url` and no links if it does not exist yet.
    pub async fn ensure_spec(&self, id: &str, url: &str) -> Result<(), StoreError> {
        self.modify(id, |spec, existed| {
            if !existed {
                spec.url = url.to_string();
            }
            Ok::<_, LinkError>(())
        })
        .await
        .map_err(|e| match e {
            LinkError::Store(e) => e,
            other => StoreError::Write {
                key: id.to_string(),
                reason: other.to_string(),
            },
        })
    }

    /// Adds `link` to its source's spec, replacing a link with the same source, target,
    /// namespace, package and name; refuses to rebind a link name to another target.
    pub async fn put(&self, link: &Link) -> Result<(), LinkError> {
        self.modify(&link.source_id, |spec, _| {
            let same_slot = |l: &Link| {
                l.wit_namespace == link.wit_namespace
                    && l.wit_package == link.wit_package
                    && l.name == link.name
            };
            if let Some(existing) = spec.links.iter().find(|l| {
                same_slot(l)
                    && l.target != link.target
                    && l.interfaces.iter().any(|i| link.interfaces.contains(i))
            }) {
                return Err(LinkError::Conflict {
                    source_id: link.source_id.clone(),
                    name: link.name.clone(),
                    namespace: link.wit_namespace.clone(),
                    package: link.wit_package.clone(),
                    existing: existing.target.clone(),
                });
            }
            match spec
                .links
                .iter_mut()
                .find(|l| same_slot(l) && l.target == link.target)
            {
                Some(stored) => *stored = link.clone(),
                None => spec.links.push(link.clone()),
            }
            Ok(())
        })
        .await
    }

    /// Removes the first link matching source, namespace, package and name from an existing
    /// spec (see [`Self::has_spec`]). `Ok(None)` when there was no such link.
    pub async fn delete(&self, request: &DeleteLinkRequest) -> Result<Option<Link>, LinkError> {
        self.modify(&request.source_id, |spec, _| {
            let position = spec.links.iter().position(|l| {
                l.wit_namespace == request.wit_namespace
                    && l.wit_package == request.wit_package
                    && l.name == request.name
            });
            Ok(position.map(|i| spec.links.remove(i)))
        })
        .await
    }

    /// Read-modify-write of `COMPONENT_{id}` guarded by the entry's revision. `change` gets
    /// the current spec (default if absent) and whether it existed; an error aborts the write.
    async fn modify<R>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut ComponentSpec, bool) -> Result<R, LinkError>,
    ) -> Result<R, LinkError> {
        let key = self.0.key(id);
        let write_error = |reason: String| StoreError::Write {
            key: key.clone(),
            reason,
        };
        for _ in 0..WRITE_ATTEMPTS {
            let entry = self.0.kv.entry(&key).await.map_err(|e| StoreError::Read {
                key: key.clone(),
                reason: e.to_string(),
            })?;
            let (mut spec, revision) = match &entry {
                Some(entry) if entry.operation == kv::Operation::Put => (
                    serde_json::from_slice(&entry.value).map_err(|source| StoreError::Corrupt {
                        key: key.clone(),
                        source,
                    })?,
                    Some(entry.revision),
                ),
                Some(entry) => (ComponentSpec::default(), Some(entry.revision)),
                None => (ComponentSpec::default(), None),
            };
            let existed = matches!(&entry, Some(e) if e.operation == kv::Operation::Put);
            let result = change(&mut spec, existed)?;
            let body = serde_json::to_vec(&spec).map_err(|e| write_error(e.to_string()))?;
            let written = match revision {
                Some(revision) => self
                    .0
                    .kv
                    .update(&key, body.into(), revision)
                    .await
                    .map_err(|e| e.to_string()),
                None => self
                    .0
                    .kv
                    .create(&key, body.into())
                    .await
                    .map_err(|e| e.to_string()),
            };
            match written {
                Ok(revision) => {
                    self.0.remember(id, Some(spec), Some(revision));
                    return Ok(result);
                }
                Err(reason) => tracing::debug!(%key, "retrying lattice state write: {reason}"),
            }
        }
        Err(StoreError::Contended { key }.into())
    }
}
