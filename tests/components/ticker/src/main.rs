//! A service (`wasi:cli/run`): every `EVERY_MS` milliseconds (default 1000) it calls
//! `adder.add(tick, 1)` on whatever its link points at and prints the answer; after `TICKS`
//! ticks (default: a day's worth) it exits with code `EXIT_CODE` (default 0).
use std::time::Duration;

use trellis::example::adder;

wit_bindgen::generate!({ path: "../../../wit/example", world: "ticker" });

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let every = Duration::from_millis(setting("EVERY_MS", 1000));
    let ticks = setting("TICKS", 86_400) as u32;
    let code = setting("EXIT_CODE", 0) as i32;
    println!("ticker starting: {ticks} ticks, one every {every:?}");
    for tick in 1..=ticks {
        println!("tick {tick}: add({tick}, 1) = {}", adder::add(tick, 1));
        std::thread::sleep(every);
    }
    eprintln!("ticker done after {ticks} ticks, exiting with code {code}");
    std::process::exit(code);
}
