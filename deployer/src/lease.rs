//! At most one active deployer per lattice: a lease in JetStream KV (bucket
//! `trellis_deployer_lease`, key = lattice, entries expire after the lease TTL). The holder
//! renews it with compare-and-set every third of the TTL; the others try to create it at the
//! same pace and take over once it is released (clean stop) or expires (holder died).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio::sync::watch;

pub const BUCKET: &str = "trellis_deployer_lease";

pub struct Lease {
    kv: kv::Store,
    key: String,
    holder: String,
    ttl: Duration,
}

impl Lease {
    pub async fn open(
        js: &jetstream::Context,
        lattice: &str,
        ttl: Duration,
    ) -> Result<Self, crate::store::StoreError> {
        let bucket_error = |e: String| crate::store::StoreError::Bucket(format!("{BUCKET}: {e}"));
        let kv = match js.get_key_value(BUCKET).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: BUCKET.to_string(),
                    history: 1,
                    max_age: ttl,
                    ..Default::default()
                })
                .await
                .map_err(|e| bucket_error(e.to_string()))?,
        };
        Ok(Self {
            kv,
            key: lattice.to_string(),
            holder: uuid::Uuid::new_v4().to_string(),
            ttl,
        })
    }

    /// The lease's revision if it holds our name: a write whose acknowledgement was lost (a
    /// timeout under load) still took effect, and the lease must not be given up for it.
    async fn held(&self) -> Option<u64> {
        match self.kv.entry(&self.key).await {
            Ok(Some(entry))
                if entry.operation == kv::Operation::Put
                    && entry.value.as_ref() == self.holder.as_bytes() =>
            {
                Some(entry.revision)
            }
            _ => None,
        }
    }

    /// Holds or contends for the lease until `stop` turns true, reporting whether this
    /// deployer is the active one on `active`; releases the lease on the way out.
    pub async fn run(self, active: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let renew = self.ttl / 3;
        let mut revision: Option<u64> = None;
        loop {
            let body = self.holder.clone().into_bytes();
            revision = match revision {
                Some(r) => match self.kv.update(&self.key, body.into(), r).await {
                    Ok(next) => Some(next),
                    Err(e) => {
                        let still_ours = self.held().await;
                        if still_ours.is_none() {
                            tracing::warn!("lost the deployer lease: {e}");
                        }
                        still_ours
                    }
                },
                None => match self.kv.create(&self.key, body.into()).await {
                    Ok(r) => Some(r),
                    Err(_) => self.held().await,
                },
            };
            if active.send_replace(revision.is_some()) != revision.is_some() {
                tracing::info!(active = revision.is_some(), "deployer lease changed");
            }
            let asleep = tokio::time::Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(renew) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            // A renewal this late risks the lease: something starves this task.
            let late = asleep.elapsed().saturating_sub(renew);
            if late > renew {
                tracing::warn!(?late, "the deployer lease renewal ran late");
            }
        }
        if revision.is_some()
            && let Err(e) = self.kv.delete(&self.key).await
        {
            tracing::warn!("releasing the deployer lease: {e}");
        }
        active.send_replace(false);
    }
}
