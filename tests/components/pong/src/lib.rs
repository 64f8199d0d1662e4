//! Exports `trellis:example/pong`: the far end of the wRPC path benchmark.
use exports::trellis::example::pong::Guest;

wit_bindgen::generate!({ path: "../../../wit/example", world: "pong-server" });

struct Pong;

impl Guest for Pong {
    fn ping(n: u64) -> u64 {
        n.wrapping_add(1)
    }
}

export!(Pong);
