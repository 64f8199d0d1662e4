//! Calls to components and providers elsewhere in the lattice, over wRPC.
//!
//! The runtime speaks wRPC's value encoding itself ([`value`]), links imports that nothing on
//! this runtime provides to the lattice ([`polyfill`]) and serves exports from wRPC streams
//! ([`crate::ComponentHandle::serve_invocation`]), but knows no transport: the embedder hands it
//! a [`RemoteInvoker`], which picks the target of each call (from the caller's links) and
//! carries the bytes (the lattice host uses wRPC over NATS).

pub(crate) mod polyfill;
pub mod value;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::link_names::LinkSelection;

/// The parameter stream of one invocation: bytes for the target.
pub type RemoteOutgoing = Box<dyn AsyncWrite + Send + Sync + Unpin>;

/// The result stream of one invocation: bytes from the target, ended by it.
pub type RemoteIncoming = Box<dyn AsyncRead + Send + Sync + Unpin>;

/// Who is calling and which links it chose, for the invoker's target lookup and headers.
#[derive(Clone, Debug)]
pub struct RemoteCall {
    pub caller: Arc<str>,
    /// Choices made through `wasmcloud:bus/lattice` during this invocation.
    pub selection: Arc<LinkSelection>,
}

pub type RemoteInvocation =
    Pin<Box<dyn Future<Output = anyhow::Result<(RemoteOutgoing, RemoteIncoming)>> + Send>>;

/// Starts invocations of `instance`.`func` on whatever serves them for `call.caller`.
pub trait RemoteInvoker: Send + Sync + 'static {
    /// Starts the invocation with `params` (the encoded parameters); more parameter bytes may
    /// follow on the outgoing stream, which the caller ends.
    fn invoke(
        &self,
        call: RemoteCall,
        instance: &str,
        func: &str,
        params: Bytes,
    ) -> RemoteInvocation;

    /// How long a remote call may take before the caller's import fails.
    fn timeout(&self) -> Duration;

    /// Whether `caller` has a link named `link_name` for `interface` (`ns:pkg/iface`); the
    /// error says what is missing. Asked when a component chooses a link name.
    fn check_link(&self, caller: &str, link_name: &str, interface: &str) -> Result<(), String>;
}

/// The wRPC side of an invocation's store: how to reach the lattice, and as whom.
pub(crate) struct RemoteCtx {
    pub invoker: Arc<dyn RemoteInvoker>,
    pub call: RemoteCall,
}
