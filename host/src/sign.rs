//! Embedding signed claims in a component, as `wash claims sign` does: wascap `Component`
//! claims in the component's `wasmcloud_jwt` custom section, with the hash of the rest of the
//! code. The claims' subject (a module key, `M…`) is the component's identity towards secrets
//! backends, which map secrets to it.

use nkeys::{KeyPair, KeyPairType};
use wascap::jwt::Claims;

/// Why a component could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the issuer must be an account key (`SA…` seed), got a {0:?} key")]
    IssuerType(KeyPairType),
    #[error("the subject must be a module key (`SM…` seed), got a {0:?} key")]
    SubjectType(KeyPairType),
    #[error("embedding the claims: {0}")]
    Embed(String),
}

/// `bytes` with claims named `name` about `subject`, signed by `issuer`; claims already
/// embedded are replaced. They never expire.
pub fn sign_component(
    bytes: &[u8],
    name: &str,
    issuer: &KeyPair,
    subject: &KeyPair,
) -> Result<Vec<u8>, SignError> {
    if issuer.key_pair_type() != KeyPairType::Account {
        return Err(SignError::IssuerType(issuer.key_pair_type()));
    }
    if subject.key_pair_type() != KeyPairType::Module {
        return Err(SignError::SubjectType(subject.key_pair_type()));
    }
    let claims = Claims::<wascap::jwt::Component>::new(
        name.to_string(),
        issuer.public_key(),
        subject.public_key(),
        None,
        false,
        None,
        None,
        None,
    );
    wascap::wasm::embed_claims(bytes, &claims, issuer).map_err(|e| SignError::Embed(e.to_string()))
}
