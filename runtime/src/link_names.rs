//! `wasmcloud:bus/lattice` (1.0.0 and 2.0.0): a component chooses, for the rest of its
//! invocation, which of its named links (or which lattice target) its calls to an interface
//! follow.
//!
//! The choice is kept in the invocation's [`RemoteCall`], where the embedder's invoker reads it
//! when it resolves each call's target. A component that imports this interface is never
//! composed in-process with a link target (see `Runtime::link`): composition fixes the target
//! when the component is linked, and this choice is made while it runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::ctx::InvocationCtx;
use crate::interface::InterfaceName;
use crate::remote::{RemoteCall, RemoteCtx};

mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/bus",
        world: "wasmcloud:bus/imports@1.0.0",
        imports: { default: trappable },
        with: { "wasmcloud:bus/lattice.call-target-interface": super::CallTargetInterface },
    });
}

mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/bus-2",
        world: "wasmcloud:bus/imports@2.0.0",
        imports: { default: trappable },
        with: { "wasmcloud:bus/lattice.call-target-interface": super::CallTargetInterface },
    });
}

/// Whether `import` is one of the `wasmcloud:bus/lattice` versions implemented here.
pub(crate) fn is_bus_lattice(import: &InterfaceName) -> bool {
    import.namespace == "wasmcloud"
        && import.package == "bus"
        && import.interface == "lattice"
        && matches!(import.version.as_deref(), Some("1.0.0") | Some("2.0.0"))
}

/// Adds the host functions of `import` (one for which [`is_bus_lattice`] holds).
pub(crate) fn add_to_linker(
    linker: &mut Linker<InvocationCtx>,
    import: &InterfaceName,
) -> anyhow::Result<()> {
    match import.version.as_deref() {
        Some("1.0.0") => v1::wasmcloud::bus::lattice::add_to_linker::<_, Bus>(linker, bus)?,
        _ => v2::wasmcloud::bus::lattice::add_to_linker::<_, Bus>(linker, bus)?,
    }
    Ok(())
}

/// An interface named by the component, as `ns:pkg/iface` (no version: links carry none).
pub struct CallTargetInterface(String);

/// Which link (or target) each interface's calls follow, by `ns:pkg/iface`.
#[derive(Clone, Debug, Default)]
pub struct LinkSelection {
    link_names: BTreeMap<String, String>,
    targets: BTreeMap<String, String>,
}

impl LinkSelection {
    /// The link name chosen for `interface` (`ns:pkg/iface`), if the component chose one.
    pub fn link_name(&self, interface: &str) -> Option<&str> {
        self.link_names.get(interface).map(String::as_str)
    }

    /// The lattice id chosen for `interface`, bypassing links, if the component chose one.
    pub fn target(&self, interface: &str) -> Option<&str> {
        self.targets.get(interface).map(String::as_str)
    }
}

struct Bus;

impl HasData for Bus {
    type Data<'a> = BusView<'a>;
}

struct BusView<'a> {
    table: &'a mut ResourceTable,
    remote: Option<&'a mut RemoteCtx>,
}

fn bus(ctx: &mut InvocationCtx) -> BusView<'_> {
    BusView {
        table: &mut ctx.table,
        remote: ctx.remote.as_mut(),
    }
}

impl BusView<'_> {
    fn new_interface(
        &mut self,
        namespace: String,
        package: String,
        interface: String,
    ) -> wasmtime::Result<Resource<CallTargetInterface>> {
        let name = format!("{namespace}:{package}/{interface}");
        Ok(self.table.push(CallTargetInterface(name))?)
    }

    fn drop_interface(&mut self, rep: Resource<CallTargetInterface>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }

    fn interface_names(
        &self,
        interfaces: &[Resource<CallTargetInterface>],
    ) -> wasmtime::Result<Vec<String>> {
        interfaces
            .iter()
            .map(|interface| Ok(self.table.get(interface)?.0.clone()))
            .collect()
    }

    /// The invocation's call context; `None` when the runtime has no lattice to choose from.
    fn call(&mut self) -> Option<&mut RemoteCall> {
        self.remote.as_deref_mut().map(|remote| &mut remote.call)
    }

    /// Records `name` for `interfaces`; with `checked`, first asks the invoker whether the
    /// caller has such links.
    fn select_link_name(
        &mut self,
        name: String,
        interfaces: Vec<Resource<CallTargetInterface>>,
        checked: bool,
    ) -> wasmtime::Result<Result<(), String>> {
        let interfaces = self.interface_names(&interfaces)?;
        let Some(remote) = self.remote.as_deref_mut() else {
            return Ok(Err(format!(
                "link `{name}` cannot be chosen: this runtime has no lattice, every link is \
                 in-process"
            )));
        };
        if checked {
            for interface in &interfaces {
                if let Err(reason) =
                    remote
                        .invoker
                        .check_link(&remote.call.caller, &name, interface)
                {
                    return Ok(Err(reason));
                }
            }
        }
        let selection = Arc::make_mut(&mut remote.call.selection);
        for interface in interfaces {
            selection.link_names.insert(interface, name.clone());
        }
        Ok(Ok(()))
    }
}

impl v1::wasmcloud::bus::lattice::Host for BusView<'_> {
    fn set_link_name(
        &mut self,
        name: String,
        interfaces: Vec<Resource<CallTargetInterface>>,
    ) -> wasmtime::Result<()> {
        // 1.0.0 has no error channel: a choice nothing can honour shows up when a call is made.
        if let Err(reason) = self.select_link_name(name, interfaces, false)? {
            tracing::debug!("set-link-name ignored: {reason}");
        }
        Ok(())
    }
}

impl v1::wasmcloud::bus::lattice::HostCallTargetInterface for BusView<'_> {
    fn new(
        &mut self,
        namespace: String,
        package: String,
        interface: String,
    ) -> wasmtime::Result<Resource<CallTargetInterface>> {
        self.new_interface(namespace, package, interface)
    }

    fn drop(&mut self, rep: Resource<CallTargetInterface>) -> wasmtime::Result<()> {
        self.drop_interface(rep)
    }
}

impl v2::wasmcloud::bus::lattice::Host for BusView<'_> {
    fn set_link_name(
        &mut self,
        name: String,
        interfaces: Vec<Resource<CallTargetInterface>>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.select_link_name(name, interfaces, true)
    }

    /// `expected_version` is not needed to route: each call's instance name already carries the
    /// version the component imports.
    fn set_target_component(
        &mut self,
        target: String,
        interface: Resource<CallTargetInterface>,
        _expected_version: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let interface = self.table.get(&interface)?.0.clone();
        let Some(call) = self.call() else {
            return Ok(Err(format!(
                "target `{target}` cannot be chosen: this runtime has no lattice"
            )));
        };
        Arc::make_mut(&mut call.selection)
            .targets
            .insert(interface, target);
        Ok(Ok(()))
    }
}

impl v2::wasmcloud::bus::lattice::HostCallTargetInterface for BusView<'_> {
    fn new(
        &mut self,
        namespace: String,
        package: String,
        interface: String,
    ) -> wasmtime::Result<Resource<CallTargetInterface>> {
        self.new_interface(namespace, package, interface)
    }

    fn drop(&mut self, rep: Resource<CallTargetInterface>) -> wasmtime::Result<()> {
        self.drop_interface(rep)
    }
}
