//! The application's side of a connection: [`WebSocket`] and its split halves.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use sonar_core::{CloseCode, CloseFrame, Message, PreparedMessage};
use sonar_keepalive::{Pinger, RttStats};

use crate::Error;
use crate::conn::{Inner, State, WriteWhen};
use crate::shared::{CloseStatus, Stats};

/// One WebSocket connection, as the application sees it.
///
/// `recv` and `send` do the connection's work inline (read and parse, encode and write), so
/// an echo costs one task wake-up; the connection's [`Keeper`](crate::Keeper) task answers
/// pings and runs keepalive whenever the application is not waiting on the connection.
/// `WebSocket` is a [`Stream`] of received messages and a [`Sink`] of messages to send, and
/// has inherent async methods for the same.
///
/// ```no_run
/// use sonar_async::{Message, WebSocket};
/// # async fn demo(mut ws: WebSocket) -> Result<(), sonar_async::Error> {
/// ws.send(format!("hello at {:?}", std::time::SystemTime::now())).await?;
/// while let Some(message) = ws.recv().await {
///     match message? {
///         Message::Text(text) => println!("text: {text}"),
///         Message::Binary(data) => println!("{} bytes", data.len()),
///     }
/// }
/// // The stream ended: the closing handshake is over and the status is known.
/// println!("closed: {:?}", ws.close_status());
/// # Ok(()) }
/// ```
///
/// # Cancel safety
/// [`recv`](Self::recv) is cancel safe: if its future is dropped (in a `select!`), no message
/// is lost. [`send`](Self::send) is cancel safe too: a `send` cancelled while it waits for room
/// has not queued its message; once it returns, the message is queued and will be written.
#[derive(Debug)]
pub struct WebSocket {
    reader: WsReader,
    writer: WsWriter,
}

/// The receiving half of a [`WebSocket`] (see [`WebSocket::into_split`]), a [`Stream`] of
/// messages.
///
/// ```no_run
/// use futures_util::StreamExt;
/// # async fn demo(ws: sonar_async::WebSocket) -> Result<(), sonar_async::Error> {
/// let (mut reader, writer) = ws.into_split();
/// while let Some(message) = reader.next().await {
///     println!("{:?}", message?);
/// }
/// # drop(writer); Ok(()) }
/// ```
pub struct WsReader {
    inner: Arc<Inner>,
}

/// The sending half of a [`WebSocket`] (see [`WebSocket::into_split`]), a [`Sink`] of
/// messages. Cloning it gives another sender to the same connection (for fan-out); all
/// clones share one bounded queue. Every call takes the connection's lock for as long as
/// it queues (and, when the transport takes it at once, writes) the message.
///
/// ```no_run
/// # async fn demo(ws: sonar_async::WebSocket) -> Result<(), sonar_async::Error> {
/// let (reader, writer) = ws.into_split();
/// let mut ticker = writer.clone();
/// // One task sends ticks while another answers the peer through `writer`.
/// ticker.send("tick").await?;
/// println!("{} bytes not yet written", ticker.buffered_amount());
/// # drop((reader, writer)); Ok(()) }
/// ```
pub struct WsWriter {
    inner: Arc<Inner>,
    pinger: Pinger,
    /// `Sink::poll_close` has started the closing handshake.
    close_started: bool,
}

impl std::fmt::Debug for WsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReader").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsWriter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Clone for WsWriter {
    fn clone(&self) -> Self {
        self.inner.lock().writer_cloned();
        WsWriter {
            inner: self.inner.clone(),
            pinger: self.pinger.clone(),
            close_started: false,
        }
    }
}

impl Drop for WsWriter {
    fn drop(&mut self) {
        self.inner.lock().writer_dropped();
    }
}

impl WebSocket {
    pub(crate) fn new(inner: Arc<Inner>, pinger: Pinger) -> Self {
        WebSocket {
            reader: WsReader {
                inner: inner.clone(),
            },
            writer: WsWriter {
                inner,
                pinger,
                close_started: false,
            },
        }
    }

    /// Receives the next message; `None` once the connection has closed cleanly and every
    /// message received before the close has been returned. A connection that failed
    /// returns its error once, then `None`; a transport that ended without a closing
    /// handshake is a failure too ([`Error::AbnormalClosure`], close code 1006).
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.reader.recv().await
    }

    /// Queues a message and writes it (waiting only while the connection's write queue is
    /// full). While received messages are still waiting to be taken, the answers to them
    /// are written together, by the `recv` that finds no more (or by the keeper).
    pub fn send(
        &mut self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        self.writer.send(message)
    }

    /// Queues a [`PreparedMessage`] and writes it (see [`WsWriter::send_prepared`]).
    pub async fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        self.writer.send_prepared(message).await
    }

    /// Starts the closing handshake and waits until the connection is closed (bounded by the
    /// close timeout: then `Err(Error::CloseTimeout)`). Messages sent before are written
    /// first. Closing a connection that has already ended is `Ok`.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.writer.close(code, reason).await
    }

    /// Sends a ping with a generated payload and resolves to its round-trip time.
    pub async fn ping(&self) -> Result<Duration, Error> {
        self.writer.ping().await
    }

    /// Sends a ping with the given payload (at most 125 bytes, unique among outstanding pings).
    pub async fn ping_with(&self, payload: impl Into<Vec<u8>>) -> Result<Duration, Error> {
        self.writer.ping_with(payload).await
    }

    /// Sends an unsolicited pong (a one-way heartbeat); never displaces an owed auto-pong.
    pub async fn pong(&mut self, payload: impl Into<Bytes>) -> Result<(), Error> {
        self.writer.pong(payload).await
    }

    /// Waits until every message queued so far has been written to the transport and flushed.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.writer.flush().await
    }

    /// Waits until the connection has finished: the closing handshake is done (or timed
    /// out, or the connection failed) and everything queued before was written. Use it before
    /// exiting a program, so that the last answers and the Close are not lost.
    pub async fn closed(&mut self) {
        self.writer.closed().await
    }

    /// Round-trip time statistics of pings (keepalive and user pings).
    pub fn rtt(&self) -> Option<RttStats> {
        self.writer.rtt()
    }

    /// Counters of this connection.
    pub fn stats(&self) -> Stats {
        self.writer.stats()
    }

    /// How the connection ended, once it has.
    pub fn close_status(&self) -> Option<CloseStatus> {
        self.writer.inner.lock().close_status()
    }

    /// Splits the connection into its owned halves, reader first (as tokio's
    /// `TcpStream::into_split`), to use from two tasks. [`WsReader::reunite`] puts them back
    /// together. No lock is shared between the halves beyond the connection's own.
    ///
    /// `futures::StreamExt::split` works too, and gives `(sink, stream)` as with any
    /// `Stream + Sink`; these halves keep `ping`, `rtt`, `close` and `try_send`, and the
    /// writer is `Clone`.
    ///
    /// ```no_run
    /// # async fn demo(ws: sonar_async::WebSocket) -> Result<(), sonar_async::Error> {
    /// let (mut reader, mut writer) = ws.into_split();
    /// while let Some(message) = reader.recv().await {
    ///     writer.send(message?).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn into_split(self) -> (WsReader, WsWriter) {
        (self.reader, self.writer)
    }

    /// Another sender to this connection (cloneable, bounded), for fan-out.
    pub fn sender(&self) -> WsWriter {
        self.writer.clone()
    }
}

impl WsReader {
    /// Receives the next message (see [`WebSocket::recv`]).
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.inner.lock().poll_recv(cx)).await
    }

    /// Puts the halves of one connection back together (any writer of it will do, a clone
    /// included); halves of two different connections are handed back in the error.
    pub fn reunite(self, writer: WsWriter) -> Result<WebSocket, ReuniteError> {
        if Arc::ptr_eq(&self.inner, &writer.inner) {
            Ok(WebSocket {
                reader: self,
                writer,
            })
        } else {
            Err(ReuniteError(self, writer))
        }
    }

    /// How the connection ended, once it has.
    pub fn close_status(&self) -> Option<CloseStatus> {
        self.inner.lock().close_status()
    }
}

impl Stream for WsReader {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.lock().poll_recv(cx)
    }
}

impl Drop for WsReader {
    fn drop(&mut self) {
        // Nobody will read the rest: a failing connection need not wait for answers.
        self.inner.lock().reader_dropped();
    }
}

impl WsWriter {
    /// Queues a message and writes it (see [`WebSocket::send`]).
    ///
    /// Not an `async fn`: the message is converted before the future is built, so the future
    /// holds one message and a reference (48 bytes), and a connection task waiting in `send`
    /// is no larger than one waiting in `recv` plus the message.
    pub fn send(
        &mut self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        let mut message = Some(message.into());
        let inner = &*self.inner;
        poll_fn(move |cx| {
            let mut st = inner.lock();
            ready!(st.poll_send_ready(cx))?;
            match message.take() {
                Some(m) => Poll::Ready(st.send(m, cx)),
                None => Poll::Ready(Ok(())),
            }
        })
    }

    /// Queues a message without waiting: `Err(TrySendError::Full)` hands it back when the
    /// write queue is full (the peer reads slower than it is sent to), and
    /// `Err(TrySendError::Closed)` when the connection is closing or has failed. Queued
    /// messages are written as with [`send`](Self::send).
    ///
    /// This is the call for fan-out: a broadcast never waits on its slowest receiver, and
    /// decides itself what to do with one that falls behind (skip the message, or close the
    /// connection with 1008).
    ///
    /// ```no_run
    /// use sonar_async::{CloseCode, Message, TrySendError, WsWriter};
    /// # async fn demo(mut writers: Vec<WsWriter>) {
    /// for writer in &mut writers {
    ///     match writer.try_send(Message::from("tick")) {
    ///         Ok(()) => {}
    ///         Err(TrySendError::Full(_)) => {
    ///             // Too slow: close it (the Close waits behind its queue, bounded by the
    ///             // close timeout) instead of holding everyone else up.
    ///             let mut slow = writer.clone();
    ///             tokio::spawn(async move { slow.close(CloseCode::POLICY, "too slow").await });
    ///         }
    ///         Err(TrySendError::Closed(..)) => {} // it is leaving anyway
    ///     }
    /// }
    /// # }
    /// ```
    pub fn try_send(&mut self, message: impl Into<Message>) -> Result<(), TrySendError> {
        let message = message.into();
        let kept = message.clone();
        match self.try_queue(0, usize::MAX, |st, cx| st.send(message, cx)) {
            Offer::Queued => Ok(()),
            Offer::Full => Err(TrySendError::Full(kept)),
            Offer::Closed(e) => Err(TrySendError::Closed(kept, e)),
        }
    }

    /// Queues a [`PreparedMessage`] and writes it, as [`send`](Self::send) does with its
    /// message: the frame built once by the prepared message is queued without encoding or
    /// copying it again (server role; a client masks it with its own key).
    ///
    /// ```no_run
    /// use sonar_async::{PreparedMessage, WsWriter};
    /// # async fn demo(mut writers: Vec<WsWriter>) -> Result<(), sonar_async::Error> {
    /// let news = PreparedMessage::new("the same bytes for everyone");
    /// for writer in &mut writers {
    ///     writer.send_prepared(&news).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        let mut queued = false;
        poll_fn(|cx| {
            let mut st = self.inner.lock();
            ready!(st.poll_send_ready(cx))?;
            if std::mem::replace(&mut queued, true) {
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(st.send_prepared(message, WriteWhen::Now, cx))
        })
        .await
    }

    /// Queues a [`PreparedMessage`] without waiting (see [`try_send`](Self::try_send)); an
    /// error hands back a clone of its message (sharing the payload). For fan-out to topics
    /// with a backpressure limit per subscriber, see [`Topics`](crate::Topics).
    pub fn try_send_prepared(&mut self, message: &PreparedMessage) -> Result<(), TrySendError> {
        match self.offer(message, usize::MAX, WriteWhen::Now) {
            Offer::Queued => Ok(()),
            Offer::Full => Err(TrySendError::Full(message.message().clone())),
            Offer::Closed(e) => Err(TrySendError::Closed(message.message().clone(), e)),
        }
    }

    /// Queues `message` unless the connection is closing, its write queue is full, or its
    /// unsent bytes would pass `limit` with this message; it is written as `when` says.
    pub(crate) fn offer(&self, message: &PreparedMessage, limit: usize, when: WriteWhen) -> Offer {
        self.try_queue(message.len(), limit, |st, cx| {
            st.send_prepared(message, when, cx)
        })
    }

    /// Queues with `queue` unless the connection is closing, its write queue is full, or its
    /// unsent bytes plus `len` would pass `limit`.
    fn try_queue(
        &self,
        len: usize,
        limit: usize,
        queue: impl FnOnce(&mut State, &mut Context<'_>) -> Result<(), Error>,
    ) -> Offer {
        let mut st = self.inner.lock();
        if st.is_closing() {
            return Offer::Closed(st.closed_error());
        }
        if st.queue_full() || st.buffered_amount().saturating_add(len) > limit {
            return Offer::Full;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match queue(&mut st, &mut cx) {
            Ok(()) => Offer::Queued,
            Err(e) => Offer::Closed(e),
        }
    }

    /// Starts the closing handshake without waiting for it (the connection's keeper sees it
    /// through, bounded by the close timeout).
    pub(crate) fn start_close(&self, code: CloseCode, reason: &str) {
        let mut cx = Context::from_waker(Waker::noop());
        let frame = CloseFrame::with_reason(code, reason.to_owned());
        self.inner.lock().close(Some(frame), &mut cx);
    }

    /// Whether `other` writes to the same connection.
    pub(crate) fn same_connection(&self, other: &WsWriter) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Bytes queued and not yet written to the transport (frame headers included), like a
    /// browser's `WebSocket.bufferedAmount`: how far the peer is behind.
    pub fn buffered_amount(&self) -> usize {
        self.inner.lock().buffered_amount()
    }

    /// Sends an unsolicited pong (see [`WebSocket::pong`]).
    pub async fn pong(&mut self, payload: impl Into<Bytes>) -> Result<(), Error> {
        let payload = payload.into();
        if payload.len() > 125 {
            return Err(Error::Send(sonar_core::SendError::ControlTooLong));
        }
        let mut payload = Some(payload);
        poll_fn(|cx| {
            let mut st = self.inner.lock();
            Poll::Ready(match payload.take() {
                Some(p) => st.pong(p, cx),
                None => Ok(()),
            })
        })
        .await
    }

    /// Starts the closing handshake and waits for the connection to close (see
    /// [`WebSocket::close`]).
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if !code.is_sendable() {
            return Err(Error::Send(sonar_core::SendError::InvalidCloseCode(
                code.as_u16(),
            )));
        }
        if reason.len() > CloseFrame::MAX_REASON_LEN {
            return Err(Error::Send(sonar_core::SendError::ReasonTooLong));
        }
        let mut frame = Some(CloseFrame::with_reason(code, reason.to_owned()));
        poll_fn(|cx| {
            let mut st = self.inner.lock();
            if let Some(f) = frame.take() {
                st.close(Some(f), cx);
            }
            st.poll_closed(cx)
        })
        .await;
        self.inner.lock().close_result()
    }

    /// Waits until the connection has finished (see [`WebSocket::closed`]).
    pub async fn closed(&mut self) {
        poll_fn(|cx| self.inner.lock().poll_closed(cx)).await
    }

    /// Waits until everything queued so far is written and flushed.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.inner.lock().poll_flush(cx)).await
    }

    /// Sends a ping and resolves to its round-trip time (see [`WebSocket::ping`]).
    pub async fn ping(&self) -> Result<Duration, Error> {
        self.pinger.ping(None).await.map_err(|e| self.ping_error(e))
    }

    /// Sends a ping with a payload (see [`WebSocket::ping_with`]).
    pub async fn ping_with(&self, payload: impl Into<Vec<u8>>) -> Result<Duration, Error> {
        self.pinger
            .ping(Some(payload.into()))
            .await
            .map_err(|e| self.ping_error(e))
    }

    /// A ping that could not be sent or answered because the connection is not open reports
    /// why: the connection's failure if it failed (as every other call does), else
    /// [`Error::ConnectionClosed`].
    fn ping_error(&self, e: sonar_keepalive::PingError) -> Error {
        use sonar_keepalive::PingError::{ConnectionClosed, NotOpen};
        match e {
            ConnectionClosed | NotOpen => self.inner.lock().closed_error(),
            e => Error::Ping(e),
        }
    }

    /// Round-trip time statistics of pings.
    pub fn rtt(&self) -> Option<RttStats> {
        self.inner.lock().rtt()
    }

    /// Counters of this connection.
    pub fn stats(&self) -> Stats {
        self.inner.lock().stats()
    }
}

impl Sink<Message> for WsWriter {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.lock().poll_send_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        let mut cx = Context::from_waker(Waker::noop());
        self.inner.lock().send(item, &mut cx)
    }

    /// Ready once every message sent so far is written to the transport and flushed (as
    /// [`WsWriter::flush`]), so `SinkExt::send` resolves when its message is on the wire.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.lock().poll_flush(cx)
    }

    /// Starts the closing handshake (1000) and is ready once the connection has closed, as
    /// [`WsWriter::close`]: `Err(Error::CloseTimeout)` if the peer did not answer in time.
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let start = !self.close_started;
        self.close_started = true;
        let mut st = self.inner.lock();
        if start {
            st.close(Some(CloseFrame::new(CloseCode::NORMAL)), cx);
        }
        ready!(st.poll_closed(cx));
        Poll::Ready(st.close_result())
    }
}

impl Stream for WebSocket {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.reader).poll_next(cx)
    }
}

impl Sink<Message> for WebSocket {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.writer).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        Pin::new(&mut self.writer).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.writer).poll_close(cx)
    }
}

/// Why [`WsWriter::try_send`] did not queue a message; the message is handed back.
#[derive(Debug, thiserror::Error)]
pub enum TrySendError {
    /// The write queue is full: the peer has not taken what was sent before.
    #[error("write queue full")]
    Full(Message),
    /// The connection is closing or has failed (the error says which).
    #[error("connection closed")]
    Closed(Message, #[source] Error),
}

impl TrySendError {
    /// The message that was not queued.
    pub fn into_message(self) -> Message {
        match self {
            TrySendError::Full(m) | TrySendError::Closed(m, _) => m,
        }
    }
}

/// What [`WsWriter::offer`] did with a message.
#[derive(Debug)]
pub(crate) enum Offer {
    Queued,
    /// Not queued: the write queue is full or the limit would be passed.
    Full,
    /// Not queued: the connection is closing or has failed.
    Closed(Error),
}

/// The halves given to [`WsReader::reunite`] belong to different connections; here they are.
#[derive(Debug, thiserror::Error)]
#[error("the reader and writer belong to different connections")]
pub struct ReuniteError(pub WsReader, pub WsWriter);
