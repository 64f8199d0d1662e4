//! One-line progress for the phases of `trellis up` and `trellis dev` (start nats-server, the
//! host, the deployer; build; deploy; swap). On a terminal each phase is a spinner with its
//! elapsed time, replaced by one line with the timing when it ends; otherwise (a pipe, a log
//! file, a test) each phase is one plain line `trellis up: …` when it ends.

use std::fmt::Display;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes: stdout, as a spinner or as plain lines.
#[derive(Clone)]
pub struct Progress {
    /// `trellis up`, `trellis dev`: the start of each plain line.
    prefix: &'static str,
    terminal: bool,
}

/// One phase under way; [`Phase::done`] or [`Phase::failed`] ends it with its timing.
pub struct Phase {
    progress: Progress,
    spinner: Option<ProgressBar>,
    started: Instant,
}

impl Progress {
    pub fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            terminal: std::io::stdout().is_terminal(),
        }
    }

    /// Whether stdout is a terminal (spinners, colours).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// Prints one line, ignoring a closed stdout (`trellis up | head` must still stop cleanly on
    /// Ctrl-C rather than panic on its last lines).
    pub fn say(&self, line: impl Display) {
        let mut out = std::io::stdout().lock();
        let _ = if self.terminal {
            writeln!(out, "{line}")
        } else {
            writeln!(out, "{}: {line}", self.prefix)
        };
    }

    /// Prints text as it is (a compiler's output), on a terminal or not.
    pub fn raw(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    /// Starts a phase: a spinner saying `what` on a terminal, nothing otherwise (the plain line
    /// comes when it ends, with the timing).
    pub fn phase(&self, what: impl Into<String>) -> Phase {
        let spinner = self.terminal.then(|| {
            let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                spinner.set_style(style);
            }
            spinner.set_message(what.into());
            spinner.enable_steady_tick(Duration::from_millis(100));
            spinner
        });
        Phase {
            progress: self.clone(),
            spinner,
            started: Instant::now(),
        }
    }
}

impl Phase {
    /// Ends the phase with `line` and its timing (`✓ line (1.2 s)` on a terminal); returns how
    /// long it took.
    pub fn done(self, line: impl Display) -> Duration {
        self.end("✓", line)
    }

    /// Ends the phase as failed (`✗ line (1.2 s)` on a terminal).
    pub fn failed(self, line: impl Display) -> Duration {
        self.end("✗", line)
    }

    fn end(mut self, mark: &str, line: impl Display) -> Duration {
        let took = self.started.elapsed();
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
            self.progress
                .say(format_args!("{mark} {line} ({})", human(took)));
        } else {
            self.progress.say(format_args!("{line} ({})", human(took)));
        }
        took
    }
}

impl Drop for Phase {
    /// A phase dropped unfinished (Ctrl-C during a build) clears its spinner line.
    fn drop(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
    }
}

/// `85 ms`, `1.2 s`, `2 min 5 s`.
pub fn human(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", duration.as_secs_f64()),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_would_say_them() {
        assert_eq!(human(Duration::from_millis(85)), "85 ms");
        assert_eq!(human(Duration::from_millis(1_249)), "1.2 s");
        assert_eq!(human(Duration::from_secs(125)), "2 min 5 s");
    }
}
