//! One connection: the sans-I/O [`Session`] (`session/`: codec, keepalive, inbox, counters,
//! lifecycle) and the [`State`] around it that owns the transport, the clock and the ping
//! waiters, and moves the session forward ([`State::drive`]).
//!
//! The state sits behind one mutex shared by the application's handles and the keeper task
//! ([`crate::Keeper`]). Whoever needs progress drives it inline: `recv` reads and parses when
//! its queue is empty, `send` encodes and writes at once, and the keeper drives only when
//! nobody else is waiting (keepalive deadlines, pings from the peer while the application is
//! busy, the closing handshake). An echo therefore costs one task wake-up, like a hand-written
//! loop over the socket, while keepalive still runs whether or not the application polls.
//!
//! Wake-ups go through the [`Hub`] (see `hub.rs`): the transport's wake-up is handed to the
//! waiting application task, and the keeper takes over only if that task does not drive.
//! Bytes move through `transport.rs`.

mod hub;
mod session;
mod transport;

pub(crate) use hub::{Hub, Notify};
pub use hub::{TAKEOVER_DELAY, WATCH_INTERVAL_MAX};
use session::{Lifecycle, PingUpdate, Session, TransportStep};
pub use transport::{ReadIntoSpare, Transport};
use transport::{SCRATCH_SIZE, read_plain, read_spare, recycle, write_frames};

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_io::AsyncWrite;
use sonar_core::{CloseFrame, Connection, Message, PreparedMessage};
use sonar_keepalive::{PingRegistry, RttStats};

use crate::shared::{CloseStatus, Stats};
use crate::{Config, Error, Timer};

/// Rounds of the drive loop per call before yielding to the runtime (fairness).
const BUDGET: usize = 32;

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

/// When a queued message is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteWhen {
    /// At once, by the caller (or together with the answers to a burst of received messages
    /// the application has yet to take).
    Now,
    /// Together with whatever else is queued before the keeper runs (fan-out: many publishes,
    /// one write per connection), or at once when [`BATCH_BYTES`](session::BATCH_BYTES) are
    /// queued.
    Batched,
}

/// What one call of [`State::drive`] should do about writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Read, process and write everything (the keeper, a waiting `send` or `flush`).
    Full,
    /// As `Full`, for `recv` with an empty inbox: once a message is queued, a full read's
    /// worth of bytes came in and the next frame has started to arrive, it stops reading and
    /// returns (the keeper reads on), so that the application answers the first large message
    /// while the rest is still arriving. In a closed loop nothing follows the message, and it
    /// reads on to `Pending` itself rather than wake the keeper for an empty socket.
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

/// The state of one connection (see the module docs): the sans-I/O [`Session`], and what
/// connects it to the world: the transport, the clock, the wakers and the ping waiters.
pub(crate) struct State {
    session: Session,
    io: Option<Transport>,
    io_waker: Waker,
    hub: Arc<Hub>,
    registry: PingRegistry,
    pings_open: bool,
    clock: Clock,
    /// The deadline the keeper sleeps until.
    keeper_deadline: Option<Duration>,
    /// The last read returned `Pending` (see `Hub::io_woken`).
    read_blocked: bool,
}

impl Inner {
    pub(crate) fn new(parts: Parts) -> Arc<Inner> {
        let hub = Arc::new(Hub::default());
        let origin = parts.timer.now();
        let session = Session::new(parts.conn, &parts.config, parts.salt, parts.leftover);
        let state = State {
            session,
            io: Some(parts.io),
            io_waker: Waker::from(hub.clone()),
            hub: hub.clone(),
            registry: parts.registry,
            pings_open: true,
            clock: Clock {
                timer: parts.timer,
                origin,
                floor: Duration::ZERO,
            },
            keeper_deadline: None,
            read_blocked: false,
        };
        Arc::new(Inner {
            hub,
            state: Mutex::new(state),
        })
    }
}

/// The connection's clock: the session's time, a `Duration` since the connection opened.
struct Clock {
    timer: Arc<dyn Timer>,
    origin: Instant,
    /// The latest deadline whose timer fired: time never reads earlier than that.
    floor: Duration,
}

impl Clock {
    fn now(&self) -> Duration {
        let now = self.timer.now().saturating_duration_since(self.origin);
        now.max(self.floor)
    }
}

impl State {
    pub(crate) fn now(&self) -> Duration {
        self.clock.now()
    }

    /// A timer for `deadline` fired: time is at least that far.
    pub(crate) fn clock_floor(&mut self, deadline: Duration) {
        self.clock.floor = self.clock.floor.max(deadline);
    }

    pub(crate) fn origin(&self) -> Instant {
        self.clock.origin
    }

    pub(crate) fn timer(&self) -> Arc<dyn Timer> {
        self.clock.timer.clone()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.session.is_done()
    }

    /// The closing handshake has started, or the connection is over.
    pub(crate) fn is_closing(&self) -> bool {
        self.session.is_closing()
    }

    /// A handle to the connection was cloned.
    pub(crate) fn writer_cloned(&mut self) {
        self.session.writer_cloned();
    }

    /// The keeper now sleeps until `deadline`.
    pub(crate) fn set_keeper_deadline(&mut self, deadline: Option<Duration>) {
        self.keeper_deadline = deadline;
    }

    /// Wakes the keeper if the session asked for it.
    fn keeper_if_wanted(&mut self) {
        if self.session.take_keeper_wanted() {
            self.hub.wake_keeper();
        }
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

    fn take_message(&mut self) -> Option<Option<Result<Message, Error>>> {
        let clock = &self.clock;
        let taken = self.session.take_message(|| clock.now());
        self.keeper_if_wanted();
        taken
    }

    pub(crate) fn reader_dropped(&mut self) {
        let now = self.now();
        self.session.reader_dropped(now);
        self.keeper_if_wanted();
    }

    pub(crate) fn writer_dropped(&mut self) {
        let now = self.now();
        self.session.writer_dropped(now);
        self.keeper_if_wanted();
    }

    pub(crate) fn buffered_amount(&self) -> usize {
        self.session.buffered_amount()
    }

    pub(crate) fn queue_full(&self) -> bool {
        self.session.queue_full()
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
        self.session.queue(|conn| conn.send(message))?;
        self.after_queue(cx, WriteWhen::Now);
        Ok(())
    }

    /// Queues a prepared message, written as `when` says (see [`send`](Self::send)).
    pub(crate) fn send_prepared(
        &mut self,
        message: &PreparedMessage,
        when: WriteWhen,
        cx: &mut Context<'_>,
    ) -> Result<(), Error> {
        self.session.queue(|conn| conn.send_prepared(message))?;
        self.after_queue(cx, when);
        Ok(())
    }

    /// Queues an unsolicited pong.
    pub(crate) fn pong(&mut self, payload: Bytes, cx: &mut Context<'_>) -> Result<(), Error> {
        self.session.pong(payload)?;
        self.after_queue(cx, WriteWhen::Now);
        Ok(())
    }

    fn after_queue(&mut self, cx: &mut Context<'_>, when: WriteWhen) {
        if self.session.write_at_once(when) {
            self.drive(Mode::Write, cx);
        } else {
            self.keeper_if_wanted();
        }
    }

    /// Starts the closing handshake (`None` for a Close without a code).
    pub(crate) fn close(&mut self, frame: Option<CloseFrame>, cx: &mut Context<'_>) {
        if self.is_done() {
            return;
        }
        let now = self.now();
        // The session asks for the keeper, which sees the handshake through (and re-arms for
        // the close timeout); the drive wakes it.
        self.session.close(now, frame);
        self.drive(Mode::Full, cx);
    }

    /// Ready once everything queued so far is written and flushed.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.is_done() {
            return if self.session.wants_write() {
                Poll::Ready(Err(self.closed_error()))
            } else {
                Poll::Ready(Ok(()))
            };
        }
        // Full, as for a waiting `send`: the peer may need answers (or close) meanwhile.
        self.drive(Mode::Full, cx);
        if self.session.all_flushed() {
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

    /// What `close` reports once the connection has closed (see [`Session::close_result`]).
    pub(crate) fn close_result(&self) -> Result<(), Error> {
        self.session.close_result()
    }

    pub(crate) fn closed_error(&self) -> Error {
        self.session.closed_error()
    }

    pub(crate) fn stats(&self) -> Stats {
        self.session.stats()
    }

    pub(crate) fn rtt(&self) -> Option<RttStats> {
        self.session.rtt()
    }

    pub(crate) fn close_status(&self) -> Option<CloseStatus> {
        self.session.close_status()
    }

    /// The keeper was dropped: the transport is closed at once.
    pub(crate) fn abort_now(&mut self) {
        if !self.is_done() {
            self.io = None;
            self.session.fail(Error::ConnectionClosed);
            self.finish();
            self.notify();
        }
    }

    pub(crate) fn result(&self) -> Result<(), Error> {
        self.session.result()
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
        self.complete_pings();
        self.keeper_if_wanted();
        self.notify();
    }

    /// After `send`: writes what is queued (reading is left to whoever waits for messages).
    /// Returns false if it ran out of budget with work left.
    fn drive_write(&mut self, cx: &mut Context<'_>) -> bool {
        let now = self.now();
        for _ in 0..BUDGET {
            let mut progress = self.write(cx, now);
            // A ping written just now starts its RTT clock now.
            progress |= self.poll_events(now);
            if self.session.lifecycle() == Lifecycle::Aborting {
                self.shut_transport(cx);
                return true;
            }
            if !progress {
                return true;
            }
        }
        false
    }

    /// The whole connection, in the session's polling order each round (see [`Session`]):
    /// buffered input, deadlines, keepalive, the codec's events, a read while the application
    /// keeps up, a held-back failing Close, writes, the events of what was written; then the
    /// transport is closed if the session says so. With `recv`, returns once a message is
    /// queued, a full read's worth came in and more is arriving (the keeper reads on). Returns
    /// false if it ran out of budget.
    fn drive_full(&mut self, recv: bool, cx: &mut Context<'_>) -> bool {
        self.session.clear_deferred();
        self.hub.handoff_taken();
        let now = self.now();
        let bytes_in = self.session.bytes_in();
        self.pump_pings(cx, now);
        for _ in 0..BUDGET {
            let mut progress = self.session.handle_input(now);
            progress |= self.session.handle_timeout(now);
            progress |= self.session.poll_keepalive(now);
            progress |= self.poll_events(now);
            progress |= self.read(cx, now);
            progress |= self.session.commit_failure(now);
            progress |= self.write(cx, now);
            // A ping written just now starts its RTT clock now, before anything more is read.
            progress |= self.poll_events(now);
            if self.session.next_step() != TransportStep::Run {
                self.shut_transport(cx);
                return true;
            }
            if !progress {
                // Waiting: an idle connection keeps no buffers.
                self.session.shrink_to_fit();
                return true;
            }
            if recv
                && !self.session.inbox_is_empty()
                && self.session.bytes_in() - bytes_in >= SCRATCH_SIZE as u64
                && self.session.more_input_started()
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

    /// The session's events, with the clock read as each is handled (round trips).
    fn poll_events(&mut self, now: Duration) -> bool {
        let clock = &self.clock;
        self.session.poll_events(now, || clock.now())
    }

    /// Closes the transport (at once when aborting) and, once it is closed, publishes the
    /// outcome.
    fn shut_transport(&mut self, cx: &mut Context<'_>) {
        let lifecycle = self.session.lifecycle();
        tracing::trace!(?lifecycle, "connection shutting down");
        if lifecycle != Lifecycle::Aborting
            && let Some(io) = self.io.as_mut()
            && Pin::new(io).poll_close(cx).is_pending()
        {
            return;
        }
        self.io = None;
        self.finish();
    }

    /// The transport is closed: the session publishes its outcome, and every ping waiter
    /// learns that no pong will come.
    fn finish(&mut self) {
        let now = self.now();
        self.session.finish(now);
        self.complete_pings();
        self.registry.close();
    }

    /// Hands the outcomes of the application's pings to their waiters.
    fn complete_pings(&mut self) {
        for update in self.session.take_ping_updates() {
            match update {
                PingUpdate::Acked(id, latency) => self.registry.complete(id, latency),
                PingUpdate::Failed(id) => self.registry.fail(id),
            }
        }
    }

    /// Wakes the waiters whose condition now holds, and the keeper if its deadline moved
    /// earlier.
    fn notify(&mut self) {
        let deadline = if self.session.take_deadline_moved() {
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
            reader: self.session.reader_ready(),
            writers: !self.queue_full() || self.is_closing(),
            keeper: deadline.is_some(),
        });
    }

    /// The earliest deadline of the session.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        self.session.next_deadline()
    }

    /// Takes the application's ping requests and hands them to the session.
    fn pump_pings(&mut self, cx: &mut Context<'_>, now: Duration) -> bool {
        let mut progress = false;
        while self.pings_open {
            match self.registry.poll_request(cx) {
                Poll::Ready(Some(req)) => {
                    progress = true;
                    let result = self.session.user_ping(now, req.payload());
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

    /// Reads from the transport when the session wants input.
    fn read(&mut self, cx: &mut Context<'_>, now: Duration) -> bool {
        if !self.session.wants_read() {
            return false;
        }
        if self.read_blocked && !self.hub.take_io_woken() {
            return false;
        }
        self.read_blocked = false;
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        let (buf, next, remaining) = self.session.read_buffers();
        let result = if io.reads_into_spare() {
            read_spare(io, cx, buf, next, remaining)
        } else {
            read_plain(io, cx, buf, next, remaining)
        };
        match result {
            Poll::Ready(result) => {
                self.session.handle_read(now, result);
                true
            }
            Poll::Pending => {
                self.read_blocked = true;
                false
            }
        }
    }

    /// Writes what the session queued, vectored, then flushes.
    fn write(&mut self, cx: &mut Context<'_>, now: Duration) -> bool {
        let mut progress = false;
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        let mut pending = false;
        while self.session.wants_write() {
            let mut out = self.session.outbound();
            let mut slices = [IoSlice::new(&[]); 64];
            let n = out.chunks_vectored(&mut slices);
            let slices = slices.get(..n).unwrap_or_default();
            match write_frames(io, cx, slices, out.remaining()) {
                Poll::Ready(Ok(0)) => {
                    self.session
                        .write_failed(std::io::Error::from(std::io::ErrorKind::WriteZero));
                    return true;
                }
                Poll::Ready(Ok(k)) => {
                    out.advance(k);
                    self.session.wrote(now, k);
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.session.write_failed(e);
                    return true;
                }
                Poll::Pending => {
                    pending = true;
                    break;
                }
            }
        }
        while let Some(buf) = self.session.take_written_buffer() {
            recycle(buf);
        }
        self.session.write_stopped(now, pending);
        if !pending && self.session.needs_flush() {
            match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.session.flushed();
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.session.write_failed(e);
                    return true;
                }
                Poll::Pending => {}
            }
        }
        progress
    }
}
