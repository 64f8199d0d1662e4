//! Object data and listings as they move between a guest and a blobstore backend, whatever the
//! backend: what a backend answers with arrives as an [`Incoming`] stream (all at once from the
//! built-in stores, chunk by chunk over the lattice); what the guest writes to an outgoing
//! value goes through a [`Queue`] that the backend drains once `write-data` has opened the
//! transfer, and `finish` waits for the backend's [`Writing`] outcome.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::Fuse;
use futures::{Stream, StreamExt as _};
use tokio::sync::Notify;
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::runtime::{AbortOnDropJoinHandle, spawn};

use super::MAX_OBJECT_BYTES;

/// Bytes of an outgoing value that may wait to be sent once `write-data` has been called.
const WINDOW: usize = 1 << 20;

/// Whether a transfer succeeded, as the backend tells it (the text is what the guest sees).
pub type Outcome = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The part of a call that runs after its answer (async parameters out, async results in).
pub type Io = AbortOnDropJoinHandle<anyhow::Result<()>>;

/// Items a backend answered with, and how to learn whether all of them came.
pub struct Incoming<T> {
    items: Fuse<Pin<Box<dyn Stream<Item = T> + Send>>>,
    /// What the backend says of the transfer; `None` once known (or when it says nothing).
    outcome: Option<Outcome>,
    /// Receives the stream and the outcome; `None` once done.
    io: Option<Io>,
    /// How long to wait for the next item, or for the outcome; `None`: no bound.
    idle: Option<Duration>,
    /// How the stream ended, once it has.
    end: Option<Result<(), String>>,
}

impl<T: Send + 'static> Incoming<T> {
    /// Items that are all at hand.
    pub fn ready(items: Vec<T>) -> Self {
        Self::streamed(Box::pin(futures::stream::iter(items)), None, None, None)
    }

    /// Items that arrive over time; `io` (spawned) feeds `items` and `outcome`.
    pub fn streamed(
        items: Pin<Box<dyn Stream<Item = T> + Send>>,
        outcome: Option<Outcome>,
        io: Option<Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>>,
        idle: Option<Duration>,
    ) -> Self {
        Self {
            items: items.fuse(),
            outcome,
            io: io.map(spawn),
            idle,
            end: None,
        }
    }
}

/// `future` bounded by `idle` when there is one.
async fn bounded<F: Future>(idle: Option<Duration>, future: F) -> Option<F::Output> {
    match idle {
        Some(idle) => tokio::time::timeout(idle, future).await.ok(),
        None => Some(future.await),
    }
}

impl<T> Incoming<T> {
    /// The next item; `Ok(None)` once the stream has ended and the transfer succeeded.
    /// Cancel-safe: a wait dropped half-way resumes where it was.
    pub async fn next(&mut self) -> Result<Option<T>, String> {
        if self.end.is_none() {
            match bounded(self.idle, self.items.next()).await {
                Some(Some(item)) => return Ok(Some(item)),
                Some(None) => self.end = Some(self.finish().await),
                None => {
                    let idle = self.idle.unwrap_or_default();
                    self.end = Some(Err(format!("the blobstore sent nothing for {idle:?}")));
                }
            }
        }
        match &self.end {
            Some(Err(error)) => Err(error.clone()),
            _ => Ok(None),
        }
    }

    /// Whether the stream has ended.
    pub fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// The outcome of a stream that has ended.
    async fn finish(&mut self) -> Result<(), String> {
        let idle = self.idle;
        let late = || {
            let idle = idle.unwrap_or_default();
            format!("the blobstore did not confirm the transfer within {idle:?}")
        };
        if let Some(outcome) = self.outcome.as_mut() {
            let result = bounded(idle, outcome).await.ok_or_else(late)?;
            self.outcome = None;
            result?;
        }
        if let Some(io) = self.io.as_mut() {
            let result = bounded(idle, io).await.ok_or_else(late)?;
            self.io = None;
            result.map_err(|e| format!("receiving from the blobstore: {e:#}"))?;
        }
        Ok(())
    }
}

/// Object names as a backend sends them, taken in the amounts the guest asks for.
pub struct ObjectNames {
    incoming: Incoming<Vec<String>>,
    names: VecDeque<String>,
}

impl ObjectNames {
    pub fn new(incoming: Incoming<Vec<String>>) -> Self {
        Self {
            incoming,
            names: VecDeque::new(),
        }
    }

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
    pub async fn take(&mut self, len: u64) -> Result<(Vec<String>, bool), String> {
        let wanted = usize::try_from(len).unwrap_or(usize::MAX);
        self.fill(wanted).await?;
        let taken = self.names.drain(..wanted.min(self.names.len())).collect();
        Ok((taken, self.names.is_empty() && self.incoming.ended()))
    }
}

/// An object's data as it arrives.
pub struct IncomingValue {
    incoming: Incoming<Bytes>,
    /// What [`Self::gather`] received so far.
    head: BytesMut,
    /// Why gathering stopped short, if it did.
    failed: Option<String>,
}

impl IncomingValue {
    pub fn new(incoming: Incoming<Bytes>) -> Self {
        Self {
            incoming,
            head: BytesMut::new(),
            failed: None,
        }
    }

    /// Receives all the rest of the data, up to [`MAX_OBJECT_BYTES`].
    pub async fn gather(&mut self) -> Result<(), String> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let gathered = async {
            while let Some(chunk) = self.incoming.next().await? {
                if self.head.len() + chunk.len() >= MAX_OBJECT_BYTES {
                    return Err(super::BlobError::TooLarge.to_string());
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

    /// The bytes gathered so far.
    pub fn gathered(&self) -> &[u8] {
        &self.head
    }

    /// The value as a `wasi:io` input stream: what was gathered, then the rest as it comes.
    pub fn into_input(self) -> Result<Input, String> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        Ok(Input {
            head: self.head.freeze(),
            incoming: self.incoming,
        })
    }
}

/// An incoming value consumed as a `wasi:io` input stream.
pub struct Input {
    /// Received and not read yet.
    head: Bytes,
    incoming: Incoming<Bytes>,
}

#[async_trait::async_trait]
impl Pollable for Input {
    async fn ready(&mut self) {
        while self.head.is_empty() && !self.incoming.ended() {
            if let Ok(Some(chunk)) = self.incoming.next().await {
                self.head = chunk;
            }
        }
    }
}

#[async_trait::async_trait]
impl InputStream for Input {
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
/// it) and the backend's transfer (which drains it).
#[derive(Default)]
pub struct Queue {
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
    /// The transfer, waiting for data.
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
                super::BlobError::TooLarge
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

    /// The data as a transfer reads it: what is queued, then what is written until `finish`.
    /// Nothing is taken from the queue until the stream is polled, so a transfer that never
    /// starts (say, a call that found no responder) leaves the data for the next one.
    pub fn stream(self: &Arc<Self>) -> Pin<Box<dyn Stream<Item = Bytes> + Send>> {
        Box::pin(Sending(self.clone()))
    }
}

/// The body stream of an outgoing value.
pub struct Body(Arc<Queue>);

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

/// A transfer a backend opened at `write-data`.
pub struct Writing {
    /// Whether the object was stored.
    outcome: Outcome,
    io: Option<Io>,
    /// How long the outcome may keep the guest waiting while no data moves; `None`: no bound.
    idle: Option<Duration>,
}

impl Writing {
    pub fn new(outcome: Outcome, io: Option<Io>, idle: Option<Duration>) -> Self {
        Self { outcome, io, idle }
    }

    /// Waits for the outcome once the guest is done writing; gives up only when no data has
    /// moved for `idle`, so a large object may take as long as it keeps moving.
    async fn outcome(mut self, queue: &Queue) -> Result<(), String> {
        loop {
            let sent = queue.sent();
            match bounded(self.idle, &mut self.outcome).await {
                Some(result) => break result?,
                None if queue.sent() != sent => continue,
                None => {
                    return Err(format!(
                        "the blobstore did not confirm the write within {:?}",
                        self.idle.unwrap_or_default()
                    ));
                }
            }
        }
        if let Some(io) = self.io {
            bounded(self.idle, io)
                .await
                .ok_or_else(|| {
                    format!(
                        "sending to the blobstore did not end within {:?}",
                        self.idle.unwrap_or_default()
                    )
                })?
                .map_err(|e| format!("sending to the blobstore: {e:#}"))?;
        }
        Ok(())
    }
}

/// The `outgoing-value` resource.
#[derive(Default)]
pub struct OutgoingValue {
    queue: Arc<Queue>,
    /// The body stream was handed out (there is only one).
    body: bool,
    writing: Option<Writing>,
}

impl OutgoingValue {
    /// The body stream, the first time it is asked for.
    pub fn body(&mut self) -> Option<Body> {
        (!std::mem::replace(&mut self.body, true)).then(|| Body(self.queue.clone()))
    }

    /// Opens the transfer: from now on written data waits for the backend (at most a window
    /// of it). `None` when `write-data` was already called with this value.
    pub fn start_sending(&self) -> Option<Arc<Queue>> {
        if self.writing.is_some() {
            return None;
        }
        self.queue.update(|state| state.sending = true);
        Some(self.queue.clone())
    }

    pub fn sending(&mut self, writing: Writing) {
        self.writing = Some(writing);
    }

    /// Ends the data; with a transfer under way, waits for its outcome.
    pub async fn finish(mut self) -> Result<(), String> {
        self.queue.update(|state| state.finished = true);
        match self.writing.take() {
            Some(writing) => writing.outcome(&self.queue).await,
            None => Ok(()),
        }
    }
}

/// Ends the data without waiting for the outcome: what was written is stored.
impl Drop for OutgoingValue {
    fn drop(&mut self) {
        self.queue.update(|state| state.finished = true);
    }
}
