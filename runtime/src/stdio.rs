//! A component's stdout and stderr as the host's log: each line one `tracing` event at `info`
//! (stdout) or `warn` (stderr), target `trellis::component`, with the component's id, so a
//! service's output is found with the rest of the host's and filtered like it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// The longest line logged as one; a longer one is cut into pieces of this size.
const MAX_LINE: usize = 8 << 10;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Stdio {
    Stdout,
    Stderr,
}

/// One of a component's output streams, logged line by line.
pub(crate) struct LogStream {
    pub component: Arc<str>,
    pub stream: Stdio,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            component: self.component.clone(),
            stream: self.stream,
            pending: Vec::new(),
        })
    }
}

struct LineWriter {
    component: Arc<str>,
    stream: Stdio,
    /// The start of a line not ended yet.
    pending: Vec<u8>,
}

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let component = &*self.component;
        match self.stream {
            Stdio::Stdout => {
                tracing::info!(target: "trellis::component", component, stream = "stdout", "{line}")
            }
            Stdio::Stderr => {
                tracing::warn!(target: "trellis::component", component, stream = "stderr", "{line}")
            }
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
        while self.pending.len() >= MAX_LINE {
            let piece: Vec<u8> = self.pending.drain(..MAX_LINE).collect();
            self.emit(&piece);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    /// A last line without its newline is still output.
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
    }
}
