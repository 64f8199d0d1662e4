//! Secrets, as wasmCloud 1.x hosts resolve them.
//!
//! A name in a component's or provider's config list that starts with `SECRET` is a secret
//! reference, not config: CONFIGDATA holds, under that name, the map wadm writes (`name`,
//! `type`, `backend`, `key`, optional `field` and `version`, and the `policy` document as JSON
//! text). The host asks the reference's backend for the value over NATS, on
//! `{topic}.v1alpha1.{backend}.server_xkey` (the backend's transit XKey, cached per backend)
//! and then `{topic}.v1alpha1.{backend}.get`: the request carries the entity's embedded claims
//! (a component's or provider's JWT, which the backend checks against its own mappings), this
//! host's self-signed host JWT and the application's name and policy, sealed with a one-time
//! XKey for the backend's; the answer comes back sealed for that one-time key.
//!
//! Values live in [`SecretValue`]s (zeroed on drop, redacted in `Debug`) and are never logged;
//! errors name the secret, its key and backend, never a value.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use nkeys::{KeyPair, XKey};
use tokio::sync::Mutex;
use wascap::jwt::{Claims, Host};
use wasmcloud_secrets_types::{
    RESPONSE_XKEY, SECRET_API_VERSION, SECRET_PREFIX, SecretConfig, SecretResponse,
    WASMCLOUD_HOST_XKEY,
};
use zeroize::Zeroize;

pub use trellis_providers::secrets::{SecretMap, SecretValue};

use crate::identity::Identity;
use crate::store::ConfigStore;

/// The annotation naming a workload's application, sent to backends as the application name.
pub const APPSPEC: &str = "wasmcloud.dev/appspec";

/// How long one backend request may take.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Secret reference → the secret's name and value.
pub type ResolvedSecrets = std::collections::BTreeMap<String, (String, SecretValue)>;

/// Whether a config name is a secret reference.
pub fn is_secret(name: &str) -> bool {
    name.starts_with(SECRET_PREFIX)
}

/// Why a secret could not be resolved. Every message names the secret; none holds a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret reference `{0}` does not exist")]
    MissingReference(String),
    #[error("`{name}` is not a secret reference: {reason}")]
    BadReference { name: String, reason: String },
    #[error(
        "secret `{0}` cannot be fetched: this host has no secrets backend (start it with \
         --secrets-topic, e.g. `wasmcloud.secrets`)"
    )]
    NoBackend(String),
    #[error(
        "secret `{secret}` cannot be fetched for {entity}: it carries no embedded claims (JWT), \
         which the secrets backend needs to know who asks; sign it (`trellis sign`, or \
         `wash claims sign`)"
    )]
    Unsigned { secret: String, entity: String },
    #[error("secret `{secret}` cannot be fetched for {entity}: its claims are invalid: {reason}")]
    BadClaims {
        secret: String,
        entity: String,
        reason: String,
    },
    #[error("secret `{secret}` holds bytes, and {interface}'s config takes text")]
    NotText { secret: String, interface: String },
    #[error("secret `{secret}` (key `{key}`, backend `{backend}`): {reason}")]
    Backend {
        secret: String,
        key: String,
        backend: String,
        reason: String,
    },
}

/// Who asks for secrets, as the backend is told.
pub struct Entity<'a> {
    /// For messages: `component \`x\`` or `provider \`y\``.
    pub describe: String,
    /// Its embedded claims (JWT); `Err` with the reason when they could not be read.
    pub jwt: Result<Option<&'a str>, String>,
    /// The application it belongs to (`wasmcloud.dev/appspec`).
    pub application: Option<&'a str>,
}

/// Resolves secret references through the lattice's secrets backends.
pub struct Secrets {
    nats: async_nats::Client,
    /// `--secrets-topic`; `None`: this host has no backend and refuses every reference.
    topic: Option<String>,
    /// Self-signed `Host` claims (subject: the host ID), sent with every request.
    host_jwt: String,
    /// Backend name → its transit XKey (public key text).
    server_keys: Mutex<HashMap<String, String>>,
}

impl Secrets {
    pub fn new(
        nats: async_nats::Client,
        topic: Option<String>,
        identity: &Identity,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            nats,
            topic,
            host_jwt: host_jwt(identity)?,
            server_keys: Mutex::default(),
        })
    }

    /// The values of the secret references among `names` (others are skipped), by the
    /// secret's own name (the reference's `name`, which the entity asks for). Nothing is asked
    /// of a backend until every reference has been read, and any failure fails the whole set.
    pub async fn fetch(
        &self,
        names: &[String],
        config: &ConfigStore,
        entity: &Entity<'_>,
    ) -> Result<SecretMap, SecretError> {
        Ok(self
            .resolve(names, config, entity)
            .await?
            .into_values()
            .collect())
    }

    /// Like [`Self::fetch`], by reference: reference → the secret's name and value.
    pub async fn resolve(
        &self,
        names: &[String],
        config: &ConfigStore,
        entity: &Entity<'_>,
    ) -> Result<ResolvedSecrets, SecretError> {
        let mut references = Vec::new();
        for name in names.iter().filter(|name| is_secret(name)) {
            references.push((name.clone(), reference(name, config)?));
        }
        let mut resolved = ResolvedSecrets::new();
        for (reference_name, reference) in references {
            let name = reference.name.clone();
            let value = self.fetch_one(reference, entity).await?;
            resolved.insert(reference_name, (name, value));
        }
        Ok(resolved)
    }

    async fn fetch_one(
        &self,
        reference: SecretConfig,
        entity: &Entity<'_>,
    ) -> Result<SecretValue, SecretError> {
        let Some(topic) = &self.topic else {
            return Err(SecretError::NoBackend(reference.name));
        };
        let jwt = match &entity.jwt {
            Ok(Some(jwt)) => *jwt,
            Ok(None) => {
                return Err(SecretError::Unsigned {
                    secret: reference.name,
                    entity: entity.describe.clone(),
                });
            }
            Err(reason) => {
                return Err(SecretError::BadClaims {
                    secret: reference.name,
                    entity: entity.describe.clone(),
                    reason: reason.clone(),
                });
            }
        };
        let (secret, key, backend) = (
            reference.name.clone(),
            reference.key.clone(),
            reference.backend.clone(),
        );
        let failed = |reason: String| SecretError::Backend {
            secret: secret.clone(),
            key: key.clone(),
            backend: backend.clone(),
            reason,
        };
        let application = entity.application.map(str::to_string);
        let request = reference
            .try_into_request(jwt, &self.host_jwt, application.as_ref())
            .map_err(|e| failed(format!("{e:#}")))?;
        let subject = format!("{topic}.{SECRET_API_VERSION}.{backend}");
        let server_key = self.server_key(&subject, &backend).await.map_err(&failed)?;
        let answer = ask(&self.nats, &subject, &server_key, &request).await;
        if answer.is_err() {
            // The backend may have restarted with another transit key: ask again next time.
            self.server_keys.lock().await.remove(&backend);
        }
        answer.map_err(failed)
    }

    /// The backend's transit XKey, asked once per backend.
    async fn server_key(&self, subject: &str, backend: &str) -> Result<XKey, String> {
        let mut keys = self.server_keys.lock().await;
        if let Some(key) = keys.get(backend) {
            return XKey::from_public_key(key).map_err(|e| e.to_string());
        }
        let asked = self
            .nats
            .request(format!("{subject}.server_xkey"), "".into());
        let reply = tokio::time::timeout(BACKEND_TIMEOUT, asked)
            .await
            .map_err(|_| format!("no answer from the backend within {BACKEND_TIMEOUT:?}"))?
            .map_err(|e| format!("asking the backend for its key: {e}"))?;
        let text = std::str::from_utf8(&reply.payload)
            .map_err(|_| "the backend's key is not text".to_string())?;
        let key = XKey::from_public_key(text.trim())
            .map_err(|e| format!("the backend's key `{text}` is not an XKey: {e}"))?;
        keys.insert(backend.to_string(), text.trim().to_string());
        Ok(key)
    }
}

/// Sends one sealed `get` and opens the sealed answer.
async fn ask(
    nats: &async_nats::Client,
    subject: &str,
    server_key: &XKey,
    request: &wasmcloud_secrets_types::SecretRequest,
) -> Result<SecretValue, String> {
    let one_time = XKey::new();
    let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let sealed = one_time
        .seal(&body, server_key)
        .map_err(|e| format!("sealing the request: {e}"))?;
    let mut headers = HeaderMap::new();
    headers.insert(WASMCLOUD_HOST_XKEY, one_time.public_key().as_str());
    let asked = nats.request_with_headers(format!("{subject}.get"), headers, sealed.into());
    let reply = tokio::time::timeout(BACKEND_TIMEOUT, asked)
        .await
        .map_err(|_| format!("no answer from the backend within {BACKEND_TIMEOUT:?}"))?
        .map_err(|e| format!("asking the backend: {e}"))?;
    let response_key = reply
        .headers
        .as_ref()
        .and_then(|headers| headers.get(RESPONSE_XKEY))
        .map(|key| key.to_string());
    let Some(response_key) = response_key else {
        // Errors come back unsealed.
        let refused: SecretResponse = serde_json::from_slice(&reply.payload)
            .map_err(|_| String::from_utf8_lossy(&reply.payload).into_owned())?;
        return Err(match refused.error {
            Some(error) => format!("the backend refused: {error}"),
            None => "the backend answered with neither a secret nor an error".into(),
        });
    };
    let response_key = XKey::from_public_key(&response_key)
        .map_err(|e| format!("the backend's answer key is not an XKey: {e}"))?;
    let mut opened = one_time
        .open(&reply.payload, &response_key)
        .map_err(|e| format!("opening the backend's answer: {e}"))?;
    let parsed = serde_json::from_slice::<SecretResponse>(&opened);
    opened.zeroize();
    let secret = parsed
        .map_err(|e| format!("the backend's answer is not a secret response: {e}"))?
        .secret
        .ok_or("the backend answered without a secret")?;
    match (secret.string_secret, secret.binary_secret) {
        (Some(value), _) => Ok(SecretValue::String(value)),
        (None, Some(value)) => Ok(SecretValue::Bytes(value)),
        (None, None) => Err("the backend's secret holds no value".into()),
    }
}

/// The reference stored under `name`.
fn reference(name: &str, config: &ConfigStore) -> Result<SecretConfig, SecretError> {
    let map = config
        .get(name)
        .ok_or_else(|| SecretError::MissingReference(name.to_string()))?;
    let json = serde_json::to_value(map).expect("a string map is JSON");
    serde_json::from_value(json).map_err(|e| SecretError::BadReference {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

/// This host's claims for secrets backends: `Host` claims about the host ID, signed by a
/// throw-away account key and marked `self_signed`, as wasmCloud 1.x hosts make them.
fn host_jwt(identity: &Identity) -> anyhow::Result<String> {
    let issuer = KeyPair::new_account();
    let claims = Claims::<Host>::new(
        identity.friendly_name.clone(),
        issuer.public_key(),
        identity.host_id(),
        Some(HashMap::from([("self_signed".into(), "true".into())])),
    );
    claims
        .encode(&issuer)
        .map_err(|e| anyhow::anyhow!("signing the host's claims: {e}"))
}

/// A component's embedded claims (JWT): `Ok(None)` when it is not signed, `Err` when its claims
/// do not match its code or cannot be read.
pub fn component_jwt(bytes: &[u8]) -> Result<Option<String>, String> {
    wascap::wasm::extract_claims(bytes)
        .map(|token| token.map(|token| token.jwt))
        .map_err(|e| e.to_string())
}
