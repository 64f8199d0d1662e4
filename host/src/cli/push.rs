//! `trellis push FILE REF`: publishes a component (`.wasm`) or a provider archive
//! (`.par`/`.par.gz`) to an OCI registry and prints the manifest digest on stdout.

use std::path::PathBuf;

use trellis_host::oci::{self, OciError, PushOptions, RegistryCredential};

#[derive(clap::Args)]
pub struct PushArgs {
    /// The component (.wasm) or provider archive (.par, .par.gz) to publish.
    file: PathBuf,
    /// Where to publish it: `registry/repository:tag` (or `oci://…`).
    reference: String,
    /// Speak plain HTTP to the reference's registry (e.g. a registry on localhost).
    #[arg(long)]
    insecure: bool,
    /// A registry (`host[:port]`) spoken to over plain HTTP (repeatable, or comma-separated).
    #[arg(long, env = "TRELLIS_ALLOWED_INSECURE", value_delimiter = ',')]
    allowed_insecure: Vec<String>,
    /// Registry user (basic auth; with --password).
    #[arg(long, env = "TRELLIS_OCI_USER", requires = "password")]
    user: Option<String>,
    /// Registry password.
    #[arg(
        long,
        env = "TRELLIS_OCI_PASSWORD",
        hide_env_values = true,
        requires = "user"
    )]
    password: Option<String>,
}

pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    // Checked here so that a missing file is not reported as a cache error by the library.
    if let Err(error) = std::fs::metadata(&args.file) {
        anyhow::bail!("cannot read {}: {error}", args.file.display());
    }
    let mut allowed_insecure = args.allowed_insecure;
    if args.insecure {
        allowed_insecure.push(
            oci::parse_reference(&args.reference)?
                .registry()
                .to_string(),
        );
    }
    let credential = args
        .user
        .zip(args.password)
        .map(|(user, password)| RegistryCredential::basic(user, password));
    let anonymous = credential.is_none();
    let options = PushOptions {
        allowed_insecure,
        credential,
    };
    let digest = match oci::push(&args.file, &args.reference, &options).await {
        Ok(digest) => digest,
        Err(OciError::Unauthorized { reference, detail }) if anonymous => anyhow::bail!(
            "`{reference}`: the registry requires credentials ({detail}); pass --user and \
             --password (or set TRELLIS_OCI_USER and TRELLIS_OCI_PASSWORD)"
        ),
        Err(OciError::Unauthorized { reference, detail }) => anyhow::bail!(
            "`{reference}`: the registry refused these credentials ({detail}); check --user and \
             --password"
        ),
        Err(error) => return Err(error.into()),
    };
    println!("{digest}");
    Ok(())
}
