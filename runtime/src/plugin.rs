//! The plugin seam: every built-in capability plugs into one lifecycle.
//!
//! - `start` / `stop`, once per runtime, for host-wide resources (listeners, connections).
//! - `bind` / `unbind`, once per component that uses the plugin, with that component's config;
//!   a plugin may refuse a binding with a clear reason, which fails the component's start.
//!   `rebind` when that config changes while the component runs.
//! - `add_to_linker`, once per (component, interface): adds the host functions.
//! - `prepare`, once per invocation: puts the plugin's per-call state into the store.

use std::collections::BTreeMap;

use wasmtime::component::Linker;

use crate::ctx::{Extensions, InvocationCtx};
use crate::interface::InterfaceName;
use crate::running::ComponentHandle;

/// A capability implemented inside the host.
#[async_trait::async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// A short stable name, e.g. `keyvalue`.
    fn id(&self) -> &str;

    /// Interfaces this plugin implements for component imports. A pattern without a version
    /// covers every version of that interface.
    fn imports(&self) -> Vec<InterfaceName>;

    /// Component exports this plugin consumes (e.g. an HTTP server calling
    /// `wasi:http/incoming-handler`).
    fn exports(&self) -> Vec<InterfaceName> {
        Vec::new()
    }

    /// Whether this plugin stands in for the targets of links rather than serving the
    /// interfaces itself: it forwards each call to where the component's link for the
    /// interface goes. Linked imports go to a forwarding plugin, unlinked ones to a serving
    /// plugin first (see `Inner::plugin_for` for the whole precedence).
    fn forwards(&self) -> bool {
        false
    }

    async fn start(&self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn stop(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// A component starts using this plugin. Return an error to refuse it. By default there is
    /// nothing to remember: plugins that decide per call (by the caller's links, say) keep it.
    async fn bind(&self, _binding: &Binding) -> anyhow::Result<()> {
        Ok(())
    }

    /// The component stopped; release what `bind` set up for it.
    async fn unbind(&self, _component_id: &str) {}

    /// The config of a bound component changed (its imports and exports did not). Unbinds and
    /// binds again unless the plugin keeps what did not change (live subscriptions, say, which
    /// would miss messages in between).
    async fn rebind(&self, binding: &Binding) -> anyhow::Result<()> {
        self.unbind(&binding.component_id).await;
        self.bind(binding).await
    }

    /// Adds host functions for `interface` (one of [`Plugin::imports`]) to the component's linker.
    fn add_to_linker(
        &self,
        linker: &mut Linker<InvocationCtx>,
        interface: &InterfaceName,
    ) -> anyhow::Result<()>;

    /// Per-invocation state for `component_id`, stored in [`Extensions`].
    fn prepare(&self, _component_id: &str, _extensions: &mut Extensions) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What a plugin learns when a component binds to it.
pub struct Binding {
    pub component_id: String,
    pub workload: String,
    /// The component's imports this plugin satisfies.
    pub imports: Vec<InterfaceName>,
    /// The component's exports this plugin consumes.
    pub exports: Vec<InterfaceName>,
    /// Configuration for this plugin from the workload's host interfaces.
    pub config: BTreeMap<String, String>,
    /// A way to invoke the component (for plugins that consume exports).
    pub component: ComponentHandle,
}
