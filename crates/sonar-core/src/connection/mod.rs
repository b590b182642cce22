//! The sans-I/O connection: inputs, outputs, the close handshake and its timer. The
//! application calls live in `send.rs`.

mod send;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::time::Duration;

use bytes::BytesMut;

use crate::close::{CloseCode, CloseFrame};
use crate::config::{Config, Extension, MaskSource, Role};
#[cfg(feature = "deflate")]
use crate::deflate::Compressor;
use crate::error::ProtocolError;
use crate::frame::OpCode;
use crate::message::{DataKind, Event, State};
use crate::outbound::{FrameKind, OutQueue, Outbound};
use crate::reader::{Inbound, Reader};
use crate::utf8::Utf8Validator;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Idle,
    /// The close timeout is needed: `poll_timeout` says "now" until `handle_timeout` arms it.
    NeedsArm,
    Armed(Duration),
}

/// A WebSocket connection after the opening handshake: a sans-I/O state machine.
///
/// It never performs I/O, reads a clock or draws randomness: bytes, time and masking keys are
/// arguments. Inputs only queue output; one driver loop owns all I/O.
///
/// # Polling order
///
/// The driver repeats, in this order:
///
/// 1. **Input**: append bytes read from the transport to one `BytesMut` and call
///    [`handle_read`](Self::handle_read) with it (the same buffer every time: unconsumed
///    bytes of a partial frame stay at its front). Call [`handle_eof`](Self::handle_eof) when
///    the transport reports end of stream.
///
///    `handle_read` may stop early, in front of a Ping, to let an owed auto-pong be written
///    first. After `handle_read`, drain `poll_event` and write what `outbound()`
///    holds; if [`has_pending_input()`](Self::has_pending_input), call `handle_read` again
///    with the same buffer even if no new bytes arrived (before reading more or calling
///    `handle_eof`). Two calls with no write in between never both stop early.
/// 2. **Events**: drain [`poll_event`](Self::poll_event) until `None`. This must be done
///    after every `handle_read` (events are not bounded otherwise) and after writing.
/// 3. **Output**: while [`wants_write`](Self::wants_write), write from
///    [`outbound`](Self::outbound) (a [`bytes::Buf`]; `chunks_vectored` for vectored writes)
///    and `advance` by what the transport accepted. Writing produces events
///    ([`Event::PingSent`], [`Event::CloseTransport`]), so drain events again. A driver that
///    turned on [`set_reclaim_written`](Self::set_reclaim_written) then takes the memory of
///    large written payloads back with [`take_written_buffer`](Self::take_written_buffer).
/// 4. **Timer**: [`poll_timeout`](Self::poll_timeout) returns the close-timeout deadline as a
///    `Duration` since the driver's origin. When the connection starts needing the close
///    timeout it returns `Some(Duration::ZERO)` ("call `handle_timeout` now"); the next
///    [`handle_timeout(now)`](Self::handle_timeout) arms the deadline at `now + close_timeout`
///    and later `poll_timeout` calls return that deadline. Calling `handle_timeout` early or
///    spuriously is a no-op; a `now` earlier than one seen before counts as no time passed.
///
/// When [`Event::CloseTransport`] is emitted the driver shuts the transport down and stops.
///
/// # Example
///
/// ```
/// use bytes::{Buf, BytesMut};
/// use sonar_core::{Config, Connection, Event, Message};
///
/// let mut server = Connection::server(Config::default());
/// // A masked text frame "Hi" from a client (key 00 00 00 00).
/// let mut input = BytesMut::from(&[0x81, 0x82, 0, 0, 0, 0, b'H', b'i'][..]);
/// server.handle_read(&mut input).unwrap();
/// assert_eq!(server.poll_event(), Some(Event::Message(Message::from("Hi"))));
///
/// server.send(Message::from("Hi")).unwrap();
/// let mut out = server.outbound();
/// let bytes = out.copy_to_bytes(out.remaining());
/// assert_eq!(&bytes[..], &[0x81, 0x02, b'H', b'i']);
/// ```
pub struct Connection {
    role: Role,
    config: Config,
    masks: Option<Box<dyn MaskSource + Send>>,
    ext: Option<Box<dyn Extension>>,
    /// permessage-deflate's sending half (the receiving half is in the reader); boxed, so a
    /// connection without it does not carry its room.
    #[cfg(feature = "deflate")]
    compressor: Option<Box<Compressor>>,
    reader: Reader,
    pub(crate) out: OutQueue,
    events: VecDeque<Event>,
    error: Option<ProtocolError>,
    close_sent: bool,
    close_written: bool,
    /// The peer's Close (`None` inside for an empty one); boxed, as it comes once at the end.
    close_received: Option<Box<Option<CloseFrame>>>,
    eof: bool,
    closed: bool,
    timer: Timer,
    last_now: Duration,
    out_fragment: Option<DataKind>,
    out_utf8: Utf8Validator,
    /// `handle_read` stopped in front of a Ping (see `has_pending_input`).
    pending_input: bool,
    /// A protocol error whose failing Close waits for `commit_failure` (`defer_fail_close`).
    fail_pending: bool,
    /// Set when `handle_read` stopped in front of a Ping; cleared once the owed auto-pong
    /// starts to leave (or the slot is found empty). While set, pings coalesce.
    pong_stalled: bool,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state())
            .field("error", &self.error)
            .field("outbound", &self.out.remaining())
            .field("events", &self.events.len())
            .field("pending_input", &self.pending_input)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A server-side connection (frames we receive must be masked; we never mask).
    pub fn server(config: Config) -> Self {
        Self::new(Role::Server, config, None)
    }

    /// A client-side connection; every frame we send is masked with a fresh key from `masks`.
    pub fn client(config: Config, masks: Box<dyn MaskSource + Send>) -> Self {
        Self::new(Role::Client, config, Some(masks))
    }

    fn new(role: Role, config: Config, masks: Option<Box<dyn MaskSource + Send>>) -> Self {
        #[cfg(feature = "deflate")]
        let deflate = config.deflate;
        #[cfg(not(feature = "deflate"))]
        let deflate: Option<()> = None;
        // permessage-deflate takes the place of a generic extension.
        let ext = match deflate {
            Some(_) => None,
            None => config.extension.as_ref().map(|f| f()),
        };
        let ext_rsv = ext.as_ref().map_or(0, |e| e.rsv_bits());
        let reader = Reader::new(
            role,
            config.max_frame_size,
            config.max_message_size,
            ext_rsv,
        );
        #[cfg(feature = "deflate")]
        let reader = match &deflate {
            Some(d) => reader.with_inflater(d.inflater(role)),
            None => reader,
        };
        Connection {
            role,
            reader,
            config,
            masks,
            ext,
            #[cfg(feature = "deflate")]
            compressor: deflate.map(|d| Box::new(d.compressor(role))),
            out: OutQueue::default(),
            events: VecDeque::new(),
            error: None,
            close_sent: false,
            close_written: false,
            close_received: None,
            eof: false,
            closed: false,
            timer: Timer::Idle,
            last_now: Duration::ZERO,
            out_fragment: None,
            out_utf8: Utf8Validator::default(),
            pending_input: false,
            fail_pending: false,
            pong_stalled: false,
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration this connection was created with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// permessage-deflate byte counts (`None` if not negotiated): what compression saved, for
    /// a driver's statistics. With `*_no_context_takeover` for a side, that side's zlib state
    /// is freed after every message, so an idle connection holds none
    /// ([`deflate_state`](Self::deflate_state)).
    #[cfg(feature = "deflate")]
    pub fn deflate_stats(&self) -> Option<crate::deflate::DeflateStats> {
        let sent = self.compressor.as_ref()?.stats;
        let received = self.reader.inflate_stats().unwrap_or_default();
        Some(crate::deflate::DeflateStats {
            messages_inflated: received.messages_inflated,
            bytes_received_compressed: received.bytes_received_compressed,
            bytes_inflated: received.bytes_inflated,
            ..sent
        })
    }

    /// Whether permessage-deflate is on and holds (compressor, decompressor) zlib state right
    /// now (see [`deflate_stats`](Self::deflate_stats) for byte counts).
    #[cfg(feature = "deflate")]
    pub fn deflate_state(&self) -> Option<(bool, bool)> {
        self.compressor
            .as_ref()
            .map(|c| (c.is_allocated(), self.reader.inflater_allocated()))
    }

    // ----- input -------------------------------------------------------------------------

    /// Processes as many complete frames from the front of `buf` as possible; a partial frame
    /// stays buffered (its already-received payload is unmasked and validated in place).
    ///
    /// Pass the same buffer on every call and only append to it: the connection remembers how
    /// far into the partial frame at its front it has got. Bytes the handshake parser left over
    /// (frames coalesced with the HTTP head) go into this buffer before the first
    /// call. A single-frame message is split off the buffer without copying its payload.
    ///
    /// It may return early, leaving complete frames in `buf`: at the frame boundary before a
    /// Ping while an earlier auto-pong is still owed and unwritten. Then
    /// [`has_pending_input`](Self::has_pending_input) is true and the driver calls
    /// `handle_read` again after writing (see there). Events keep wire order either way.
    ///
    /// Returns the protocol error that failed the connection. Errors are sticky: after one,
    /// input is discarded and every call returns the same error. Events produced before the
    /// error are still delivered. Input after a received Close is discarded.
    pub fn handle_read(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        self.pending_input = false;
        if let Some(e) = &self.error {
            buf.clear();
            return Err(e.clone());
        }
        if self.closed || self.eof || self.close_received.is_some() {
            buf.clear();
            return Ok(());
        }
        loop {
            match self.reader.poll(buf, self.ext.as_deref_mut()) {
                Ok(None) => return Ok(()),
                Ok(Some(Inbound::PingAhead)) => {
                    if self.stop_before_ping() {
                        self.reader.rewind_ping();
                        self.pending_input = true;
                        return Ok(());
                    }
                }
                Ok(Some(item)) => {
                    if self.on_inbound(item) {
                        buf.clear();
                        return Ok(());
                    }
                }
                Err(e) => {
                    buf.clear();
                    self.fail(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// Whether [`handle_read`](Self::handle_read) stopped early, in front of a Ping, and
    /// must be called again with the same buffer, even if no new bytes arrive.
    ///
    /// `handle_read` stops at the frame boundary before a Ping when an earlier auto-pong is
    /// still owed (in the single latest-wins slot) and none of its bytes have left
    /// through [`Outbound`](crate::Outbound)'s `advance` since `handle_read` last stopped
    /// there. The Ping and everything after it stay in the buffer. This gives the driver the
    /// chance to write the owed pong, so that a burst of pings arriving in one read is
    /// answered ping by ping while the transport is writable (Autobahn 2.10, spec T13).
    ///
    /// If `handle_read` is called again while that pong is still entirely unwritten (the
    /// transport took nothing), it does not stop there again: the newer ping's pong replaces
    /// the unwritten one (latest wins) and parsing goes on; it stops again only after a pong
    /// has (partly) left. So two calls with no write in between consume all that one call
    /// used to consume: no livelock, no unbounded buffering, no read deadlock while writes
    /// are blocked. The flag is cleared by the next `handle_read`.
    ///
    /// # Driver contract
    ///
    /// After `handle_read`, drain [`poll_event`](Self::poll_event) and write what
    /// [`outbound`](Self::outbound) holds; if `has_pending_input()`, call `handle_read` again
    /// with the same buffer even if no new bytes arrived. Do this before waiting for more
    /// input and before [`handle_eof`](Self::handle_eof) (input after EOF is discarded).
    ///
    /// ```
    /// use bytes::{Buf, BytesMut};
    /// use sonar_core::{Config, Connection};
    ///
    /// let mut server = Connection::server(Config::default());
    /// // Two masked pings, "A" and "B" (key 00 00 00 00), in one read.
    /// let mut buf = BytesMut::from(&[0x89, 0x81, 0, 0, 0, 0, b'A', 0x89, 0x81, 0, 0, 0, 0, b'B'][..]);
    /// server.handle_read(&mut buf).unwrap();
    /// assert!(server.has_pending_input()); // stopped in front of "B"
    /// assert_eq!(buf.len(), 7);
    /// let mut written = Vec::new();
    /// while server.wants_write() {
    ///     let mut out = server.outbound();
    ///     let n = out.chunk().len();
    ///     written.extend_from_slice(out.chunk());
    ///     out.advance(n);
    /// }
    /// server.handle_read(&mut buf).unwrap();
    /// assert!(!server.has_pending_input());
    /// let mut out = server.outbound();
    /// written.extend_from_slice(&out.copy_to_bytes(out.remaining()));
    /// assert_eq!(written, [0x8a, 0x01, b'A', 0x8a, 0x01, b'B']);
    /// ```
    pub fn has_pending_input(&self) -> bool {
        self.pending_input
    }

    /// Frees the memory of the internal queues that are empty (events, frames to write), as
    /// `Vec::shrink_to_fit` does: an idle connection then holds only its fixed-size state. A
    /// driver calls it when it waits with nothing buffered; queues that still hold something
    /// are left as they are.
    ///
    /// ```
    /// use bytes::Buf;
    /// use sonar_core::{Config, Connection, Message};
    ///
    /// let mut server = Connection::server(Config::default());
    /// server.send(Message::text("hi")).unwrap();
    /// let mut out = server.outbound();
    /// out.advance(out.remaining());
    /// server.shrink_to_fit(); // nothing queued: nothing kept
    /// assert!(!server.wants_write());
    /// ```
    pub fn shrink_to_fit(&mut self) {
        if self.events.is_empty() {
            self.events.shrink_to_fit();
        }
        self.out.shrink_to_fit();
    }

    /// Keeps the memory of large payloads once they are written, for
    /// [`take_written_buffer`](Self::take_written_buffer) (off by default).
    pub fn set_reclaim_written(&mut self, on: bool) {
        match (on, &self.out.written) {
            (true, None) => self.out.written = Some(alloc::vec::Vec::new()),
            (false, _) => self.out.written = None,
            (true, Some(_)) => {}
        }
    }

    /// An emptied buffer whose memory held the payload of a data frame of at least
    /// [`RECLAIM_MIN`](crate::RECLAIM_MIN) bytes, now written in full and referenced by
    /// nothing else (with [`set_reclaim_written`](Self::set_reclaim_written) on; at most 4 are
    /// kept between calls, and [`shrink_to_fit`](Self::shrink_to_fit) drops them).
    ///
    /// A driver reads the next frames into it instead of allocating a buffer for every large
    /// message while the allocator frees the last one (which, with glibc, hands the memory
    /// back to the system and faults it in again).
    ///
    /// ```
    /// use bytes::Buf;
    /// use sonar_core::{Config, Connection, Message};
    ///
    /// let mut server = Connection::server(Config::default());
    /// server.set_reclaim_written(true);
    /// server.send(Message::binary(vec![7u8; 16 * 1024])).unwrap();
    /// let mut out = server.outbound();
    /// let n = out.remaining();
    /// out.advance(n); // the transport took it all
    /// let buf = server.take_written_buffer().expect("nothing else holds the payload");
    /// assert!(buf.is_empty() && buf.capacity() >= 16 * 1024);
    /// ```
    pub fn take_written_buffer(&mut self) -> Option<BytesMut> {
        self.out.written.as_mut()?.pop()
    }

    /// Bytes still to come for the frame at the front of the input buffer, once its header
    /// has been parsed (`None` before that, and between frames). `buffered` is the length
    /// of the buffer passed to [`handle_read`](Self::handle_read), whose front is then that
    /// frame's payload. A driver can use it to size its buffers so that a large frame is
    /// received into one allocation of the right size.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use sonar_core::{Config, Connection};
    ///
    /// let mut server = Connection::server(Config::default());
    /// // A masked binary frame of 10 bytes (key 00 00 00 00), of which 4 have arrived.
    /// let mut buf = BytesMut::from(&[0x82, 0x8a, 0, 0, 0, 0, 1, 2, 3, 4][..]);
    /// assert_eq!(server.frame_remaining(buf.len()), None);
    /// server.handle_read(&mut buf).unwrap();
    /// assert_eq!(server.frame_remaining(buf.len()), Some(6));
    /// ```
    pub fn frame_remaining(&self, buffered: usize) -> Option<usize> {
        self.reader.frame_remaining(buffered)
    }

    /// The gate in front of a Ping: stop if an auto-pong is owed and has had no
    /// chance to leave since the last stop.
    fn stop_before_ping(&mut self) -> bool {
        if self.out.pong_slot.is_none() {
            // Nothing owed (the last owed pong started to leave): pings are answered one by one.
            self.pong_stalled = false;
            return false;
        }
        if self.pong_stalled {
            // Called again with the pong still unwritten: coalesce and read on.
            return false;
        }
        self.pong_stalled = true;
        true
    }

    /// The transport reported end of stream (the peer closed TCP).
    pub fn handle_eof(&mut self) {
        if self.closed {
            return;
        }
        self.commit_failure();
        self.eof = true;
        self.check_transport();
    }

    /// Handles one complete item; returns `true` when reading must stop (Close received).
    fn on_inbound(&mut self, item: Inbound) -> bool {
        match item {
            Inbound::Message(m) => self.events.push_back(Event::Message(m)),
            Inbound::Ping(p) => {
                if self.config.auto_pong {
                    let frame = self.encode(true, 0, OpCode::PONG, p.clone(), FrameKind::Pong);
                    self.out.set_pong(frame);
                }
                self.events.push_back(Event::Ping(p));
            }
            Inbound::Pong(p) => self.events.push_back(Event::Pong(p)),
            // Handled by `handle_read` before it gets here.
            Inbound::PingAhead => {}
            Inbound::Close(frame) => {
                self.close_received = Some(Box::new(frame.clone()));
                // Once a Close is received no pong may be sent any more (C-11, C-14).
                self.out.clear_pong();
                if !self.close_sent {
                    // Echo the code (not the reason); an empty Close is echoed empty (C-5).
                    self.queue_close(frame.as_ref().map(|f| f.code));
                }
                self.events.push_back(Event::CloseReceived(frame));
                self.check_transport();
                return true;
            }
        }
        false
    }

    /// Fails the connection (§7.1.7): drop what has not started to leave, queue Close(code).
    /// With `defer_fail_close`, input stops here but the Close waits for `commit_failure`.
    fn fail(&mut self, e: ProtocolError) {
        let code = e.close_code();
        self.error = Some(e);
        if self.config.defer_fail_close && !self.close_sent {
            self.fail_pending = true;
            return;
        }
        if !self.close_sent {
            self.out.truncate_to_current();
            self.queue_close(Some(code));
        }
        self.check_transport();
    }

    /// Queues the failing Close of a protocol error that [`Config::defer_fail_close`]
    /// held back, after everything already queued. No-op otherwise.
    ///
    /// ```
    /// use bytes::{Buf, BytesMut};
    /// use sonar_core::{Config, Connection, Event, Message};
    ///
    /// let mut server = Connection::server(Config::default().with_defer_fail_close(true));
    /// // A masked "Hi", then a frame with a reserved opcode (0xB).
    /// let mut input = BytesMut::from(&[0x81, 0x82, 0, 0, 0, 0, b'H', b'i', 0x8b, 0x80, 0, 0, 0, 0][..]);
    /// assert!(server.handle_read(&mut input).is_err());
    /// assert!(server.failure_pending());
    /// assert_eq!(server.poll_event(), Some(Event::Message(Message::from("Hi"))));
    /// server.send(Message::from("Hi")).unwrap(); // the answer still goes out, first
    /// server.commit_failure();
    /// let mut out = server.outbound();
    /// let bytes = out.copy_to_bytes(out.remaining());
    /// assert_eq!(&bytes[..], &[0x81, 0x02, b'H', b'i', 0x88, 0x02, 0x03, 0xea]);
    /// ```
    pub fn commit_failure(&mut self) {
        if !self.fail_pending {
            return;
        }
        self.fail_pending = false;
        if let Some(code) = self.error.as_ref().map(ProtocolError::close_code)
            && !self.close_sent
        {
            self.queue_close(Some(code));
        }
        self.check_transport();
    }

    /// Whether a protocol error's failing Close is held back, waiting for
    /// [`commit_failure`](Self::commit_failure) (see [`Config::defer_fail_close`]).
    pub fn failure_pending(&self) -> bool {
        self.fail_pending
    }

    // ----- output ------------------------------------------------------------------------

    /// The bytes to write, as a [`bytes::Buf`] over header bytes and payload `Bytes`.
    pub fn outbound(&mut self) -> Outbound<'_> {
        Outbound { conn: self }
    }

    /// How many bytes are queued to write (what `outbound().remaining()` returns).
    pub fn outbound_len(&self) -> usize {
        self.out.remaining()
    }

    /// Whether there are bytes to write.
    pub fn wants_write(&self) -> bool {
        self.out.remaining() > 0
    }

    pub(crate) fn advance_out(&mut self, cnt: usize) {
        let owed = self.out.pong_slot.is_some();
        let events = &mut self.events;
        let mut close_written = false;
        self.out.advance(cnt, |kind| match kind {
            FrameKind::Ping(p) => events.push_back(Event::PingSent(p)),
            FrameKind::Close => close_written = true,
            FrameKind::Data | FrameKind::Pong => {}
        });
        if owed && self.out.pong_slot.is_none() {
            // The owed auto-pong started to leave: the next ping may stop the read again.
            self.pong_stalled = false;
        }
        if close_written {
            self.close_written = true;
            self.check_transport();
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next (see the type docs).
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.closed {
            return None;
        }
        match self.timer {
            Timer::Idle => None,
            Timer::NeedsArm => Some(Duration::ZERO),
            Timer::Armed(deadline) => Some(deadline),
        }
    }

    /// Advances the virtual clock: arms the close timeout, or fires it when due.
    pub fn handle_timeout(&mut self, now: Duration) {
        let now = now.max(self.last_now);
        self.last_now = now;
        if self.closed {
            return;
        }
        match self.timer {
            Timer::Idle => {}
            Timer::NeedsArm => {
                self.timer = Timer::Armed(now.saturating_add(self.config.close_timeout));
            }
            Timer::Armed(deadline) if now >= deadline => self.close_transport(),
            Timer::Armed(_) => {}
        }
    }

    /// The connection state.
    pub fn state(&self) -> State {
        if self.closed {
            State::Closed
        } else if self.close_sent || self.close_received.is_some() {
            State::Closing {
                sent: self.close_sent,
                received: self.close_received.is_some(),
            }
        } else {
            State::Open
        }
    }

    /// The protocol error that failed the connection, if any.
    pub fn error(&self) -> Option<&ProtocolError> {
        self.error.as_ref()
    }

    /// The peer's Close, if received (`Some(None)` for an empty Close).
    pub fn close_received(&self) -> Option<&Option<CloseFrame>> {
        self.close_received.as_deref()
    }

    /// The connection close code of RFC 6455 §7.1.5: the code of the Close received, 1005 if
    /// it had none, 1006 if the transport closed without one; `None` while still open.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self.close_received.as_deref() {
            Some(Some(f)) => Some(f.code),
            Some(None) => Some(CloseCode::NO_STATUS_RECEIVED),
            None if self.closed => Some(CloseCode::ABNORMAL),
            None => None,
        }
    }

    fn check_transport(&mut self) {
        if self.closed {
            return;
        }
        let reply_pending = self.close_received.is_some() && self.close_sent && !self.close_written;
        let done = if self.eof {
            !reply_pending
        } else {
            self.role == Role::Server
                && self.close_written
                && (self.close_received.is_some() || self.error.is_some())
        };
        if done {
            self.close_transport();
        }
    }

    fn close_transport(&mut self) {
        self.closed = true;
        self.timer = Timer::Idle;
        self.out.clear();
        self.events.push_back(Event::CloseTransport);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use alloc::vec;

    use crate::Message;
    use crate::testing::{Endpoint, FrameBuilder};

    #[test]
    fn shrink_to_fit_frees_empty_queues_and_keeps_what_is_still_queued() {
        let mut server = Endpoint::server();
        server
            .feed(&FrameBuilder::text(b"hi").mask([1, 2, 3, 4]).build())
            .unwrap();
        assert_eq!(server.take_events().len(), 1);
        server.conn.send(Message::text("one")).unwrap();
        server.conn.send(Message::text("two")).unwrap();
        // One frame has started to leave, one is still queued.
        assert_eq!(server.write(1), 1);
        server.conn.shrink_to_fit();
        assert_eq!(server.conn.events.capacity(), 0);
        assert!(
            server.conn.out.queue_capacity() > 0,
            "the queued frame stays"
        );
        assert_eq!(
            server.take_output(),
            vec![0x81, 3, b'o', b'n', b'e', 0x81, 3, b't', b'w', b'o']
        );
        server.conn.shrink_to_fit();
        assert_eq!(server.conn.out.queue_capacity(), 0);
    }

    const LARGE: usize = crate::RECLAIM_MIN;

    #[test]
    fn a_large_payload_comes_back_as_a_buffer_only_once_written_in_full() {
        let mut server = Endpoint::server();
        server.conn.set_reclaim_written(true);
        let payload = bytes::Bytes::from(vec![7u8; LARGE]);
        let address = payload.as_ptr();
        server.conn.send(Message::binary(payload)).unwrap();
        assert_eq!(server.write(100), 100);
        assert!(server.conn.take_written_buffer().is_none(), "still leaving");
        assert_eq!(server.take_output().len(), 4 + LARGE);
        let buf = server.conn.take_written_buffer().expect("written in full");
        assert!(buf.is_empty());
        assert!(buf.capacity() >= LARGE);
        assert_eq!(buf.as_ptr(), address, "the payload's own memory");
        assert!(
            server.conn.take_written_buffer().is_none(),
            "handed back once"
        );
    }

    #[test]
    fn a_payload_held_elsewhere_small_or_not_asked_for_is_not_handed_back() {
        let mut server = Endpoint::server();
        server.conn.set_reclaim_written(true);
        // The application keeps a clone: the memory is not the connection's to give.
        let shared = Message::binary(vec![1u8; LARGE]);
        server.conn.send(shared.clone()).unwrap();
        // Below the minimum.
        server
            .conn
            .send(Message::binary(vec![2u8; LARGE - 1]))
            .unwrap();
        server.take_output();
        assert!(server.conn.take_written_buffer().is_none());
        drop(shared);

        let mut off = Endpoint::server();
        off.conn.send(Message::binary(vec![3u8; LARGE])).unwrap();
        off.take_output();
        assert!(off.conn.take_written_buffer().is_none(), "off by default");
    }

    #[test]
    fn written_buffers_are_bounded_and_dropped_by_shrink_to_fit() {
        let mut server = Endpoint::server();
        server.conn.set_reclaim_written(true);
        for _ in 0..6 {
            server.conn.send(Message::binary(vec![4u8; LARGE])).unwrap();
        }
        server.take_output();
        assert_eq!(
            server.conn.out.written.as_ref().map(Vec::len),
            Some(4),
            "at most 4 kept"
        );
        server.conn.shrink_to_fit();
        assert!(server.conn.take_written_buffer().is_none());
        assert_eq!(server.conn.out.written.as_ref().map(Vec::capacity), Some(0));
    }
}
