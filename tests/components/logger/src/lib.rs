//! Logs through `wasi:logging/logging` at every level.
use exports::trellis::providers::log_probe::Guest;
use wasi::logging::logging::{Level, log};

wit_bindgen::generate!({ path: "../../../wit", world: "trellis:providers/logging-guest", generate_all });

struct Logger;

impl Guest for Logger {
    fn log_all(context: String, message: String) {
        for level in [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
            Level::Critical,
        ] {
            log(level, &context, &message);
        }
    }
}

export!(Logger);
