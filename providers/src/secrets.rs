//! `wasmcloud:secrets/store` and `reveal` (`0.1.0-draft`), served from the secrets the embedder
//! granted each component.
//!
//! The plugin never fetches anything: the embedder resolves a component's secret references
//! (the lattice host asks the secrets backends before the component starts) and hands the
//! values in with [`SecretsPlugin::grant`]. A component sees only what was granted to it; any
//! other key is `not-found`. `store.get` hands out an opaque handle and only `reveal` copies the
//! value into the guest, as wasmCloud 1.x hosts do.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use trellis_runtime::{Extensions, InterfaceName, InvocationCtx, Plugin};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use zeroize::Zeroize;

use crate::bound::Bound;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "trellis:providers/secrets-host",
        imports: { default: trappable },
        with: {
            "wasmcloud:secrets/store.secret": super::SecretHandle,
        },
    });
}

use bindings::wasmcloud::secrets::{reveal, store};

/// A secret's value, as the secrets protocol carries it (`{"kind":"String","value":…}`).
/// Zeroed when dropped; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "value")]
pub enum SecretValue {
    String(String),
    Bytes(Vec<u8>),
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretValue::String(_) => f.write_str("string(redacted)"),
            SecretValue::Bytes(_) => f.write_str("bytes(redacted)"),
        }
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        match self {
            SecretValue::String(value) => value.zeroize(),
            SecretValue::Bytes(value) => value.zeroize(),
        }
    }
}

/// Secret name (as the component asks for it) → value.
pub type SecretMap = BTreeMap<String, SecretValue>;

/// Serves each component the secrets granted to it.
#[derive(Default)]
pub struct SecretsPlugin {
    granted: Bound<SecretMap>,
}

impl SecretsPlugin {
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives `component_id`'s next invocations `secrets` (replacing what it had).
    pub fn grant(&self, component_id: &str, secrets: SecretMap) {
        self.granted.insert(component_id, secrets);
    }

    /// Takes back everything granted to `component_id`.
    pub fn revoke(&self, component_id: &str) {
        self.granted.remove(component_id);
    }
}

/// The `secret` resource: one granted secret, by handle.
pub struct SecretHandle(Arc<SecretMap>, String);

/// Per-invocation state: the secrets the invocation started with.
struct Granted(Arc<SecretMap>);

struct SecretsView<'a> {
    table: &'a mut ResourceTable,
    granted: Arc<SecretMap>,
}

struct SecretsData;

impl HasData for SecretsData {
    type Data<'a> = SecretsView<'a>;
}

fn view(ctx: &mut InvocationCtx) -> SecretsView<'_> {
    let (table, extensions) = ctx.table_and_extensions();
    let granted = extensions
        .get_or_insert_with(|| Granted(Arc::default()))
        .0
        .clone();
    SecretsView { table, granted }
}

impl store::Host for SecretsView<'_> {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Resource<SecretHandle>, store::SecretsError>> {
        if !self.granted.contains_key(&key) {
            return Ok(Err(store::SecretsError::NotFound));
        }
        let handle = SecretHandle(self.granted.clone(), key);
        Ok(Ok(self.table.push(handle)?))
    }
}

impl store::HostSecret for SecretsView<'_> {
    fn drop(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<()> {
        self.table.delete(secret)?;
        Ok(())
    }
}

impl reveal::Host for SecretsView<'_> {
    fn reveal(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<store::SecretValue> {
        let SecretHandle(granted, key) = self.table.get(&secret)?;
        Ok(match &granted[key] {
            SecretValue::String(value) => store::SecretValue::String(value.clone()),
            SecretValue::Bytes(value) => store::SecretValue::Bytes(value.clone()),
        })
    }
}

#[async_trait::async_trait]
impl Plugin for SecretsPlugin {
    fn id(&self) -> &str {
        "secrets"
    }

    fn imports(&self) -> Vec<InterfaceName> {
        [
            "wasmcloud:secrets/store@0.1.0-draft",
            "wasmcloud:secrets/reveal@0.1.0-draft",
        ]
        .iter()
        .map(|name| InterfaceName::parse(name).expect("valid name"))
        .collect()
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<InvocationCtx>,
        interface: &InterfaceName,
    ) -> anyhow::Result<()> {
        match interface.interface.as_str() {
            "store" => store::add_to_linker::<_, SecretsData>(linker, view)?,
            "reveal" => reveal::add_to_linker::<_, SecretsData>(linker, view)?,
            other => anyhow::bail!("the secrets plugin does not serve `{other}`"),
        }
        Ok(())
    }

    fn prepare(&self, component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        let granted = self.granted.get(component_id).unwrap_or_default();
        extensions.insert(Granted(granted));
        Ok(())
    }
}
