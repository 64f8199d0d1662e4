//! The client half: a plugin that implements `wasi:blobstore` for components on a host whose
//! blobstore built-in is off, by calling `wrpc:blobstore/blobstore` on the target of the
//! component's link (`@0.2.0`, or `@0.1.0` when nobody answers that).
//!
//! A container is just its name (as on a wasmCloud host): `get-container` asks the target whether
//! it exists, every operation is one wRPC call. Object data and listings arrive as wRPC streams
//! and are pulled as the guest reads them; `incoming-value.size` and `consume-sync` gather the
//! whole object first (up to [`MAX_OBJECT_BYTES`], as the in-process value holds it). Data
//! written to an `outgoing-value` before `write-data` is held (up to the same bound), then sent
//! as a stream that `write-data` opens and `finish` ends; from `write-data` on, at most
//! [`WINDOW`] bytes wait to be sent, so a guest that writes after `write-data` streams.
//!
//! Anything that keeps a call from being answered (no link, nobody serving the target, a
//! transport failure, no answer within the rpc timeout, a stream that stalls for as long)
//! reaches the guest as the function's error string saying why, never as a trap or a hang.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_nats::HeaderMap;
use futures::stream::Fuse;
use futures::{Stream, StreamExt as _};
use tokio::sync::Notify;
use trellis_providers::blobstore::{BlobError, MAX_OBJECT_BYTES};
use trellis_runtime::{Extensions, InterfaceName, InvocationCtx, Plugin, RemoteCall};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};
use wasmtime_wasi::runtime::{AbortOnDropJoinHandle, spawn};
use wit_bindgen_wrpc::bytes::{Bytes, BytesMut};

use super::wrpc_bindings::wasi::blobstore::types::ObjectId as WireObjectId;
use super::wrpc_bindings::wrpc::blobstore0_1_0::blobstore as v1;
use super::wrpc_bindings::wrpc::blobstore0_2_0::blobstore as v2;
use crate::rpc::Lattice;
use crate::translated::{LatticeAccess, table_and_caller};

mod host_bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:blobstore/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:blobstore/container.container": super::RemoteContainer,
            "wasi:blobstore/container.stream-object-names": super::RemoteObjectNames,
            "wasi:blobstore/types.outgoing-value": super::RemoteOutgoingValue,
            "wasi:blobstore/types.incoming-value": super::RemoteIncomingValue,
        },
    });
}

use host_bindings::wasi::blobstore::{blobstore, container, types};

/// The WASI interfaces this plugin implements.
const INTERFACES: [&str; 3] = ["blobstore", "container", "types"];
/// The routing key of all three: the link for `wasi:blobstore/blobstore`, as on wasmCloud.
const ROUTE: &str = "wasi:blobstore/blobstore@0.2.0-draft";
/// Bytes of an outgoing value that may wait to be sent once `write-data` has been called.
const WINDOW: usize = 1 << 20;

type Outcome = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// The part of a call that runs after its answer: async parameters out, async results in.
type Io = AbortOnDropJoinHandle<anyhow::Result<()>>;

/// Whether NATS answered that nobody serves the subject (wRPC reports it as `NotConnected`):
/// the target does not serve that version.
fn no_responders(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotConnected)
    })
}

/// The `container` resource: just the name, sent with every call.
pub struct RemoteContainer(String);

/// Items of a stream a call answered with, and how to learn whether all of them came.
struct Incoming<T> {
    items: Fuse<Pin<Box<dyn Stream<Item = T> + Send>>>,
    /// What the target says of the transfer (`@0.2.0` only); `None` once known.
    outcome: Option<Outcome>,
    /// Receives the stream and the outcome; `None` once done.
    io: Option<Io>,
    /// How long to wait for the next item, or for the outcome.
    idle: Duration,
    /// How the stream ended, once it has.
    end: Option<Result<(), String>>,
}

impl<T> Incoming<T> {
    fn new(
        items: Pin<Box<dyn Stream<Item = T> + Send>>,
        outcome: Option<Outcome>,
        io: Option<impl Future<Output = anyhow::Result<()>> + Send + 'static>,
        idle: Duration,
    ) -> Self {
        Self {
            items: items.fuse(),
            outcome,
            io: io.map(spawn),
            idle,
            end: None,
        }
    }

    /// The next item; `Ok(None)` once the stream has ended and the transfer succeeded.
    /// Cancel-safe: a wait dropped half-way resumes where it was.
    async fn next(&mut self) -> Result<Option<T>, String> {
        if self.end.is_none() {
            match tokio::time::timeout(self.idle, self.items.next()).await {
                Ok(Some(item)) => return Ok(Some(item)),
                Ok(None) => self.end = Some(self.finish().await),
                Err(_) => {
                    let idle = self.idle;
                    self.end = Some(Err(format!("the blobstore sent nothing for {idle:?}")));
                }
            }
        }
        match &self.end {
            Some(Err(error)) => Err(error.clone()),
            _ => Ok(None),
        }
    }

    /// The outcome of a stream that has ended.
    async fn finish(&mut self) -> Result<(), String> {
        let idle = self.idle;
        let late = || format!("the blobstore did not confirm the transfer within {idle:?}");
        if let Some(outcome) = self.outcome.as_mut() {
            let result = tokio::time::timeout(idle, outcome)
                .await
                .map_err(|_| late())?;
            self.outcome = None;
            result?;
        }
        if let Some(io) = self.io.as_mut() {
            let result = tokio::time::timeout(idle, io).await.map_err(|_| late())?;
            self.io = None;
            result.map_err(|e| format!("receiving from the blobstore: {e:#}"))?;
        }
        Ok(())
    }
}

/// The `stream-object-names` resource: names as the target sends them.
pub struct RemoteObjectNames {
    incoming: Incoming<Vec<String>>,
    names: VecDeque<String>,
}

impl RemoteObjectNames {
    /// Receives names until more than `wanted` are at hand or none are left, so that whether
    /// the stream is done after taking `wanted` is known.
    async fn fill(&mut self, wanted: usize) -> Result<(), String> {
        while self.names.len() <= wanted {
            match self.incoming.next().await? {
                Some(batch) => self.names.extend(batch),
                None => break,
            }
        }
        Ok(())
    }

    /// Takes up to `len` names: those, and whether none are left.
    async fn take(&mut self, len: u64) -> Result<(Vec<String>, bool), String> {
        let wanted = usize::try_from(len).unwrap_or(usize::MAX);
        self.fill(wanted).await?;
        let taken = self.names.drain(..wanted.min(self.names.len())).collect();
        Ok((taken, self.names.is_empty() && self.incoming.end.is_some()))
    }
}

/// The `incoming-value` resource: an object's data as it arrives.
pub struct RemoteIncomingValue {
    incoming: Incoming<Bytes>,
    /// What [`Self::gather`] received so far.
    head: BytesMut,
    /// Why gathering stopped short, if it did.
    failed: Option<String>,
}

impl RemoteIncomingValue {
    /// Receives all the rest of the data, up to [`MAX_OBJECT_BYTES`].
    async fn gather(&mut self) -> Result<(), String> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let gathered = async {
            while let Some(chunk) = self.incoming.next().await? {
                if self.head.len() + chunk.len() >= MAX_OBJECT_BYTES {
                    return Err(BlobError::TooLarge.to_string());
                }
                self.head.extend_from_slice(&chunk);
            }
            Ok(())
        };
        let result = gathered.await;
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }
}

/// An `incoming-value` consumed as a `wasi:io` input stream.
struct RemoteInput {
    /// Received and not read yet.
    head: Bytes,
    incoming: Incoming<Bytes>,
}

#[async_trait::async_trait]
impl Pollable for RemoteInput {
    async fn ready(&mut self) {
        while self.head.is_empty() && self.incoming.end.is_none() {
            if let Ok(Some(chunk)) = self.incoming.next().await {
                self.head = chunk;
            }
        }
    }
}

#[async_trait::async_trait]
impl InputStream for RemoteInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        if !self.head.is_empty() {
            return Ok(self.head.split_to(size.min(self.head.len())));
        }
        match &self.incoming.end {
            None => Ok(Bytes::new()),
            Some(Ok(())) => Err(StreamError::Closed),
            Some(Err(error)) => Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "{error}"
            ))),
        }
    }
}

/// Bytes written to an outgoing value and not sent yet, shared by its body stream (which fills
/// it) and the wRPC parameter stream (which drains it).
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes the body stream when there is room again.
    room: Notify,
}

#[derive(Default)]
struct QueueState {
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    queued: usize,
    /// Bytes ever written.
    written: usize,
    /// Bytes ever sent: whether a transfer still moves.
    sent: usize,
    /// `write-data` was called: from now on at most [`WINDOW`] bytes wait.
    sending: bool,
    /// `finish` was called, or the value dropped: the stream ends once drained.
    finished: bool,
    /// The parameter stream, waiting for data.
    waker: Option<Waker>,
}

impl QueueState {
    /// How many more bytes may be written now.
    fn room(&self) -> StreamResult<usize> {
        if self.finished {
            return Err(StreamError::Closed);
        }
        let total = MAX_OBJECT_BYTES - self.written;
        if total == 0 {
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "{}",
                BlobError::TooLarge
            )));
        }
        Ok(if self.sending {
            WINDOW.saturating_sub(self.queued).min(total)
        } else {
            total
        })
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl Queue {
    fn update(&self, change: impl FnOnce(&mut QueueState)) {
        let mut state = self.state.lock().unwrap();
        change(&mut state);
        state.wake();
    }

    fn sent(&self) -> usize {
        self.state.lock().unwrap().sent
    }
}

/// The body stream of an outgoing value.
struct Body(Arc<Queue>);

#[async_trait::async_trait]
impl Pollable for Body {
    async fn ready(&mut self) {
        loop {
            // Taken before looking, so a notification in between is not missed.
            let notified = self.0.room.notified();
            let full = matches!(self.0.state.lock().unwrap().room(), Ok(0));
            if !full {
                return;
            }
            notified.await;
        }
    }
}

#[async_trait::async_trait]
impl OutputStream for Body {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut state = self.0.state.lock().unwrap();
        if bytes.len() > state.room()? {
            return Err(StreamError::trap("write exceeded the permitted size"));
        }
        state.queued += bytes.len();
        state.written += bytes.len();
        state.chunks.push_back(bytes);
        state.wake();
        Ok(())
    }

    /// Written bytes are already on their way: nothing to flush.
    fn flush(&mut self) -> StreamResult<()> {
        self.0.state.lock().unwrap().room().map(drop)
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.0.state.lock().unwrap().room()
    }
}

/// The `data` parameter of `write-container-data`: drains the queue. Nothing is taken from
/// the queue until wRPC starts sending, which it does only once the target has accepted the
/// call, so a call that found no responder leaves the data for the next version's call.
struct Sending(Arc<Queue>);

impl Stream for Sending {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut state = self.0.state.lock().unwrap();
        if let Some(chunk) = state.chunks.pop_front() {
            state.queued -= chunk.len();
            state.sent += chunk.len();
            drop(state);
            self.0.room.notify_one();
            return Poll::Ready(Some(chunk));
        }
        if state.finished {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A `write-container-data` call under way.
struct Writing {
    /// Whether the object was stored: the `@0.2.0` outcome, or the `@0.1.0` answer.
    outcome: Outcome,
    io: Option<Io>,
    idle: Duration,
}

impl Writing {
    /// Waits for the outcome once the guest is done writing; gives up only when no data has
    /// moved for `idle`, so a large object may take as long as it keeps moving.
    async fn outcome(mut self, queue: &Queue) -> Result<(), String> {
        loop {
            let sent = queue.sent();
            match tokio::time::timeout(self.idle, &mut self.outcome).await {
                Ok(result) => break result?,
                Err(_) if queue.sent() != sent => continue,
                Err(_) => {
                    return Err(format!(
                        "the blobstore did not confirm the write within {:?}",
                        self.idle
                    ));
                }
            }
        }
        if let Some(io) = self.io {
            tokio::time::timeout(self.idle, io)
                .await
                .map_err(|_| {
                    format!(
                        "sending to the blobstore did not end within {:?}",
                        self.idle
                    )
                })?
                .map_err(|e| format!("sending to the blobstore: {e:#}"))?;
        }
        Ok(())
    }
}

/// The `outgoing-value` resource.
pub struct RemoteOutgoingValue {
    queue: Arc<Queue>,
    /// The body stream was handed out (there is only one).
    body: bool,
    writing: Option<Writing>,
}

/// Sends a component's `wasi:blobstore` calls to its link target as `wrpc:blobstore` calls.
pub struct BlobstoreOverLattice {
    lattice: Arc<Lattice>,
}

impl BlobstoreOverLattice {
    pub fn new(lattice: Lattice) -> Self {
        Self {
            lattice: Arc::new(lattice),
        }
    }
}

/// One host call's caller: who calls, with the links it chose so far.
struct Caller {
    call: RemoteCall,
    lattice: Arc<Lattice>,
}

type Client = wrpc_transport_nats::Client;

impl Caller {
    /// Runs one call to wherever the caller's blobstore goes: `v2` (`@0.2.0`), or `v1`
    /// (`@0.1.0`) when nobody answers that. Everything that keeps it from answering within the
    /// rpc timeout becomes an error string.
    async fn call<T, F2, Fut2, F1, Fut1>(&self, v2: F2, v1: F1) -> Result<T, String>
    where
        F2: FnOnce(Client, Option<HeaderMap>) -> Fut2,
        Fut2: Future<Output = anyhow::Result<Result<T, String>>>,
        F1: FnOnce(Client, Option<HeaderMap>) -> Fut1,
        Fut1: Future<Output = anyhow::Result<Result<T, String>>>,
    {
        let (target, headers) = self
            .lattice
            .route(&self.call, ROUTE)
            .map_err(|e| e.to_string())?;
        let timeout = self.lattice.timeout;
        // The bound covers reaching the target, the fallback, and the answer.
        let answer = tokio::time::timeout(timeout, async {
            let client = self.lattice.client(&target).await?;
            match v2(client.clone(), Some(headers.clone())).await {
                Err(error) if no_responders(&error) => v1(client, Some(headers)).await,
                answer => answer,
            }
        });
        match answer.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => Err(format!(
                "blobstore call to `{target}` over the lattice failed: {error:#}"
            )),
            Err(_) => Err(format!(
                "blobstore target `{target}` did not answer within {timeout:?}"
            )),
        }
    }

    fn idle(&self) -> Duration {
        self.lattice.timeout
    }
}

/// What the generated host traits are implemented for.
struct BlobView<'a> {
    table: &'a mut ResourceTable,
    caller: Option<Caller>,
}

struct BlobData;

impl HasData for BlobData {
    type Data<'a> = BlobView<'a>;
}

fn view(ctx: &mut InvocationCtx) -> BlobView<'_> {
    let (table, caller) = table_and_caller(ctx);
    let caller = caller.map(|(call, lattice)| Caller { call, lattice });
    BlobView { table, caller }
}

type BlobResult<T> = wasmtime::Result<Result<T, String>>;

impl BlobView<'_> {
    fn caller(&self) -> wasmtime::Result<&Caller> {
        self.caller
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("blobstore call outside a prepared invocation"))
    }

    /// The caller and the name of an open container.
    fn target(&self, container: &Resource<RemoteContainer>) -> wasmtime::Result<(&Caller, String)> {
        Ok((self.caller()?, self.table.get(container)?.0.clone()))
    }

    /// The caller and the address of object `object` in an open container.
    fn object(
        &self,
        container: &Resource<RemoteContainer>,
        object: String,
    ) -> wasmtime::Result<(&Caller, WireObjectId)> {
        let (caller, container) = self.target(container)?;
        Ok((caller, WireObjectId { container, object }))
    }

    fn open(&mut self, name: String) -> BlobResult<Resource<RemoteContainer>> {
        Ok(Ok(self.table.push(RemoteContainer(name))?))
    }
}

impl blobstore::Host for BlobView<'_> {
    async fn create_container(&mut self, name: String) -> BlobResult<Resource<RemoteContainer>> {
        let created = {
            let name = &name;
            self.caller()?
                .call(
                    |c, cx| async move { v2::create_container(&c, cx, name).await },
                    |c, cx| async move { v1::create_container(&c, cx, name).await },
                )
                .await
        };
        match created {
            Ok(()) => self.open(name),
            Err(error) => Ok(Err(error)),
        }
    }

    /// Opens only what exists: the target's container info says whether it does.
    async fn get_container(&mut self, name: String) -> BlobResult<Resource<RemoteContainer>> {
        let found = {
            let name = &name;
            self.caller()?
                .call(
                    |c, cx| async move { Ok(v2::get_container_info(&c, cx, name).await?.map(drop)) },
                    |c, cx| async move { Ok(v1::get_container_info(&c, cx, name).await?.map(drop)) },
                )
                .await
        };
        match found {
            Ok(()) => self.open(name),
            Err(error) => Ok(Err(error)),
        }
    }

    async fn delete_container(&mut self, name: String) -> BlobResult<()> {
        let name = &name;
        Ok(self
            .caller()?
            .call(
                |c, cx| async move { v2::delete_container(&c, cx, name).await },
                |c, cx| async move { v1::delete_container(&c, cx, name).await },
            )
            .await)
    }

    async fn container_exists(&mut self, name: String) -> BlobResult<bool> {
        let name = &name;
        Ok(self
            .caller()?
            .call(
                |c, cx| async move { v2::container_exists(&c, cx, name).await },
                |c, cx| async move { v1::container_exists(&c, cx, name).await },
            )
            .await)
    }

    async fn copy_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> BlobResult<()> {
        let (src, dest) = (&wire(src), &wire(dest));
        Ok(self
            .caller()?
            .call(
                |c, cx| async move { v2::copy_object(&c, cx, src, dest).await },
                |c, cx| async move { v1::copy_object(&c, cx, src, dest).await },
            )
            .await)
    }

    async fn move_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> BlobResult<()> {
        let (src, dest) = (&wire(src), &wire(dest));
        Ok(self
            .caller()?
            .call(
                |c, cx| async move { v2::move_object(&c, cx, src, dest).await },
                |c, cx| async move { v1::move_object(&c, cx, src, dest).await },
            )
            .await)
    }
}

fn wire(id: types::ObjectId) -> WireObjectId {
    WireObjectId {
        container: id.container,
        object: id.object,
    }
}

impl container::Host for BlobView<'_> {}

impl container::HostContainer for BlobView<'_> {
    async fn name(&mut self, this: Resource<RemoteContainer>) -> BlobResult<String> {
        Ok(Ok(self.table.get(&this)?.0.clone()))
    }

    async fn info(
        &mut self,
        this: Resource<RemoteContainer>,
    ) -> BlobResult<types::ContainerMetadata> {
        let (caller, name) = self.target(&this)?;
        let name_ref = &name;
        let created_at = caller
            .call(
                |c, cx| async move {
                    Ok(v2::get_container_info(&c, cx, name_ref)
                        .await?
                        .map(|info| info.created_at))
                },
                |c, cx| async move {
                    Ok(v1::get_container_info(&c, cx, name_ref)
                        .await?
                        .map(|info| info.created_at))
                },
            )
            .await;
        Ok(created_at.map(|created_at| types::ContainerMetadata { name, created_at }))
    }

    async fn get_data(
        &mut self,
        this: Resource<RemoteContainer>,
        name: String,
        start: u64,
        end: u64,
    ) -> BlobResult<Resource<RemoteIncomingValue>> {
        let (caller, id) = self.object(&this, name)?;
        let (id, idle) = (&id, caller.idle());
        let incoming = caller
            .call(
                |c, cx| async move {
                    let (answer, io) = v2::get_container_data(&c, cx, id, start, end).await?;
                    Ok(answer.map(|(data, outcome)| Incoming::new(data, Some(outcome), io, idle)))
                },
                |c, cx| async move {
                    let (answer, io) = v1::get_container_data(&c, cx, id, start, end).await?;
                    Ok(answer.map(|data| Incoming::new(data, None, io, idle)))
                },
            )
            .await;
        match incoming {
            Ok(incoming) => Ok(Ok(self.table.push(RemoteIncomingValue {
                incoming,
                head: BytesMut::new(),
                failed: None,
            })?)),
            Err(error) => Ok(Err(error)),
        }
    }

    /// Opens the transfer; the data already written goes first, what is written later
    /// follows, and `finish` ends it and says whether the object was stored.
    async fn write_data(
        &mut self,
        this: Resource<RemoteContainer>,
        name: String,
        data: Resource<RemoteOutgoingValue>,
    ) -> BlobResult<()> {
        let value = self.table.get(&data)?;
        if value.writing.is_some() {
            return Ok(Err(
                "write-data was already called with this outgoing-value".into(),
            ));
        }
        let queue = value.queue.clone();
        queue.update(|state| state.sending = true);
        let (caller, id) = self.object(&this, name)?;
        let (id, queue_ref, idle) = (&id, &queue, caller.idle());
        let writing = caller
            .call(
                |c, cx| async move {
                    let data = Box::pin(Sending(queue_ref.clone()));
                    let (answer, io) = v2::write_container_data(&c, cx, id, data).await?;
                    Ok(answer.map(|outcome| Writing {
                        outcome,
                        io: io.map(spawn),
                        idle,
                    }))
                },
                |c, cx| async move {
                    // `@0.1.0` answers only once it has all the data, which ends at `finish`:
                    // the call runs on its own until then.
                    let (id, data) = (id.clone(), Box::pin(Sending(queue_ref.clone())));
                    let call = spawn(async move {
                        let (answer, io) = v1::write_container_data(&c, cx, &id, data).await?;
                        if let Some(io) = io {
                            io.await?;
                        }
                        anyhow::Ok(answer)
                    });
                    let outcome = async move {
                        call.await.unwrap_or_else(|e| {
                            Err(format!("writing over the lattice failed: {e:#}"))
                        })
                    };
                    Ok(Ok(Writing {
                        outcome: Box::pin(outcome),
                        io: None,
                        idle,
                    }))
                },
            )
            .await;
        match writing {
            Ok(writing) => {
                self.table.get_mut(&data)?.writing = Some(writing);
                Ok(Ok(()))
            }
            Err(error) => Ok(Err(error)),
        }
    }

    async fn list_objects(
        &mut self,
        this: Resource<RemoteContainer>,
    ) -> BlobResult<Resource<RemoteObjectNames>> {
        let (caller, name) = self.target(&this)?;
        let (name, idle) = (&name, caller.idle());
        let incoming = caller
            .call(
                |c, cx| async move {
                    let (answer, io) = v2::list_container_objects(&c, cx, name, None, None).await?;
                    Ok(
                        answer
                            .map(|(names, outcome)| Incoming::new(names, Some(outcome), io, idle)),
                    )
                },
                |c, cx| async move {
                    let (answer, io) = v1::list_container_objects(&c, cx, name, None, None).await?;
                    Ok(answer.map(|names| Incoming::new(names, None, io, idle)))
                },
            )
            .await;
        match incoming {
            Ok(incoming) => Ok(Ok(self.table.push(RemoteObjectNames {
                incoming,
                names: VecDeque::new(),
            })?)),
            Err(error) => Ok(Err(error)),
        }
    }

    async fn delete_object(
        &mut self,
        this: Resource<RemoteContainer>,
        name: String,
    ) -> BlobResult<()> {
        let (caller, id) = self.object(&this, name)?;
        let id = &id;
        Ok(caller
            .call(
                |c, cx| async move { v2::delete_object(&c, cx, id).await },
                |c, cx| async move { v1::delete_object(&c, cx, id).await },
            )
            .await)
    }

    async fn delete_objects(
        &mut self,
        this: Resource<RemoteContainer>,
        names: Vec<String>,
    ) -> BlobResult<()> {
        let (caller, container) = self.target(&this)?;
        let container = &container;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let names = &names;
        Ok(caller
            .call(
                |c, cx| async move { v2::delete_objects(&c, cx, container, names).await },
                |c, cx| async move { v1::delete_objects(&c, cx, container, names).await },
            )
            .await)
    }

    async fn has_object(
        &mut self,
        this: Resource<RemoteContainer>,
        name: String,
    ) -> BlobResult<bool> {
        let (caller, id) = self.object(&this, name)?;
        let id = &id;
        Ok(caller
            .call(
                |c, cx| async move { v2::has_object(&c, cx, id).await },
                |c, cx| async move { v1::has_object(&c, cx, id).await },
            )
            .await)
    }

    async fn object_info(
        &mut self,
        this: Resource<RemoteContainer>,
        name: String,
    ) -> BlobResult<types::ObjectMetadata> {
        let (caller, id) = self.object(&this, name)?;
        let id_ref = &id;
        let info = caller
            .call(
                |c, cx| async move {
                    let info = v2::get_object_info(&c, cx, id_ref).await?;
                    Ok(info.map(|info| (info.created_at, info.size)))
                },
                |c, cx| async move {
                    let info = v1::get_object_info(&c, cx, id_ref).await?;
                    Ok(info.map(|info| (info.created_at, info.size)))
                },
            )
            .await;
        Ok(info.map(|(created_at, size)| types::ObjectMetadata {
            name: id.object,
            container: id.container,
            created_at,
            size,
        }))
    }

    async fn clear(&mut self, this: Resource<RemoteContainer>) -> BlobResult<()> {
        let (caller, name) = self.target(&this)?;
        let name = &name;
        Ok(caller
            .call(
                |c, cx| async move { v2::clear_container(&c, cx, name).await },
                |c, cx| async move { v1::clear_container(&c, cx, name).await },
            )
            .await)
    }

    async fn drop(&mut self, this: Resource<RemoteContainer>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl container::HostStreamObjectNames for BlobView<'_> {
    async fn read_stream_object_names(
        &mut self,
        this: Resource<RemoteObjectNames>,
        len: u64,
    ) -> BlobResult<(Vec<String>, bool)> {
        Ok(self.table.get_mut(&this)?.take(len).await)
    }

    async fn skip_stream_object_names(
        &mut self,
        this: Resource<RemoteObjectNames>,
        num: u64,
    ) -> BlobResult<(u64, bool)> {
        let skipped = self.table.get_mut(&this)?.take(num).await;
        Ok(skipped.map(|(names, done)| (names.len() as u64, done)))
    }

    async fn drop(&mut self, this: Resource<RemoteObjectNames>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl types::Host for BlobView<'_> {}

impl types::HostOutgoingValue for BlobView<'_> {
    async fn new_outgoing_value(&mut self) -> wasmtime::Result<Resource<RemoteOutgoingValue>> {
        Ok(self.table.push(RemoteOutgoingValue {
            queue: Arc::default(),
            body: false,
            writing: None,
        })?)
    }

    async fn outgoing_value_write_body(
        &mut self,
        this: Resource<RemoteOutgoingValue>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let value = self.table.get_mut(&this)?;
        if value.body {
            return Ok(Err(()));
        }
        value.body = true;
        let stream: DynOutputStream = Box::new(Body(value.queue.clone()));
        Ok(Ok(self.table.push(stream)?))
    }

    async fn finish(&mut self, this: Resource<RemoteOutgoingValue>) -> BlobResult<()> {
        let value = self.table.delete(this)?;
        value.queue.update(|state| state.finished = true);
        Ok(match value.writing {
            Some(writing) => writing.outcome(&value.queue).await,
            None => Ok(()),
        })
    }

    /// Ends the transfer without waiting for its outcome: what was written is stored, as the
    /// in-process value stores what it holds at `write-data`.
    async fn drop(&mut self, this: Resource<RemoteOutgoingValue>) -> wasmtime::Result<()> {
        let value = self.table.delete(this)?;
        value.queue.update(|state| state.finished = true);
        Ok(())
    }
}

impl types::HostIncomingValue for BlobView<'_> {
    async fn incoming_value_consume_sync(
        &mut self,
        this: Resource<RemoteIncomingValue>,
    ) -> BlobResult<Vec<u8>> {
        let mut value = self.table.delete(this)?;
        Ok(value.gather().await.map(|()| value.head.to_vec()))
    }

    async fn incoming_value_consume_async(
        &mut self,
        this: Resource<RemoteIncomingValue>,
    ) -> BlobResult<Resource<DynInputStream>> {
        let value = self.table.delete(this)?;
        if let Some(error) = value.failed {
            return Ok(Err(error));
        }
        let stream: DynInputStream = Box::new(RemoteInput {
            head: value.head.freeze(),
            incoming: value.incoming,
        });
        Ok(Ok(self.table.push(stream)?))
    }

    /// The target does not say in advance: the data is gathered to count it (a failure to
    /// gather is reported by the consume that follows).
    async fn size(&mut self, this: Resource<RemoteIncomingValue>) -> wasmtime::Result<u64> {
        let value = self.table.get_mut(&this)?;
        let _ = value.gather().await;
        Ok(value.head.len() as u64)
    }

    async fn drop(&mut self, this: Resource<RemoteIncomingValue>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Plugin for BlobstoreOverLattice {
    fn id(&self) -> &str {
        "blobstore-over-lattice"
    }

    fn imports(&self) -> Vec<InterfaceName> {
        INTERFACES
            .iter()
            .map(|i| {
                InterfaceName::parse(&format!("wasi:blobstore/{i}@0.2.0-draft"))
                    .expect("valid name")
            })
            .collect()
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<InvocationCtx>,
        interface: &InterfaceName,
    ) -> anyhow::Result<()> {
        match interface.interface.as_str() {
            "blobstore" => blobstore::add_to_linker::<_, BlobData>(linker, view)?,
            "container" => container::add_to_linker::<_, BlobData>(linker, view)?,
            "types" => types::add_to_linker::<_, BlobData>(linker, view)?,
            other => anyhow::bail!("blobstore over the lattice does not cover `{other}`"),
        }
        Ok(())
    }

    fn prepare(&self, _component_id: &str, extensions: &mut Extensions) -> anyhow::Result<()> {
        extensions.insert(LatticeAccess(self.lattice.clone()));
        Ok(())
    }
}
