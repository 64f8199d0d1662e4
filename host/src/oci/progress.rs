//! What a pull shows while a layer downloads: a bar for an operator at a terminal, a line at
//! the start and at the end for the logs.

use std::io::IsTerminal as _;
use std::time::Instant;

/// Download progress: a bar when stderr is a terminal, log lines otherwise.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    reference: String,
    digest: String,
    started: Instant,
}

impl Progress {
    pub(super) fn start(reference: &str, digest: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(format!("pulling {reference}"));
            bar
        });
        if bar.is_none() {
            tracing::info!(reference, digest, bytes = total, "pulling OCI layer");
        }
        Self {
            bar,
            reference: reference.to_string(),
            digest: digest.to_string(),
            started: Instant::now(),
        }
    }

    pub(super) fn advance(&self, bytes: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes as u64);
        }
    }

    pub(super) fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::info!(
            reference = %self.reference,
            digest = %self.digest,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "pulled OCI layer"
        );
    }
}
