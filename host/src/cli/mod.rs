//! The `trellis` subcommands that are plain clients or plumbing of the binary (not a host):
//! `ctl` drives the control interface, `push` publishes to an OCI registry, `new` writes a
//! component project, `sign` embeds claims in one, `keys` makes key pairs, `completions` prints shell completions; [`logs`] sets up the log output,
//! [`progress`] shows the phases of `up` and `dev`, [`exports`] reads a component's export
//! types.

pub mod ctl;
pub mod exports;
pub mod keys;
pub mod logs;
pub mod new;
pub mod progress;
pub mod push;
pub mod sign;
mod table;

/// `trellis completions SHELL`: the completion script for `command` on stdout.
pub fn completions(shell: clap_complete::Shell, mut command: clap::Command) {
    clap_complete::generate(shell, &mut command, "trellis", &mut std::io::stdout());
}
