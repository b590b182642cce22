//! The sans-I/O connection: inputs, application calls, outputs.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame};
use crate::config::{Config, Extension, MaskSource, Role};
use crate::error::{ProtocolError, SendError};
use crate::frame::{FrameHeader, OpCode};
use crate::mask::apply_mask;
use crate::message::{DataKind, Event, Message, State};
use crate::outbound::{FrameKind, OutFrame, OutQueue, Outbound};
use crate::reader::{Inbound, Reader};
use crate::utf8::Utf8Validator;

/// Largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

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
/// 2. **Events**: drain [`poll_event`](Self::poll_event) until `None`. This must be done
///    after every `handle_read` (events are not bounded otherwise) and after writing.
/// 3. **Output**: while [`wants_write`](Self::wants_write), write from
///    [`outbound`](Self::outbound) (a [`bytes::Buf`]; `chunks_vectored` for vectored writes)
///    and `advance` by what the transport accepted. Writing produces events
///    ([`Event::PingSent`], [`Event::CloseTransport`]), so drain events again.
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
    reader: Reader,
    pub(crate) out: OutQueue,
    events: VecDeque<Event>,
    error: Option<ProtocolError>,
    close_sent: bool,
    close_written: bool,
    close_received: Option<Option<CloseFrame>>,
    eof: bool,
    closed: bool,
    timer: Timer,
    last_now: Duration,
    out_fragment: Option<DataKind>,
    out_utf8: Utf8Validator,
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state())
            .field("error", &self.error)
            .field("outbound", &self.out.remaining())
            .field("events", &self.events.len())
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
        let ext = config.extension.as_ref().map(|f| f());
        let ext_rsv = ext.as_ref().map_or(0, |e| e.rsv_bits());
        Connection {
            role,
            reader: Reader::new(
                role,
                config.max_frame_size,
                config.max_message_size,
                ext_rsv,
            ),
            config,
            masks,
            ext,
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

    // ----- input -------------------------------------------------------------------------

    /// Processes as many complete frames from the front of `buf` as possible; a partial frame
    /// stays buffered (its already-received payload is unmasked and validated in place).
    ///
    /// Returns the protocol error that failed the connection. Errors are sticky: after one,
    /// input is discarded and every call returns the same error. Events produced before the
    /// error are still delivered. Input after a received Close is discarded.
    pub fn handle_read(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
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

    /// The transport reported end of stream (the peer closed TCP).
    pub fn handle_eof(&mut self) {
        if self.closed {
            return;
        }
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
            Inbound::Close(frame) => {
                self.close_received = Some(frame.clone());
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
    fn fail(&mut self, e: ProtocolError) {
        let code = e.close_code();
        self.error = Some(e);
        if !self.close_sent {
            self.out.truncate_to_current();
            self.queue_close(Some(code));
        }
        self.check_transport();
    }

    // ----- application -------------------------------------------------------------------

    fn check_data_allowed(&self) -> Result<(), SendError> {
        if self.closed {
            Err(SendError::Closed)
        } else if self.close_sent || self.error.is_some() || self.close_received.is_some() {
            Err(SendError::Closing)
        } else {
            Ok(())
        }
    }

    /// Queues a whole message, split into fragments of `auto_fragment_size` if larger.
    ///
    /// Fails with [`SendError::Closing`] once a Close was sent or received (nothing queued).
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        self.check_data_allowed()?;
        if self.out_fragment.is_some() {
            return Err(SendError::FragmentInProgress);
        }
        let kind = msg.kind();
        let payload = msg.into_payload();
        let (rsv, payload) = match self.ext.as_mut() {
            Some(ext) => ext.encode(kind, payload)?,
            None => (0, payload),
        };
        let opcode = data_opcode(kind);
        self.queue_data(opcode, rsv, payload, true);
        Ok(())
    }

    /// Queues one fragment of a streamed message: the first call's `kind` starts the message,
    /// later calls must repeat it, `fin = true` ends it. Text fragments are checked to form
    /// valid UTF-8 across calls. Fragments pass the extension untransformed.
    pub fn send_fragment(
        &mut self,
        kind: DataKind,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), SendError> {
        self.check_data_allowed()?;
        let opcode = match self.out_fragment {
            Some(k) if k != kind => return Err(SendError::FragmentKindMismatch),
            Some(_) => OpCode::CONTINUATION,
            None => data_opcode(kind),
        };
        if kind == DataKind::Text {
            let mut v = if self.out_fragment.is_some() {
                self.out_utf8.clone()
            } else {
                Utf8Validator::default()
            };
            if v.feed(&payload).is_err() || (fin && !v.is_complete()) {
                return Err(SendError::InvalidUtf8);
            }
            self.out_utf8 = v;
        }
        self.out_fragment = if fin { None } else { Some(kind) };
        self.queue_data(opcode, 0, payload, fin);
        Ok(())
    }

    fn check_control_allowed(&self, payload: &Bytes) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        if self.error.is_some() || self.close_received.is_some() {
            return Err(SendError::Closing);
        }
        if payload.len() > MAX_CONTROL {
            return Err(SendError::ControlTooLong);
        }
        if self.out.control_len() >= self.config.max_queued_control {
            return Err(SendError::QueueFull);
        }
        Ok(())
    }

    /// Queues a Ping. It goes out at the next frame boundary, after an owed auto-pong and
    /// ahead of queued data (C-15). Allowed while open and after we sent Close (D-3);
    /// [`Event::PingSent`] reports when its last byte was written.
    pub fn ping(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.check_control_allowed(&payload)?;
        let frame = self.encode(
            true,
            0,
            OpCode::PING,
            payload.clone(),
            FrameKind::Ping(payload),
        );
        self.out.push_control(frame);
        Ok(())
    }

    /// Queues an unsolicited (or manual, with `auto_pong` off) Pong. It never displaces an
    /// owed auto-pong (C-13).
    pub fn pong(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.check_control_allowed(&payload)?;
        let frame = self.encode(true, 0, OpCode::PONG, payload, FrameKind::Pong);
        self.out.push_control(frame);
        Ok(())
    }

    /// Starts the closing handshake: queues a Close after the data already queued.
    /// `None` sends an empty Close. The code must be sendable (C-5, D-1) and the reason at
    /// most 123 bytes; otherwise nothing is queued and the state is unchanged.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        if self.close_sent || self.error.is_some() {
            return Err(SendError::Closing);
        }
        if let Some(f) = &frame {
            if !f.code.is_sendable() {
                return Err(SendError::InvalidCloseCode(f.code.as_u16()));
            }
            if f.reason.len() > CloseFrame::MAX_REASON_LEN {
                return Err(SendError::ReasonTooLong);
            }
        }
        let payload = match &frame {
            None => Bytes::new(),
            Some(f) => {
                let mut b = BytesMut::with_capacity(2 + f.reason.len());
                b.put_u16(f.code.as_u16());
                b.put_slice(f.reason.as_bytes());
                b.freeze()
            }
        };
        self.queue_close_payload(payload);
        Ok(())
    }

    fn queue_close(&mut self, code: Option<CloseCode>) {
        let payload = match code {
            None => Bytes::new(),
            Some(c) => Bytes::copy_from_slice(&c.as_u16().to_be_bytes()),
        };
        self.queue_close_payload(payload);
    }

    fn queue_close_payload(&mut self, payload: Bytes) {
        let frame = self.encode(true, 0, OpCode::CLOSE, payload, FrameKind::Close);
        self.out.push_data(frame);
        self.close_sent = true;
        if self.timer == Timer::Idle {
            self.timer = Timer::NeedsArm;
        }
    }

    fn queue_data(&mut self, opcode: OpCode, rsv: u8, payload: Bytes, fin: bool) {
        let size = self.config.auto_fragment_size.unwrap_or(usize::MAX).max(1);
        let mut rest = payload;
        let mut opcode = opcode;
        let mut rsv = rsv;
        loop {
            let last = rest.len() <= size;
            let part = if last {
                core::mem::take(&mut rest)
            } else {
                rest.split_to(size)
            };
            let frame = self.encode(fin && last, rsv, opcode, part, FrameKind::Data);
            self.out.push_data(frame);
            if last {
                return;
            }
            opcode = OpCode::CONTINUATION;
            rsv = 0;
        }
    }

    /// Builds a frame; in the client role the payload is copied into a masked buffer.
    fn encode(
        &mut self,
        fin: bool,
        rsv: u8,
        opcode: OpCode,
        payload: Bytes,
        kind: FrameKind,
    ) -> OutFrame {
        let len = payload.len() as u64;
        match self.masks.as_mut() {
            Some(masks) => {
                let key = masks.next_mask();
                let mut masked = BytesMut::from(payload.as_ref());
                apply_mask(&mut masked, key, 0);
                let header = FrameHeader {
                    fin,
                    rsv,
                    opcode,
                    mask: Some(key),
                    len,
                };
                OutFrame::new(&header, masked.freeze(), kind)
            }
            None => {
                let header = FrameHeader {
                    fin,
                    rsv,
                    opcode,
                    mask: None,
                    len,
                };
                OutFrame::new(&header, payload, kind)
            }
        }
    }

    // ----- output ------------------------------------------------------------------------

    /// The bytes to write, as a [`bytes::Buf`] over header bytes and payload `Bytes`.
    pub fn outbound(&mut self) -> Outbound<'_> {
        Outbound { conn: self }
    }

    /// Whether there are bytes to write.
    pub fn wants_write(&self) -> bool {
        self.out.remaining() > 0
    }

    pub(crate) fn advance_out(&mut self, cnt: usize) {
        let events = &mut self.events;
        let mut close_written = false;
        self.out.advance(cnt, |kind| match kind {
            FrameKind::Ping(p) => events.push_back(Event::PingSent(p)),
            FrameKind::Close => close_written = true,
            FrameKind::Data | FrameKind::Pong => {}
        });
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
        self.close_received.as_ref()
    }

    /// The connection close code of RFC 6455 §7.1.5: the code of the Close received, 1005 if
    /// it had none, 1006 if the transport closed without one; `None` while still open.
    pub fn close_code(&self) -> Option<CloseCode> {
        match &self.close_received {
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

fn data_opcode(kind: DataKind) -> OpCode {
    match kind {
        DataKind::Text => OpCode::TEXT,
        DataKind::Binary => OpCode::BINARY,
    }
}
