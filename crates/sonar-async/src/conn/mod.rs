//! The state of one connection and the one routine that moves it forward ([`State::drive`]).
//!
//! The state (transport, codec, keepalive, the queue of received messages) sits behind one
//! mutex shared by the application's handles and the keeper task ([`crate::Keeper`]).
//! Whoever needs progress drives it inline: `recv` reads and parses when its queue is empty,
//! `send` encodes and writes at once, and the keeper drives only when nobody else is
//! waiting (keepalive deadlines, pings from the peer while the application is busy, the
//! closing handshake). An echo therefore costs one task wake-up, like a hand-written loop
//! over the socket, while keepalive still runs whether or not the application polls.
//!
//! Wake-ups go through the [`Hub`] (see `hub.rs`): the transport's wake-up is handed to the
//! waiting application task, and the keeper takes over only if that task does not drive.

mod hub;
mod transport;

pub use hub::TAKEOVER_DELAY;
pub(crate) use hub::{Hub, Notify};
pub use transport::{ReadIntoSpare, Transport};
use transport::{SCRATCH_SIZE, read_plain, read_spare, write_frames};

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_io::AsyncWrite;
use sonar_core::{CloseCode, CloseFrame, Connection, Event, Message, PreparedMessage};
use sonar_keepalive::{Input, KeepAlive, Output, PingRegistry, RttStats};

use crate::shared::{CloseStatus, Stats};
use crate::{Config, Error, Timer};

/// Rounds of the drive loop per call before yielding to the runtime (fairness).
const BUDGET: usize = 32;
/// After a protocol error, how long the application may take to answer the messages that
/// arrived before it, before the failing Close goes out anyway.
const FAIL_GRACE: Duration = Duration::from_secs(1);
/// Encoded bytes queued above which `send` writes at once even while the application still
/// has received messages to answer (otherwise it batches them into one write).
const BATCH_BYTES: usize = 16 * 1024;

/// The codec configuration the connection runs with: the application's, with the failing
/// Close deferred until the application has answered the messages before the error, and the
/// permessage-deflate agreement of the handshake (if any) with the application's level,
/// memory level and minimum size.
pub(crate) fn codec_config(
    config: &Config,
    deflate: Option<sonar_handshake::DeflateParams>,
) -> sonar_core::Config {
    let c = &config.deflate;
    let deflate = deflate.map(|p| {
        sonar_core::Deflate::new()
            .with_server_no_context_takeover(p.server_no_context_takeover)
            .with_client_no_context_takeover(p.client_no_context_takeover)
            .with_server_max_window_bits(p.server_max_window_bits)
            .with_client_max_window_bits(p.client_max_window_bits)
            .with_level(c.level)
            .with_memory_level(c.memory_level)
            .with_min_message_size(c.min_message_size)
    });
    config
        .codec
        .clone()
        .with_defer_fail_close(true)
        .with_deflate(deflate)
}

/// How a connection ended.
pub(crate) enum Outcome {
    Closed(CloseStatus),
    Failed(Error, Option<CloseStatus>),
}

/// When a queued message is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteWhen {
    /// At once, by the caller (or together with the answers to a burst of received messages
    /// the application has yet to take).
    Now,
    /// Together with whatever else is queued before the keeper runs (fan-out: many publishes,
    /// one write per connection), or at once when [`BATCH_BYTES`] are queued.
    Batched,
}

/// What one call of [`State::drive`] should do about writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Read, process and write everything (the keeper, a waiting `send` or `flush`).
    Full,
    /// As `Full`, for `recv` with an empty inbox: once a message is queued and a full read's
    /// worth of bytes came in, it stops reading and returns (the keeper reads on), so that the
    /// application answers the first large message while the rest is still arriving.
    Recv,
    /// Only write (after `send`): reading is left to whoever waits for messages.
    Write,
}

/// The connection shared by the handles and the keeper.
pub(crate) struct Inner {
    pub(crate) hub: Arc<Hub>,
    state: Mutex<State>,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while driving leaves a consistent-enough state: every field is updated
        // before anything that can panic, and the codec itself never panics on input.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Everything a connection needs, handed over by the handshake.
pub(crate) struct Parts {
    pub(crate) io: Transport,
    pub(crate) conn: Connection,
    pub(crate) leftover: BytesMut,
    pub(crate) config: Config,
    pub(crate) timer: Arc<dyn Timer>,
    pub(crate) registry: PingRegistry,
    pub(crate) salt: u32,
}

/// What is known about the end of a connection.
#[derive(Default)]
struct Ending {
    /// The first error (sticky).
    error: Option<Error>,
    /// A protocol error the application sees after the messages that preceded it.
    early_error: Option<Error>,
    outcome: Option<Outcome>,
    /// The peer's Close frame (`Some(None)`: a Close without a code).
    peer_close: Option<Option<CloseFrame>>,
    /// Our Close went out before the peer's arrived.
    we_closed_first: bool,
}

/// Where a connection is in its life. It only moves forward ([`State::advance`]); the order
/// of the variants is that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Lifecycle {
    /// Messages flow both ways.
    Open,
    /// A protocol error stopped input; its failing Close waits until the application has
    /// taken the messages before the error (and queued its answers), or until `grace_until`.
    Failing { grace_until: Duration },
    /// The closing handshake has started: our Close, the peer's, or a committed failure.
    Closing,
    /// The codec asked for the transport to be closed once what we owe is written.
    ShuttingDown,
    /// The transport is closed at once, without writing more (keepalive declared the peer
    /// dead, or the transport failed).
    Aborting,
    /// The transport is closed and the outcome is published.
    Done,
}

/// The state of one connection (see the module docs).
pub(crate) struct State {
    io: Option<Transport>,
    io_waker: Waker,
    hub: Arc<Hub>,
    conn: Connection,
    ka: KeepAlive,
    registry: PingRegistry,
    pings_open: bool,
    timer: Arc<dyn Timer>,
    origin: Instant,
    read_buf: BytesMut,
    /// Bytes read after the end of the frame in `read_buf`, in a buffer sized for the next
    /// frame; the codec takes them once `read_buf` is consumed.
    read_next: Option<BytesMut>,
    input_dirty: bool,
    read_eof: bool,
    inbox: VecDeque<Message>,
    read_queue: usize,
    /// The inbox is full: reading stopped until the application takes a message.
    read_paused: bool,
    /// No more messages will be queued (after an error or the end of the connection).
    inbox_ended: bool,
    error_returned: bool,
    reader_alive: bool,
    reader_done: bool,
    writers: usize,
    /// Messages queued since the outbound queue was last empty (bounded by `write_queue`).
    queued: usize,
    write_queue: usize,
    write_buffer: usize,
    /// `send` left bytes for a later write and woke the keeper to make sure one happens.
    deferred: bool,
    needs_flush: bool,
    output_pending: bool,
    stats: Stats,
    /// How the connection is ending; boxed, as most connections spend their life without.
    ending: Option<Box<Ending>>,
    lifecycle: Lifecycle,
    /// The deadline the keeper sleeps until.
    keeper_deadline: Option<Duration>,
    /// The latest deadline whose timer fired (see [`State::now`]).
    floor: Duration,
    /// A deadline may have moved earlier since the keeper last armed its timer (only
    /// received bytes and write progress leave deadlines where they are, or move them later).
    deadline_dirty: bool,
    /// The last read returned `Pending` (see `Hub::io_woken`).
    read_blocked: bool,
}

impl Inner {
    pub(crate) fn new(parts: Parts) -> Arc<Inner> {
        let hub = Arc::new(Hub::default());
        let origin = parts.timer.now();
        let mut ka = KeepAlive::new(parts.config.keepalive, parts.salt);
        ka.handle(Duration::ZERO, Input::Opened);
        let input_dirty = !parts.leftover.is_empty();
        if input_dirty {
            ka.handle(Duration::ZERO, Input::BytesReceived);
        }
        // The handshake's read buffer stays only if it holds bytes for the codec.
        let read_buf = if input_dirty {
            parts.leftover
        } else {
            BytesMut::new()
        };
        let state = State {
            io: Some(parts.io),
            io_waker: Waker::from(hub.clone()),
            hub: hub.clone(),
            conn: parts.conn,
            ka,
            registry: parts.registry,
            pings_open: true,
            timer: parts.timer,
            origin,
            read_buf,
            read_next: None,
            input_dirty,
            read_eof: false,
            inbox: VecDeque::new(),
            read_queue: parts.config.read_queue.max(1),
            read_paused: false,
            inbox_ended: false,
            error_returned: false,
            reader_alive: true,
            reader_done: false,
            writers: 1,
            queued: 0,
            write_queue: parts.config.write_queue.max(1),
            write_buffer: parts.config.write_buffer.max(1),
            deferred: false,
            needs_flush: false,
            output_pending: false,
            stats: Stats::default(),
            ending: None,
            lifecycle: Lifecycle::Open,
            keeper_deadline: None,
            floor: Duration::ZERO,
            deadline_dirty: true,
            read_blocked: false,
        };
        Arc::new(Inner {
            hub,
            state: Mutex::new(state),
        })
    }
}

impl State {
    pub(crate) fn now(&self) -> Duration {
        let now = self.timer.now().saturating_duration_since(self.origin);
        now.max(self.floor)
    }

    /// A timer for `deadline` fired: time is at least that far.
    pub(crate) fn clock_floor(&mut self, deadline: Duration) {
        self.floor = self.floor.max(deadline);
    }

    pub(crate) fn origin(&self) -> Instant {
        self.origin
    }

    pub(crate) fn timer(&self) -> Arc<dyn Timer> {
        self.timer.clone()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.lifecycle == Lifecycle::Done
    }

    /// The closing handshake has started, or the connection is over.
    pub(crate) fn is_closing(&self) -> bool {
        self.lifecycle >= Lifecycle::Closing
    }

    /// Moves the lifecycle forward to `to` (never back).
    fn advance(&mut self, to: Lifecycle) {
        if to > self.lifecycle {
            self.lifecycle = to;
        }
    }

    /// Input stopped at a protocol error whose failing Close is still held back.
    fn failure_held(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Failing { .. }) && self.conn.failure_pending()
    }

    /// A handle to the connection was cloned.
    pub(crate) fn writer_cloned(&mut self) {
        self.writers += 1;
    }

    /// The keeper now sleeps until `deadline`.
    pub(crate) fn set_keeper_deadline(&mut self, deadline: Option<Duration>) {
        self.keeper_deadline = deadline;
    }

    fn ending(&mut self) -> &mut Ending {
        self.ending.get_or_insert_with(Box::default)
    }

    fn peer_close(&self) -> Option<&Option<CloseFrame>> {
        self.ending.as_deref()?.peer_close.as_ref()
    }

    fn fail(&mut self, error: Error) {
        let ending = self.ending();
        if ending.error.is_none() {
            tracing::debug!(%error, "websocket connection failed");
            ending.error = Some(error);
        }
    }

    /// The transport failed. After the peer's Close has arrived that is the peer tearing the
    /// connection down (a server closes TCP right after its Close, often before our echo is
    /// written): the connection closed with the peer's status, not an error.
    fn transport_failed(&mut self, e: std::io::Error) {
        if self.peer_close().is_some() {
            tracing::debug!(error = %e, "transport ended after the peer's close");
        } else {
            self.fail(e.into());
        }
    }

    /// Our Close was queued: it went first unless the peer's had arrived.
    fn note_we_closed(&mut self) {
        let first = self.peer_close().is_none();
        self.ending().we_closed_first = first;
    }

    fn start_closing(&mut self, now: Duration) {
        self.advance(Lifecycle::Closing);
        self.ka.handle(now, Input::CloseStarted);
        self.deadline_dirty = true;
    }

    // ---- the application's side -------------------------------------------------------

    /// The next received message, driving the connection if none is queued.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        if let Some(ready) = self.take_message() {
            return Poll::Ready(ready);
        }
        self.drive(Mode::Recv, cx);
        if let Some(ready) = self.take_message() {
            return Poll::Ready(ready);
        }
        self.hub.register_reader(cx.waker());
        Poll::Pending
    }

    /// The next queued message, or the end of the messages.
    fn take_message(&mut self) -> Option<Option<Result<Message, Error>>> {
        if let Some(m) = self.inbox.pop_front() {
            self.stats.messages_in += 1;
            if self.read_paused && self.inbox.len() < self.read_queue {
                self.read_paused = false;
                let now = self.now();
                self.ka.handle(now, Input::ReadResumed);
                self.deadline_dirty = true;
                // Reading goes on at once, whether or not the application comes back soon.
                self.hub.wake_keeper();
            }
            return Some(Some(Ok(m)));
        }
        if self.inbox_ended || self.is_done() {
            return self.end_of_messages();
        }
        None
    }

    /// After the last message: the error that ended the input (at once, so the application
    /// learns of a failure while the failing Close is still going out), then the end of the
    /// stream, but only once the connection is over, so that its close status is known when
    /// the stream ends. `None` while the end is not there yet.
    fn end_of_messages(&mut self) -> Option<Option<Result<Message, Error>>> {
        self.mark_reader_done();
        if !self.error_returned
            && let Some(e) = self.error_now()
        {
            self.error_returned = true;
            return Some(Some(Err(e)));
        }
        if self.is_done() {
            self.error_returned = true;
            return Some(None);
        }
        None
    }

    /// A waiting `recv` has something to return: a message, or the error that ended the
    /// input (the end of the stream itself waits for `done`).
    fn reader_ready(&self) -> bool {
        !self.inbox.is_empty() || (self.inbox_ended && !self.error_returned)
    }

    /// The application read to the end (or dropped its reader): a failing connection need
    /// not wait for more answers.
    pub(crate) fn mark_reader_done(&mut self) {
        if !self.reader_done {
            self.reader_done = true;
            self.hub.wake_keeper();
        }
    }

    pub(crate) fn reader_dropped(&mut self) {
        self.reader_alive = false;
        self.mark_reader_done();
        self.handles_gone();
    }

    pub(crate) fn writer_dropped(&mut self) {
        self.writers = self.writers.saturating_sub(1);
        self.handles_gone();
    }

    /// Every handle is gone: nobody can read or send again, so close normally.
    fn handles_gone(&mut self) {
        if self.reader_alive || self.writers > 0 || self.is_closing() {
            return;
        }
        let frame = CloseFrame::new(CloseCode::NORMAL);
        if self.conn.close(Some(frame)).is_ok() {
            self.note_we_closed();
            let now = self.now();
            self.start_closing(now);
        }
        self.hub.wake_keeper();
    }

    pub(crate) fn buffered_amount(&self) -> usize {
        self.conn.outbound_len()
    }

    pub(crate) fn queue_full(&self) -> bool {
        self.conn.outbound_len() >= self.write_buffer || self.queued >= self.write_queue
    }

    /// Ready when `send` may queue a message.
    pub(crate) fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.is_closing() {
            return Poll::Ready(Err(self.closed_error()));
        }
        if !self.queue_full() {
            return Poll::Ready(Ok(()));
        }
        // A waiting writer drives everything, not only writes: the transport's wake-ups go to
        // it, and the peer's pings (or Close) must be read while the application streams.
        self.drive(Mode::Full, cx);
        if self.is_closing() {
            return Poll::Ready(Err(self.closed_error()));
        }
        if !self.queue_full() {
            return Poll::Ready(Ok(()));
        }
        self.hub.register_writer(cx.waker());
        Poll::Pending
    }

    /// Queues a message and writes it, or leaves it for one write with the answers to the
    /// messages the application has yet to take.
    pub(crate) fn send(&mut self, message: Message, cx: &mut Context<'_>) -> Result<(), Error> {
        self.queue_message(cx, WriteWhen::Now, |conn| conn.send(message))
    }

    /// Queues a prepared message, written as `when` says (see [`send`](Self::send)).
    pub(crate) fn send_prepared(
        &mut self,
        message: &PreparedMessage,
        when: WriteWhen,
        cx: &mut Context<'_>,
    ) -> Result<(), Error> {
        self.queue_message(cx, when, |conn| conn.send_prepared(message))
    }

    fn queue_message(
        &mut self,
        cx: &mut Context<'_>,
        when: WriteWhen,
        queue: impl FnOnce(&mut Connection) -> Result<(), sonar_core::SendError>,
    ) -> Result<(), Error> {
        if self.is_closing() {
            return Err(self.closed_error());
        }
        queue(&mut self.conn).map_err(|e| self.refused(e))?;
        self.stats.messages_out += 1;
        self.queued += 1;
        self.after_queue(cx, when);
        Ok(())
    }

    /// Queues an unsolicited pong.
    pub(crate) fn pong(&mut self, payload: Bytes, cx: &mut Context<'_>) -> Result<(), Error> {
        if self.is_done() {
            return Err(self.closed_error());
        }
        self.conn.pong(payload).map_err(|e| self.refused(e))?;
        self.after_queue(cx, WriteWhen::Now);
        Ok(())
    }

    fn after_queue(&mut self, cx: &mut Context<'_>, when: WriteWhen) {
        let batch = when == WriteWhen::Batched || !self.inbox.is_empty();
        if !batch || self.conn.outbound_len() >= BATCH_BYTES {
            self.drive(Mode::Write, cx);
        } else if !self.deferred {
            // More messages are waiting for the application (their answers go out in one
            // write, by the next `recv` that finds the queue empty), or more publishes will
            // follow: the keeper, woken once, writes everything queued by the time it runs.
            self.deferred = true;
            self.hub.wake_keeper();
        }
    }

    /// Starts the closing handshake (`None` for a Close without a code).
    pub(crate) fn close(&mut self, frame: Option<CloseFrame>, cx: &mut Context<'_>) {
        if self.is_done() {
            return;
        }
        match self.conn.close(frame) {
            Ok(()) => {
                self.note_we_closed();
                let now = self.now();
                self.start_closing(now);
            }
            Err(e) => tracing::debug!(error = %e, "close refused"),
        }
        self.drive(Mode::Full, cx);
        // The keeper sees the handshake through (and re-arms for the close timeout).
        self.hub.wake_keeper();
    }

    /// Ready once everything queued so far is written and flushed.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.is_done() {
            return if self.conn.wants_write() {
                Poll::Ready(Err(self.closed_error()))
            } else {
                Poll::Ready(Ok(()))
            };
        }
        // Full, as for a waiting `send`: the peer may need answers (or close) meanwhile.
        self.drive(Mode::Full, cx);
        if !self.conn.wants_write() && !self.needs_flush {
            return Poll::Ready(Ok(()));
        }
        if self.is_done() {
            return Poll::Ready(Err(self.closed_error()));
        }
        self.hub.register_writer(cx.waker());
        Poll::Pending
    }

    /// Ready once the connection has finished.
    pub(crate) fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_done() {
            return Poll::Ready(());
        }
        self.hub.register_closed(cx.waker());
        Poll::Pending
    }

    /// What `close` reports once the connection has closed: only a close that timed out is
    /// an error (closing a connection that already failed or ended is not).
    pub(crate) fn close_result(&self) -> Result<(), Error> {
        match self.error_now() {
            Some(Error::CloseTimeout) => Err(Error::CloseTimeout),
            _ => Ok(()),
        }
    }

    /// Why the codec refused to queue a frame: the connection's failure if it has failed
    /// (one rule for every call), else the codec's reason.
    fn refused(&self, e: sonar_core::SendError) -> Error {
        self.error_now().unwrap_or(Error::Send(e))
    }

    pub(crate) fn closed_error(&self) -> Error {
        self.error_now().unwrap_or(Error::ConnectionClosed)
    }

    /// The error that ended the connection (or ended its input), if any: the first failure,
    /// reported by every call from the moment it happened.
    pub(crate) fn error_now(&self) -> Option<Error> {
        let ending = self.ending.as_deref()?;
        if let Some(e) = ending.early_error.as_ref().or(ending.error.as_ref()) {
            return Some(e.clone());
        }
        match ending.outcome.as_ref()? {
            Outcome::Failed(e, _) => Some(e.clone()),
            Outcome::Closed(_) => None,
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            rtt: self.rtt(),
            deflate: self.conn.deflate_stats(),
            ..self.stats
        }
    }

    pub(crate) fn rtt(&self) -> Option<RttStats> {
        self.ka.rtt()
    }

    pub(crate) fn close_status(&self) -> Option<CloseStatus> {
        match self.ending.as_deref()?.outcome.as_ref()? {
            Outcome::Closed(s) => Some(s.clone()),
            Outcome::Failed(_, s) => s.clone(),
        }
    }

    /// The keeper was dropped: the transport is closed at once.
    pub(crate) fn abort_now(&mut self) {
        if !self.is_done() {
            self.io = None;
            self.fail(Error::ConnectionClosed);
            self.finish();
            self.notify();
        }
    }

    pub(crate) fn result(&self) -> Result<(), Error> {
        match self.error_now() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    // ---- driving ----------------------------------------------------------------------

    /// Moves the connection forward and wakes the waiters whose condition changed: a full
    /// drive ([`drive_full`](Self::drive_full)) or a write-only one
    /// ([`drive_write`](Self::drive_write)), with the transport polled under the hub's waker.
    pub(crate) fn drive(&mut self, mode: Mode, caller: &mut Context<'_>) {
        if self.is_done() {
            return;
        }
        let waker = std::mem::replace(&mut self.io_waker, Waker::noop().clone());
        let mut cx = Context::from_waker(&waker);
        let finished = match mode {
            Mode::Write => self.drive_write(&mut cx),
            Mode::Full | Mode::Recv => self.drive_full(mode == Mode::Recv, &mut cx),
        };
        self.io_waker = waker;
        if !finished {
            // Out of budget with work left: let other tasks run, then continue.
            caller.waker().wake_by_ref();
            self.hub.wake_keeper();
        }
        self.notify();
    }

    /// After `send`: writes what is queued (reading is left to whoever waits for messages).
    /// Returns false if it ran out of budget with work left.
    fn drive_write(&mut self, cx: &mut Context<'_>) -> bool {
        let now = self.now();
        for _ in 0..BUDGET {
            let mut progress = self.write(cx, now);
            // A ping written just now starts its RTT clock now.
            progress |= self.pump_events(now);
            if self.lifecycle == Lifecycle::Aborting {
                self.shut_transport(cx);
                return true;
            }
            if !progress {
                return true;
            }
        }
        false
    }

    /// The whole connection, in this order each round: buffered input, deadlines, keepalive,
    /// the codec's events, a read while the application keeps up, a held-back failing Close,
    /// writes, the events of what was written; then the transport is closed if the
    /// connection is over. With `recv`, returns once a message is queued and a full read's
    /// worth came in (the keeper reads on). Returns false if it ran out of budget.
    fn drive_full(&mut self, recv: bool, cx: &mut Context<'_>) -> bool {
        self.deferred = false;
        self.hub.handoff_taken();
        let now = self.now();
        let bytes_in = self.stats.bytes_in;
        self.pump_pings(cx, now);
        for _ in 0..BUDGET {
            let mut progress = self.process_input(now);
            progress |= self.timeouts(now);
            progress |= self.pump_keepalive(now);
            progress |= self.pump_events(now);
            progress |= self.read(cx, now);
            progress |= self.commit_failure(now);
            progress |= self.write(cx, now);
            // A ping written just now starts its RTT clock now, before anything more is read.
            progress |= self.pump_events(now);
            // After the peer's EOF nothing more can arrive: once what we owe it is written
            // (and the application has taken every message), the connection is over.
            let drained = self.read_eof && !self.read_paused && !self.input_dirty;
            let over = self.lifecycle >= Lifecycle::ShuttingDown || drained;
            if self.lifecycle == Lifecycle::Aborting || (over && !self.conn.wants_write()) {
                self.shut_transport(cx);
                return true;
            }
            if !progress {
                return true;
            }
            if recv
                && !self.inbox.is_empty()
                && self.stats.bytes_in - bytes_in >= SCRATCH_SIZE as u64
            {
                // Large messages: answer this one first. The transport was not read to
                // `Pending`, so no wake-up is registered for more input: the keeper reads on
                // (after this task yields, or at once on another thread).
                self.hub.wake_keeper();
                return true;
            }
        }
        false
    }

    /// Closes the transport (at once when aborting) and, once it is closed, publishes the
    /// outcome.
    fn shut_transport(&mut self, cx: &mut Context<'_>) {
        tracing::trace!(
            lifecycle = ?self.lifecycle,
            read_eof = self.read_eof,
            "connection shutting down"
        );
        if self.lifecycle != Lifecycle::Aborting
            && let Some(io) = self.io.as_mut()
            && Pin::new(io).poll_close(cx).is_pending()
        {
            return;
        }
        self.io = None;
        self.finish();
    }

    /// Wakes the waiters whose condition now holds, and the keeper if its deadline moved
    /// earlier.
    fn notify(&mut self) {
        let deadline = if std::mem::take(&mut self.deadline_dirty) {
            self.next_deadline()
                .filter(|d| self.keeper_deadline.is_none_or(|k| *d < k))
        } else {
            None
        };
        if !self.is_done() && deadline.is_none() && !self.hub.has_waiters() {
            return;
        }
        self.hub.notify(Notify {
            done: self.is_done(),
            reader: self.reader_ready(),
            writers: !self.queue_full() || self.is_closing(),
            keeper: deadline.is_some(),
        });
    }

    /// The earliest deadline of the codec (close timeout), keepalive and a deferred failure.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        let fail = match self.lifecycle {
            Lifecycle::Failing { grace_until } if self.conn.failure_pending() => Some(grace_until),
            _ => None,
        };
        [self.conn.poll_timeout(), self.ka.next_deadline(), fail]
            .into_iter()
            .flatten()
            .min()
    }

    fn timeouts(&mut self, now: Duration) -> bool {
        match self.conn.poll_timeout() {
            Some(t) if t <= now => {
                self.conn.handle_timeout(now);
                self.deadline_dirty = true;
                true
            }
            _ => false,
        }
    }

    /// Feeds buffered input to the codec (the handshake's leftover bytes first of all).
    fn process_input(&mut self, now: Duration) -> bool {
        if !self.input_dirty || self.read_paused {
            return false;
        }
        let result = loop {
            let result = self.conn.handle_read(&mut self.read_buf);
            // Bytes of the following frames, read with the end of the one in `read_buf`.
            let Some(next) = self.read_next.take() else {
                break result;
            };
            if result.is_ok() && self.read_buf.is_empty() && !self.conn.has_pending_input() {
                self.read_buf = next;
                continue;
            }
            if result.is_ok() {
                // The codec stopped early (in front of a Ping): keep the bytes in order.
                self.read_buf.extend_from_slice(&next);
            }
            break result;
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "protocol error from peer");
            let error = Error::Protocol(e);
            self.fail(error.clone());
            if self.conn.failure_pending() && self.lifecycle == Lifecycle::Open {
                // The application sees the error after the messages that preceded it, and
                // may answer them before the failing Close goes out.
                self.ending().early_error.get_or_insert(error);
                self.advance(Lifecycle::Failing {
                    grace_until: now.saturating_add(FAIL_GRACE),
                });
                self.deadline_dirty = true;
            }
        }
        // The codec stopped in front of a Ping because the previous pong is still owed:
        // write it (later in this round), then parse on. If the transport takes nothing, the
        // next call coalesces the pongs instead (bounded), so this never spins.
        self.input_dirty = self.conn.has_pending_input();
        true
    }

    /// Takes user ping requests and hands them to keepalive and the codec.
    fn pump_pings(&mut self, cx: &mut Context<'_>, now: Duration) -> bool {
        let mut progress = false;
        while self.pings_open {
            match self.registry.poll_request(cx) {
                Poll::Ready(Some(req)) => {
                    progress = true;
                    let result = match self.ka.user_ping(now, req.payload()) {
                        Ok((id, payload)) => match self.send_ping(payload.as_ref()) {
                            Ok(()) => Ok(id),
                            Err(e) => {
                                // Free the user slot the refused ping would hold.
                                self.ka.cancel_ping(id);
                                Err(match e {
                                    sonar_core::SendError::QueueFull => {
                                        sonar_keepalive::PingError::TooManyOutstandingPings
                                    }
                                    _ => sonar_keepalive::PingError::NotOpen,
                                })
                            }
                        },
                        Err(e) => Err(e),
                    };
                    self.registry.bind(req, result);
                    self.deadline_dirty = true;
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
        self.stats.pings_sent += 1;
        Ok(())
    }

    /// Acts on what keepalive asks for.
    fn pump_keepalive(&mut self, now: Duration) -> bool {
        let mut progress = false;
        while let Some(out) = self.ka.poll(now) {
            progress = true;
            self.deadline_dirty = true;
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
                    self.advance(Lifecycle::Aborting);
                }
                Output::Rtt(_) => self.stats.pongs_matched += 1,
                Output::PingAcked { id, latency } => self.registry.complete(id, latency),
                Output::PingFailed { id } => self.registry.fail(id),
                Output::UnmatchedPong => self.stats.pongs_unmatched += 1,
                _ => {}
            }
        }
        progress
    }

    /// Moves the codec's events to the application's queue and to keepalive.
    fn pump_events(&mut self, now: Duration) -> bool {
        let mut progress = false;
        while !self.read_paused {
            let Some(ev) = self.conn.poll_event() else {
                break;
            };
            progress = true;
            match ev {
                Event::Message(m) if self.reader_alive => {
                    self.inbox.push_back(m);
                    if self.inbox.len() >= self.read_queue {
                        self.read_paused = true;
                        self.ka.handle(now, Input::ReadPaused);
                        self.deadline_dirty = true;
                    }
                }
                Event::Ping(_) => {
                    self.stats.pings_received += 1;
                    // Feeds the optional ping-flood guard (K-22).
                    self.ka.handle(now, Input::PingReceived);
                    self.deadline_dirty = true;
                }
                // A round trip is measured between two clock readings taken when each end
                // happens, not the one reading of this drive: a pong read in the same drive
                // as the write of its ping must not measure zero.
                Event::Pong(p) => {
                    let at = self.now();
                    self.ka.handle(at, Input::PongReceived(&p));
                    self.deadline_dirty = true;
                }
                Event::PingSent(p) => {
                    let at = self.now();
                    self.ka.handle(at, Input::PingWrittenPayload(&p));
                    self.deadline_dirty = true;
                }
                Event::CloseReceived(frame) => {
                    tracing::debug!(?frame, "close received");
                    let ending = self.ending();
                    if ending.peer_close.is_none() {
                        ending.peer_close = Some(frame);
                    }
                    self.start_closing(now);
                }
                Event::CloseTransport => self.advance(Lifecycle::ShuttingDown),
                _ => {}
            }
        }
        let failed_early = self
            .ending
            .as_ref()
            .is_some_and(|e| e.early_error.is_some());
        if failed_early && !self.read_paused && !self.inbox_ended {
            // Every message before the error is queued: end the messages with the error.
            self.inbox_ended = true;
            progress = true;
        }
        progress
    }

    /// Sends the failing Close once the application has answered what preceded the error:
    /// it read to the end or dropped its reader (every answer it sent before is queued,
    /// since `send` queues synchronously), or the grace passed.
    fn commit_failure(&mut self, now: Duration) -> bool {
        let Lifecycle::Failing { grace_until } = self.lifecycle else {
            return false;
        };
        if !self.conn.failure_pending() {
            return false;
        }
        if self.reader_done || now >= grace_until {
            self.conn.commit_failure();
            self.start_closing(now);
            return true;
        }
        false
    }

    /// Reads from the transport while the application keeps up.
    fn read(&mut self, cx: &mut Context<'_>, now: Duration) -> bool {
        // After a protocol error input stops while its Close is held back; once the Close is
        // committed, reading goes on (the codec discards the bytes) to see the peer's end of
        // stream, so a failed client connection ends when the server closes, not at the close
        // timeout.
        if self.read_eof
            || self.read_paused
            || self.input_dirty
            || self.lifecycle >= Lifecycle::ShuttingDown
            || self.failure_held()
        {
            return false;
        }
        if self.read_blocked && !self.hub.take_io_woken() {
            return false;
        }
        self.read_blocked = false;
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        if self.read_buf.is_empty() && self.read_buf.capacity() > SCRATCH_SIZE {
            // A large message has been taken: do not keep its buffer on an idle connection.
            self.read_buf = BytesMut::new();
        }
        let remaining = self.conn.frame_remaining(self.read_buf.len());
        let result = if io.reads_into_spare() {
            read_spare(io, cx, &mut self.read_buf, &mut self.read_next, remaining)
        } else {
            read_plain(io, cx, &mut self.read_buf, &mut self.read_next, remaining)
        };
        match result {
            Poll::Ready(Ok(0)) => {
                self.read_eof = true;
                self.conn.handle_eof();
                true
            }
            Poll::Ready(Ok(n)) => {
                self.stats.bytes_in += n as u64;
                self.ka.handle(now, Input::BytesReceived);
                self.input_dirty = true;
                true
            }
            Poll::Ready(Err(e)) => {
                self.read_eof = true;
                self.transport_failed(e);
                self.conn.handle_eof();
                true
            }
            Poll::Pending => {
                self.read_blocked = true;
                false
            }
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
            let slices = slices.get(..n).unwrap_or_default();
            let result = write_frames(io, cx, slices, out.remaining());
            match result {
                Poll::Ready(Ok(0)) => {
                    self.fail(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
                    self.advance(Lifecycle::Aborting);
                    return true;
                }
                Poll::Ready(Ok(k)) => {
                    out.advance(k);
                    self.stats.bytes_out += k as u64;
                    self.ka.handle(now, Input::WriteProgress);
                    self.needs_flush = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.transport_failed(e);
                    self.advance(Lifecycle::Aborting);
                    return true;
                }
                Poll::Pending => {
                    pending = true;
                    break;
                }
            }
        }
        if !self.conn.wants_write() {
            self.queued = 0;
        }
        if pending != self.output_pending {
            self.output_pending = pending;
            self.ka.handle(now, Input::OutputPending(pending));
            self.deadline_dirty = true;
        }
        if !pending && self.needs_flush {
            match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.needs_flush = false;
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.transport_failed(e);
                    self.advance(Lifecycle::Aborting);
                    return true;
                }
                Poll::Pending => {}
            }
        }
        progress
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
        let status = self.close_status_now();
        let outcome = match self.ending().error.take() {
            Some(e) => Outcome::Failed(e, Some(status)),
            None if self.peer_close().is_some() => Outcome::Closed(status),
            // The codec closed the transport without the peer's Close or its end of stream:
            // our Close timed out.
            None if self.lifecycle >= Lifecycle::ShuttingDown && !self.read_eof => {
                Outcome::Failed(Error::CloseTimeout, Some(status))
            }
            // The transport ended without a closing handshake (1006).
            None => Outcome::Failed(Error::AbnormalClosure, Some(status)),
        };
        if let Outcome::Closed(s) = &outcome {
            tracing::debug!(code = s.code.as_u16(), reason = %s.reason, by_peer = s.by_peer, "websocket closed");
        }
        let ending = self.ending();
        if ending.outcome.is_none() {
            ending.outcome = Some(outcome);
        }
        self.inbox_ended = true;
        self.read_buf = BytesMut::new();
        self.read_next = None;
        self.lifecycle = Lifecycle::Done;
    }

    fn close_status_now(&self) -> CloseStatus {
        let by_peer = !self.ending.as_ref().is_some_and(|e| e.we_closed_first);
        match self.peer_close() {
            Some(Some(frame)) => CloseStatus {
                code: frame.code,
                reason: frame.reason.to_string(),
                by_peer,
            },
            Some(None) => CloseStatus {
                code: CloseCode::NO_STATUS_RECEIVED,
                reason: String::new(),
                by_peer,
            },
            None => CloseStatus {
                code: CloseCode::ABNORMAL,
                reason: String::new(),
                by_peer: false,
            },
        }
    }
}
