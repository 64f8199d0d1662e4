//! A `wasi:cli/run` service: announces itself in `/data`, then ticks until `/data/stop` appears.
use std::time::Duration;

fn main() {
    std::fs::write("/data/started", "service started").expect("write /data/started");
    // Bounded: a forgotten service gives up after about 60 s.
    for tick in 0..3000u32 {
        if std::path::Path::new("/data/stop").exists() {
            std::fs::write("/data/stopped", format!("stopped after {tick} ticks")).ok();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::process::exit(3);
}
