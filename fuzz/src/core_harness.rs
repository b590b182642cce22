//! The sonar-core fuzz harness, shared by the `core_server`, `core_client` and `core_deflate`
//! targets: `Connection::handle_read` interleaved with app calls, timers, partial writes and
//! EOF, asserting the invariants of the codec on every round. With permessage-deflate
//! negotiated (`run_deflate`), some input becomes validly compressed frames (RSV1) from a
//! peer compressor, the rest stays raw (random RSV1 frames, corrupt deflate data), and every
//! compressed message we write is inflated and checked.

use core::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use sonar_core::testing::{FrameBuilder, PeerDeflate, PeerInflate};
use sonar_core::{
    CloseCode, CloseFrame, Config, Connection, DataKind, Deflate, Event, FrameHeader, Message,
    OpCode, ProtocolError, RSV1, Role,
};

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

/// Checks that what we wrote is a valid frame sequence for our role.
struct OutCheck {
    role: Role,
    buf: Vec<u8>,
    in_message: bool,
    close_seen: bool,
    /// With deflate: the peer's decompressor, and the compressed message being written
    /// (its kind is text when `Some(true)`).
    inflate: Option<PeerInflate>,
    compressed: Option<(bool, Vec<u8>)>,
}

impl OutCheck {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        loop {
            let Some((h, wire)) = FrameHeader::parse(&self.buf).expect("msb") else {
                return;
            };
            let total = wire + h.len as usize;
            if self.buf.len() < total {
                return;
            }
            let mut payload: Vec<u8> = self.buf.drain(..total).skip(wire).collect();
            if let Some(key) = h.mask {
                sonar_core::apply_mask(&mut payload, key, 0);
            }
            assert_eq!(h.mask.is_some(), self.role == Role::Client, "masking");
            assert!(!h.opcode.is_reserved());
            let first = !h.opcode.is_control() && h.opcode != OpCode::CONTINUATION;
            if h.rsv != 0 {
                assert!(
                    h.rsv == RSV1 && first && self.inflate.is_some(),
                    "rsv {h:?}"
                );
                self.compressed = Some((h.opcode == OpCode::TEXT, Vec::new()));
            }
            if !h.opcode.is_control() {
                if let Some((text, z)) = self.compressed.as_mut() {
                    z.extend_from_slice(&payload);
                    if h.fin {
                        let text = *text;
                        let z = std::mem::take(z);
                        self.compressed = None;
                        // Panics on invalid data: what we compress must inflate.
                        let plain = self.inflate.as_mut().expect("deflate").message(&z);
                        if text {
                            assert!(std::str::from_utf8(&plain).is_ok(), "utf-8 after inflate");
                        }
                    }
                }
            }
            if h.opcode.is_control() {
                assert!(h.fin && h.len <= 125 && h.rsv == 0, "control frame {h:?}");
                if h.opcode == OpCode::CLOSE {
                    assert!(!self.close_seen, "two Close frames");
                    assert!(h.len != 1);
                    self.close_seen = true;
                }
            } else {
                assert!(!self.close_seen, "data after Close");
                if h.opcode == OpCode::CONTINUATION {
                    assert!(self.in_message, "stray continuation");
                } else {
                    assert!(!self.in_message, "interleaved messages");
                }
                self.in_message = !h.fin;
            }
        }
    }
}

/// Runs one fuzz input against a connection in `role`.
pub fn run(role: Role, data: &[u8]) {
    run_with(role, data, false);
}

/// Runs one fuzz input against a connection in `role` with permessage-deflate negotiated
/// (the second input byte picks the parameters).
pub fn run_deflate(role: Role, data: &[u8]) {
    run_with(role, data, true);
}

/// The agreed parameters from one input byte (and the level from another).
fn deflate_params(b: u8, level: u8) -> Deflate {
    let bits = |v: u8| 8 + (v & 7);
    Deflate::new()
        .with_server_no_context_takeover(b & 1 != 0)
        .with_client_no_context_takeover(b & 2 != 0)
        .with_server_max_window_bits(bits(b >> 2))
        .with_client_max_window_bits(bits(b >> 5))
        .with_level(level % 10)
        .with_min_message_size(usize::from(level >> 4) * 8)
}

fn run_with(role: Role, data: &[u8], deflate: bool) {
    let mut input = Input(data);
    let setup = input.byte();
    let params = deflate.then(|| deflate_params(input.byte(), input.byte()));
    // The peer's compressor (frames we receive) and decompressor (frames we send).
    let (peer_nct, peer_bits, our_nct) = match (params, role) {
        (Some(p), Role::Server) => (
            p.client_no_context_takeover,
            p.client_max_window_bits,
            p.server_no_context_takeover,
        ),
        (Some(p), Role::Client) => (
            p.server_no_context_takeover,
            p.server_max_window_bits,
            p.client_no_context_takeover,
        ),
        (None, _) => (false, 15, false),
    };
    let mut peer = deflate.then(|| {
        let d = PeerDeflate::new(peer_bits);
        if peer_nct { d.no_context_takeover() } else { d }
    });
    let config = Config::default()
        .with_deflate(params)
        .with_max_frame_size(1 << 14)
        .with_max_message_size(1 << 15)
        .with_auto_fragment_size(Some(1 + usize::from(setup & 0x3f)))
        .with_auto_pong(setup & 0x40 == 0);
    let mut counter = 0u32;
    let mut conn = match role {
        Role::Server => Connection::server(config),
        Role::Client => Connection::client(
            config,
            Box::new(move || {
                counter = counter.wrapping_add(0x9e37_79b9);
                counter.to_be_bytes()
            }),
        ),
    };
    let mut buf = BytesMut::new();
    let mut error = None;
    let mut transport_closed = false;
    let mut out = OutCheck {
        role,
        buf: Vec::new(),
        in_message: false,
        close_seen: false,
        inflate: deflate.then(|| {
            let i = PeerInflate::new();
            if our_nct { i.no_context_takeover() } else { i }
        }),
        compressed: None,
    };
    let mut now = Duration::ZERO;
    // Whether any output was written since `handle_read` last stopped early.
    let mut wrote_since_stop = true;

    for _round in 0..10_000 {
        if input.0.is_empty() {
            break;
        }
        let failed_before = error.is_some();
        let op = input.byte();
        match op >> 5 {
            0 if peer.is_some() => {
                // A validly compressed message from the peer, maybe fragmented.
                let n = usize::from(input.byte()) * (1 + usize::from(op & 0x07));
                let plain = input.take(n);
                let text = op & 0x08 != 0 && std::str::from_utf8(plain).is_ok();
                let z = peer.as_mut().map(|p| p.message(plain)).unwrap_or_default();
                let parts = 1 + usize::from(op & 0x10 != 0) * 2;
                let step = z.len().div_ceil(parts).max(1);
                let chunks: Vec<&[u8]> = if z.is_empty() {
                    vec![&[][..]]
                } else {
                    z.chunks(step).collect()
                };
                let last = chunks.len() - 1;
                for (i, c) in chunks.iter().enumerate() {
                    let f = match (i, text) {
                        (0, true) => FrameBuilder::text(c).rsv(RSV1),
                        (0, false) => FrameBuilder::binary(c).rsv(RSV1),
                        _ => FrameBuilder::continuation(c),
                    };
                    let f = f.fin(i == last);
                    let f = if role == Role::Server {
                        f.mask([7, 1, 3, 9])
                    } else {
                        f
                    };
                    buf.extend_from_slice(&f.build());
                }
                read(&mut conn, &mut buf, &mut error, &mut wrote_since_stop);
            }
            0..=3 => {
                let n = 1 + usize::from(op & 0x1f) * (1 + usize::from(input.byte()));
                buf.extend_from_slice(input.take(n));
                read(&mut conn, &mut buf, &mut error, &mut wrote_since_stop);
            }
            4 => {
                let n = usize::from(input.byte());
                let payload = Bytes::copy_from_slice(input.take(n));
                let _ = match op & 3 {
                    0 => conn.send(Message::Binary(payload)),
                    1 => conn.send(Message::Text(
                        String::from_utf8_lossy(&payload).into_owned().into(),
                    )),
                    2 => conn.send_fragment(DataKind::Binary, payload, op & 4 != 0),
                    _ => conn.send_fragment(DataKind::Text, payload, op & 4 != 0),
                };
            }
            5 => {
                let n = usize::from(input.byte() & 0x7f);
                let payload = Bytes::copy_from_slice(input.take(n));
                let _ = match op & 3 {
                    0 => conn.ping(payload),
                    1 => conn.pong(payload),
                    2 => conn.close(None),
                    _ => {
                        conn.close(CloseCode::new(1000 + u16::from(op & 0x1f)).map(CloseFrame::new))
                    }
                };
            }
            6 => {
                now += Duration::from_millis(u64::from(op & 0x1f) * 500);
                if let Some(t) = conn.poll_timeout() {
                    if t <= now {
                        conn.handle_timeout(now);
                    }
                }
            }
            _ => {
                if op & 1 == 0 {
                    conn.handle_eof();
                } else {
                    conn.handle_timeout(now);
                }
            }
        }
        // Driver contract: write a piece of the output and drain events; while input is
        // pending (stopped in front of a Ping), read again with the same buffer, sometimes
        // after appending more bytes.
        for pending_round in 0usize.. {
            let limit = 1 + usize::from(input.byte()) * 16;
            let written = write_piece(&mut conn, &mut out, limit);
            if transport_closed {
                assert_eq!(written, 0, "output after CloseTransport");
            }
            if written > 0 {
                wrote_since_stop = true;
            }
            drain_events(&mut conn, &mut transport_closed, failed_before);
            if !conn.has_pending_input() {
                break;
            }
            assert!(
                error.is_none() && !transport_closed,
                "pending after the end"
            );
            assert_eq!(
                buf.first().map(|b| b & 0x0f),
                Some(0x9),
                "not in front of a ping"
            );
            // Each stop but the last consumed a Ping (7+ bytes server-bound, 2+ client-bound).
            assert!(pending_round <= data.len(), "livelock");
            let more = input.byte();
            if more & 0x80 != 0 {
                let n = usize::from(more & 0x7f);
                buf.extend_from_slice(input.take(n));
            }
            read(&mut conn, &mut buf, &mut error, &mut wrote_since_stop);
        }
    }
}

/// One `handle_read`: checks sticky errors and that two calls with no write in between never
/// both stop early (no livelock, spec C-12).
fn read(
    conn: &mut Connection,
    buf: &mut BytesMut,
    error: &mut Option<ProtocolError>,
    wrote_since_stop: &mut bool,
) {
    let stalled = conn.has_pending_input() && !*wrote_since_stop;
    let before = buf.len();
    match conn.handle_read(buf) {
        Ok(()) => assert!(error.is_none(), "error not sticky"),
        Err(e) => {
            if let Some(prev) = error.as_ref() {
                assert_eq!(prev, &e, "sticky error changed");
            }
            *error = Some(e);
        }
    }
    assert!(buf.len() <= before, "handle_read grew the buffer");
    if conn.has_pending_input() {
        assert!(!stalled, "stopped twice with nothing written in between");
        assert!(error.is_none());
        *wrote_since_stop = false;
    }
}

/// Writes at most `limit` bytes, checking the frame sequence; returns how many.
fn write_piece(conn: &mut Connection, out: &mut OutCheck, limit: usize) -> usize {
    let mut outbound = conn.outbound();
    let mut written = 0;
    while written < limit && outbound.has_remaining() {
        let c = outbound.chunk();
        assert!(!c.is_empty());
        let n = c.len().min(limit - written);
        out.push(&c[..n]);
        outbound.advance(n);
        written += n;
    }
    written
}

/// Drains events, checking what may come when.
fn drain_events(conn: &mut Connection, transport_closed: &mut bool, failed_before: bool) {
    while let Some(ev) = conn.poll_event() {
        assert!(!*transport_closed, "event after CloseTransport: {ev:?}");
        if failed_before {
            assert!(
                !matches!(ev, Event::Message(_) | Event::Ping(_) | Event::Pong(_)),
                "input processed after a fail: {ev:?}"
            );
        }
        if ev == Event::CloseTransport {
            *transport_closed = true;
            assert!(!conn.wants_write());
            assert_eq!(conn.poll_timeout(), None);
        }
    }
}
