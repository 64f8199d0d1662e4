//! The host's NATS connection: URL, credentials and TLS as the operator gives them.

use std::path::PathBuf;
use std::time::Duration;

/// How the host authenticates to NATS. Nothing set means an anonymous plain connection.
#[derive(Clone, Debug, Default)]
pub struct NatsAuth {
    /// A `.creds` file (user JWT and nkey seed), as `nsc` writes them.
    pub creds_file: Option<PathBuf>,
    /// A user nkey seed (`SU…`) for servers that list nkey users.
    pub nkey_seed: Option<String>,
    /// A PEM file of CA certificates to trust; also makes TLS required.
    pub tls_ca: Option<PathBuf>,
}

/// Connects with the reference host's connection name, bounded by a connect timeout.
pub async fn connect(url: &str, auth: &NatsAuth) -> Result<async_nats::Client, String> {
    let mut options = async_nats::ConnectOptions::new()
        .name("wasmbus")
        .connection_timeout(Duration::from_secs(5));
    if let Some(path) = &auth.creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("reading credentials {}: {e}", path.display()))?;
    }
    if let Some(seed) = &auth.nkey_seed {
        options = options.nkey(seed.clone());
    }
    if let Some(ca) = &auth.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    options.connect(url).await.map_err(|e| e.to_string())
}
