//! Calls to components and providers elsewhere in the lattice, over wRPC.
//!
//! The runtime polyfills imports with `wrpc-runtime-wasmtime` but knows no transport: the
//! embedder hands it a [`RemoteInvoker`], which picks the target of each call (from the caller's
//! links) and carries the bytes (the lattice host uses wRPC over NATS). Streams are type-erased
//! here so that the store's data type stays free of any transport's types.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Linker, ResourceType};
use wrpc_runtime_wasmtime::{RemoteResource, SharedResourceTable, WrpcCtx, WrpcCtxView, WrpcView};
use wrpc_transport::Index;

use crate::ctx::InvocationCtx;
use crate::link_names::LinkSelection;
use crate::linking::ImportFallback;

/// An outgoing (parameter) stream of one invocation.
pub trait OutgoingStream: AsyncWrite + Send + Sync + Unpin + 'static {
    fn index_stream(&self, path: &[usize]) -> anyhow::Result<RemoteOutgoing>;
}

/// An incoming (result) stream of one invocation.
pub trait IncomingStream: AsyncRead + Send + Sync + Unpin + 'static {
    fn index_stream(&self, path: &[usize]) -> anyhow::Result<RemoteIncoming>;
}

impl<T: AsyncWrite + Index<T> + Send + Sync + Unpin + 'static> OutgoingStream for T {
    fn index_stream(&self, path: &[usize]) -> anyhow::Result<RemoteOutgoing> {
        Ok(RemoteOutgoing(Box::new(self.index(path)?)))
    }
}

impl<T: AsyncRead + Index<T> + Send + Sync + Unpin + 'static> IncomingStream for T {
    fn index_stream(&self, path: &[usize]) -> anyhow::Result<RemoteIncoming> {
        Ok(RemoteIncoming(Box::new(self.index(path)?)))
    }
}

pub struct RemoteOutgoing(pub Box<dyn OutgoingStream>);
pub struct RemoteIncoming(pub Box<dyn IncomingStream>);

impl Index<RemoteOutgoing> for RemoteOutgoing {
    fn index(&self, path: &[usize]) -> anyhow::Result<RemoteOutgoing> {
        self.0.index_stream(path)
    }
}

impl Index<RemoteIncoming> for RemoteIncoming {
    fn index(&self, path: &[usize]) -> anyhow::Result<RemoteIncoming> {
        self.0.index_stream(path)
    }
}

impl AsyncWrite for RemoteOutgoing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl AsyncRead for RemoteIncoming {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

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
    fn invoke(
        &self,
        call: RemoteCall,
        instance: &str,
        func: &str,
        params: Bytes,
        paths: Vec<Vec<Option<usize>>>,
    ) -> RemoteInvocation;

    /// How long a remote call may take before the caller's import fails.
    fn timeout(&self) -> Duration;

    /// Whether `caller` has a link named `link_name` for `interface` (`ns:pkg/iface`); the
    /// error says what is missing. Asked when a component chooses a link name.
    fn check_link(&self, caller: &str, link_name: &str, interface: &str) -> Result<(), String>;
}

/// The embedder's invoker as a `wrpc_transport::Invoke`.
#[derive(Clone)]
pub struct Remote(pub(crate) Arc<dyn RemoteInvoker>);

impl wrpc_transport::Invoke for Remote {
    type Context = RemoteCall;
    type Outgoing = RemoteOutgoing;
    type Incoming = RemoteIncoming;

    async fn invoke<P>(
        &self,
        cx: Self::Context,
        instance: &str,
        func: &str,
        params: Bytes,
        paths: impl AsRef<[P]> + Send,
    ) -> anyhow::Result<(Self::Outgoing, Self::Incoming)>
    where
        P: AsRef<[Option<usize>]> + Send + Sync,
    {
        let paths = paths
            .as_ref()
            .iter()
            .map(|path| path.as_ref().to_vec())
            .collect();
        self.0.invoke(cx, instance, func, params, paths).await
    }
}

/// The wRPC side of an invocation's store.
pub(crate) struct RemoteCtx {
    pub client: Remote,
    pub call: RemoteCall,
    pub shared: SharedResourceTable,
}

impl WrpcCtx<Remote> for RemoteCtx {
    fn context(&self) -> RemoteCall {
        self.call.clone()
    }
    fn client(&self) -> &Remote {
        &self.client
    }
    fn shared_resources(&mut self) -> &mut SharedResourceTable {
        &mut self.shared
    }
    fn timeout(&self) -> Option<Duration> {
        Some(self.client.0.timeout())
    }
}

impl WrpcView for InvocationCtx {
    type Invoke = Remote;

    fn wrpc(&mut self) -> WrpcCtxView<'_, Remote> {
        let remote = self
            .remote
            .as_mut()
            .expect("only stores of runtimes with a remote invoker link wRPC imports");
        WrpcCtxView {
            ctx: remote,
            table: &mut self.table,
        }
    }
}

/// Links an import instance to the lattice: every function becomes a wRPC invocation and every
/// imported resource an opaque remote handle. Installed when the runtime has a remote invoker.
pub(crate) struct WrpcPolyfill;

impl ImportFallback for WrpcPolyfill {
    fn link(
        &self,
        engine: &wasmtime::Engine,
        linker: &mut Linker<InvocationCtx>,
        _component_id: &str,
        import: &str,
        ty: &ComponentItem,
    ) -> anyhow::Result<bool> {
        let ComponentItem::ComponentInstance(instance) = ty else {
            return Ok(false);
        };
        let resources: HashMap<Box<str>, (ResourceType, ResourceType)> = instance
            .exports(engine)
            .filter_map(|(name, item)| match item {
                ComponentItem::Resource(guest) => {
                    Some((name.into(), (guest, ResourceType::host::<RemoteResource>())))
                }
                _ => None,
            })
            .collect();
        let host_resources = HashMap::from([(Box::<str>::from(import), resources)]);
        wrpc_runtime_wasmtime::link_item(
            engine,
            &mut linker.root(),
            Vec::<ResourceType>::new(),
            host_resources,
            ty.clone(),
            "",
            import,
        )?;
        Ok(true)
    }
}
