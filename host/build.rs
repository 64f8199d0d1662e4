//! Builds the built-in hello example (`src/example/hello.wat`) into a component in `OUT_DIR`,
//! against `src/example/hello.wit` and the WASI 0.2.0 WIT in the repository's `wit/deps`, the
//! way `wasm-tools component new` does. No wasm32 target and no network: only the text.

use std::error::Error;
use std::path::PathBuf;

use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

/// The WIT packages `wasi:http/types@0.2.0` needs, dependencies first.
const WASI: [&str; 7] = [
    "io-0.2.0",
    "clocks-0.2.0",
    "random-0.2.0",
    "filesystem-0.2.0",
    "sockets-0.2.0",
    "cli-0.2.0",
    "http-0.2.0",
];

fn main() -> Result<(), Box<dyn Error>> {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let example = here.join("src/example");
    let deps = here.join("../wit/deps");
    let mut resolve = Resolve::default();
    for package in WASI {
        resolve.push_dir(deps.join(package))?;
        println!("cargo:rerun-if-changed={}", deps.join(package).display());
    }
    let package = resolve.push_file(example.join("hello.wit"))?;
    let world = resolve.select_world(&[package], Some("hello"))?;
    let mut module = wat::parse_file(example.join("hello.wat"))?;
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)?;
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .encode()?;
    std::fs::write(
        PathBuf::from(std::env::var("OUT_DIR")?).join("hello.wasm"),
        component,
    )?;
    println!("cargo:rerun-if-changed=src/example/hello.wat");
    println!("cargo:rerun-if-changed=src/example/hello.wit");
    Ok(())
}
