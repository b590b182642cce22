//! The connection task: the one loop that owns the transport, the codec and keepalive.
//!
//! Every input (bytes read, the application's commands, ping requests, timer expiry) only
//! queues work in the sans-I/O machines; the loop then writes what they queued. Nothing
//! else touches the transport, so one waker per direction is enough.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_channel::{mpsc, oneshot};
use futures_core::Stream;
use futures_io::{AsyncRead, AsyncWrite};
use sonar_core::{CloseCode, CloseFrame, Connection, Event, Message};
use sonar_keepalive::{Input, KeepAlive, Output, PingRegistry};

use crate::shared::{CloseStatus, Outcome, Shared};
use crate::{Config, Error, Sleep, Timer};

/// Bytes asked of the transport per read.
const SCRATCH_SIZE: usize = 64 * 1024;

thread_local! {
    /// One zeroed read buffer per thread, shared by every connection task that runs on it.
    /// Reads land here and only the bytes received are copied into the connection's own
    /// buffer: no read zeroes memory (it used to cost most of a small echo's CPU), and an idle
    /// connection holds no read buffer at all.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
/// Rounds of the loop per poll before yielding to the runtime (fairness).
const BUDGET: usize = 32;
/// After a protocol error, how long the application may take to answer the messages that
/// arrived before it, before the failing Close goes out anyway.
const FAIL_GRACE: Duration = Duration::from_secs(1);

/// The codec configuration the driver runs with: the application's, with the failing Close
/// deferred until the application has answered the messages before the error.
pub(crate) fn codec_config(config: &Config) -> sonar_core::Config {
    config.codec.clone().with_defer_fail_close(true)
}

/// What the application's handles ask of the connection task.
pub(crate) enum Command {
    Message(Message),
    Pong(Bytes),
    Close(Option<CloseFrame>, Option<oneshot::Sender<()>>),
    Flush(oneshot::Sender<()>),
    /// Resolves (by being dropped) when the connection task has finished.
    WaitClosed(oneshot::Sender<()>),
}

/// The connection task of one WebSocket: a future that runs until the connection is closed.
///
/// Runtime adapters spawn it; without an adapter, spawn it on any executor (or poll it
/// alongside the application with a `select`). Dropping it closes the transport at once.
/// It resolves to `Ok(())` after a completed closing handshake and to the error that ended the
/// connection otherwise (the same error the application's handles report).
#[must_use = "the connection makes no progress unless its driver is polled (spawn it)"]
pub struct Driver<T> {
    io: Option<T>,
    conn: Connection,
    ka: KeepAlive,
    registry: PingRegistry,
    pings_open: bool,
    timer: Arc<dyn Timer>,
    origin: Instant,
    sleep: Option<Pin<Box<dyn Sleep>>>,
    armed: Option<Duration>,
    read_buf: BytesMut,
    input_dirty: bool,
    read_eof: bool,
    inbound: mpsc::Sender<Message>,
    held: Option<Message>,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    write_buffer: usize,
    needs_flush: bool,
    flush_waiters: Vec<oneshot::Sender<()>>,
    close_waiters: Vec<oneshot::Sender<()>>,
    output_pending: bool,
    shared: Arc<Shared>,
    error: Option<Error>,
    peer_close: Option<Option<CloseFrame>>,
    we_closed_first: bool,
    shutting_down: bool,
    abort: bool,
    done: bool,
    /// A protocol error stopped input; its Close waits for the application (or FAIL_GRACE).
    fail_deadline: Option<Duration>,
    /// The message channel was closed after the last message before the error.
    inbound_ended: bool,
    /// The last look at the command channel found it empty (or closed).
    commands_idle: bool,
}

impl<T> std::fmt::Debug for Driver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("done", &self.done)
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

pub(crate) struct DriverParts {
    pub(crate) conn: Connection,
    pub(crate) leftover: BytesMut,
    pub(crate) config: Config,
    pub(crate) timer: Arc<dyn Timer>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) inbound: mpsc::Sender<Message>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) registry: PingRegistry,
    pub(crate) salt: u32,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    pub(crate) fn new(io: T, parts: DriverParts) -> Self {
        let origin = parts.timer.now();
        let mut ka = KeepAlive::new(parts.config.keepalive, parts.salt);
        ka.handle(Duration::ZERO, Input::Opened);
        let input_dirty = !parts.leftover.is_empty();
        if input_dirty {
            ka.handle(Duration::ZERO, Input::BytesReceived);
        }
        Driver {
            io: Some(io),
            conn: parts.conn,
            ka,
            registry: parts.registry,
            pings_open: true,
            timer: parts.timer,
            origin,
            sleep: None,
            armed: None,
            read_buf: parts.leftover,
            input_dirty,
            read_eof: false,
            inbound: parts.inbound,
            held: None,
            commands: parts.commands,
            commands_open: true,
            write_buffer: parts.config.write_buffer.max(1),
            needs_flush: false,
            flush_waiters: Vec::new(),
            close_waiters: Vec::new(),
            output_pending: false,
            shared: parts.shared,
            error: None,
            peer_close: None,
            we_closed_first: false,
            shutting_down: false,
            abort: false,
            done: false,
            fail_deadline: None,
            inbound_ended: false,
            commands_idle: false,
        }
    }

    fn now(&self) -> Duration {
        self.timer.now().saturating_duration_since(self.origin)
    }

    fn fail(&mut self, error: Error) {
        if self.error.is_none() {
            tracing::debug!(%error, "websocket connection failed");
            self.error = Some(error);
        }
    }

    fn start_closing(&mut self, now: Duration) {
        self.shared.closing.store(true, Relaxed);
        self.ka.handle(now, Input::CloseStarted);
    }

    /// Feeds buffered input to the codec (the handshake's leftover bytes first of all).
    fn process_input(&mut self, now: Duration) -> bool {
        if !self.input_dirty || self.held.is_some() {
            return false;
        }
        if let Err(e) = self.conn.handle_read(&mut self.read_buf) {
            tracing::debug!(error = %e, "protocol error from peer");
            let error = Error::Protocol(e);
            self.fail(error.clone());
            if self.conn.failure_pending() && self.fail_deadline.is_none() {
                // The application sees the error after the messages that preceded it, and
                // may answer them before the failing Close goes out.
                self.shared.set_early_error(error);
                self.fail_deadline = Some(now.saturating_add(FAIL_GRACE));
            }
        }
        // The codec stopped in front of a Ping because the previous pong is still owed:
        // write it (later in this round), then parse on. If the transport takes nothing, the
        // next call coalesces the pongs instead (bounded), so this never spins.
        self.input_dirty = self.conn.has_pending_input();
        true
    }

    /// Takes the application's commands while the outbound buffer has room.
    fn pump_commands(&mut self, cx: &mut Context<'_>, now: Duration) -> bool {
        let mut progress = false;
        self.commands_idle = !self.commands_open;
        while self.commands_open && !self.shutting_down {
            if self.conn.outbound().remaining() >= self.write_buffer {
                break;
            }
            match Pin::new(&mut self.commands).poll_next(cx) {
                Poll::Ready(Some(cmd)) => {
                    progress = true;
                    self.apply(cmd, now);
                }
                Poll::Ready(None) => {
                    self.commands_open = false;
                    self.commands_idle = true;
                    progress = true;
                }
                Poll::Pending => {
                    self.commands_idle = true;
                    break;
                }
            }
        }
        // Every handle is gone: nobody can read or send again, so close normally.
        if !self.commands_open && self.inbound.is_closed() && !self.shared.closing.load(Relaxed) {
            let frame = CloseFrame::new(CloseCode::NORMAL);
            if self.conn.close(Some(frame)).is_ok() {
                self.we_closed_first = self.peer_close.is_none();
                self.start_closing(now);
                progress = true;
            }
        }
        progress
    }

    fn apply(&mut self, cmd: Command, now: Duration) {
        match cmd {
            Command::Message(m) => {
                if let Err(e) = self.conn.send(m) {
                    tracing::debug!(error = %e, "message dropped");
                } else {
                    self.shared.counters.messages_out.fetch_add(1, Relaxed);
                }
            }
            Command::Pong(p) => {
                let _ = self.conn.pong(p);
            }
            Command::Close(frame, waiter) => {
                if let Some(w) = waiter {
                    self.close_waiters.push(w);
                }
                match self.conn.close(frame) {
                    Ok(()) => {
                        self.we_closed_first = self.peer_close.is_none();
                        self.start_closing(now);
                    }
                    Err(e) => tracing::debug!(error = %e, "close refused"),
                }
            }
            Command::WaitClosed(w) => self.close_waiters.push(w),
            Command::Flush(w) => {
                if self.conn.wants_write() || self.needs_flush {
                    self.flush_waiters.push(w);
                } else {
                    let _ = w.send(());
                }
            }
        }
    }

    /// Takes user ping requests and hands them to keepalive and the codec.
    fn pump_pings(&mut self, cx: &mut Context<'_>, now: Duration) -> bool {
        let mut progress = false;
        while self.pings_open {
            match self.registry.poll_request(cx) {
                Poll::Ready(Some(req)) => {
                    progress = true;
                    let result = self.ka.user_ping(now, req.payload());
                    let result = match result {
                        Ok((id, payload)) => match self.send_ping(payload.as_ref()) {
                            Ok(()) => Ok(id),
                            Err(_) => {
                                // Free the user slot the refused ping would hold.
                                self.ka.cancel_ping(id);
                                Err(sonar_keepalive::PingError::NotOpen)
                            }
                        },
                        Err(e) => Err(e),
                    };
                    self.registry.bind(req, result);
                }
                Poll::Ready(None) => {
                    self.pings_open = false;
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        progress
    }

    fn send_ping(&mut self, payload: &[u8]) -> Result<(), sonar_core::SendError> {
        self.conn.ping(Bytes::copy_from_slice(payload))?;
        self.shared.counters.pings_sent.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Acts on what keepalive asks for.
    fn pump_keepalive(&mut self, now: Duration) -> bool {
        let mut progress = false;
        while let Some(out) = self.ka.poll(now) {
            progress = true;
            match out {
                Output::SendPing { payload, .. } => {
                    let _ = self.send_ping(payload.as_ref());
                }
                Output::SendPong { payload } => {
                    let _ = self.conn.pong(Bytes::copy_from_slice(payload.as_ref()));
                }
                Output::Dead(reason) => {
                    tracing::info!(%reason, "keepalive: peer declared dead");
                    // Best effort (K-16): queue Close 1011, write it if the transport takes it
                    // at once, and close the transport without waiting for the peer.
                    let code = CloseCode::new(reason.close_code()).unwrap_or(CloseCode::INTERNAL);
                    let frame = CloseFrame::with_reason(code, reason.close_reason());
                    let _ = self.conn.close(Some(frame));
                    self.start_closing(now);
                    self.fail(Error::Keepalive(reason));
                    self.abort = true;
                }
                Output::Rtt(_) => {
                    self.shared.counters.pongs_matched.fetch_add(1, Relaxed);
                    self.shared.set_rtt(self.ka.rtt());
                }
                Output::PingAcked { id, latency } => self.registry.complete(id, latency),
                Output::PingFailed { id } => self.registry.fail(id),
                Output::UnmatchedPong => {
                    self.shared.counters.pongs_unmatched.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
        progress
    }

    /// Moves the codec's events to the application and to keepalive.
    fn pump_events(&mut self, cx: &mut Context<'_>, now: Duration) -> bool {
        let mut progress = false;
        if let Some(m) = self.held.take() {
            match self.inbound.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    progress = true;
                    self.deliver(m);
                    if self.held.is_none() {
                        self.ka.handle(now, Input::ReadResumed);
                    }
                }
                Poll::Ready(Err(_)) => progress = true, // the reader is gone: drop it
                Poll::Pending => {
                    self.held = Some(m);
                    return false;
                }
            }
        }
        while self.held.is_none() {
            let Some(ev) = self.conn.poll_event() else {
                break;
            };
            progress = true;
            match ev {
                Event::Message(m) => {
                    self.deliver(m);
                    if self.held.is_some() {
                        self.ka.handle(now, Input::ReadPaused);
                        // Registers the waker for when the application makes room.
                        if self.inbound.poll_ready(cx).is_ready() {
                            cx.waker().wake_by_ref();
                        }
                    }
                }
                Event::Ping(_) => {
                    self.shared.counters.pings_received.fetch_add(1, Relaxed);
                    // Feeds the optional ping-flood guard (K-22).
                    self.ka.handle(now, Input::PingReceived);
                }
                Event::Pong(p) => self.ka.handle(now, Input::PongReceived(&p)),
                Event::PingSent(p) => self.ka.handle(now, Input::PingWrittenPayload(&p)),
                Event::CloseReceived(frame) => {
                    tracing::debug!(?frame, "close received");
                    if self.peer_close.is_none() {
                        self.peer_close = Some(frame);
                    }
                    self.start_closing(now);
                }
                Event::CloseTransport => self.shutting_down = true,
                _ => {}
            }
        }
        if self.fail_deadline.is_some() && self.held.is_none() && !self.inbound_ended {
            // Every message before the error is queued: end the stream with the error.
            self.inbound.close_channel();
            self.inbound_ended = true;
            progress = true;
        }
        progress
    }

    /// Sends the failing Close once the application has answered what preceded the error:
    /// it read to the end (`reader_done`, loaded before the command channel was drained, so
    /// every answer it sent first has been taken) or dropped its reader, or the grace passed.
    fn commit_failure(&mut self, reader_done: bool, now: Duration) -> bool {
        let Some(deadline) = self.fail_deadline else {
            return false;
        };
        if !self.conn.failure_pending() {
            return false;
        }
        if (reader_done && self.commands_idle) || now >= deadline {
            self.conn.commit_failure();
            self.start_closing(now);
            return true;
        }
        false
    }

    fn deliver(&mut self, m: Message) {
        match self.inbound.try_send(m) {
            Ok(()) => {
                self.shared.counters.messages_in.fetch_add(1, Relaxed);
            }
            Err(e) if e.is_full() => self.held = Some(e.into_inner()),
            Err(_) => {} // the application dropped its reader; the message has nowhere to go
        }
    }

    /// Reads from the transport while the application keeps up.
    fn read(&mut self, cx: &mut Context<'_>, now: Duration) -> bool {
        if self.read_eof
            || self.held.is_some()
            || self.input_dirty
            || self.shutting_down
            || self.fail_deadline.is_some()
        {
            return false;
        }
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        if self.read_buf.is_empty() && self.read_buf.capacity() > SCRATCH_SIZE {
            // A large message has been taken: do not keep its buffer on an idle connection.
            self.read_buf = BytesMut::new();
        }
        let read_buf = &mut self.read_buf;
        let mut read_into = |scratch: &mut Vec<u8>| {
            if scratch.len() < SCRATCH_SIZE {
                scratch.resize(SCRATCH_SIZE, 0);
            }
            let result = Pin::new(&mut *io).poll_read(cx, &mut scratch[..]);
            if let Poll::Ready(Ok(n)) = result {
                read_buf.extend_from_slice(scratch.get(..n).unwrap_or_default());
            }
            result
        };
        let result = SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => read_into(&mut scratch),
            // Only if a transport re-entered another connection task on this thread.
            Err(_) => read_into(&mut Vec::new()),
        });
        match result {
            Poll::Ready(Ok(0)) => {
                self.read_eof = true;
                self.conn.handle_eof();
                true
            }
            Poll::Ready(Ok(n)) => {
                self.shared.counters.bytes_in.fetch_add(n as u64, Relaxed);
                self.ka.handle(now, Input::BytesReceived);
                self.input_dirty = true;
                true
            }
            Poll::Ready(Err(e)) => {
                self.read_eof = true;
                self.fail(e.into());
                self.conn.handle_eof();
                true
            }
            Poll::Pending => false,
        }
    }

    /// Writes what the codec queued, vectored, then flushes.
    fn write(&mut self, cx: &mut Context<'_>, now: Duration) -> bool {
        let mut progress = false;
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        let mut pending = false;
        while self.conn.wants_write() {
            let mut out = self.conn.outbound();
            let mut slices = [IoSlice::new(&[]); 64];
            let n = out.chunks_vectored(&mut slices);
            let result = Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]);
            match result {
                Poll::Ready(Ok(0)) => {
                    self.error.get_or_insert(Error::from(std::io::Error::from(
                        std::io::ErrorKind::WriteZero,
                    )));
                    self.abort = true;
                    return true;
                }
                Poll::Ready(Ok(k)) => {
                    out.advance(k);
                    self.shared.counters.bytes_out.fetch_add(k as u64, Relaxed);
                    self.ka.handle(now, Input::WriteProgress);
                    self.needs_flush = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.fail(e.into());
                    self.abort = true;
                    return true;
                }
                Poll::Pending => {
                    pending = true;
                    break;
                }
            }
        }
        if pending != self.output_pending {
            self.output_pending = pending;
            self.ka.handle(now, Input::OutputPending(pending));
        }
        if !pending && self.needs_flush {
            match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.needs_flush = false;
                    for w in self.flush_waiters.drain(..) {
                        let _ = w.send(());
                    }
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.fail(e.into());
                    self.abort = true;
                    return true;
                }
                Poll::Pending => {}
            }
        }
        progress
    }

    /// Arms the sleep at the earliest deadline; true if it has already passed.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let fail = self.fail_deadline.filter(|_| self.conn.failure_pending());
        let deadline = [self.conn.poll_timeout(), self.ka.next_deadline(), fail]
            .into_iter()
            .flatten()
            .min();
        let Some(deadline) = deadline else {
            self.armed = None;
            return false;
        };
        let at = self.origin + deadline;
        match &mut self.sleep {
            Some(s) if self.armed != Some(deadline) => s.as_mut().reset(at),
            Some(_) => {}
            None => self.sleep = Some(self.timer.sleep_until(at)),
        }
        self.armed = Some(deadline);
        match &mut self.sleep {
            Some(s) => match s.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.armed = None;
                    let now = self.now().max(deadline);
                    self.conn.handle_timeout(now);
                    true
                }
                Poll::Pending => false,
            },
            None => false,
        }
    }

    /// Closes the transport and publishes the outcome. Returns true once it is done.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.abort
            && let Some(io) = self.io.as_mut()
            && Pin::new(io).poll_close(cx).is_pending()
        {
            return false;
        }
        self.io = None;
        self.finish();
        true
    }

    fn finish(&mut self) {
        let now = self.now();
        self.ka.handle(now, Input::Closed);
        while let Some(out) = self.ka.poll(now) {
            if let Output::PingFailed { id } = out {
                self.registry.fail(id);
            }
        }
        self.registry.close();
        let status = self.close_status();
        let outcome = match self.error.take() {
            Some(e) => Outcome::Failed(e, status),
            None => match status {
                Some(s) => Outcome::Closed(s),
                None => Outcome::Failed(Error::ConnectionClosed, None),
            },
        };
        if let Outcome::Closed(s) = &outcome {
            tracing::debug!(code = s.code.as_u16(), reason = %s.reason, by_peer = s.by_peer, "websocket closed");
        }
        self.shared.finish(outcome);
        self.inbound.close_channel();
        self.commands.close();
        self.close_waiters.clear();
        self.flush_waiters.clear();
        self.done = true;
    }

    fn close_status(&self) -> Option<CloseStatus> {
        match &self.peer_close {
            Some(Some(frame)) => Some(CloseStatus {
                code: frame.code,
                reason: frame.reason.to_string(),
                by_peer: !self.we_closed_first,
            }),
            Some(None) => Some(CloseStatus {
                code: CloseCode::NO_STATUS_RECEIVED,
                reason: String::new(),
                by_peer: !self.we_closed_first,
            }),
            None => Some(CloseStatus {
                code: CloseCode::ABNORMAL,
                reason: String::new(),
                by_peer: false,
            }),
        }
    }

    fn result(&self) -> Result<(), Error> {
        match self.shared.error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Driver<T> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(this.result());
        }
        this.shared.driver.register(cx.waker());
        for _ in 0..BUDGET {
            let now = this.now();
            // Loaded before the commands are drained (see `commit_failure`).
            let reader_done = this.shared.reader_done();
            let mut progress = this.process_input(now);
            progress |= this.pump_commands(cx, now);
            progress |= this.pump_pings(cx, now);
            progress |= this.pump_keepalive(now);
            progress |= this.pump_events(cx, now);
            progress |= this.read(cx, now);
            progress |= this.commit_failure(reader_done, now);
            progress |= this.write(cx, now);
            // After the peer's EOF nothing more can arrive: once what we owe it is written
            // (and the application has taken every message), the connection is over.
            let drained = this.read_eof && this.held.is_none() && !this.input_dirty;
            if this.abort || ((this.shutting_down || drained) && !this.conn.wants_write()) {
                tracing::trace!(
                    abort = this.abort,
                    close_transport = this.shutting_down,
                    read_eof = this.read_eof,
                    "connection task shutting down"
                );
                if this.poll_shutdown(cx) {
                    return Poll::Ready(this.result());
                }
                return Poll::Pending;
            }
            if !progress && !this.poll_timer(cx) {
                return Poll::Pending;
            }
        }
        // Out of budget with work left: let other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T> Drop for Driver<T> {
    fn drop(&mut self) {
        if !self.done {
            self.registry.close();
            self.shared
                .finish(Outcome::Failed(Error::ConnectionClosed, None));
        }
    }
}
