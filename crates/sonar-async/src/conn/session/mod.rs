//! The sans-I/O half of a connection: [`Session`] owns the codec, keepalive, the inbox of
//! received messages, the counters and the connection's [`Lifecycle`]. It takes bytes, time
//! (a `Duration` since the connection opened) and the application's calls, and says what the
//! transport must do next. It never touches a socket, a clock or a waker; `mod.rs` does that
//! around it.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sonar_core::{CloseCode, CloseFrame, Connection, Event, Message, Outbound, SendError};
use sonar_keepalive::{Input, KeepAlive, Output, PingError, PingId, RttStats};

use super::WriteWhen;
use crate::shared::{CloseStatus, Stats};
use crate::{Config, Error};

/// After a protocol error, how long the application may take to answer the messages that
/// arrived before it, before the failing Close goes out anyway.
pub(crate) const FAIL_GRACE: Duration = Duration::from_secs(1);
/// Encoded bytes queued above which `send` writes at once even while the application still
/// has received messages to answer (otherwise it batches them into one write).
pub(crate) const BATCH_BYTES: usize = 16 * 1024;

/// How a connection ended.
enum Outcome {
    Closed(CloseStatus),
    Failed(Error, Option<CloseStatus>),
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

/// Where a connection is in its life. It only moves forward ([`Session::advance`]); the order
/// of the variants is that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Lifecycle {
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

/// What the transport must do with itself after a round of the drive ([`Session::next_step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransportStep {
    /// Keep reading and writing.
    Run,
    /// Everything owed is written and nothing more can arrive: close it gracefully.
    Close,
    /// Close it at once, without writing more.
    Abort,
}

/// The outcome of a ping the application asked for, for its waiter in the ping registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PingUpdate {
    /// The pong arrived after `latency`.
    Acked(PingId, Duration),
    /// No pong will come (timed out, or the connection ended).
    Failed(PingId),
}

/// The sans-I/O state of one connection.
///
/// Time is a `Duration` since the connection opened, passed in as `now`; nothing here reads a
/// clock, touches the transport or wakes a task. Methods by role:
///
/// - **The application** (a handle's call): [`take_message`](Self::take_message),
///   [`queue`](Self::queue) and [`pong`](Self::pong) then [`write_at_once`](Self::write_at_once),
///   [`close`](Self::close), [`user_ping`](Self::user_ping), [`writer_cloned`](Self::writer_cloned),
///   [`writer_dropped`](Self::writer_dropped), [`reader_dropped`](Self::reader_dropped); and
///   the queries ([`queue_full`](Self::queue_full), [`error_now`](Self::error_now),
///   [`stats`](Self::stats), [`close_status`](Self::close_status), ...).
/// - **Input**: [`wants_read`](Self::wants_read), [`read_buffers`](Self::read_buffers) to read
///   into, then [`handle_read`](Self::handle_read) with the read's result.
/// - **Output**: [`wants_write`](Self::wants_write), [`outbound`](Self::outbound), then
///   [`wrote`](Self::wrote) per write, [`write_stopped`](Self::write_stopped) when the transport
///   takes no more or nothing is left, [`needs_flush`](Self::needs_flush) and
///   [`flushed`](Self::flushed); [`transport_failed`](Self::transport_failed) on an I/O error.
/// - **Time**: [`next_deadline`](Self::next_deadline) (re-arm the timer when
///   [`take_deadline_moved`](Self::take_deadline_moved) says it may have moved earlier).
/// - **What the driver must do**: [`take_keeper_wanted`](Self::take_keeper_wanted) (wake the
///   keeper task), [`take_ping_updates`](Self::take_ping_updates) (complete ping waiters),
///   [`next_step`](Self::next_step) (run, close or abort the transport), then
///   [`finish`](Self::finish) once the transport is closed.
///
/// Polling order of one round of a full drive: [`handle_input`](Self::handle_input),
/// [`handle_timeout`](Self::handle_timeout), [`poll_keepalive`](Self::poll_keepalive),
/// [`poll_events`](Self::poll_events), a read, [`commit_failure`](Self::commit_failure), the
/// writes, [`poll_events`](Self::poll_events) again (a ping written starts its RTT clock), then
/// [`next_step`](Self::next_step). Each step returns whether it made progress; the round
/// repeats while one did. A drive that ends with nothing left to do calls
/// [`shrink_to_fit`](Self::shrink_to_fit).
pub(crate) struct Session {
    conn: Connection,
    ka: KeepAlive,
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
    /// `send` left bytes for a later write and asked for the keeper to make sure one happens.
    deferred: bool,
    needs_flush: bool,
    output_pending: bool,
    counters: Counters,
    /// How the connection is ending; boxed, as most connections spend their life without.
    ending: Option<Box<Ending>>,
    lifecycle: Lifecycle,
    /// A deadline may have moved earlier since the keeper last armed its timer (only
    /// received bytes and write progress leave deadlines where they are, or move them later).
    deadline_moved: bool,
    /// Something only the keeper task will do (read on, write a deferred batch, see a
    /// handshake through) is due: the driver wakes it.
    keeper_wanted: bool,
    ping_updates: Vec<PingUpdate>,
}

/// The counters of [`Stats`] that only the session keeps (the RTT is the keepalive
/// machine's, the deflate counts the codec's): 64 bytes where a stored `Stats` takes 176.
#[derive(Debug, Default)]
struct Counters {
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    pings_received: u64,
    pings_sent: u64,
    pongs_matched: u64,
    pongs_unmatched: u64,
}

impl Session {
    /// A session for `conn`, opened at time zero, with the handshake's `leftover` bytes as its
    /// first input.
    pub(crate) fn new(
        mut conn: Connection,
        config: &Config,
        salt: u32,
        leftover: BytesMut,
    ) -> Self {
        // Large written payloads come back as read buffers (see `take_written_buffer`).
        conn.set_reclaim_written(true);
        let mut ka = KeepAlive::new(config.keepalive, salt);
        ka.handle(Duration::ZERO, Input::Opened);
        let input_dirty = !leftover.is_empty();
        if input_dirty {
            ka.handle(Duration::ZERO, Input::BytesReceived);
        }
        // The handshake's read buffer stays only if it holds bytes for the codec.
        let read_buf = if input_dirty {
            leftover
        } else {
            BytesMut::new()
        };
        Session {
            conn,
            ka,
            read_buf,
            read_next: None,
            input_dirty,
            read_eof: false,
            inbox: VecDeque::new(),
            read_queue: config.read_queue.max(1),
            read_paused: false,
            inbox_ended: false,
            error_returned: false,
            reader_alive: true,
            reader_done: false,
            writers: 1,
            queued: 0,
            write_queue: config.write_queue.max(1),
            write_buffer: config.write_buffer.max(1),
            deferred: false,
            needs_flush: false,
            output_pending: false,
            counters: Counters::default(),
            ending: None,
            lifecycle: Lifecycle::Open,
            deadline_moved: true,
            keeper_wanted: false,
            ping_updates: Vec::new(),
        }
    }

    // ---- lifecycle ----------------------------------------------------------------------

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
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

    fn ending(&mut self) -> &mut Ending {
        self.ending.get_or_insert_with(Box::default)
    }

    fn peer_close(&self) -> Option<&Option<CloseFrame>> {
        self.ending.as_deref()?.peer_close.as_ref()
    }

    /// Records `error` as the connection's failure, unless it already has one.
    pub(crate) fn fail(&mut self, error: Error) {
        let ending = self.ending();
        if ending.error.is_none() {
            tracing::debug!(%error, "websocket connection failed");
            ending.error = Some(error);
        }
    }

    /// The transport failed (reading, writing, flushing or closing). After the peer's Close
    /// has arrived that is the peer tearing the connection down (a server closes TCP right
    /// after its Close, often before our echo is written): the connection closed with the
    /// peer's status, not an error.
    pub(crate) fn transport_failed(&mut self, e: io::Error) {
        if self.peer_close().is_some() {
            tracing::debug!(error = %e, "transport ended after the peer's close");
        } else {
            self.fail(e.into());
        }
    }

    /// A write failed (or wrote nothing): the transport is closed at once.
    pub(crate) fn write_failed(&mut self, e: io::Error) {
        self.transport_failed(e);
        self.advance(Lifecycle::Aborting);
    }

    /// Our Close was queued: it went first unless the peer's had arrived.
    fn note_we_closed(&mut self) {
        let first = self.peer_close().is_none();
        self.ending().we_closed_first = first;
    }

    fn start_closing(&mut self, now: Duration) {
        self.advance(Lifecycle::Closing);
        self.ka.handle(now, Input::CloseStarted);
        self.deadline_moved = true;
    }

    // ---- the application's side ---------------------------------------------------------

    /// The next queued message, or the end of the messages; `None` while neither is there.
    /// `clock` is read only if taking the message resumes reading (the fast path reads no
    /// clock).
    pub(crate) fn take_message(
        &mut self,
        clock: impl FnOnce() -> Duration,
    ) -> Option<Option<Result<Message, Error>>> {
        if let Some(m) = self.inbox.pop_front() {
            self.counters.messages_in += 1;
            if self.read_paused && self.inbox.len() < self.read_queue {
                self.read_paused = false;
                self.ka.handle(clock(), Input::ReadResumed);
                self.deadline_moved = true;
                // Reading goes on at once, whether or not the application comes back soon.
                self.keeper_wanted = true;
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
    pub(crate) fn reader_ready(&self) -> bool {
        !self.inbox.is_empty() || (self.inbox_ended && !self.error_returned)
    }

    pub(crate) fn inbox_is_empty(&self) -> bool {
        self.inbox.is_empty()
    }

    /// Bytes of a frame after the last complete one have arrived (the peer is sending more).
    pub(crate) fn more_input_started(&self) -> bool {
        !self.read_buf.is_empty()
            || self.read_next.is_some()
            || self.conn.frame_remaining(0).is_some()
    }

    /// The application read to the end (or dropped its reader): a failing connection need
    /// not wait for more answers.
    pub(crate) fn mark_reader_done(&mut self) {
        if !self.reader_done {
            self.reader_done = true;
            self.keeper_wanted = true;
        }
    }

    pub(crate) fn reader_dropped(&mut self, now: Duration) {
        self.reader_alive = false;
        self.mark_reader_done();
        self.handles_gone(now);
    }

    /// A handle to the connection was cloned.
    pub(crate) fn writer_cloned(&mut self) {
        self.writers += 1;
    }

    pub(crate) fn writer_dropped(&mut self, now: Duration) {
        self.writers = self.writers.saturating_sub(1);
        self.handles_gone(now);
    }

    /// Every handle is gone: nobody can read or send again, so close normally.
    fn handles_gone(&mut self, now: Duration) {
        if self.reader_alive || self.writers > 0 || self.is_closing() {
            return;
        }
        let frame = CloseFrame::new(CloseCode::NORMAL);
        if self.conn.close(Some(frame)).is_ok() {
            self.note_we_closed();
            self.start_closing(now);
        }
        self.keeper_wanted = true;
    }

    pub(crate) fn buffered_amount(&self) -> usize {
        self.conn.outbound_len()
    }

    /// `send` must wait: the write buffer or the write queue is full.
    pub(crate) fn queue_full(&self) -> bool {
        self.conn.outbound_len() >= self.write_buffer || self.queued >= self.write_queue
    }

    /// Queues a message with `queue` (the codec's `send` or `send_prepared`).
    pub(crate) fn queue(
        &mut self,
        queue: impl FnOnce(&mut Connection) -> Result<(), SendError>,
    ) -> Result<(), Error> {
        if self.is_closing() {
            return Err(self.closed_error());
        }
        queue(&mut self.conn).map_err(|e| self.refused(e))?;
        self.counters.messages_out += 1;
        self.queued += 1;
        Ok(())
    }

    /// Queues an unsolicited pong.
    pub(crate) fn pong(&mut self, payload: Bytes) -> Result<(), Error> {
        if self.is_done() {
            return Err(self.closed_error());
        }
        self.conn.pong(payload).map_err(|e| self.refused(e))
    }

    /// After queueing: whether the caller writes now. If not, the bytes wait for one write
    /// with more (the answers to a burst of received messages the application has yet to
    /// take, by the next `recv` that finds the inbox empty; or more publishes), and the keeper
    /// is asked for once to make sure that write happens.
    pub(crate) fn write_at_once(&mut self, when: WriteWhen) -> bool {
        let batch = when == WriteWhen::Batched || !self.inbox.is_empty();
        if !batch || self.conn.outbound_len() >= BATCH_BYTES {
            return true;
        }
        if !self.deferred {
            self.deferred = true;
            self.keeper_wanted = true;
        }
        false
    }

    /// A full drive writes whatever was deferred.
    pub(crate) fn clear_deferred(&mut self) {
        self.deferred = false;
    }

    /// Starts the closing handshake (`None` for a Close without a code). The keeper sees it
    /// through (and re-arms for the close timeout).
    pub(crate) fn close(&mut self, now: Duration, frame: Option<CloseFrame>) {
        if self.is_done() {
            return;
        }
        match self.conn.close(frame) {
            Ok(()) => {
                self.note_we_closed();
                self.start_closing(now);
            }
            Err(e) => tracing::debug!(error = %e, "close refused"),
        }
        self.keeper_wanted = true;
    }

    /// A ping the application asked for (`None`: a generated payload): queued, with the id
    /// its outcome will carry in [`take_ping_updates`](Self::take_ping_updates).
    pub(crate) fn user_ping(
        &mut self,
        now: Duration,
        payload: Option<&[u8]>,
    ) -> Result<PingId, PingError> {
        self.deadline_moved = true;
        let (id, payload) = self.ka.user_ping(now, payload)?;
        match self.send_ping(payload.as_ref()) {
            Ok(()) => Ok(id),
            Err(e) => {
                // Free the user slot the refused ping would hold.
                self.ka.cancel_ping(id);
                Err(match e {
                    SendError::QueueFull => PingError::TooManyOutstandingPings,
                    _ => PingError::NotOpen,
                })
            }
        }
    }

    fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.conn.ping(Bytes::copy_from_slice(payload))?;
        self.counters.pings_sent += 1;
        Ok(())
    }

    /// Everything queued so far is written and flushed.
    pub(crate) fn all_flushed(&self) -> bool {
        !self.conn.wants_write() && !self.needs_flush
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
    fn refused(&self, e: SendError) -> Error {
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

    pub(crate) fn result(&self) -> Result<(), Error> {
        match self.error_now() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            messages_in: c.messages_in,
            messages_out: c.messages_out,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            pings_received: c.pings_received,
            pings_sent: c.pings_sent,
            pongs_matched: c.pongs_matched,
            pongs_unmatched: c.pongs_unmatched,
            rtt: self.rtt(),
            deflate: self.conn.deflate_stats(),
        }
    }

    pub(crate) fn bytes_in(&self) -> u64 {
        self.counters.bytes_in
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

    // ---- what the driver must do --------------------------------------------------------

    /// Whether the keeper task must be woken (cleared by the call).
    pub(crate) fn take_keeper_wanted(&mut self) -> bool {
        std::mem::take(&mut self.keeper_wanted)
    }

    /// Whether a deadline may have moved earlier since the last call.
    pub(crate) fn take_deadline_moved(&mut self) -> bool {
        std::mem::take(&mut self.deadline_moved)
    }

    /// The outcomes of the application's pings since the last call.
    pub(crate) fn take_ping_updates(&mut self) -> Vec<PingUpdate> {
        std::mem::take(&mut self.ping_updates)
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

    /// After a round: what the transport must do. After the peer's end of stream nothing more
    /// can arrive: once what we owe it is written (and the application has taken every
    /// message), the connection is over.
    pub(crate) fn next_step(&self) -> TransportStep {
        if self.lifecycle == Lifecycle::Aborting {
            return TransportStep::Abort;
        }
        let drained = self.read_eof && !self.read_paused && !self.input_dirty;
        let over = self.lifecycle >= Lifecycle::ShuttingDown || drained;
        if over && !self.conn.wants_write() {
            TransportStep::Close
        } else {
            TransportStep::Run
        }
    }

    /// The transport is closed: publishes the outcome, fails the pings still waiting, and
    /// frees the buffers.
    pub(crate) fn finish(&mut self, now: Duration) {
        self.ka.handle(now, Input::Closed);
        while let Some(out) = self.ka.poll(now) {
            if let Output::PingFailed { id } = out {
                self.ping_updates.push(PingUpdate::Failed(id));
            }
        }
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

    // ---- the steps of a drive -----------------------------------------------------------

    /// Feeds buffered input to the codec (the handshake's leftover bytes first of all).
    pub(crate) fn handle_input(&mut self, now: Duration) -> bool {
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
                self.deadline_moved = true;
            }
        }
        // The codec stopped in front of a Ping because the previous pong is still owed:
        // write it (later in this round), then parse on. If the transport takes nothing, the
        // next call coalesces the pongs instead (bounded), so this never spins.
        self.input_dirty = self.conn.has_pending_input();
        true
    }

    /// The codec's deadline (the close timeout), if it has passed.
    pub(crate) fn handle_timeout(&mut self, now: Duration) -> bool {
        match self.conn.poll_timeout() {
            Some(t) if t <= now => {
                self.conn.handle_timeout(now);
                self.deadline_moved = true;
                true
            }
            _ => false,
        }
    }

    /// Acts on what keepalive asks for.
    pub(crate) fn poll_keepalive(&mut self, now: Duration) -> bool {
        let mut progress = false;
        while let Some(out) = self.ka.poll(now) {
            progress = true;
            self.deadline_moved = true;
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
                Output::Rtt(_) => self.counters.pongs_matched += 1,
                Output::PingAcked { id, latency } => {
                    self.ping_updates.push(PingUpdate::Acked(id, latency));
                }
                Output::PingFailed { id } => self.ping_updates.push(PingUpdate::Failed(id)),
                Output::UnmatchedPong => self.counters.pongs_unmatched += 1,
                _ => {}
            }
        }
        progress
    }

    /// Moves the codec's events to the inbox and to keepalive. A round trip is measured
    /// between the moments its ping was written and its pong read, so `ping_written_at` and
    /// `pong_read_at` are read when each event is handled, not once per drive (a pong read in
    /// the same drive as the write of its ping must not measure zero).
    pub(crate) fn poll_events(&mut self, now: Duration, clock: impl Fn() -> Duration) -> bool {
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
                        self.deadline_moved = true;
                    }
                }
                Event::Ping(_) => {
                    self.counters.pings_received += 1;
                    // Feeds the optional ping-flood guard (K-22).
                    self.ka.handle(now, Input::PingReceived);
                    self.deadline_moved = true;
                }
                Event::Pong(p) => {
                    self.ka.handle(clock(), Input::PongReceived(&p));
                    self.deadline_moved = true;
                }
                Event::PingSent(p) => {
                    self.ka.handle(clock(), Input::PingWrittenPayload(&p));
                    self.deadline_moved = true;
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
    pub(crate) fn commit_failure(&mut self, now: Duration) -> bool {
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

    // ---- input --------------------------------------------------------------------------

    /// Whether to read from the transport now: the application keeps up (the inbox is not
    /// full), buffered input is parsed, the peer has not ended its stream, and the connection
    /// is not shutting down. After a protocol error input stops while its Close is held back;
    /// once the Close is committed, reading goes on (the codec discards the bytes) to see the
    /// peer's end of stream, so a failed client connection ends when the server closes, not at
    /// the close timeout.
    pub(crate) fn wants_read(&self) -> bool {
        !(self.read_eof
            || self.read_paused
            || self.input_dirty
            || self.lifecycle >= Lifecycle::ShuttingDown
            || self.failure_held())
    }

    /// The buffers to read into: the current frame's buffer, the one for the bytes after the
    /// frame, and how many bytes the current frame still needs (if its header is in).
    pub(crate) fn read_buffers(&mut self) -> (&mut BytesMut, &mut Option<BytesMut>, Option<usize>) {
        let remaining = self.conn.frame_remaining(self.read_buf.len());
        (&mut self.read_buf, &mut self.read_next, remaining)
    }

    /// Frees the memory of every buffer and queue that is empty: the read buffer between
    /// frames (it holds the allocation of the last frame received, whatever its size), the
    /// inbox, the ping updates, the codec's and the keepalive machine's queues. The driver
    /// calls it when a drive ends with nothing left to do, so an idle connection holds only
    /// its fixed-size state; the next message allocates what it needs again.
    pub(crate) fn shrink_to_fit(&mut self) {
        if !self.more_input_started() {
            self.read_buf = BytesMut::new();
        }
        if self.inbox.is_empty() {
            self.inbox.shrink_to_fit();
        }
        if self.ping_updates.is_empty() {
            self.ping_updates.shrink_to_fit();
        }
        self.conn.shrink_to_fit();
        self.ka.shrink_to_fit();
    }

    /// A read into [`read_buffers`](Self::read_buffers) finished: `Ok(0)` is the peer's end
    /// of stream.
    pub(crate) fn handle_read(&mut self, now: Duration, result: io::Result<usize>) {
        match result {
            Ok(0) => {
                self.read_eof = true;
                self.conn.handle_eof();
            }
            Ok(n) => {
                self.counters.bytes_in += n as u64;
                self.ka.handle(now, Input::BytesReceived);
                self.input_dirty = true;
            }
            Err(e) => {
                self.read_eof = true;
                self.transport_failed(e);
                self.conn.handle_eof();
            }
        }
    }

    // ---- output -------------------------------------------------------------------------

    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// The queued bytes; advance it by what the transport took, then call
    /// [`wrote`](Self::wrote).
    pub(crate) fn outbound(&mut self) -> Outbound<'_> {
        self.conn.outbound()
    }

    /// An emptied buffer of a large payload written in full, to read into again (see
    /// [`Connection::take_written_buffer`]).
    pub(crate) fn take_written_buffer(&mut self) -> Option<BytesMut> {
        self.conn.take_written_buffer()
    }

    /// The transport took `n` bytes (they await a flush).
    pub(crate) fn wrote(&mut self, now: Duration, n: usize) {
        self.counters.bytes_out += n as u64;
        self.ka.handle(now, Input::WriteProgress);
        self.needs_flush = true;
    }

    /// Writing stopped: the transport is full (`pending`) or nothing is left.
    pub(crate) fn write_stopped(&mut self, now: Duration, pending: bool) {
        if !self.conn.wants_write() {
            self.queued = 0;
        }
        if pending != self.output_pending {
            self.output_pending = pending;
            self.ka.handle(now, Input::OutputPending(pending));
            self.deadline_moved = true;
        }
    }

    pub(crate) fn needs_flush(&self) -> bool {
        self.needs_flush
    }

    pub(crate) fn flushed(&mut self) {
        self.needs_flush = false;
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
