//! Claims in `LATTICEDATA_{lattice}` under `CLAIMS_{subject}`: written when a signed artifact
//! starts (here: provider archives), never deleted, and answered lattice-wide by `claims.get`.
//! Entries written by wasmCloud hosts (components and providers) are read as well.

use std::collections::BTreeMap;

use async_nats::jetstream;
use serde::{Deserialize, Deserializer, Serialize};

use super::StoreError;
use super::mirror::KvMirror;

/// A stored `CLAIMS_*` value, in the wasmCloud 1.x shape (told apart by content).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoredClaims {
    Component(ComponentClaims),
    Provider(ProviderClaims),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentClaims {
    pub call_alias: String,
    #[serde(alias = "iss")]
    pub issuer: String,
    pub name: String,
    #[serde(alias = "rev")]
    pub revision: String,
    #[serde(alias = "sub")]
    pub subject: String,
    /// A list, or one comma-joined string in entries written by older hosts.
    #[serde(deserialize_with = "list_or_joined")]
    pub tags: Vec<String>,
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderClaims {
    #[serde(alias = "iss")]
    pub issuer: String,
    pub name: String,
    /// The claims' `rev`, as a decimal string.
    #[serde(alias = "rev")]
    pub revision: String,
    #[serde(alias = "sub")]
    pub subject: String,
    pub version: String,
    /// The provider's configuration JSON schema, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<String>,
}

fn list_or_joined<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        List(Vec<String>),
        Joined(String),
    }
    Ok(match Tags::deserialize(deserializer)? {
        Tags::List(tags) => tags,
        Tags::Joined(joined) => joined.split(',').map(String::from).collect(),
    })
}

impl StoredClaims {
    pub fn subject(&self) -> &str {
        match self {
            Self::Component(claims) => &claims.subject,
            Self::Provider(claims) => &claims.subject,
        }
    }

    /// The string map `claims.get` answers: every field under its name, plus the short JWT
    /// names (`iss`, `rev`, `sub`) that wadm and older clients read.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let (issuer, revision, subject, mut map) = match self {
            Self::Component(c) => (
                &c.issuer,
                &c.revision,
                &c.subject,
                BTreeMap::from([
                    ("call_alias".to_string(), c.call_alias.clone()),
                    ("name".to_string(), c.name.clone()),
                    ("tags".to_string(), c.tags.join(",")),
                    ("version".to_string(), c.version.clone()),
                ]),
            ),
            Self::Provider(p) => (
                &p.issuer,
                &p.revision,
                &p.subject,
                BTreeMap::from([
                    ("name".to_string(), p.name.clone()),
                    ("version".to_string(), p.version.clone()),
                    (
                        "config_schema".to_string(),
                        p.config_schema.clone().unwrap_or_default(),
                    ),
                ]),
            ),
        };
        for (keys, value) in [
            (["iss", "issuer"], issuer),
            (["rev", "revision"], revision),
            (["sub", "subject"], subject),
        ] {
            for key in keys {
                map.insert(key.to_string(), value.clone());
            }
        }
        map
    }
}

pub struct ClaimsStore(KvMirror<StoredClaims>);

impl ClaimsStore {
    pub async fn open(js: &jetstream::Context, lattice: &str) -> Result<Self, StoreError> {
        Ok(Self(
            KvMirror::open(js, &format!("LATTICEDATA_{lattice}"), "CLAIMS_").await?,
        ))
    }

    pub fn stop_watching(&self) {
        self.0.stop_watching();
    }

    /// Every claim known in the lattice, in subject order.
    pub fn all(&self) -> Vec<StoredClaims> {
        self.0.values()
    }

    /// Stores `claims` under `CLAIMS_{subject}` (overwriting: the same subject signs the same
    /// claims, possibly at a newer revision).
    pub async fn put(&self, claims: &StoredClaims) -> Result<(), StoreError> {
        let key = self.0.key(claims.subject());
        let body = serde_json::to_vec(claims).map_err(|e| StoreError::Write {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let revision = self
            .0
            .kv
            .put(&key, body.into())
            .await
            .map_err(|e| StoreError::Write {
                key: key.clone(),
                reason: e.to_string(),
            })?;
        self.0
            .remember(claims.subject(), Some(claims.clone()), Some(revision));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_read_and_answer_with_aliases() {
        let component: StoredClaims = serde_json::from_str(
            r#"{"call_alias":"","iss":"AISS","name":"hello","rev":"3","sub":"MSUB",
                "tags":"a,b","version":"1.0.0"}"#,
        )
        .unwrap();
        assert!(matches!(&component, StoredClaims::Component(c) if c.tags == ["a", "b"]));
        let map = component.to_map();
        assert_eq!(map["iss"], "AISS");
        assert_eq!(map["issuer"], "AISS");
        assert_eq!(map["sub"], "MSUB");
        assert_eq!(map["rev"], "3");
        assert_eq!(map["tags"], "a,b");

        let provider: StoredClaims = serde_json::from_str(
            r#"{"issuer":"AISS","name":"kv","revision":"1","subject":"VSUB","version":"0.1.0"}"#,
        )
        .unwrap();
        assert!(matches!(provider, StoredClaims::Provider(_)));
        let map = provider.to_map();
        assert_eq!(map.len(), 9, "{map:?}");
        assert_eq!(map["subject"], "VSUB");
        assert_eq!(map["config_schema"], "");
        let written = serde_json::to_value(&provider).unwrap();
        assert!(written.get("config_schema").is_none(), "{written}");
    }
}
