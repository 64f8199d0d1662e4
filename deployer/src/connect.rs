//! NATS connections as every Trellis process makes them: credentials and TLS as the operator
//! gives them, and reconnects that come back within a second of the server.

use std::path::PathBuf;
use std::time::Duration;

/// How to authenticate to NATS. Nothing set means an anonymous plain connection.
#[derive(Clone, Debug, Default)]
pub struct NatsAuth {
    /// A `.creds` file (user JWT and nkey seed), as `nsc` writes them.
    pub creds_file: Option<PathBuf>,
    /// A user nkey seed (`SU…`) for servers that list nkey users.
    pub nkey_seed: Option<String>,
    /// A PEM file of CA certificates to trust; also makes TLS required.
    pub tls_ca: Option<PathBuf>,
}

/// The longest wait between two reconnect attempts. async-nats's default backoff grows to 4 s,
/// so a client could rejoin seconds after the server is back; capped here, with jitter so a
/// lattice's hosts do not all knock at once.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// The wait before reconnect attempt `attempts`: none for the first, then doubling from 25 ms
/// up to [`MAX_RECONNECT_DELAY`], each plus up to a quarter more at random.
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let doubled = Duration::from_millis(25).saturating_mul(1 << attempts.min(10));
    let base = doubled.min(MAX_RECONNECT_DELAY);
    base + base.mul_f64(fastrand::f64() / 4.0)
}

/// Connect options named `name` with `auth` applied, a 5 s connect timeout and the bounded
/// reconnect backoff.
pub async fn options(name: &str, auth: &NatsAuth) -> Result<async_nats::ConnectOptions, String> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(reconnect_delay);
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
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_are_quick_and_bounded() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        let worst = MAX_RECONNECT_DELAY + MAX_RECONNECT_DELAY / 4;
        for attempts in 2..100 {
            let delay = reconnect_delay(attempts);
            assert!(
                delay > Duration::ZERO && delay <= worst,
                "{attempts}: {delay:?}"
            );
        }
        assert!(reconnect_delay(2) < Duration::from_millis(130));
    }
}
