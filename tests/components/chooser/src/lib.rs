//! Greets through a link it chooses at run time with `wasmcloud:bus/lattice` (1.0.0 and 2.0.0).
use exports::trellis::chooser::chooser::Guest;
use trellis::example::greeter;
use wasmcloud::bus1_0_0::lattice as lattice_v1;
use wasmcloud::bus2_0_0::lattice as lattice_v2;

wit_bindgen::generate!({
    path: ["../../../wit/example", "../../../wit/deps/bus", "../../../wit/deps/bus-2"],
    inline: "
        package trellis:chooser;

        interface chooser {
            /// Chooses `link-name` with 1.0.0's set-link-name, then greets.
            greet-via: func(link-name: string, name: string) -> string;
            /// Chooses `link-name` with 2.0.0's set-link-name (which checks the link), then greets.
            greet-checked: func(link-name: string, name: string) -> result<string, string>;
            /// Sends the greeting straight to the lattice id `target`, bypassing links.
            greet-at: func(target: string, name: string) -> result<string, string>;
        }

        world chooser-guest {
            import wasmcloud:bus/lattice@1.0.0;
            import wasmcloud:bus/lattice@2.0.0;
            import trellis:example/greeter@0.1.0;
            export chooser;
        }
    ",
    world: "trellis:chooser/chooser-guest",
    generate_all,
});

struct Chooser;

impl Guest for Chooser {
    fn greet_via(link_name: String, name: String) -> String {
        let greeter = lattice_v1::CallTargetInterface::new("trellis", "example", "greeter");
        lattice_v1::set_link_name(&link_name, vec![greeter]);
        greeter::greet(&name)
    }

    fn greet_checked(link_name: String, name: String) -> Result<String, String> {
        let greeter = lattice_v2::CallTargetInterface::new("trellis", "example", "greeter");
        lattice_v2::set_link_name(&link_name, vec![greeter])?;
        Ok(greeter::greet(&name))
    }

    fn greet_at(target: String, name: String) -> Result<String, String> {
        let greeter = lattice_v2::CallTargetInterface::new("trellis", "example", "greeter");
        lattice_v2::set_target_component(&target, greeter, "0.1.0")?;
        Ok(greeter::greet(&name))
    }
}

export!(Chooser);
