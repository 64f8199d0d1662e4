//! The `trellis` subcommands that are plain clients or plumbing of the binary (not a host):
//! `ctl` drives the control interface, `push` publishes to an OCI registry, `completions`
//! prints shell completions, [`logs`] sets up the log output.

pub mod ctl;
pub mod logs;
pub mod push;
mod table;

/// `trellis completions SHELL`: the completion script for `command` on stdout.
pub fn completions(shell: clap_complete::Shell, mut command: clap::Command) {
    clap_complete::generate(shell, &mut command, "trellis", &mut std::io::stdout());
}
