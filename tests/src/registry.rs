//! A real OCI registry for integration tests: Debian's `docker-registry` (the CNCF distribution
//! registry) on a free loopback port, plain HTTP, storage in a temporary directory, killed on
//! drop. Install it with `apt-get install docker-registry` (`.ci/setup-tests` does).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// User and bcrypt hash (of [`TEST_PASSWORD`], made once with Python's `crypt`) for a registry
/// that requires basic auth.
pub const TEST_USER: &str = "trellis";
pub const TEST_PASSWORD: &str = "trellis-test-password";
const TEST_HTPASSWD: &str = "trellis:$2b$12$tKBvjtH.VvIel/qV3SWxhO1DmINCtVZdUuXvpFHu98murqf.JUubm";

pub struct Registry {
    child: Option<Child>,
    port: u16,
    root: TempDir,
    auth: bool,
}

impl Registry {
    /// Starts an anonymous registry and waits (at most 10 s) until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a registry that requires [`TEST_USER`] / [`TEST_PASSWORD`].
    pub fn start_with_basic_auth() -> Self {
        Self::start_with(true)
    }

    fn start_with(auth: bool) -> Self {
        let root = tempfile::tempdir().expect("temporary registry storage");
        let mut registry = Self {
            child: None,
            port: 0,
            root,
            auth,
        };
        // A port picked free can be taken before the registry binds it: then try another.
        for _ in 0..5 {
            registry.port = free_port();
            if registry.spawn() {
                return registry;
            }
        }
        panic!("docker-registry could not bind a free port in 5 attempts");
    }

    /// `127.0.0.1:PORT`, the registry part of references.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file in which the registry stores a blob with exactly `content`, to damage it on
    /// purpose.
    pub fn blob_file(&self, content: &[u8]) -> PathBuf {
        let blobs = self
            .root
            .path()
            .join("storage/docker/registry/v2/blobs/sha256");
        let entries = |dir: &std::path::Path| {
            std::fs::read_dir(dir)
                .expect("reading the registry storage")
                .map(|entry| entry.expect("a registry storage entry").path())
                .collect::<Vec<_>>()
        };
        entries(&blobs)
            .iter()
            .flat_map(|prefix| entries(prefix))
            .map(|blob| blob.join("data"))
            .find(|data| std::fs::read(data).is_ok_and(|stored| stored == content))
            .expect("no blob with that content in the registry")
    }

    /// Kills the registry; its port then refuses connections. Its storage is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it once more on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "docker-registry did not come back on {}",
            self.address()
        );
    }

    /// Runs the registry on `self.port`; `false` when it exited (the port was taken).
    fn spawn(&mut self) -> bool {
        let config = self.root.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{}\n",
            self.root.path().join("storage").display(),
            self.port
        );
        if self.auth {
            let htpasswd = self.root.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{TEST_HTPASSWD}\n")).expect("writing htpasswd");
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: trellis-tests\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, text).expect("writing the registry configuration");
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry (install it with `apt-get install docker-registry`)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().expect("polling docker-registry").is_some() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Still alive once the port answers: it bound the port itself.
                std::thread::sleep(Duration::from_millis(25));
                if child.try_wait().expect("polling docker-registry").is_none() {
                    self.child = Some(child);
                    return true;
                }
                return false;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("docker-registry did not come up on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("picking a free port")
        .port()
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
