//! The application's side of a connection: [`WebSocket`] and its split halves.

use std::future::Future;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_core::Stream;
use futures_sink::Sink;
use sonar_core::{CloseCode, CloseFrame, Message};
use sonar_keepalive::{Pinger, RttStats};

use crate::Error;
use crate::driver::Command;
use crate::shared::{CloseStatus, Shared, Stats};

/// One WebSocket connection, as the application sees it.
///
/// It talks to the connection's [`Driver`](crate::Driver) task, which owns the transport,
/// answers pings and runs keepalive whether or not the application is reading or writing.
/// `WebSocket` is a [`Stream`] of received messages and a [`Sink`] of messages to send, and
/// has inherent async methods for the same.
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

/// The receiving half of a [`WebSocket`] (see [`WebSocket::split`]).
#[derive(Debug)]
pub struct WsReader {
    rx: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
    ended: bool,
}

/// The sending half of a [`WebSocket`] (see [`WebSocket::split`]). Cloning it gives another
/// sender to the same connection (for fan-out); all clones share one bounded queue.
#[derive(Debug)]
pub struct WsWriter {
    tx: mpsc::Sender<Command>,
    pinger: Pinger,
    shared: Arc<Shared>,
    /// `Sink::poll_close` in progress: resolves when the connection task is done.
    close_wait: Option<oneshot::Receiver<()>>,
}

impl Clone for WsWriter {
    fn clone(&self) -> Self {
        WsWriter {
            tx: self.tx.clone(),
            pinger: self.pinger.clone(),
            shared: self.shared.clone(),
            close_wait: None,
        }
    }
}

impl WebSocket {
    pub(crate) fn new(
        rx: mpsc::Receiver<Message>,
        tx: mpsc::Sender<Command>,
        pinger: Pinger,
        shared: Arc<Shared>,
    ) -> Self {
        WebSocket {
            reader: WsReader {
                rx,
                shared: shared.clone(),
                ended: false,
            },
            writer: WsWriter {
                tx,
                pinger,
                shared,
                close_wait: None,
            },
        }
    }

    /// Receives the next message; `None` once the connection has closed cleanly and every
    /// message received before the close has been returned. A connection that failed
    /// returns its error once, then `None`.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.reader.recv().await
    }

    /// Queues a message for sending, waiting while the connection's write queue is full.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.writer.send(message).await
    }

    /// Starts the closing handshake and waits until the connection is closed (bounded by the
    /// close timeout). Messages sent before are written first.
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

    /// Waits until the connection task has finished: the closing handshake is done (or timed
    /// out, or the connection failed) and everything queued before was written. Use it before
    /// exiting a program, so that the last answers and the Close are not lost.
    pub async fn closed(&mut self) {
        self.writer.closed().await
    }

    /// Round-trip time statistics of pings (keepalive and user pings).
    pub fn rtt(&self) -> Option<RttStats> {
        self.writer.shared.rtt()
    }

    /// Counters of this connection.
    pub fn stats(&self) -> Stats {
        self.writer.shared.stats()
    }

    /// How the connection ended, once it has.
    pub fn close_status(&self) -> Option<CloseStatus> {
        self.writer.shared.close_status()
    }

    /// Splits the connection into a reader and a writer that can be used from two tasks.
    pub fn split(self) -> (WsReader, WsWriter) {
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
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// How the connection ended, once it has.
    pub fn close_status(&self) -> Option<CloseStatus> {
        self.shared.close_status()
    }
}

impl Stream for WsReader {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut self.rx).poll_next(cx)) {
            Some(m) => Poll::Ready(Some(Ok(m))),
            None => {
                self.ended = true;
                self.shared.mark_reader_done();
                Poll::Ready(self.shared.error().map(Err))
            }
        }
    }
}

impl Drop for WsReader {
    fn drop(&mut self) {
        // Nobody will read the rest: a failing connection need not wait for answers.
        self.shared.mark_reader_done();
    }
}

impl WsWriter {
    fn closed_error(&self) -> Error {
        self.shared.error().unwrap_or(Error::ConnectionClosed)
    }

    async fn command(&mut self, cmd: Command) -> Result<(), Error> {
        poll_fn(|cx| self.tx.poll_ready(cx))
            .await
            .map_err(|_| self.closed_error())?;
        self.tx.start_send(cmd).map_err(|_| self.closed_error())
    }

    /// Queues a message (see [`WebSocket::send`]).
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        if self.shared.closing.load(Relaxed) {
            return Err(self.closed_error());
        }
        self.command(Command::Message(message.into())).await
    }

    /// Sends an unsolicited pong (see [`WebSocket::pong`]).
    pub async fn pong(&mut self, payload: impl Into<Bytes>) -> Result<(), Error> {
        let payload = payload.into();
        if payload.len() > 125 {
            return Err(Error::Send(sonar_core::SendError::ControlTooLong));
        }
        self.command(Command::Pong(payload)).await
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
        let frame = CloseFrame::with_reason(code, reason.to_owned());
        let (tx, rx) = oneshot::channel();
        if self
            .command(Command::Close(Some(frame), Some(tx)))
            .await
            .is_err()
        {
            // Already closed: nothing left to wait for.
            return Ok(());
        }
        let _ = rx.await;
        Ok(())
    }

    /// Waits until the connection task has finished (see [`WebSocket::closed`]).
    pub async fn closed(&mut self) {
        let (tx, rx) = oneshot::channel();
        if self.command(Command::WaitClosed(tx)).await.is_ok() {
            // Canceled: the task finished and dropped the sender.
            let _ = rx.await;
        }
    }

    /// Waits until everything queued so far is written and flushed.
    pub async fn flush(&mut self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Flush(tx)).await?;
        rx.await.map_err(|_| self.closed_error())
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

    fn ping_error(&self, e: sonar_keepalive::PingError) -> Error {
        match e {
            sonar_keepalive::PingError::ConnectionClosed => self.closed_error(),
            e => Error::Ping(e),
        }
    }

    /// Round-trip time statistics of pings.
    pub fn rtt(&self) -> Option<RttStats> {
        self.shared.rtt()
    }

    /// Counters of this connection.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

impl Sink<Message> for WsWriter {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let r = ready!(self.tx.poll_ready(cx));
        Poll::Ready(r.map_err(|_| self.closed_error()))
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        if self.shared.closing.load(Relaxed) {
            return Err(self.closed_error());
        }
        self.tx
            .start_send(Command::Message(item))
            .map_err(|_| self.closed_error())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Queued messages belong to the connection task, which writes them as fast as the
        // transport takes them; use `WsWriter::flush` to wait for the transport itself.
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.close_wait.is_none() {
            if ready!(self.tx.poll_ready(cx)).is_err() {
                return Poll::Ready(Ok(()));
            }
            let (tx, rx) = oneshot::channel();
            let frame = CloseFrame::new(CloseCode::NORMAL);
            if self
                .tx
                .start_send(Command::Close(Some(frame), Some(tx)))
                .is_err()
            {
                return Poll::Ready(Ok(()));
            }
            self.close_wait = Some(rx);
        }
        if let Some(rx) = self.close_wait.as_mut() {
            // Canceled means the connection task finished: that is what we wait for.
            let _ = ready!(Pin::new(rx).poll(cx));
        }
        Poll::Ready(Ok(()))
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
