//! The NATS credentials a provider is handed in HostData (`lattice_rpc_user_jwt` /
//! `lattice_rpc_user_seed`), taken from how the host itself joined.
//!
//! wasmcloud-provider-sdk 0.17 connects anonymously when both are empty and otherwise
//! authenticates with the JWT, signing the server's nonce with the seed; it never sends an nkey
//! on its own. So a host joined with `--nats-creds` gives its providers that file's JWT and seed
//! and they join the same server; a host joined with `--nats-nkey` passes the seed alone, as the
//! reference host does, which such providers cannot use against a server that lists nkey users.

use std::path::PathBuf;

use crate::connect::NatsAuth;

/// A user JWT and its nkey seed; either may be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RpcCredentials {
    pub jwt: String,
    pub seed: String,
}

impl RpcCredentials {
    /// Whether providers built with the SDK can authenticate with these: a seed without a JWT
    /// makes them send an empty JWT and no nkey.
    pub fn seed_only(&self) -> bool {
        self.jwt.is_empty() && !self.seed.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("reading the NATS credentials {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the NATS credentials {path} hold no user JWT and nkey seed")]
    Malformed { path: PathBuf },
}

/// What providers get: the credentials file's JWT and seed (read now, so a rotated file is
/// picked up at the next start), else the nkey seed, else nothing.
pub fn for_providers(auth: &NatsAuth) -> Result<RpcCredentials, CredentialsError> {
    if let Some(path) = &auth.creds_file {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.clone(),
            source,
        })?;
        let (jwt, seed) =
            parse_creds(&text).ok_or_else(|| CredentialsError::Malformed { path: path.clone() })?;
        return Ok(RpcCredentials { jwt, seed });
    }
    Ok(RpcCredentials {
        jwt: String::new(),
        seed: auth.nkey_seed.clone().unwrap_or_default(),
    })
}

/// The JWT and seed of a `.creds` file: each is the first non-empty line after its
/// `-----BEGIN …-----` marker.
fn parse_creds(text: &str) -> Option<(String, String)> {
    let after = |marker: &str| {
        let mut lines = text.lines().map(str::trim);
        lines.find(|line| line.starts_with("---") && line.contains(marker))?;
        lines
            .find(|line| !line.is_empty())
            .filter(|line| !line.starts_with("---"))
            .map(String::from)
    };
    Some((
        after("BEGIN NATS USER JWT")?,
        after("BEGIN USER NKEY SEED")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creds_files_give_jwt_and_seed() {
        let text = "-----BEGIN NATS USER JWT-----\neyJhbGc.eyJzdWIi.c2ln\n------END NATS USER JWT------\n\n\
                    ************************* IMPORTANT *************************\n\
                    NKEY Seed printed below can be used to sign and prove identity.\n\n\
                    -----BEGIN USER NKEY SEED-----\nSUAEXAMPLE\n------END USER NKEY SEED------\n";
        assert_eq!(
            parse_creds(text),
            Some(("eyJhbGc.eyJzdWIi.c2ln".into(), "SUAEXAMPLE".into()))
        );
        assert_eq!(parse_creds("-----BEGIN NATS USER JWT-----\n-----END"), None);

        let seed_only = for_providers(&NatsAuth {
            nkey_seed: Some("SUASEED".into()),
            ..NatsAuth::default()
        })
        .unwrap();
        assert!(seed_only.seed_only());
        assert_eq!(
            for_providers(&NatsAuth::default()).unwrap(),
            RpcCredentials::default()
        );
    }
}
