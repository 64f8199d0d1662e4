//! Packs a native provider binary into a provider archive (PAR): a gzip-compressed tar with a
//! signed `claims.jwt` and one `{arch}-{os}.bin` entry for the machine this runs on.
//!
//! Usage: `test-provider-packer <binary> <archive.par.gz> <name>`. The claims are signed by a
//! fresh account key for a fresh service key each time; the archive is only rewritten when the
//! build script sees a newer binary.

use anyhow::{bail, Context as _};
use nkeys::KeyPair;
use provider_archive::ProviderArchive;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [binary, archive, name] = args.as_slice() else {
        bail!("usage: test-provider-packer <binary> <archive.par.gz> <name>");
    };
    let bytes = std::fs::read(binary).with_context(|| format!("reading {binary}"))?;
    let target = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);
    let mut par = ProviderArchive::new(name, "trellis-tests", Some(1), Some("0.1.0".into()));
    par.add_library(&target, &bytes)
        .map_err(|e| anyhow::anyhow!("adding {target}: {e}"))?;
    let issuer = KeyPair::new_account();
    let subject = KeyPair::new_service();
    par.write(archive, &issuer, &subject, true)
        .await
        .map_err(|e| anyhow::anyhow!("writing {archive}: {e}"))?;
    Ok(())
}
