//! The `trellis` subcommands that are plain clients or plumbing of the binary (not a host):
//! `ctl` drives the control interface.

pub mod ctl;
mod table;
