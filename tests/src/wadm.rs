//! The real wadm (0.21.1, run in-process by `trellis-test-wadm`) as a child process on a test's
//! NATS server, killed on drop. It serves the wadm API for every lattice on that server.
//! [`WadmClientRun`]: the real wadm client library (`trellis-test-wadm client`) taking one
//! manifest through its life against whatever serves the wadm API.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use tempfile::NamedTempFile;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

use crate::lattice::LATTICE_WAIT;
use crate::nats::NatsServer;
use crate::wadm_binary;

pub struct Wadm {
    child: Child,
    log: NamedTempFile,
}

impl Wadm {
    /// Starts wadm; its logs go to a file, summed up when a test fails, wadm's own at `debug` unless
    /// `RUST_LOG` says otherwise. The caller waits for its API to answer before relying on it.
    pub fn start(server: &NatsServer) -> Self {
        let log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,wadm=debug".into());
        let log = NamedTempFile::new().expect("a file for wadm's log");
        let child = Command::new(wadm_binary())
            .arg("--nats-url")
            .arg(server.url())
            .env("RUST_LOG", log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("wadm's log file"))
            .spawn()
            .expect("starting trellis-test-wadm");
        Self { child, log }
    }

    /// Whether the process is still running (wadm exits when it cannot reach NATS).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("polling wadm").is_none()
    }

    /// What a failing test shows of wadm's side: every warning and error it logged, then its
    /// last `lines` lines, without span fields (wadm's repeat whole events).
    fn log_summary(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let all: Vec<String> = log.lines().map(without_span_fields).collect();
        let problems: Vec<&str> = all
            .iter()
            .map(String::as_str)
            .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
            .collect();
        let end = all[all.len().saturating_sub(lines)..].join("\n");
        format!(
            "wadm's warnings and errors:\n{}\nwadm's last {lines} lines:\n{end}",
            problems.join("\n")
        )
    }
}

/// `span{fields}:other{fields}: message` → `span:other: message`.
fn without_span_fields(line: &str) -> String {
    let mut depth = 0usize;
    line.chars()
        .filter(|c| {
            let outside = depth == 0;
            match c {
                '{' => depth += 1,
                '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            outside && *c != '{'
        })
        .collect()
}

impl Drop for Wadm {
    /// Stops wadm; when a test failed, shows the end of its log first.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_summary(30));
        }

        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `trellis-test-wadm client --pause-before-undeploy`: wadm-client 0.10 (the library `wash app`
/// uses) puts, lists, gets, deploys, watches, undeploys and deletes one manifest, one JSON line
/// per step (`{"step": …, "ok": …}`), and waits before the undeploy until [`Self::resume`].
/// Killed on drop; its stderr goes to the test's.
pub struct WadmClientRun {
    child: tokio::process::Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every step line read so far.
    pub steps: Vec<Value>,
}

impl WadmClientRun {
    pub fn start(server: &NatsServer, lattice: &str, manifest: &Path) -> Self {
        let log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        let mut child = tokio::process::Command::new(wadm_binary())
            .arg("client")
            .args(["--nats-url", &server.url(), "--lattice", lattice])
            .args(["--timeout", &LATTICE_WAIT.as_secs().to_string()])
            .arg("--pause-before-undeploy")
            .arg(manifest)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting trellis-test-wadm client");
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            lines,
            steps: Vec::new(),
        }
    }

    /// Reads step lines up to and including `step`'s, and returns it. Fails the test on a
    /// failed step, on the client exiting first, or when no line comes for twice
    /// [`LATTICE_WAIT`] (the client bounds each of its own waits by one).
    pub async fn until(&mut self, step: &str) -> Value {
        loop {
            let Some(parsed) = self.next_step().await else {
                let status = self
                    .child
                    .wait()
                    .await
                    .expect("waiting for the wadm client");
                panic!(
                    "the wadm client exited ({status}) before step {step}; steps {:?}",
                    self.steps
                );
            };
            if parsed["step"] == step {
                return parsed;
            }
        }
    }

    /// The next step line (recorded in `steps`), or `None` once the client closed its output.
    async fn next_step(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(2 * LATTICE_WAIT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the wadm client printed nothing for too long; steps {:?}",
                    self.steps
                )
            })
            .expect("reading the wadm client's output")?;
        // In the test's captured output: what the client saw, step by step.
        println!("wadm client: {line}");
        let parsed: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the wadm client printed {line:?}: {e}"));
        assert_eq!(parsed["ok"], true, "wadm client step failed: {parsed}");
        self.steps.push(parsed.clone());
        Some(parsed)
    }

    /// Lets a client paused before its undeploy go on.
    pub async fn resume(&mut self) {
        let mut stdin = self.stdin.take().expect("resumed once");
        stdin
            .write_all(b"\n")
            .await
            .expect("resuming the wadm client");
        stdin.flush().await.unwrap();
    }

    /// Reads the remaining steps and waits for the client to exit successfully; returns the
    /// names of every step, in order.
    pub async fn finish(mut self) -> Vec<String> {
        while self.next_step().await.is_some() {}
        let status = tokio::time::timeout(LATTICE_WAIT, self.child.wait())
            .await
            .expect("the wadm client did not exit")
            .expect("waiting for the wadm client");
        assert!(
            status.success(),
            "the wadm client failed ({status}); steps {:?}",
            self.steps
        );
        self.steps
            .iter()
            .map(|s| s["step"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}
