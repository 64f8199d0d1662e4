//! Captures what a test process logs, for tests that assert on the hosts' log lines.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything this test process logs, under `filter` (an `EnvFilter` directive), as the
/// `trellis` binary's text format writes it. The first call installs the process's global
/// subscriber; later calls return the same buffer (their `filter` is not applied again).
pub fn captured(filter: &str) -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .try_init()
            .expect("the first subscriber of this test process");
        logs
    })
    .clone()
}

/// The lines captured so far.
pub fn lines(logs: &Mutex<Vec<u8>>) -> Vec<String> {
    String::from_utf8_lossy(&logs.lock().unwrap())
        .lines()
        .map(str::to_string)
        .collect()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
