//! The real wadm (0.21.1, run in-process by `trellis-test-wadm`) as a child process on a test's
//! NATS server, killed on drop. It serves the wadm API for every lattice on that server.

use std::process::{Child, Command, Stdio};

use crate::nats::NatsServer;
use crate::wadm_binary;

pub struct Wadm {
    child: Child,
}

impl Wadm {
    /// Starts wadm; its logs go to stderr, at `warn` unless `RUST_LOG` says otherwise. The
    /// caller waits for its API to answer before relying on it.
    pub fn start(server: &NatsServer) -> Self {
        let log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        let child = Command::new(wadm_binary())
            .arg("--nats-url")
            .arg(server.url())
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting trellis-test-wadm");
        Self { child }
    }

    /// Whether the process is still running (wadm exits when it cannot reach NATS).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("polling wadm").is_none()
    }
}

impl Drop for Wadm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
