//! keepalive-spec.md §7.1: codec ping/pong cases T1..T22. Every case runs twice: input in
//! one piece and one byte per `handle_read` call (C-26).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use sonar_core::testing::{Endpoint, FixedMask, FrameBuilder, RFC_KEY};
use sonar_core::{
    Config, Connection, DataKind, Event, Extension, ExtensionError, Message, ProtocolError, RSV1,
};

const MODES: [Option<usize>; 2] = [None, Some(1)];
const S_FAIL_1002: &[u8] = &[0x88, 0x02, 0x03, 0xea];
const C_FAIL_1002: &[u8] = &[0x88, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x34, 0x10];

fn server(chunk: Option<usize>) -> Endpoint {
    Endpoint::server().chunked(chunk)
}
fn client(chunk: Option<usize>) -> Endpoint {
    Endpoint::client().chunked(chunk)
}
fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

/// Feeds `input` and asserts a server-side Fail(1002): close written, then CloseTransport.
fn assert_server_fails(input: &[u8], chunk: Option<usize>) -> Endpoint {
    let mut s = server(chunk);
    let err = s.feed(input).unwrap_err();
    assert_eq!(err.close_code().as_u16(), 1002, "{err:?}");
    assert_eq!(s.take_output(), S_FAIL_1002);
    let events = s.take_events();
    assert_eq!(events.last(), Some(&Event::CloseTransport));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Ping(_) | Event::Message(_)))
    );
    s
}

// T1: masked Ping "Hello" (RFC 5.7) -> 8a 05 "Hello"; first byte exactly 0x8a.
#[test]
fn t01_server_pong_echoes_payload() {
    for m in MODES {
        let mut s = server(m);
        s.feed(&[
            0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ])
        .unwrap();
        let out = s.take_output();
        assert_eq!(out[0], 0x8a);
        assert_eq!(out, [0x8a, 0x05, b'H', b'e', b'l', b'l', b'o']);
        assert_eq!(s.take_events(), vec![Event::Ping(b(b"Hello"))]);
    }
}

// T2: client gets 89 05 "Hello" -> masked pong 8a 85 37 fa 21 3d 7f 9f 4d 51 58.
#[test]
fn t02_client_pong_is_masked() {
    for m in MODES {
        let mut c = client(m);
        c.feed(&[0x89, 0x05, b'H', b'e', b'l', b'l', b'o']).unwrap();
        assert_eq!(
            c.take_output(),
            [
                0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }
}

// T3: empty pings: S 89 80 key -> 8a 00; C 89 00 -> 8a 80 key.
#[test]
fn t03_empty_ping() {
    for m in MODES {
        let mut s = server(m);
        s.feed(&[0x89, 0x80, 0x37, 0xfa, 0x21, 0x3d]).unwrap();
        assert_eq!(s.take_output(), [0x8a, 0x00]);
        let mut c = client(m);
        c.feed(&[0x89, 0x00]).unwrap();
        assert_eq!(c.take_output(), [0x8a, 0x80, 0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(c.take_events(), vec![Event::Ping(Bytes::new())]);
    }
}

// T4: 125-byte ping -> 8a 7d + 125 x fe (127 bytes).
#[test]
fn t04_max_control_payload() {
    for m in MODES {
        let input = FrameBuilder::ping(&[0xfe; 125]).mask(RFC_KEY).build();
        assert_eq!(input.len(), 131);
        assert_eq!(&input[..2], &[0x89, 0xfd]);
        let mut s = server(m);
        s.feed(&input).unwrap();
        let out = s.take_output();
        assert_eq!(out.len(), 127);
        assert_eq!(&out[..2], &[0x8a, 0x7d]);
        assert!(out[2..].iter().all(|&x| x == 0xfe));
    }
}

// T5: 89 fe 00 7e (ping declaring 126 bytes) fails at the header, before any payload.
#[test]
fn t05_control_length_126_fails_at_header() {
    for m in MODES {
        assert_server_fails(&[0x89, 0xfe, 0x00, 0x7e], m);
    }
    // Already after the first two bytes.
    let mut s = server(None);
    assert_eq!(s.feed(&[0x89, 0xfe]), Err(ProtocolError::ControlTooLong));
    assert_eq!(s.take_output(), S_FAIL_1002);
}

// T6: client gets a control frame with a 16-bit length of 5 -> Fail(1002), masked close.
#[test]
fn t06_control_extended_length_fails() {
    for m in MODES {
        let mut c = client(m);
        assert_eq!(
            c.feed(&[0x89, 0x7e, 0x00, 0x05, b'H', b'e', b'l', b'l', b'o']),
            Err(ProtocolError::ControlTooLong)
        );
        assert_eq!(c.take_output(), C_FAIL_1002);
        // The client waits for the server's EOF (or the close timeout).
        assert!(!c.take_events().contains(&Event::CloseTransport));
        c.conn.handle_eof();
        assert_eq!(c.take_events(), vec![Event::CloseTransport]);
    }
}

// T7: ping with FIN=0 -> Fail(1002), no pong.
#[test]
fn t07_fragmented_ping_fails() {
    for m in MODES {
        assert_server_fails(&[0x09, 0x80, 0, 0, 0, 0], m);
    }
}

struct Rsv1Ext;
impl Extension for Rsv1Ext {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }
    fn decode(&mut self, _: u8, p: Bytes, _: usize) -> Result<Bytes, ExtensionError> {
        Ok(p)
    }
    fn encode(&mut self, _: DataKind, p: Bytes) -> Result<(u8, Bytes), ExtensionError> {
        Ok((RSV1, p))
    }
}

// T8: RSV1/RSV2/RSV3 pings fail; RSV1 ping fails even with an RSV1 extension negotiated.
#[test]
fn t08_rsv_bits_on_ping_fail() {
    for m in MODES {
        for first in [0xc9, 0xa9, 0x99] {
            assert_server_fails(&[first, 0x80, 0, 0, 0, 0], m);
        }
        let config = Config::default().with_extension(|| Box::new(Rsv1Ext));
        let mut s = Endpoint::new(Connection::server(config)).chunked(m);
        assert_eq!(
            s.feed(&[0xc9, 0x80, 0, 0, 0, 0]),
            Err(ProtocolError::ReservedBits(RSV1))
        );
        assert_eq!(s.take_output(), S_FAIL_1002);
    }
}

// T9: reserved opcodes 0xB and 0x3 -> Fail(1002).
#[test]
fn t09_reserved_opcodes_fail() {
    for m in MODES {
        assert_server_fails(&[0x8b, 0x80, 0, 0, 0, 0], m);
        assert_server_fails(&[0x83, 0x80, 0, 0, 0, 0], m);
    }
}

// T10: unsolicited pongs: no output, no error, Pong events.
#[test]
fn t10_unsolicited_pongs_are_events_only() {
    for m in MODES {
        let mut s = server(m);
        s.feed(&[0x8a, 0x80, 0, 0, 0, 0]).unwrap();
        let mut second = vec![0x8a, 0x98, 0, 0, 0, 0];
        second.extend_from_slice(b"unsolicited pong payload");
        s.feed(&second).unwrap();
        assert_eq!(s.take_output(), b"");
        assert_eq!(
            s.take_events(),
            vec![
                Event::Pong(Bytes::new()),
                Event::Pong(b(b"unsolicited pong payload"))
            ]
        );
    }
}

// T11: truncated pong to our ping: no output, no error; reported as a Pong for keepalive.
#[test]
fn t11_truncated_pong() {
    for m in MODES {
        let mut c = client(m);
        c.conn.ping(b(&[0x0d, 0x90, 0x0f, 0x00])).unwrap();
        let out = c.take_output();
        assert_eq!(&out[..6], &[0x89, 0x84, 0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            c.take_events(),
            vec![Event::PingSent(b(&[0x0d, 0x90, 0x0f, 0x00]))]
        );
        c.feed(&[0x8a, 0x03, 0x0d, 0x90, 0x0f]).unwrap();
        assert_eq!(c.take_output(), b"");
        assert_eq!(c.take_events(), vec![Event::Pong(b(&[0x0d, 0x90, 0x0f]))]);
    }
}

// T12: ping between fragments is answered at once; the message completes later.
#[test]
fn t12_ping_mid_message_answered_immediately() {
    for m in MODES {
        let mut s = server(m);
        s.feed(&FrameBuilder::text(b"Spam").fin(false).mask([0; 4]).build())
            .unwrap();
        s.feed(&FrameBuilder::ping(b"Ping").mask([0; 4]).build())
            .unwrap();
        assert_eq!(s.take_output(), [0x8a, 0x04, b'P', b'i', b'n', b'g']);
        assert_eq!(s.take_events(), vec![Event::Ping(b(b"Ping"))]);
        s.feed(&FrameBuilder::continuation(b"Eggs").mask([0; 4]).build())
            .unwrap();
        assert_eq!(
            s.take_events(),
            vec![Event::Message(Message::from("SpamEggs"))]
        );
        assert_eq!(s.take_output(), b"");
    }
}

// T13: three pings in one read. Writer blocked -> only the latest pong (8a 01 43), and the
// pending pong storage stays one slot. Control: writer writable between pings (here: the
// same ONE buffer; `handle_read` stops in front of each ping while a pong is owed and the
// harness writes before reading on) -> all three, in order (Autobahn 2.10/2.11).
#[test]
fn t13_pong_slot_latest_wins() {
    let mut input = Vec::new();
    for p in [b"A", b"B", b"C"] {
        input.extend(FrameBuilder::ping(p).mask([0; 4]).build());
    }
    for m in MODES {
        let mut s = server(m);
        s.feed(&input).unwrap();
        assert!(s.inbuf.is_empty());
        assert!(!s.conn.has_pending_input());
        // One 3-byte pong queued, never more than one slot.
        assert_eq!(bytes::Buf::remaining(&s.conn.outbound()), 3);
        assert_eq!(s.take_output(), [0x8a, 0x01, 0x43]);
        assert_eq!(
            s.take_events(),
            vec![
                Event::Ping(b(b"A")),
                Event::Ping(b(b"B")),
                Event::Ping(b(b"C"))
            ]
        );
        // Control: writable, all three pings in one buffer.
        let mut s = server(m).writable(true);
        s.feed(&input).unwrap();
        assert!(s.inbuf.is_empty());
        assert_eq!(
            s.take_output(),
            [0x8a, 0x01, 0x41, 0x8a, 0x01, 0x42, 0x8a, 0x01, 0x43]
        );
        assert_eq!(
            s.take_events(),
            vec![
                Event::Ping(b(b"A")),
                Event::Ping(b(b"B")),
                Event::Ping(b(b"C"))
            ]
        );
        // Control, as the spec first put it: one feed per ping, a write after each.
        let mut s = server(m);
        for p in [b"A", b"B", b"C"] {
            s.feed(&FrameBuilder::ping(p).mask([0; 4]).build()).unwrap();
            s.write_all();
        }
        assert_eq!(
            s.take_output(),
            [0x8a, 0x01, 0x41, 0x8a, 0x01, 0x42, 0x8a, 0x01, 0x43]
        );
    }
}

// T14: Close then ping: close echoed, CloseTransport, the ping ignored (no pong).
#[test]
fn t14_no_pong_after_close_received() {
    for m in MODES {
        let mut s = server(m);
        let mut input = FrameBuilder::close(1000, b"").mask([0; 4]).build();
        input.extend(FrameBuilder::ping(b"").mask([0; 4]).build());
        s.feed(&input).unwrap();
        assert_eq!(s.take_output(), [0x88, 0x02, 0x03, 0xe8]);
        let events = s.take_events();
        assert_eq!(events.last(), Some(&Event::CloseTransport));
        assert!(!events.iter().any(|e| matches!(e, Event::Ping(_))));
    }
}

// T15: we sent Close; a ping still gets its pong (D-3); the peer's Close ends it, no 2nd Close.
#[test]
fn t15_pong_after_we_sent_close() {
    for m in MODES {
        let mut s = server(m);
        s.conn
            .close(Some(sonar_core::CloseFrame::new(
                sonar_core::CloseCode::NORMAL,
            )))
            .unwrap();
        assert_eq!(s.take_output(), [0x88, 0x02, 0x03, 0xe8]);
        s.feed(&FrameBuilder::ping(b"ping").mask([0; 4]).build())
            .unwrap();
        assert_eq!(s.take_output(), [0x8a, 0x04, b'p', b'i', b'n', b'g']);
        s.feed(&FrameBuilder::close(1000, b"").mask([0; 4]).build())
            .unwrap();
        assert_eq!(s.take_output(), b"");
        let events = s.take_events();
        assert_eq!(events.last(), Some(&Event::CloseTransport));
    }
}

// T16: 1 MiB message auto-fragmented at 64 KiB; a ping after fragment #1 is answered
// between fragments #1 and #2, never inside a fragment.
#[test]
fn t16_pong_between_fragments() {
    for m in MODES {
        for first_write in [10 + 65536, 100] {
            let mut s = server(m);
            let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
            s.conn
                .send(Message::Binary(Bytes::from(payload.clone())))
                .unwrap();
            assert_eq!(s.write(first_write), first_write);
            s.feed(&FrameBuilder::ping(b"hi").mask([0; 4]).build())
                .unwrap();
            let out = s.take_output();
            // Fragment #1: 02 7f + 64-bit length 65536.
            assert_eq!(&out[..10], &[0x02, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
            let after1 = 10 + 65536;
            assert_eq!(&out[10..after1], &payload[..65536]);
            assert_eq!(&out[after1..after1 + 4], &[0x8a, 0x02, b'h', b'i']);
            assert_eq!(
                &out[after1 + 4..after1 + 14],
                &[0x00, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]
            );
            // 16 fragments in all, the last with FIN.
            assert_eq!(out.len(), 16 * (10 + 65536) + 4);
            let last = out.len() - 10 - 65536;
            assert_eq!(out[last], 0x80);
        }
    }
}

// T17: a user pong while an auto-pong is owed: both are written, the auto-pong first.
#[test]
fn t17_user_pong_does_not_displace_auto_pong() {
    for m in MODES {
        let mut c = client(m);
        c.feed(&[0x89, 0x01, b'x']).unwrap();
        c.conn.pong(b(b"hb")).unwrap();
        let out = c.take_output();
        let mut x = [b'x'];
        sonar_core::apply_mask(&mut x, RFC_KEY, 0);
        let mut hb = *b"hb";
        sonar_core::apply_mask(&mut hb, RFC_KEY, 0);
        let mut expect = vec![0x8a, 0x81, 0x37, 0xfa, 0x21, 0x3d, x[0]];
        expect.extend([0x8a, 0x82, 0x37, 0xfa, 0x21, 0x3d, hb[0], hb[1]]);
        assert_eq!(out, expect);
    }
}

// T18 (codec part): the bytes after the 101 response (ping + text), split at every offset.
// The handshake split itself is tested in sonar-handshake / sonar-async.
#[test]
fn t18_frames_after_handshake_split_anywhere() {
    let mut frames = vec![0x89, 0x02, b'h', b'i'];
    frames.extend([0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
    for split in 0..=frames.len() {
        let mut c = client(None);
        c.feed(&frames[..split]).unwrap();
        c.feed(&frames[split..]).unwrap();
        assert_eq!(
            c.take_events(),
            vec![
                Event::Ping(b(b"hi")),
                Event::Message(Message::from("Hello"))
            ]
        );
        assert_eq!(
            c.take_output(),
            [0x8a, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x5f, 0x93]
        );
    }
}

// T19: unmasked ping to the server -> Fail(1002), no pong.
#[test]
fn t19_unmasked_frame_to_server() {
    for m in MODES {
        let s = assert_server_fails(&[0x89, 0x00], m);
        assert_eq!(s.error, Some(ProtocolError::UnmaskedFrame));
    }
}

// T20: masked ping to the client -> Fail(1002), no pong.
#[test]
fn t20_masked_frame_to_client() {
    for m in MODES {
        let mut c = client(m);
        assert_eq!(
            c.feed(&[0x89, 0x80, 0, 0, 0, 0]),
            Err(ProtocolError::MaskedFrame)
        );
        assert_eq!(c.take_output(), C_FAIL_1002);
        assert!(!c.take_events().iter().any(|e| matches!(e, Event::Ping(_))));
    }
}

// T21: after a Fail, further input produces nothing (and the error is sticky).
#[test]
fn t21_nothing_after_fail() {
    for m in MODES {
        let mut s = assert_server_fails(&[0x09, 0x80, 0, 0, 0, 0], m);
        assert_eq!(
            s.feed(&[0x89, 0x80, 0, 0, 0, 0]),
            Err(ProtocolError::FragmentedControl)
        );
        assert_eq!(s.take_output(), b"");
        assert_eq!(s.take_events(), vec![]);
    }
}

// T22: 64-bit length with the MSB set -> Fail(1002), no allocation.
#[test]
fn t22_length_msb_set() {
    for m in MODES {
        // As listed (unmasked, to a server): fails as unmasked at the header.
        assert_server_fails(&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0], m);
        // Masked to a server, and unmasked to a client: the MSB rule itself.
        let mut s = server(m);
        assert_eq!(
            s.feed(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthMsbSet)
        );
        assert_eq!(s.take_output(), S_FAIL_1002);
        let mut c = client(m);
        assert_eq!(
            c.feed(&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthMsbSet)
        );
        assert_eq!(c.take_output(), C_FAIL_1002);
        assert!(c.inbuf.capacity() < 1024);
    }
}

#[test]
fn fixed_mask_is_a_mask_source() {
    let mut c = Endpoint::new(Connection::client(
        Config::default(),
        Box::new(FixedMask([1, 2, 3, 4])),
    ));
    c.conn.send(Message::from("")).unwrap();
    assert_eq!(c.take_output(), [0x81, 0x80, 1, 2, 3, 4]);
}
