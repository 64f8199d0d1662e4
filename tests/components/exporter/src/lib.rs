//! Exports `trellis:example/adder` and `greeter`: the callee of every linking test.
use std::cell::Cell;

use exports::trellis::example::adder::{Color, Guest, GuestCounter, Perms, Point, Shape};
use exports::trellis::example::echo::{Everything, Guest as Echo};
use exports::trellis::example::greeter::Guest as Greeter;

wit_bindgen::generate!({ path: "../../../wit/example", world: "exporter" });

thread_local! {
    static LIVE: Cell<u32> = const { Cell::new(0) };
}

struct Exporter;

impl Guest for Exporter {
    type Counter = Counter;

    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
    fn echo(s: String) -> String {
        s
    }
    fn echo_bytes(b: Vec<u8>) -> Vec<u8> {
        b
    }
    fn flip(p: Point) -> Point {
        Point {
            x: p.y,
            y: p.x,
            label: p.label.chars().rev().collect(),
        }
    }
    fn area(s: Shape) -> Option<f64> {
        match s {
            Shape::Circle(r) => Some(std::f64::consts::PI * r * r),
            Shape::Rect(p) => Some(f64::from(p.x) * f64::from(p.y)),
            Shape::Empty => None,
        }
    }
    fn checked_div(a: i32, b: i32) -> Result<i32, String> {
        a.checked_div(b)
            .ok_or_else(|| format!("cannot divide {a} by {b}"))
    }
    fn maybe_double(x: Option<u32>) -> Option<u32> {
        x.map(|v| v * 2)
    }
    fn toggle(p: Perms, c: Color) -> (Perms, Color) {
        let next = match c {
            Color::Red => Color::Green,
            Color::Green => Color::Blue,
            Color::Blue => Color::Red,
        };
        (p ^ Perms::all(), next)
    }
    fn crash() {
        unreachable!("exporter asked to crash")
    }
    fn live_counters() -> u32 {
        LIVE.get()
    }
}

impl Echo for Exporter {
    fn echo_everything(e: Everything) -> Everything {
        e
    }
}

impl Greeter for Exporter {
    fn greet(name: String) -> String {
        format!("component says hello, {name}")
    }
}

struct Counter(Cell<u64>);

impl GuestCounter for Counter {
    fn new(start: u64) -> Self {
        LIVE.set(LIVE.get() + 1);
        Counter(Cell::new(start))
    }
    fn incr(&self) -> u64 {
        self.0.set(self.0.get() + 1);
        self.0.get()
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        LIVE.set(LIVE.get() - 1);
    }
}

export!(Exporter);
