//! `trellis keys gen KIND`: a fresh key pair, as `wash keys gen` prints one: the public key
//! and the seed, one a line. `curve` makes an XKey (curve25519), the kind secrets backends
//! (`secrets-nats-kv`'s transit and encryption keys) take.

use nkeys::{KeyPair, XKey};

#[derive(clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(clap::Subcommand)]
enum KeysCommand {
    /// Print a new key pair's public key and seed.
    Gen {
        #[arg(value_enum)]
        kind: KeyKind,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KeyKind {
    /// An account key (`A…`), e.g. a claims issuer.
    Account,
    /// A module key (`M…`): a component's identity.
    Module,
    /// A server key (`N…`): a host's identity (`--host-seed`).
    Server,
    /// A user key (`U…`).
    User,
    /// An XKey (`X…`, curve25519) for sealing.
    Curve,
}

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    let KeysCommand::Gen { kind } = args.command;
    let (public, seed) = match kind {
        KeyKind::Curve => {
            let key = XKey::new();
            (key.public_key(), key.seed()?)
        }
        other => {
            let key = match other {
                KeyKind::Account => KeyPair::new_account(),
                KeyKind::Module => KeyPair::new_module(),
                KeyKind::Server => KeyPair::new_server(),
                _ => KeyPair::new_user(),
            };
            (key.public_key(), key.seed()?)
        }
    };
    println!("{public}\n{seed}");
    Ok(())
}
