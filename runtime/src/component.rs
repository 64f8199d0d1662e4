//! Loading components: where the bytes come from, compiling them, and what they import/export.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::engine::Engine;
use crate::interface::InterfaceName;

/// Where a component's bytes come from.
#[derive(Clone, Debug)]
pub enum ComponentSource {
    Bytes(Arc<[u8]>),
    File(PathBuf),
}

impl ComponentSource {
    /// Parses an image reference. Only `file://` is understood here; registries belong to the host.
    pub fn from_reference(reference: &str) -> anyhow::Result<Self> {
        match reference.strip_prefix("file://") {
            Some(path) if !path.is_empty() => Ok(Self::File(PathBuf::from(path))),
            _ => bail!("unsupported component reference `{reference}`: expected file:///path"),
        }
    }

    pub async fn read(&self) -> anyhow::Result<Arc<[u8]>> {
        match self {
            Self::Bytes(bytes) => Ok(bytes.clone()),
            Self::File(path) => Ok(tokio::fs::read(path)
                .await
                .with_context(|| format!("reading component file {}", path.display()))?
                .into()),
        }
    }
}

/// What kind of wasm binary some bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryKind {
    Component,
    CoreModule,
}

/// Whether `bytes` are a core module (a preview-1 command, say) rather than a component.
pub fn is_core_module(bytes: &[u8]) -> bool {
    matches!(binary_kind(bytes), Ok(BinaryKind::CoreModule))
}

pub(crate) fn binary_kind(bytes: &[u8]) -> anyhow::Result<BinaryKind> {
    // Preamble: `\0asm`, then a 16-bit version and a 16-bit layer (0 = core, 1 = component).
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 0, 0]) => Ok(BinaryKind::CoreModule),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(BinaryKind::Component),
        _ => bail!("not a WebAssembly binary (bad preamble)"),
    }
}

/// A compiled component and its interface, by WIT names.
#[derive(Clone)]
pub struct LoadedComponent {
    pub(crate) bytes: Arc<[u8]>,
    pub(crate) component: Component,
    pub digest: [u8; 32],
    /// Imported instances (`ns:pkg/iface@ver`) and root functions, in declaration order.
    pub imports: Vec<String>,
    /// Exported instances with their function names; root functions under the empty name.
    pub exports: Vec<(String, Vec<String>)>,
}

impl LoadedComponent {
    /// Validates and compiles (cached by digest) a component.
    pub fn compile(engine: &Engine, bytes: Arc<[u8]>) -> anyhow::Result<Self> {
        if binary_kind(&bytes)? != BinaryKind::Component {
            bail!("expected a component, found a core module");
        }
        let (component, digest) = engine.compile(&bytes).context("compiling component")?;
        let ty = component.component_type();
        let wasm = engine.wasmtime();
        let imports = ty.imports(wasm).map(|(name, _)| name.to_string()).collect();
        let mut exports = Vec::new();
        let mut root = Vec::new();
        for (name, item) in ty.exports(wasm) {
            match item.ty {
                ComponentItem::ComponentInstance(instance) => exports.push((
                    name.to_string(),
                    instance
                        .exports(wasm)
                        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
                        .map(|(func, _)| func.to_string())
                        .collect(),
                )),
                ComponentItem::ComponentFunc(_) => root.push(name.to_string()),
                _ => {}
            }
        }
        if !root.is_empty() {
            exports.push((String::new(), root));
        }
        Ok(Self {
            bytes,
            component,
            digest,
            imports,
            exports,
        })
    }

    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }

    /// Whether this component picks its link targets while it runs (`wasmcloud:bus/lattice`).
    pub fn chooses_links(&self) -> bool {
        self.imports
            .iter()
            .filter_map(|import| InterfaceName::parse(import))
            .any(|import| crate::link_names::is_bus_lattice(&import))
    }

    /// Whether this component exports the instance `name`.
    pub fn exports_instance(&self, name: &str) -> bool {
        self.exports.iter().any(|(export, _)| export == name)
    }

    /// Whether it exports `wasi:cli/run` (0.2.x): it can run as a service.
    pub fn exports_run(&self) -> bool {
        self.exports
            .iter()
            .any(|(export, _)| export.starts_with("wasi:cli/run@0.2."))
    }
}
