//! What the tests of the `trellis` binary share: running it as a user's shell would, but with
//! none of the test's own `TRELLIS_*` or `RUST_LOG` settings, bounded in time, and reading what
//! it printed.

#![allow(dead_code)] // each test file uses its own part

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The longest one command may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// A `trellis` command with a clean environment, stdin closed, killed if the test drops it.
pub fn trellis() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_trellis"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TRELLIS_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// `trellis SUBCOMMAND …` commands run to their end against one lattice.
pub struct Cli {
    url: String,
    lattice: String,
    subcommand: Vec<String>,
    dir: Option<PathBuf>,
}

impl Cli {
    /// Commands against `lattice` on the NATS server at `url`, starting with `subcommand`.
    pub fn new(url: &str, lattice: &str, subcommand: &[&str]) -> Self {
        Self {
            url: url.to_string(),
            lattice: lattice.to_string(),
            subcommand: subcommand.iter().map(|s| s.to_string()).collect(),
            dir: None,
        }
    }

    /// Runs the commands from `dir` (relative paths resolve there).
    pub fn in_dir(mut self, dir: PathBuf) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Runs `trellis SUBCOMMAND ARGS` to its end (bounded by [`WAIT`]).
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut command = trellis();
        command
            .args(&self.subcommand)
            .args(args)
            .env("TRELLIS_NATS_URL", &self.url)
            .env("TRELLIS_LATTICE", &self.lattice);
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        let what = self.describe(args);
        tokio::time::timeout(WAIT, command.output())
            .await
            .unwrap_or_else(|_| panic!("{what} took over {WAIT:?}"))
            .expect("running trellis")
    }

    /// Its stdout; the command must succeed.
    pub async fn stdout(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{}: {stderr}", self.describe(args));
        String::from_utf8(output.stdout).unwrap()
    }

    /// Its stdout with `-o json`, parsed; the command must succeed.
    pub async fn json(&self, args: &[&str]) -> Value {
        let out = self.stdout(&[args, &["-o", "json"]].concat()).await;
        serde_json::from_str(&out).unwrap_or_else(|error| {
            panic!("{} printed no JSON ({error}): {out}", self.describe(args))
        })
    }

    /// The one line it printed on stderr; the command must fail and print nothing on stdout.
    pub async fn error_line(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        let what = self.describe(args);
        assert!(!output.status.success(), "{what} succeeded");
        assert!(output.stdout.is_empty(), "{what} printed to stdout");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{what}: {stderr}");
        lines[0].to_string()
    }

    fn describe(&self, args: &[&str]) -> String {
        format!("trellis {} {args:?}", self.subcommand.join(" "))
    }
}
