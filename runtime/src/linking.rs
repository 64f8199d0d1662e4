//! Import resolution and in-process linking.
//!
//! Each import of a component is routed to the WASI baseline (or the runtime's own
//! `wasmcloud:bus/lattice`), else to the target of its explicit link (in-process when that is a
//! component here), else to an enabled plugin, an export of another component of its workload,
//! or the embedder's [`ImportFallback`]; `Inner::plugin_for` (resolve.rs) spells it out.
//!
//! In-process links are made by *composition*: the exporter is plugged into the importer with
//! wac-graph and the result is compiled as one component, so calls cross through wasmtime's
//! fused adapters (no host hop, no `Val` conversion) and every invocation instantiates a fresh
//! exporter alongside its caller, as wasmCloud does. When a link changes, the importer is simply
//! re-linked: the next invocation uses the new composition (or the fallback) without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};
use wasmtime::component::Linker;
use wasmtime::component::types::ComponentItem;

use crate::ctx::InvocationCtx;

/// Where one import of a component goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportRoute {
    Wasi,
    /// `wasmcloud:bus/lattice`, implemented by the runtime: the component chooses its links.
    Bus,
    Plugin(String),
    /// Composed with this component's export: a direct call.
    InProcess(String),
    /// Handed to the embedder's fallback.
    Fallback,
    /// Invoked over wRPC through the embedder's remote invoker.
    Remote,
}

/// The embedder's last resort for imports nothing on this runtime provides.
pub trait ImportFallback: Send + Sync + 'static {
    /// Defines `import` (an instance or root function of type `ty`) for `component_id` in
    /// `linker`. Returns `Ok(false)` when this fallback cannot provide it either.
    fn link(
        &self,
        engine: &wasmtime::Engine,
        linker: &mut Linker<InvocationCtx>,
        component_id: &str,
        import: &str,
        ty: &ComponentItem,
    ) -> anyhow::Result<bool>;
}

/// Where explicit links point. The runtime reads them whenever it resolves a component's
/// imports; an embedder that keeps links itself implements this and calls
/// [`crate::Runtime::relink`] when they change.
pub trait LinkSource: Send + Sync + 'static {
    /// The target of `source`'s link for `interface` (`ns:pkg/iface`, no version), if any.
    fn target(&self, source: &str, interface: &str) -> Option<String>;

    /// Sources with a link to any of `targets`.
    fn sources_linking_to(&self, targets: &[String]) -> Vec<String>;

    /// Whether `target` is served by this runtime's own plugins (the embedder's built-in
    /// providers): a link to it leaves the import on the plugin serving the interface, where a
    /// link to anything else takes the import away from it.
    fn served_by_plugins(&self, _target: &str) -> bool {
        false
    }
}

/// The runtime's own links, for embedders without a link store: (source component,
/// `ns:pkg/iface`) → target component. Links override the implicit rule that components of one
/// workload link to each other.
#[derive(Debug, Default)]
pub struct LinkTable {
    links: RwLock<HashMap<(String, String), String>>,
}

impl LinkTable {
    /// Routes `source`'s imports of `interface` (`ns:pkg/iface`, no version) to `target`.
    pub fn set(&self, source: &str, interface: &str, target: &str) {
        self.links.write().unwrap().insert(
            (source.to_string(), interface.to_string()),
            target.to_string(),
        );
    }

    pub fn remove(&self, source: &str, interface: &str) -> Option<String> {
        self.links
            .write()
            .unwrap()
            .remove(&(source.to_string(), interface.to_string()))
    }
}

impl LinkSource for LinkTable {
    fn target(&self, source: &str, interface: &str) -> Option<String> {
        self.links
            .read()
            .unwrap()
            .get(&(source.to_string(), interface.to_string()))
            .cloned()
    }

    fn sources_linking_to(&self, targets: &[String]) -> Vec<String> {
        let mut sources: Vec<String> = self
            .links
            .read()
            .unwrap()
            .iter()
            .filter(|(_, target)| targets.contains(target))
            .map(|((source, _), _)| source.clone())
            .collect();
        sources.sort();
        sources.dedup();
        sources
    }
}

/// An exporter to plug into an importer: its id, its (already linked) bytes, and which of the
/// importer's imports it satisfies.
pub(crate) struct Plug {
    pub id: String,
    pub bytes: Arc<[u8]>,
    pub imports: Vec<String>,
}

/// Plugs each exporter into `importer` and returns the composed component's bytes. The result
/// imports whatever the importer and the exporters still need, and exports what the importer
/// exports.
pub(crate) fn compose(importer: &[u8], plugs: &[Plug]) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let socket = Package::from_bytes(
        "trellis:importer",
        None,
        importer.to_vec(),
        graph.types_mut(),
    )
    .context("reading the importer for composition")?;
    let socket = graph.register_package(socket)?;
    let instance = graph.instantiate(socket);
    let mut plugged_exports = Vec::new();
    for (index, plug) in plugs.iter().enumerate() {
        let package = Package::from_bytes(
            &format!("trellis:plug{index}"),
            None,
            plug.bytes.to_vec(),
            graph.types_mut(),
        )
        .with_context(|| format!("reading exporter `{}` for composition", plug.id))?;
        let package = graph.register_package(package)?;
        let plug_instance = graph.instantiate(package);
        for import in &plug.imports {
            let export = graph
                .alias_instance_export(plug_instance, import)
                .with_context(|| format!("`{}` does not export `{import}`", plug.id))?;
            graph
                .set_instantiation_argument(instance, import, export)
                .with_context(|| format!("plugging `{}` into `{import}`", plug.id))?;
            plugged_exports.push((import.clone(), export));
        }
    }
    let socket_ty = graph[socket].ty();
    let exports: Vec<String> = graph.types()[socket_ty].exports.keys().cloned().collect();
    // The importer's exports may use types of the plugged interfaces (`use adder.{point}`); the
    // component model only lets an export mention types that are imported or exported, so the
    // plugged interfaces are re-exported, ahead of the exports that use them. Callers only ever see the importer's own exports.
    for (plugged, export) in &plugged_exports {
        if !exports.contains(plugged) {
            graph.export(*export, plugged)?;
        }
    }
    for name in &exports {
        let export = graph.alias_instance_export(instance, name)?;
        graph.export(export, name)?;
    }
    graph
        .encode(EncodeOptions::default())
        .context("encoding the composition")
}
