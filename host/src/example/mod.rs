//! The built-in hello example `trellis up` runs when no manifest is named, so that an installed
//! binary works from any directory: a wasi:http component (`hello.wat`, made a component by
//! `build.rs`) and its manifest (`hello.yaml`), both compiled into the binary and written to a
//! temporary directory for the host to load while `up` runs.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The component: `hello from Trellis at PATH` for every request.
pub const COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hello.wasm"));

/// Its manifest, with the component at `file://./hello.wasm` next to it.
pub const MANIFEST: &str = include_str!("hello.yaml");

/// Where the manifest has the built-in HTTP server listen.
pub const ADDRESS: &str = "127.0.0.1:8080";

/// Writes the component and its manifest (served on `address`) into `dir`; returns the
/// manifest's path.
pub fn write_to(dir: &Path, address: &str) -> anyhow::Result<PathBuf> {
    let component = dir.join("hello.wasm");
    std::fs::write(&component, COMPONENT)
        .with_context(|| format!("writing {}", component.display()))?;
    let manifest = dir.join("hello.yaml");
    let text = MANIFEST.replace(
        &format!("address: {ADDRESS}"),
        &format!("address: {address}"),
    );
    std::fs::write(&manifest, text).with_context(|| format!("writing {}", manifest.display()))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_exports_the_http_handler_and_the_manifest_is_valid() {
        let engine = wasmtime::Engine::default();
        let component = wasmtime::component::Component::new(&engine, COMPONENT).unwrap();
        let exports: Vec<String> = component
            .component_type()
            .exports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        assert_eq!(exports, ["wasi:http/incoming-handler@0.2.0"]);
        let parsed = trellis_deployer::manifest::parse(MANIFEST.as_bytes()).unwrap();
        assert_eq!(parsed.manifest.name, "hello");
        assert!(MANIFEST.contains(&format!("address: {ADDRESS}")));
    }
}
