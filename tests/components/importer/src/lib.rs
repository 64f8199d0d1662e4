//! Imports `adder` and `greeter` and forwards its own `front` export to them.
use exports::trellis::example::front::Guest;
use trellis::example::adder::{self, Color, Counter, Perms, Point, Shape};
use trellis::example::greeter;

wit_bindgen::generate!({ path: "../../../wit/example", world: "importer" });

struct Importer;

impl Guest for Importer {
    fn add(a: u32, b: u32) -> u32 {
        adder::add(a, b)
    }
    fn echo(s: String) -> String {
        adder::echo(&s)
    }
    fn echo_bytes(b: Vec<u8>) -> Vec<u8> {
        adder::echo_bytes(&b)
    }
    fn flip(p: Point) -> Point {
        adder::flip(&p)
    }
    fn area(s: Shape) -> Option<f64> {
        adder::area(&s)
    }
    fn checked_div(a: i32, b: i32) -> Result<i32, String> {
        adder::checked_div(a, b)
    }
    fn maybe_double(x: Option<u32>) -> Option<u32> {
        adder::maybe_double(x)
    }
    fn toggle(p: Perms, c: Color) -> (Perms, Color) {
        adder::toggle(p, c)
    }
    fn greet(name: String) -> String {
        greeter::greet(&name)
    }
    fn crash_exporter() {
        adder::crash()
    }
    fn count(start: u64, n: u32) -> u64 {
        let counter = Counter::new(start);
        let mut last = start;
        for _ in 0..n {
            last = counter.incr();
        }
        last
    }
    fn live_after_drops(n: u32) -> u32 {
        let counters: Vec<Counter> = (0..n).map(|i| Counter::new(u64::from(i))).collect();
        drop(counters);
        adder::live_counters()
    }
    fn bench_add(iters: u32) -> u64 {
        (0..iters).map(|i| u64::from(adder::add(i, 1))).sum()
    }
    fn bench_echo(iters: u32, size: u32) -> u64 {
        let s = "x".repeat(size as usize);
        (0..iters).map(|_| adder::echo(&s).len() as u64).sum()
    }
    fn bench_bytes(iters: u32, size: u32) -> u64 {
        let b = vec![7u8; size as usize];
        (0..iters).map(|_| adder::echo_bytes(&b).len() as u64).sum()
    }
}

export!(Importer);
