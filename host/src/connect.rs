//! The host's NATS connection: URL, credentials and TLS as the operator gives them, with the
//! connection name wasmCloud hosts use.

pub use trellis_deployer::connect::NatsAuth;

/// Connects, bounded by the connect timeout, reconnecting as every Trellis client does; each
/// lost connection is counted in `metrics`.
pub async fn connect(
    url: &str,
    auth: &NatsAuth,
    metrics: std::sync::Arc<crate::metrics::HostMetrics>,
) -> Result<async_nats::Client, String> {
    let options = trellis_deployer::connect::options("wasmbus", auth).await?;
    let options = options.event_callback(move |event| {
        let metrics = metrics.clone();
        async move {
            if matches!(event, async_nats::Event::Disconnected) {
                metrics.nats_disconnected();
            }
        }
    });
    options.connect(url).await.map_err(|e| e.to_string())
}
