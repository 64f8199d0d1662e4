//! What the plugins that use NATS share with the host that hands them a connection.

use std::time::Duration;

/// Waits until the server has processed everything sent on `nats` so far, e.g. subscriptions
/// (or unsubscriptions) that other connections are about to rely on. `flush` is not enough: it only writes them out.
/// The server handles a connection's messages in order, so a message published to ourselves
/// coming back proves the earlier ones were handled.
pub async fn registered(nats: &async_nats::Client) -> Result<(), String> {
    use futures::StreamExt as _;
    let inbox = nats.new_inbox();
    let mut echo = nats
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    nats.publish(inbox, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), echo.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the NATS connection closed".into()),
        Err(_) => Err("the NATS server did not catch up within 10 s".into()),
    }
}
