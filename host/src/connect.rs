//! The host's NATS connection: URL, credentials and TLS as the operator gives them, with the
//! connection name wasmCloud hosts use.

pub use trellis_deployer::connect::NatsAuth;

/// Connects, bounded by the connect timeout, reconnecting as every Trellis client does.
pub async fn connect(url: &str, auth: &NatsAuth) -> Result<async_nats::Client, String> {
    let options = trellis_deployer::connect::options("wasmbus", auth).await?;
    options.connect(url).await.map_err(|e| e.to_string())
}
