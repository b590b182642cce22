//! Ping bursts in one read (keepalive-spec.md C-12, T13; Autobahn 2.10/2.11): `handle_read`
//! stops in front of a Ping while an earlier auto-pong is owed and unwritten, so a writable
//! driver answers every ping, while a blocked one coalesces to the latest pong (bounded).
//! Every harness case runs with the input in one piece and one byte per `handle_read` call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::{Buf, Bytes, BytesMut};
use sonar_core::testing::{Endpoint, FixedMask, FrameBuilder, Pair, RFC_KEY};
use sonar_core::{CloseCode, CloseFrame, Config, Connection, Event, Message, ProtocolError};

const MODES: [Option<usize>; 2] = [None, Some(1)];
const S_CLOSE_1000: [u8; 4] = [0x88, 0x02, 0x03, 0xe8];
const S_FAIL_1002: [u8; 4] = [0x88, 0x02, 0x03, 0xea];

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}
fn ping(p: &[u8]) -> Vec<u8> {
    FrameBuilder::ping(p).mask([0; 4]).build()
}
fn text(p: &[u8]) -> Vec<u8> {
    FrameBuilder::text(p).mask([0; 4]).build()
}
/// The unmasked pong a server sends for a ping with payload `p` (< 126 bytes).
fn pong(p: &[u8]) -> Vec<u8> {
    let mut out = vec![0x8a, p.len() as u8];
    out.extend_from_slice(p);
    out
}
/// Autobahn 2.10 style payloads: "payload-0".."payload-9".
fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("payload-{i}").into_bytes())
        .collect()
}
fn burst(payloads: &[Vec<u8>]) -> Vec<u8> {
    payloads.iter().flat_map(|p| ping(p)).collect()
}
/// Writes everything queued, returning it.
fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut out = conn.outbound();
    out.copy_to_bytes(out.remaining()).to_vec()
}
fn pings(payloads: &[Vec<u8>]) -> Vec<Event> {
    payloads.iter().map(|p| Event::Ping(b(p))).collect()
}

// Autobahn 2.10: 10 pings in one buffer, writer writable between `handle_read` calls -> 10
// pongs in order, each echoing its payload.
#[test]
fn autobahn_2_10_ten_pings_one_buffer_writable() {
    let ps = payloads(10);
    let expected: Vec<u8> = ps.iter().flat_map(|p| pong(p)).collect();
    for m in MODES {
        let mut s = Endpoint::server().chunked(m).writable(true);
        s.feed(&burst(&ps)).unwrap();
        assert!(s.inbuf.is_empty());
        assert!(!s.conn.has_pending_input());
        assert_eq!(s.take_output(), expected, "mode {m:?}");
        assert_eq!(s.take_events(), pings(&ps));
    }
}

// The same, with the driver contract spelled out on a bare `Connection`: every call but the
// last stops in front of the next ping, with exactly that ping and the rest left in `buf`.
#[test]
fn autobahn_2_10_driver_contract_step_by_step() {
    let ps = payloads(10);
    let input = burst(&ps);
    let frame_len = ping(&ps[0]).len();
    let mut conn = Connection::server(Config::default());
    let mut buf = BytesMut::from(&input[..]);
    let mut out = Vec::new();
    let mut calls = 0;
    loop {
        conn.handle_read(&mut buf).unwrap();
        calls += 1;
        let events: Vec<Event> = core::iter::from_fn(|| conn.poll_event()).collect();
        assert_eq!(events, vec![Event::Ping(b(&ps[calls - 1]))]);
        out.extend(drain(&mut conn));
        if !conn.has_pending_input() {
            break;
        }
        assert!(calls < 10);
        assert_eq!(buf.len(), (10 - calls) * frame_len);
        assert_eq!(buf[0], 0x89);
    }
    assert_eq!(calls, 10);
    assert!(buf.is_empty());
    assert_eq!(out, ps.iter().flat_map(|p| pong(p)).collect::<Vec<u8>>());
}

// The same burst with nothing written between calls -> exactly one pong, the last: the
// first call stops after ping 0, the second consumes everything (no livelock, bounded).
#[test]
fn burst_unwritable_coalesces_to_last_pong() {
    let ps = payloads(10);
    let input = burst(&ps);
    let mut conn = Connection::server(Config::default());
    let mut buf = BytesMut::from(&input[..]);
    conn.handle_read(&mut buf).unwrap();
    assert!(conn.has_pending_input());
    assert_eq!(buf.len(), input.len() - ping(&ps[0]).len());
    conn.handle_read(&mut buf).unwrap();
    assert!(!conn.has_pending_input());
    assert!(buf.is_empty());
    // One slot: the pong for "payload-9" only.
    assert_eq!(conn.outbound().remaining(), 2 + 9);
    let events: Vec<Event> = core::iter::from_fn(|| conn.poll_event()).collect();
    assert_eq!(events, pings(&ps));
    assert_eq!(drain(&mut conn), pong(b"payload-9"));

    for m in MODES {
        let mut s = Endpoint::server().chunked(m);
        s.feed(&input).unwrap();
        assert!(s.inbuf.is_empty());
        assert_eq!(s.take_output(), pong(b"payload-9"), "mode {m:?}");
        assert_eq!(s.take_events(), pings(&ps));
    }
}

// More bytes may arrive between a stop and the next call; with still nothing written, the
// next call consumes all of it (no unbounded buffering while writes are blocked).
#[test]
fn new_bytes_after_a_stop_without_write_are_consumed() {
    let mut conn = Connection::server(Config::default());
    let mut buf = BytesMut::from(&burst(&payloads(2))[..]);
    conn.handle_read(&mut buf).unwrap();
    assert!(conn.has_pending_input());
    buf.extend_from_slice(&burst(&payloads(5)));
    conn.handle_read(&mut buf).unwrap();
    assert!(!conn.has_pending_input());
    assert!(buf.is_empty());
    assert_eq!(drain(&mut conn), pong(b"payload-4"));
}

// A slow writer: the transport takes one byte between calls. The first pong starts to leave,
// so the next call reads on and stops again in front of the third ping; the second pong is
// then still entirely unwritten, so the call after that coalesces. The writer taking a whole
// pong (3 bytes here) between calls answers every ping.
#[test]
fn partial_writes_between_calls() {
    let input = burst(&[b"A".to_vec(), b"B".to_vec(), b"C".to_vec(), b"D".to_vec()]);
    let mut conn = Connection::server(Config::default());
    let mut buf = BytesMut::from(&input[..]);
    let mut out = Vec::new();
    let mut write = |conn: &mut Connection, max: usize| {
        let mut o = conn.outbound();
        let n = o.remaining().min(max);
        out.extend_from_slice(&o.copy_to_bytes(n));
    };
    let mut calls = 0;
    while calls < 10 {
        conn.handle_read(&mut buf).unwrap();
        calls += 1;
        write(&mut conn, 1);
        if !conn.has_pending_input() {
            break;
        }
    }
    assert_eq!(calls, 3);
    assert!(buf.is_empty());
    write(&mut conn, usize::MAX);
    assert_eq!(out, [0x8a, 0x01, b'A', 0x8a, 0x01, b'D']);

    for chunk in [3, 4] {
        let mut conn = Connection::server(Config::default());
        let mut buf = BytesMut::from(&input[..]);
        let mut out = Vec::new();
        for _ in 0..10 {
            conn.handle_read(&mut buf).unwrap();
            let mut o = conn.outbound();
            let n = o.remaining().min(chunk);
            out.extend_from_slice(&o.copy_to_bytes(n));
            if !conn.has_pending_input() {
                break;
            }
        }
        out.extend(drain(&mut conn));
        assert!(buf.is_empty());
        assert_eq!(
            out,
            [
                0x8a, 0x01, b'A', 0x8a, 0x01, b'B', 0x8a, 0x01, b'C', 0x8a, 0x01, b'D'
            ],
            "chunk {chunk}"
        );
    }
}

// Only a Ping stops the read: data frames after an owed pong are parsed as before.
#[test]
fn data_frames_never_stop_the_read() {
    let mut input = ping(b"A");
    input.extend(text(b"x"));
    input.extend(ping(b"B"));
    input.extend(text(b"y"));
    let mut conn = Connection::server(Config::default());
    let mut buf = BytesMut::from(&input[..]);
    conn.handle_read(&mut buf).unwrap();
    assert!(conn.has_pending_input());
    assert_eq!(&buf[..], &input[ping(b"A").len() + text(b"x").len()..]);
    let events: Vec<Event> = core::iter::from_fn(|| conn.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::Ping(b(b"A")), Event::Message(Message::from("x"))]
    );
    conn.handle_read(&mut buf).unwrap();
    assert!(!conn.has_pending_input());
    let events: Vec<Event> = core::iter::from_fn(|| conn.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::Ping(b(b"B")), Event::Message(Message::from("y"))]
    );
    assert_eq!(drain(&mut conn), pong(b"B"));
}

// Pings interleaved with text messages: wire order of events is kept (C-27) and, writable,
// every ping is answered; blocked, only the last.
#[test]
fn burst_interleaved_with_text_messages() {
    let mut input = Vec::new();
    let mut events = Vec::new();
    let mut pongs = Vec::new();
    for i in 0..5 {
        let t = format!("text-{i}");
        let p = format!("ping-{i}");
        input.extend(text(t.as_bytes()));
        input.extend(ping(p.as_bytes()));
        events.push(Event::Message(Message::Text(t.clone().into())));
        events.push(Event::Ping(b(p.as_bytes())));
        pongs.extend(pong(p.as_bytes()));
    }
    input.extend(text(b"last"));
    events.push(Event::Message(Message::from("last")));
    for m in MODES {
        let mut s = Endpoint::server().chunked(m).writable(true);
        s.feed(&input).unwrap();
        assert!(s.inbuf.is_empty());
        assert_eq!(s.take_events(), events, "mode {m:?}");
        assert_eq!(s.take_output(), pongs, "mode {m:?}");

        let mut s = Endpoint::server().chunked(m);
        s.feed(&input).unwrap();
        assert!(s.inbuf.is_empty());
        assert_eq!(s.take_events(), events, "mode {m:?}");
        assert_eq!(s.take_output(), pong(b"ping-4"), "mode {m:?}");
    }
}

// A burst followed by a Close (and a ping after it): writable, every pong written before the
// Close arrived goes out and nothing after it (C-11). A pong still queued when the Close is
// parsed is dropped (C-14): in one buffer that is the pong for "C" (the read stops in front of
// "B" and "C" only, never in front of a Close); one byte at a time, "C"'s pong was written
// before the Close's last byte arrived. Blocked, only the Close echo goes out.
#[test]
fn burst_then_close_answers_only_pings_before_close() {
    let mut input = burst(&[b"A".to_vec(), b"B".to_vec(), b"C".to_vec()]);
    input.extend(FrameBuilder::close(1000, b"").mask([0; 4]).build());
    input.extend(ping(b"D"));
    let received = Event::CloseReceived(Some(CloseFrame::new(CloseCode::NORMAL)));
    for m in MODES {
        let mut s = Endpoint::server().chunked(m).writable(true);
        s.feed(&input).unwrap();
        let answered: &[&[u8]] = match m {
            None => &[b"A", b"B"],
            Some(_) => &[b"A", b"B", b"C"],
        };
        let mut expected = Vec::new();
        for p in answered {
            expected.extend(pong(p));
        }
        expected.extend(S_CLOSE_1000);
        assert_eq!(s.take_output(), expected, "mode {m:?}");
        assert_eq!(
            s.take_events(),
            vec![
                Event::Ping(b(b"A")),
                Event::Ping(b(b"B")),
                Event::Ping(b(b"C")),
                received.clone(),
                Event::CloseTransport
            ]
        );

        let mut s = Endpoint::server().chunked(m);
        s.feed(&input).unwrap();
        assert_eq!(s.take_output(), S_CLOSE_1000, "mode {m:?}");
        assert_eq!(
            s.take_events(),
            vec![
                Event::Ping(b(b"A")),
                Event::Ping(b(b"B")),
                Event::Ping(b(b"C")),
                received.clone(),
                Event::CloseTransport
            ]
        );
    }
}

// A protocol error after a stop is reported by the call that reaches it, and stays sticky;
// the pong for the ping before the stop was already written (writable).
#[test]
fn error_after_a_stop_is_sticky() {
    let mut input = burst(&[b"A".to_vec(), b"B".to_vec()]);
    input.extend([0x83, 0x80, 0, 0, 0, 0]); // reserved opcode 0x3
    let mut conn = Connection::server(Config::default());
    let mut buf = BytesMut::from(&input[..]);
    conn.handle_read(&mut buf).unwrap();
    assert!(conn.has_pending_input());
    let err = conn.handle_read(&mut buf).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::ReservedOpcode(sonar_core::OpCode::from_bits(0x3))
    );
    assert!(!conn.has_pending_input());
    assert!(buf.is_empty());
    // The owed pong "B" never started to leave: dropped for the Close (§7.1.7).
    assert_eq!(drain(&mut conn), S_FAIL_1002);
    assert_eq!(conn.handle_read(&mut buf), Err(err.clone()));

    for m in MODES {
        let mut s = Endpoint::server().chunked(m).writable(true);
        assert_eq!(s.feed(&input), Err(err.clone()));
        let out = s.take_output();
        assert_eq!(&out[..3], &pong(b"A")[..], "mode {m:?}");
        assert_eq!(&out[out.len() - 4..], &S_FAIL_1002[..], "mode {m:?}");
        assert_eq!(s.feed(&ping(b"E")), Err(err.clone()));
        assert_eq!(s.take_output(), b"");
    }
}

// With auto-pong off nothing is owed, so a burst never stops the read.
#[test]
fn auto_pong_off_never_stops() {
    let ps = payloads(10);
    let mut conn = Connection::server(Config::default().with_auto_pong(false));
    let mut buf = BytesMut::from(&burst(&ps)[..]);
    conn.handle_read(&mut buf).unwrap();
    assert!(!conn.has_pending_input());
    assert!(buf.is_empty());
    assert!(!conn.wants_write());
    let events: Vec<Event> = core::iter::from_fn(|| conn.poll_event()).collect();
    assert_eq!(events, pings(&ps));
}

// Client role: a burst of unmasked pings from the server is answered with one masked pong
// per ping when writable, only the last when blocked.
#[test]
fn client_burst() {
    let input: Vec<u8> = [b"A", b"B", b"C"]
        .iter()
        .flat_map(|p| FrameBuilder::ping(*p).build())
        .collect();
    let masked = |c: u8| [0x8a, 0x81, 0x37, 0xfa, 0x21, 0x3d, c ^ 0x37];
    for m in MODES {
        let mut c = Endpoint::new(Connection::client(
            Config::default(),
            Box::new(FixedMask(RFC_KEY)),
        ))
        .chunked(m)
        .writable(true);
        c.feed(&input).unwrap();
        let expected: Vec<u8> = [b'A', b'B', b'C'].iter().flat_map(|&x| masked(x)).collect();
        assert_eq!(c.take_output(), expected, "mode {m:?}");

        let mut c = Endpoint::client().chunked(m);
        c.feed(&input).unwrap();
        assert_eq!(c.take_output(), masked(b'C'), "mode {m:?}");
    }
}

// In-memory pair: the server's three pings reach the client in one piece; `pump` reads on
// after each pong is written, so the server gets all three pongs, in order. With a transport
// that carries one byte per step the client's writer cannot take pong "2" before it reads
// on, so "2" coalesces into "3" (bounded, C-12).
#[test]
fn pair_ping_burst_all_answered() {
    for step in [None, Some(7), Some(5), Some(1)] {
        let mut pair = Pair::new();
        pair.step = step;
        for p in [b"1", b"2", b"3"] {
            pair.server.conn.ping(b(p)).unwrap();
        }
        pair.pump();
        assert!(!pair.client.conn.has_pending_input());
        let pongs: Vec<Event> = pair
            .server
            .take_events()
            .into_iter()
            .filter(|e| matches!(e, Event::Pong(_)))
            .collect();
        let expected: &[&[u8]] = match step {
            Some(1) => &[b"1", b"3"],
            _ => &[b"1", b"2", b"3"],
        };
        let expected: Vec<Event> = expected.iter().map(|p| Event::Pong(b(p))).collect();
        assert_eq!(pongs, expected, "step {step:?}");
    }
}

// Pair with the client's writer blocked: its pending input is read on anyway (coalescing),
// and once unblocked only the latest pong goes out.
#[test]
fn pair_blocked_writer_coalesces() {
    let mut pair = Pair::new();
    pair.hold_client_output = true;
    for p in [b"1", b"2", b"3"] {
        pair.server.conn.ping(b(p)).unwrap();
    }
    pair.pump();
    assert!(!pair.client.conn.has_pending_input());
    assert!(pair.client.inbuf.is_empty());
    assert_eq!(
        pair.client.take_events(),
        vec![
            Event::Ping(b(b"1")),
            Event::Ping(b(b"2")),
            Event::Ping(b(b"3"))
        ]
    );
    pair.hold_client_output = false;
    pair.pump();
    let pongs: Vec<Event> = pair
        .server
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, Event::Pong(_)))
        .collect();
    assert_eq!(pongs, vec![Event::Pong(b(b"3"))]);
}

// Pair: pings then Close from the server in one piece; the client answers the pings whose
// pongs it wrote before it parsed the Close ("1", "2"; "3"'s pong was still queued and is
// dropped at the Close, C-11/C-14), then echoes the Close; both ends finish with 1000 (EOF
// is held back while input is pending).
#[test]
fn pair_pings_then_close() {
    let mut pair = Pair::new();
    for p in [b"1", b"2", b"3"] {
        pair.server.conn.ping(b(p)).unwrap();
    }
    pair.server
        .conn
        .close(Some(CloseFrame::new(CloseCode::NORMAL)))
        .unwrap();
    pair.pump();
    let pongs: Vec<Event> = pair
        .server
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, Event::Pong(_)))
        .collect();
    assert_eq!(pongs, vec![Event::Pong(b(b"1")), Event::Pong(b(b"2"))]);
    assert_eq!(pair.client.conn.close_code(), Some(CloseCode::NORMAL));
    assert_eq!(pair.server.conn.close_code(), Some(CloseCode::NORMAL));
    assert!(pair.client.transport_closed && pair.server.transport_closed);
}
