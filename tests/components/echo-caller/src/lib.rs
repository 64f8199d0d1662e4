//! Imports `trellis:example/echo` and forwards its `echo-front` export to it: the caller side of
//! the wRPC interop probe.
use exports::trellis::example::echo_front::Guest;
use trellis::example::echo::{self, Everything};

wit_bindgen::generate!({ path: "../../../wit/example", world: "echo-caller" });

struct EchoCaller;

impl Guest for EchoCaller {
    fn echo_everything(e: Everything) -> Everything {
        echo::echo_everything(&e)
    }
}

export!(EchoCaller);
