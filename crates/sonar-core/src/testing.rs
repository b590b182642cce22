//! Test utilities (feature `test-util`): a fixed mask source, a frame builder for peer
//! traffic, a single-connection [`Endpoint`] with scripted reads and writes, and an in-memory
//! client/server [`Pair`] with a virtual clock.
//!
//! ```
//! use sonar_core::testing::{FrameBuilder, Pair};
//! use sonar_core::{Event, Message};
//!
//! let mut pair = Pair::new();
//! pair.client.conn.send(Message::from("hi")).unwrap();
//! pair.pump();
//! assert_eq!(pair.server.take_events(), vec![Event::Message(Message::from("hi"))]);
//! assert_eq!(FrameBuilder::ping(b"x").mask([0; 4]).build(), vec![0x89, 0x81, 0, 0, 0, 0, b'x']);
//! ```

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::{Buf, BytesMut};

use crate::close::CloseCode;
use crate::config::{Config, MaskSource};
use crate::connection::Connection;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use crate::mask::apply_mask;
use crate::message::Event;

/// The RFC 6455 §5.7 example key, used by the spec's client test vectors.
pub const RFC_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A mask source that always returns the same key (tests only: real clients need a CSPRNG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedMask(pub [u8; 4]);

impl MaskSource for FixedMask {
    fn next_mask(&mut self) -> [u8; 4] {
        self.0
    }
}

/// Builds raw frames as a peer would send them (any opcode, FIN, RSV bits, mask key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameBuilder {
    opcode: u8,
    fin: bool,
    rsv: u8,
    mask: Option<[u8; 4]>,
    payload: Vec<u8>,
}

impl FrameBuilder {
    /// A frame with the raw 4-bit `opcode`, FIN set, no RSV bits, unmasked.
    pub fn new(opcode: u8, payload: &[u8]) -> Self {
        FrameBuilder {
            opcode,
            fin: true,
            rsv: 0,
            mask: None,
            payload: payload.to_vec(),
        }
    }
    /// A text frame.
    pub fn text(payload: &[u8]) -> Self {
        Self::new(0x1, payload)
    }
    /// A binary frame.
    pub fn binary(payload: &[u8]) -> Self {
        Self::new(0x2, payload)
    }
    /// A continuation frame.
    pub fn continuation(payload: &[u8]) -> Self {
        Self::new(0x0, payload)
    }
    /// A ping frame.
    pub fn ping(payload: &[u8]) -> Self {
        Self::new(0x9, payload)
    }
    /// A pong frame.
    pub fn pong(payload: &[u8]) -> Self {
        Self::new(0xA, payload)
    }
    /// A Close frame with a raw code and reason.
    pub fn close(code: u16, reason: &[u8]) -> Self {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason);
        Self::new(0x8, &p)
    }
    /// An empty Close frame.
    pub fn close_empty() -> Self {
        Self::new(0x8, &[])
    }
    /// Sets FIN.
    pub fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }
    /// Sets the RSV bits (as in the first byte, e.g. `0x40` for RSV1).
    pub fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }
    /// Masks the payload with `key` (as a client must).
    pub fn mask(mut self, key: [u8; 4]) -> Self {
        self.mask = Some(key);
        self
    }
    /// Compresses the payload as a whole permessage-deflate message with a fresh context
    /// ([`deflate`]) and sets RSV1 (RFC 7692 §6.1). For a fragmented compressed message,
    /// compress the whole message once and split the bytes over frames instead.
    #[cfg(feature = "deflate")]
    pub fn compressed(mut self) -> Self {
        self.payload = deflate(&self.payload);
        self.rsv |= crate::frame::RSV1;
        self
    }
    /// Masks with `key` for a server-bound frame, leaves unmasked for a client-bound one.
    pub fn to_server(self, to_server: bool) -> Self {
        if to_server { self.mask([0; 4]) } else { self }
    }
    /// The frame bytes.
    pub fn build(&self) -> Vec<u8> {
        let header = FrameHeader {
            fin: self.fin,
            rsv: self.rsv,
            opcode: OpCode::from_bits(self.opcode),
            mask: self.mask,
            len: self.payload.len() as u64,
        };
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut h);
        let mut out = h.get(..n).unwrap_or(&[]).to_vec();
        let mut payload = self.payload.clone();
        if let Some(key) = self.mask {
            apply_mask(&mut payload, key, 0);
        }
        out.extend_from_slice(&payload);
        out
    }
}

/// One connection with scripted input and output, collecting output bytes and events.
#[derive(Debug)]
pub struct Endpoint {
    /// The connection under test.
    pub conn: Connection,
    /// Deliver input in pieces of at most this many bytes (`Some(1)`: one byte per call).
    pub read_chunk: Option<usize>,
    /// Unconsumed input (the buffer handed to `handle_read`).
    pub inbuf: BytesMut,
    /// Bytes written so far and not yet taken.
    pub output: Vec<u8>,
    /// Events collected so far and not yet taken.
    pub events: Vec<Event>,
    /// The first error `handle_read` returned.
    pub error: Option<ProtocolError>,
    /// Whether the connection emitted `CloseTransport`.
    pub transport_closed: bool,
    /// The writer is writable: after every `handle_read`, [`feed`](Self::feed) writes all
    /// queued output (as a driver does when the transport takes everything). When `false`
    /// (the default) output stays queued until [`write`](Self::write) is called, like a
    /// blocked transport.
    pub writable: bool,
}

impl Endpoint {
    /// Wraps a connection.
    pub fn new(conn: Connection) -> Self {
        Endpoint {
            conn,
            read_chunk: None,
            inbuf: BytesMut::new(),
            output: Vec::new(),
            events: Vec::new(),
            error: None,
            transport_closed: false,
            writable: false,
        }
    }
    /// A server with the default config.
    pub fn server() -> Self {
        Self::new(Connection::server(Config::default()))
    }
    /// A client with the default config and the RFC example key.
    pub fn client() -> Self {
        Self::new(Connection::client(
            Config::default(),
            Box::new(FixedMask(RFC_KEY)),
        ))
    }
    /// Sets the read chunk size.
    pub fn chunked(mut self, chunk: Option<usize>) -> Self {
        self.read_chunk = chunk;
        self
    }
    /// Sets whether the writer is writable (see [`Endpoint::writable`]).
    pub fn writable(mut self, writable: bool) -> Self {
        self.writable = writable;
        self
    }

    fn collect(&mut self) {
        while let Some(e) = self.conn.poll_event() {
            if e == Event::CloseTransport {
                self.transport_closed = true;
            }
            self.events.push(e);
        }
    }

    /// Feeds input (in `read_chunk` pieces), collecting events; returns the first error.
    ///
    /// After each piece it follows the driver contract of
    /// [`Connection::has_pending_input`]: it calls `handle_read` again while input is
    /// pending, writing all output in between if [`writable`](Self::writable) (every ping is
    /// answered) and nothing if not (pings coalesce to the latest pong).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        let chunk = self.read_chunk.unwrap_or(usize::MAX).max(1);
        for piece in bytes.chunks(chunk) {
            self.inbuf.extend_from_slice(piece);
            self.read_all();
        }
        if bytes.is_empty() {
            self.read_all();
        }
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// One `handle_read` on the buffered input, collecting events (and writing everything if
    /// writable). Returns whether input is still pending.
    pub fn read_once(&mut self) -> bool {
        let r = self.conn.handle_read(&mut self.inbuf);
        self.collect();
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
        if self.writable {
            self.write_all();
        }
        self.conn.has_pending_input()
    }

    /// Calls `handle_read` until no input is pending (bounded: every stop but the last
    /// consumes at least one frame when writable, and an unwritable writer stops at most once).
    fn read_all(&mut self) {
        for _ in 0..self.inbuf.len().saturating_add(2) {
            if !self.read_once() {
                return;
            }
        }
    }

    /// Writes at most `max` bytes from the outbound queue; returns how many.
    pub fn write(&mut self, max: usize) -> usize {
        let mut written = 0;
        let mut out = self.conn.outbound();
        while written < max && out.has_remaining() {
            let c = out.chunk();
            let n = c.len().min(max - written);
            self.output.extend_from_slice(c.get(..n).unwrap_or(&[]));
            out.advance(n);
            written += n;
        }
        self.collect();
        written
    }

    /// Writes everything queued.
    pub fn write_all(&mut self) -> usize {
        self.write(usize::MAX)
    }

    /// Writes everything queued and returns all output not taken before.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.write_all();
        core::mem::take(&mut self.output)
    }

    /// Returns the events not taken before.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.collect();
        core::mem::take(&mut self.events)
    }

    /// Calls `handle_timeout(now)` while the connection asks for it (bounded).
    pub fn drive_timer(&mut self, now: Duration) {
        for _ in 0..4 {
            match self.conn.poll_timeout() {
                Some(t) if t <= now => self.conn.handle_timeout(now),
                _ => break,
            }
        }
        self.collect();
    }
}

/// The Close frame bytes a server sends for `code` (unmasked, no reason).
pub fn server_close(code: CloseCode) -> Vec<u8> {
    let c = code.as_u16().to_be_bytes();
    alloc::vec![0x88, 0x02, c[0], c[1]]
}

/// An in-memory client/server pair with a virtual clock.
#[derive(Debug)]
pub struct Pair {
    /// The client end (masks with [`RFC_KEY`]).
    pub client: Endpoint,
    /// The server end.
    pub server: Endpoint,
    /// The virtual clock, as a `Duration` since the pair was created.
    pub now: Duration,
    /// Carry at most this many bytes per step in each direction (`Some(1)`: byte at a time).
    pub step: Option<usize>,
    /// Leave the client's output unwritten (its writer is blocked).
    pub hold_client_output: bool,
    /// Leave the server's output unwritten (its writer is blocked).
    pub hold_server_output: bool,
    client_eof_sent: bool,
    server_eof_sent: bool,
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

impl Pair {
    /// A pair with default configs.
    pub fn new() -> Self {
        Self::with_configs(Config::default(), Config::default())
    }

    /// A pair with the given client and server configs.
    pub fn with_configs(client: Config, server: Config) -> Self {
        Pair {
            client: Endpoint::new(Connection::client(client, Box::new(FixedMask(RFC_KEY)))),
            server: Endpoint::new(Connection::server(server)),
            now: Duration::ZERO,
            step: None,
            hold_client_output: false,
            hold_server_output: false,
            client_eof_sent: false,
            server_eof_sent: false,
        }
    }

    /// Moves bytes both ways until nothing moves (bounded); delivers EOF to a peer once the
    /// other side's transport closed and its bytes were delivered. Returns the steps taken.
    pub fn pump(&mut self) -> usize {
        let step = self.step.unwrap_or(usize::MAX).max(1);
        for i in 0..1_000_000 {
            let mut moved = false;
            self.client.drive_timer(self.now);
            self.server.drive_timer(self.now);
            // Input left pending in front of a ping is read on right after the reader had its
            // chance to write the owed pong (if its output is held, the pings coalesce).
            if !self.hold_client_output {
                moved |= Self::carry(&mut self.client, &mut self.server, step);
            }
            if self.client.conn.has_pending_input() {
                self.client.read_once();
                moved = true;
            }
            if !self.hold_server_output {
                moved |= Self::carry(&mut self.server, &mut self.client, step);
            }
            if self.server.conn.has_pending_input() {
                self.server.read_once();
                moved = true;
            }
            // EOF only after all delivered input was read (input after EOF is discarded).
            if self.client.transport_closed
                && !self.client_eof_sent
                && !self.server.conn.has_pending_input()
            {
                self.client_eof_sent = true;
                self.server.conn.handle_eof();
                self.server.collect();
                moved = true;
            }
            if self.server.transport_closed
                && !self.server_eof_sent
                && !self.client.conn.has_pending_input()
            {
                self.server_eof_sent = true;
                self.client.conn.handle_eof();
                self.client.collect();
                moved = true;
            }
            if !moved {
                return i;
            }
        }
        usize::MAX
    }

    fn carry(from: &mut Endpoint, to: &mut Endpoint, step: usize) -> bool {
        let before = from.output.len();
        from.write(step);
        let bytes: Vec<u8> = from.output.drain(before..).collect();
        if bytes.is_empty() {
            return false;
        }
        if !to.transport_closed {
            // One `handle_read` per piece: if it stops in front of a ping, `pump` reads on
            // after `to` had its chance to write.
            let chunk = to.read_chunk.unwrap_or(usize::MAX).max(1);
            for piece in bytes.chunks(chunk) {
                to.inbuf.extend_from_slice(piece);
                to.read_once();
            }
        }
        true
    }

    /// Advances the virtual clock and pumps.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
        self.pump();
    }
}

/// A peer's permessage-deflate compressor: raw deflate, sync-flushed, the trailing
/// 00 00 ff ff removed (RFC 7692 §7.2.1); context kept across messages unless reset.
#[cfg(feature = "deflate")]
pub struct PeerDeflate {
    state: zlib_rs::Deflate,
    window_bits: u8,
    level: i32,
    reset_each: bool,
}

#[cfg(feature = "deflate")]
impl core::fmt::Debug for PeerDeflate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PeerDeflate")
            .field("window_bits", &self.window_bits)
            .field("reset_each", &self.reset_each)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "deflate")]
impl PeerDeflate {
    /// A compressor with a `window_bits` window (9..=15; 8 is raised to 9, as zlib does)
    /// at level 6.
    pub fn new(window_bits: u8) -> Self {
        Self::with_level(window_bits, 6)
    }
    /// A compressor with a window and level.
    pub fn with_level(window_bits: u8, level: i32) -> Self {
        let window_bits = window_bits.clamp(9, 15);
        PeerDeflate {
            state: Self::fresh(window_bits, level),
            window_bits,
            level,
            reset_each: false,
        }
    }
    fn fresh(window_bits: u8, level: i32) -> zlib_rs::Deflate {
        zlib_rs::Deflate::new(level.clamp(0, 9), false, window_bits)
    }
    /// Resets the context after every message (`*_no_context_takeover`).
    pub fn no_context_takeover(mut self) -> Self {
        self.reset_each = true;
        self
    }
    /// The compressed payload of one message.
    pub fn message(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = alloc::vec![0u8; data.len() + data.len() / 8 + 64];
        let mut used_in = 0usize;
        let mut used_out = 0usize;
        loop {
            let (i0, o0) = (self.state.total_in(), self.state.total_out());
            let r = self.state.compress(
                data.get(used_in..).unwrap_or(&[]),
                out.get_mut(used_out..).unwrap_or(&mut []),
                zlib_rs::DeflateFlush::SyncFlush,
            );
            used_in += (self.state.total_in() - i0) as usize;
            used_out += (self.state.total_out() - o0) as usize;
            if r.is_err() || (used_in == data.len() && used_out < out.len()) {
                break;
            }
            out.resize(out.len() * 2, 0);
        }
        out.truncate(used_out);
        if out.ends_with(&[0, 0, 0xff, 0xff]) {
            out.truncate(out.len() - 4);
        }
        if self.reset_each {
            self.state = Self::fresh(self.window_bits, self.level);
        }
        out
    }
}

/// One message compressed with a fresh context (a [`PeerDeflate`] with a 15-bit window).
#[cfg(feature = "deflate")]
pub fn deflate(data: &[u8]) -> Vec<u8> {
    PeerDeflate::new(15).message(data)
}

/// A peer's permessage-deflate decompressor: appends 00 00 ff ff to each message
/// (RFC 7692 §7.2.2); context kept across messages unless reset. Panics on bad data (tests).
#[cfg(feature = "deflate")]
pub struct PeerInflate {
    state: zlib_rs::Inflate,
    reset_each: bool,
}

#[cfg(feature = "deflate")]
impl core::fmt::Debug for PeerInflate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PeerInflate")
            .field("reset_each", &self.reset_each)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "deflate")]
impl Default for PeerInflate {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "deflate")]
impl PeerInflate {
    /// A decompressor keeping its context across messages.
    pub fn new() -> Self {
        PeerInflate {
            state: zlib_rs::Inflate::new(false, 15),
            reset_each: false,
        }
    }
    /// Resets the context after every message.
    pub fn no_context_takeover(mut self) -> Self {
        self.reset_each = true;
        self
    }
    /// The inflated payload of one compressed message.
    #[allow(clippy::panic)]
    pub fn message(&mut self, data: &[u8]) -> Vec<u8> {
        let mut input = data.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = alloc::vec![0u8; 4 * input.len() + 1024];
        let mut used_in = 0usize;
        let mut used_out = 0usize;
        loop {
            let (i0, o0) = (self.state.total_in(), self.state.total_out());
            let r = self.state.decompress(
                input.get(used_in..).unwrap_or(&[]),
                out.get_mut(used_out..).unwrap_or(&mut []),
                zlib_rs::InflateFlush::SyncFlush,
            );
            used_in += (self.state.total_in() - i0) as usize;
            used_out += (self.state.total_out() - o0) as usize;
            match r {
                Err(e) => panic!("invalid deflate data: {e:?}"),
                Ok(zlib_rs::Status::StreamEnd) => break,
                Ok(_) if used_in == input.len() && used_out < out.len() => break,
                Ok(_) => {}
            }
            out.resize(out.len() * 2, 0);
        }
        out.truncate(used_out);
        if self.reset_each {
            self.state = zlib_rs::Inflate::new(false, 15);
        }
        out
    }
}

/// [`PeerInflate::message`] with a fresh context.
#[cfg(feature = "deflate")]
pub fn inflate(data: &[u8]) -> Vec<u8> {
    PeerInflate::new().message(data)
}

/// Splits a byte stream of frames (as written by a connection) into (header, payload),
/// payloads unmasked.
#[allow(clippy::panic)]
pub fn parse_frames(mut bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let Ok(Some((h, wire))) = FrameHeader::parse(bytes) else {
            panic!("incomplete or bad frame header in {bytes:?}");
        };
        let end = wire + h.len as usize;
        let mut payload = bytes.get(wire..end).unwrap_or(&[]).to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key, 0);
        }
        frames.push((h, payload));
        bytes = bytes.get(end..).unwrap_or(&[]);
    }
    frames
}
