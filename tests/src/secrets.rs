//! The real secrets backend, crates.io's `secrets-nats-kv` 0.2.0 (wasmCloud's NATS KV secrets
//! backend, installed by `tests/secrets/build.sh`), as a child process on a test's NATS server,
//! killed on drop; secrets and mappings are put with its own CLI. Also: signing a test guest
//! (the component's key is what the backend maps secrets to), and the greeter provider's key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nkeys::{KeyPair, XKey};

use crate::nats::NatsServer;

/// The subject prefix wasmCloud hosts and the backend use by default.
pub const TOPIC: &str = "wasmcloud.secrets";
/// The backend's name (the `backend` of a secret policy).
pub const BACKEND: &str = "nats-kv";

/// `tests/secrets/bin/secrets-nats-kv`. Not built here: it takes minutes to compile.
pub fn backend_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("secrets/bin/secrets-nats-kv");
    assert!(
        path.exists(),
        "{} is missing: install it with `bash tests/secrets/build.sh` (or `bash .ci/setup-tests`)",
        path.display()
    );
    path
}

pub struct SecretsBackend {
    child: Child,
    nats_address: String,
    transit_seed: String,
}

impl SecretsBackend {
    /// Runs the backend and waits (at most 15 s) until it answers for its key.
    pub async fn start(server: &NatsServer) -> Self {
        let nats_address = server.url();
        let transit_seed = XKey::new().seed().unwrap();
        let child = Command::new(backend_binary())
            .args(["run", "--nats-address", &nats_address])
            .env("TRANSIT_XKEY_SEED", &transit_seed)
            .env("ENCRYPTION_XKEY_SEED", XKey::new().seed().unwrap())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting secrets-nats-kv");
        let backend = Self {
            child,
            nats_address,
            transit_seed,
        };
        let nats = async_nats_039::connect(server.url()).await.unwrap();
        let subject = format!("{TOPIC}.v1alpha1.{BACKEND}.server_xkey");
        let deadline = Instant::now() + Duration::from_secs(15);
        while nats.request(subject.clone(), "".into()).await.is_err() {
            assert!(Instant::now() < deadline, "secrets-nats-kv did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        backend
    }

    /// `secrets-nats-kv put KEY --string VALUE`.
    pub fn put(&self, key: &str, value: &str) {
        self.cli(&["put", key, "--string", value]);
    }

    /// `secrets-nats-kv add-mapping PUBLIC_KEY --secret KEY…`: lets `entity` read `keys`.
    pub fn add_mapping(&self, entity: &str, keys: &[&str]) {
        let mut args = vec!["add-mapping", entity];
        for key in keys {
            args.extend(["--secret", key]);
        }
        self.cli(&args);
    }

    fn cli(&self, args: &[&str]) {
        let output = Command::new(backend_binary())
            .args(args)
            .args(["--nats-address", &self.nats_address])
            .env("TRANSIT_XKEY_SEED", &self.transit_seed)
            .env("RUST_LOG", "warn")
            .output()
            .expect("running secrets-nats-kv");
        assert!(
            output.status.success(),
            "secrets-nats-kv {}: {}",
            args[0],
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for SecretsBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Test guest `guest` signed with a fresh module key into `dir`, by wascap itself (as `wash`
/// signs); returns the signed file and the component's key.
pub fn signed_component(guest: &str, dir: &Path) -> (PathBuf, String) {
    let bytes = std::fs::read(crate::component_path(guest)).unwrap();
    let (issuer, subject) = (KeyPair::new_account(), KeyPair::new_module());
    let claims = wascap::jwt::Claims::<wascap::jwt::Component>::new(
        guest.to_string(),
        issuer.public_key(),
        subject.public_key(),
        None,
        false,
        None,
        None,
        None,
    );
    let signed = wascap::wasm::embed_claims(&bytes, &claims, &issuer).expect("signing");
    let path = dir.join(format!("{guest}_s.wasm"));
    std::fs::write(&path, signed).unwrap();
    (path, subject.public_key())
}

/// The key (claims subject) of test provider `name`'s archive.
pub async fn provider_key(name: &str) -> String {
    let bytes = std::fs::read(crate::provider_archive(name)).unwrap();
    let archive = provider_archive::ProviderArchive::try_load(&bytes)
        .await
        .expect("reading the provider archive");
    archive.claims().expect("the archive's claims").subject
}

/// What `wadm-manifests/secrets.yaml` needs of a backend: its three secrets (fresh values),
/// the reader guest signed (its key mapped to `db_password`), and the greeter provider's key
/// mapped to `api_token` and `link_token`.
pub struct ExampleSecrets {
    pub db_password: String,
    pub api_token: String,
    pub link_token: String,
    /// The signed reader, for the manifest's `reader` image.
    pub signed_reader: PathBuf,
    _dir: tempfile::TempDir,
}

/// The interface the `secret_reader` guest exports.
pub const SECRET_PROBE: &str = "trellis:providers/secret-probe@0.1.0";

impl ExampleSecrets {
    pub async fn put(backend: &SecretsBackend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (signed_reader, reader_key) = signed_component("secret_reader", dir.path());
        let fresh = |what: &str| format!("{what}-{:016x}", fastrand::u64(..));
        let example = Self {
            db_password: fresh("password"),
            api_token: fresh("token"),
            link_token: fresh("link-token"),
            signed_reader,
            _dir: dir,
        };
        backend.put("db_password", &example.db_password);
        backend.put("api_token", &example.api_token);
        backend.put("link_token", &example.link_token);
        backend.add_mapping(&reader_key, &["db_password"]);
        backend.add_mapping(&provider_key("greeter").await, &["api_token", "link_token"]);
        example
    }

    /// Every value, for checking that none reached the logs.
    pub fn values(&self) -> [&str; 3] {
        [&self.db_password, &self.api_token, &self.link_token]
    }

    /// Waits until the deployed example shows every secret where it belongs: the reader
    /// (`{app}-reader`) reveals its password; the greeter provider, asked through `{app}-front`,
    /// holds the token from its HostData and the one from its link (it answers with values
    /// reversed, so that they never cross the lattice as they are). Components are called on
    /// whichever of the hosts' `runtimes` runs them.
    pub async fn check(&self, runtimes: &[&trellis_runtime::Runtime], app: &str) {
        use trellis_runtime::Val;
        let reader = format!("{app}-reader");
        let call = |id: String, interface: &'static str, function: &'static str, arg: String| async move {
            for runtime in runtimes {
                let arg = [Val::String(arg.clone())];
                if let Ok(out) = runtime.invoke(&id, interface, function, &arg, None).await {
                    return Some(out);
                }
            }
            None
        };
        let revealed = crate::lattice::eventually("the reader revealing its secret", || async {
            let out = call(reader.clone(), SECRET_PROBE, "reveal", "db-password".into()).await?;
            match out.as_slice() {
                [Val::Result(Ok(Some(value)))] => match &**value {
                    Val::String(value) => Some(value.clone()),
                    _ => None,
                },
                _ => None,
            }
        })
        .await;
        assert!(revealed == self.db_password, "the reader got another value");
        let front = format!("{app}-front");
        for (probe, value) in [
            ("secret?api-token", &self.api_token),
            ("secret?default/link-token", &self.link_token),
        ] {
            let reversed: String = value.chars().rev().collect();
            crate::lattice::eventually(&format!("the provider answering {probe}"), || async {
                let front = front.clone();
                let out = call(front, "trellis:example/front@0.1.0", "greet", probe.into()).await?;
                matches!(out.as_slice(), [Val::String(answer)] if *answer == reversed).then_some(())
            })
            .await;
        }
    }
}
