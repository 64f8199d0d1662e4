//! A provider's child process: cleared environment (only `RUST_LOG` and `OTEL_*` pass), the
//! HostData line on stdin, stdout and stderr captured into the host's logs tagged with the
//! provider ID, its own process group, and `PR_SET_PDEATHSIG` so that it dies with the host
//! even when the host crashes.

use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// A running provider process.
pub struct ProviderProcess {
    child: tokio::process::Child,
    pid: i32,
}

impl ProviderProcess {
    /// Starts `path`, writes `stdin_line` to its stdin and closes it.
    pub fn spawn(path: &Path, stdin_line: Vec<u8>, provider_id: &str) -> io::Result<Self> {
        let mut command = Command::new(path);
        command
            .env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| {
                name.to_str()
                    .is_some_and(|n| n == "RUST_LOG" || n.starts_with("OTEL_"))
            }))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // calls (prctl, getppid, _exit).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The host died before the death signal was armed.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| io::Error::other("the provider exited at once"))?;
        if let Some(mut stdin) = child.stdin.take() {
            tokio::spawn(async move {
                // A provider that exits before reading shows up as an exit, not here.
                let _ = stdin.write_all(&stdin_line).await;
                let _ = stdin.shutdown().await;
            });
        }
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(forward(stdout, provider_id.to_string(), "stdout"));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(forward(stderr, provider_id.to_string(), "stderr"));
        }
        Ok(Self { child, pid })
    }

    /// The process ID (also its process group ID).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Resolves when the process exits.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// SIGKILLs the whole process group (the provider and anything it started), then reaps.
    pub async fn kill(&mut self) {
        // SAFETY: plain syscall; the group is ours until the provider is reaped below.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
        let _ = self.child.kill().await;
    }
}

/// Logs each line of a provider's output, tagged with its ID and stream.
async fn forward(stream: impl AsyncRead + Unpin, provider: String, name: &'static str) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: super::host_data::OUTPUT_TARGET, provider = %provider, stream = name, "{line}");
    }
}
