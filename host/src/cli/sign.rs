//! `trellis sign COMPONENT`: embeds signed claims in a component (see [`crate::sign`]) and
//! prints its public key, the identity secrets backends map secrets to.
//!
//! Keys not given are made once and kept, as `wash` keeps its own: the component's module
//! key in `{keys}/{name}_module.nk` (by its claims name) and the issuing account's in `{keys}/trellis_account.nk`,
//! so a rebuilt component signed again keeps its identity (and the secrets mapped to it).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use nkeys::KeyPair;

use trellis_host::sign::sign_component;

#[derive(clap::Args)]
pub struct SignArgs {
    /// The component (.wasm) to sign.
    component: PathBuf,
    /// Where to write the signed component (default: next to it, `NAME_s.wasm`, as wash does).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The name in the claims (default: the file's stem).
    #[arg(long)]
    name: Option<String>,
    /// The issuer's account seed (`SA…`); default: the kept account key.
    #[arg(long, env = "TRELLIS_ISSUER_SEED", hide_env_values = true)]
    issuer: Option<String>,
    /// The component's module seed (`SM…`); default: its kept module key.
    #[arg(long, env = "TRELLIS_SUBJECT_SEED", hide_env_values = true)]
    subject: Option<String>,
    /// Where kept keys live (default: `$XDG_DATA_HOME/trellis/keys` or
    /// `~/.local/share/trellis/keys`).
    #[arg(long, env = "TRELLIS_KEYS_DIR")]
    keys_dir: Option<PathBuf>,
}

pub fn run(args: SignArgs) -> anyhow::Result<()> {
    let stem = args
        .component
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "component".into());
    let name = args.name.unwrap_or_else(|| stem.clone());
    let keys = args.keys_dir.unwrap_or_else(default_keys_dir);
    let issuer = key(
        args.issuer,
        &keys.join("trellis_account.nk"),
        KeyPair::new_account,
    )?;
    let subject = key(
        args.subject,
        &keys.join(format!("{name}_module.nk")),
        KeyPair::new_module,
    )?;
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("reading {}", args.component.display()))?;
    let signed = without_stderr(|| sign_component(&bytes, &name, &issuer, &subject))?;
    let output = args
        .output
        .unwrap_or_else(|| args.component.with_file_name(format!("{stem}_s.wasm")));
    std::fs::write(&output, signed).with_context(|| format!("writing {}", output.display()))?;
    eprintln!(
        "signed {} as `{name}` (issuer {}); its key:",
        output.display(),
        issuer.public_key()
    );
    println!("{}", subject.public_key());
    Ok(())
}

/// Runs `f` with standard error pointed at /dev/null: wascap 0.16.2's `embed_claims` prints
/// three debugging lines there ("BEFORE STRIP!", …) that would read as this command's own.
fn without_stderr<T>(f: impl FnOnce() -> T) -> T {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return f();
    };
    use std::os::fd::AsRawFd as _;
    // SAFETY: plain descriptor calls on descriptors this function owns or that stay open (2);
    // nothing else writes to standard error while `trellis sign` signs.
    let saved = unsafe { libc::dup(2) };
    if saved < 0 {
        return f();
    }
    unsafe { libc::dup2(null.as_raw_fd(), 2) };
    let result = f();
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    result
}

/// The key from `seed`, else the one kept in `path`, else a new one kept there.
fn key(seed: Option<String>, path: &Path, new: fn() -> KeyPair) -> anyhow::Result<KeyPair> {
    let seed = match seed {
        Some(seed) => seed,
        None if path.exists() => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => {
            let key = new();
            keep(path, &key.seed()?)?;
            return Ok(key);
        }
    };
    KeyPair::from_seed(seed.trim()).with_context(|| format!("the seed for {}", path.display()))
}

/// Writes `seed` to `path`, readable by its owner only.
fn keep(path: &Path, seed: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(seed.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn default_keys_dir() -> PathBuf {
    crate::up::default_data_dir().join("keys")
}
