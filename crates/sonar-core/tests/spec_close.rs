//! keepalive-spec.md §7.2: close and UTF-8 cases T23..T37. Every case runs twice: input in
//! one piece and one byte per `handle_read` call (C-26).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::time::Duration;

use bytes::Bytes;
use sonar_core::testing::{Endpoint, FrameBuilder, Pair};
use sonar_core::{
    CloseCode, CloseFrame, Event, Message, ProtocolError, SendError, State, Utf8Bytes,
};

const MODES: [Option<usize>; 2] = [None, Some(1)];

fn server(chunk: Option<usize>) -> Endpoint {
    Endpoint::server().chunked(chunk)
}
fn masked(f: FrameBuilder) -> Vec<u8> {
    f.mask([0; 4]).build()
}

fn assert_fail(s: &mut Endpoint, close: &[u8]) {
    assert_eq!(s.take_output(), close);
    let events = s.take_events();
    assert_eq!(events.last(), Some(&Event::CloseTransport), "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Message(_) | Event::Ping(_)))
    );
}

// T23: 1-byte Close body -> Fail(1002).
#[test]
fn t23_one_byte_close_body() {
    for m in MODES {
        let mut s = server(m);
        assert_eq!(
            s.feed(&[0x88, 0x81, 0, 0, 0, 0, 0x03]),
            Err(ProtocolError::CloseBodyTooShort)
        );
        assert_fail(&mut s, &[0x88, 0x02, 0x03, 0xea]);
    }
}

// T24: empty Close is echoed as an empty Close (not 1005); the app sees 1005.
#[test]
fn t24_empty_close_echoed_empty() {
    for m in MODES {
        let mut s = server(m);
        s.feed(&[0x88, 0x80, 0, 0, 0, 0]).unwrap();
        assert_eq!(s.take_output(), [0x88, 0x00]);
        assert_eq!(
            s.take_events(),
            vec![Event::CloseReceived(None), Event::CloseTransport]
        );
        assert_eq!(s.conn.close_code(), Some(CloseCode::NO_STATUS_RECEIVED));
        assert_eq!(s.conn.state(), State::Closed);
    }
}

// T25: invalid received close codes -> 88 02 03 ea + CloseTransport.
#[test]
fn t25_invalid_close_codes() {
    for m in MODES {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let mut s = server(m);
            assert_eq!(
                s.feed(&masked(FrameBuilder::close(code, b""))),
                Err(ProtocolError::InvalidCloseCode(code))
            );
            assert_fail(&mut s, &[0x88, 0x02, 0x03, 0xea]);
        }
    }
}

// T26 + T27: valid codes (incl. 1012-1014, D-1) are echoed: 88 02 <code> + CloseTransport.
#[test]
fn t26_t27_valid_close_codes_echoed() {
    let codes = [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999, 1012,
        1013, 1014,
    ];
    for m in MODES {
        for code in codes {
            let mut s = server(m);
            s.feed(&masked(FrameBuilder::close(code, b"bye"))).unwrap();
            let c = code.to_be_bytes();
            assert_eq!(s.take_output(), [0x88, 0x02, c[0], c[1]]);
            let frame = CloseFrame::with_reason(CloseCode::new(code).unwrap(), "bye");
            assert_eq!(
                s.take_events(),
                vec![Event::CloseReceived(Some(frame)), Event::CloseTransport]
            );
        }
    }
}

// T28: close() with an unsendable code or a 124-byte reason is refused; nothing written.
#[test]
fn t28_close_api_validation() {
    for mut d in [Endpoint::server(), Endpoint::client()] {
        for code in [1004u16, 1005, 1006, 1015, 999, 2000, 5000] {
            let frame = CloseFrame::new(CloseCode::new(code).unwrap());
            assert_eq!(
                d.conn.close(Some(frame)),
                Err(SendError::InvalidCloseCode(code))
            );
        }
        let reason = Utf8Bytes::from(String::from_utf8(vec![b'r'; 124]).unwrap());
        let frame = CloseFrame::with_reason(CloseCode::NORMAL, reason);
        assert_eq!(d.conn.close(Some(frame)), Err(SendError::ReasonTooLong));
        assert_eq!(d.take_output(), b"");
        assert_eq!(d.conn.state(), State::Open);
        // 123 bytes is fine.
        let reason = Utf8Bytes::from(String::from_utf8(vec![b'r'; 123]).unwrap());
        d.conn
            .close(Some(CloseFrame::with_reason(CloseCode::NORMAL, reason)))
            .unwrap();
        assert_eq!(
            d.take_output().len(),
            2 + 125
                + if d.conn.role() == sonar_core::Role::Client {
                    4
                } else {
                    0
                }
        );
    }
}

// T29: Close reason not UTF-8 -> Fail(1007).
#[test]
fn t29_close_reason_invalid_utf8() {
    for m in MODES {
        let mut s = server(m);
        assert_eq!(
            s.feed(&[0x88, 0x84, 0, 0, 0, 0, 0x03, 0xe8, 0xff, 0xfe]),
            Err(ProtocolError::InvalidUtf8)
        );
        assert_fail(&mut s, &[0x88, 0x02, 0x03, 0xef]);
    }
}

const KOSME: [u8; 11] = [
    0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5,
];

// T30: invalid UTF-8 in a second fragment fails at once, without waiting for FIN.
#[test]
fn t30_utf8_fail_fast_across_fragments() {
    for m in MODES {
        let mut s = server(m);
        s.feed(&masked(FrameBuilder::text(&KOSME).fin(false)))
            .unwrap();
        assert_eq!(
            s.feed(&masked(
                FrameBuilder::continuation(&[0xf4, 0x90, 0x80, 0x80]).fin(false)
            )),
            Err(ProtocolError::InvalidUtf8)
        );
        assert_fail(&mut s, &[0x88, 0x02, 0x03, 0xef]);
    }
}

// T31: one text frame in three chops fails right after the second chop.
#[test]
fn t31_utf8_fail_fast_within_a_frame() {
    let mut payload = KOSME.to_vec();
    payload.extend([0xf4, 0x90, 0x80, 0x80]);
    payload.extend(b"edited");
    let frame = masked(FrameBuilder::text(&payload));
    assert_eq!(&frame[..2], &[0x81, 0x95]);
    for m in MODES {
        let mut s = server(m);
        s.feed(&frame[..6 + 11]).unwrap();
        assert_eq!(s.take_output(), b"");
        assert_eq!(s.feed(&frame[17..21]), Err(ProtocolError::InvalidUtf8));
        assert_fail(&mut s, &[0x88, 0x02, 0x03, 0xef]);
    }
    // Byte at a time: the failure comes with the 0x90 byte.
    let mut s = server(None);
    s.feed(&frame[..18]).unwrap();
    assert_eq!(s.feed(&frame[18..19]), Err(ProtocolError::InvalidUtf8));
}

// T32: a code point split across fragments is valid.
#[test]
fn t32_code_point_split_across_fragments() {
    for m in MODES {
        let mut s = server(m);
        s.feed(&masked(FrameBuilder::text(&[0xce]).fin(false)))
            .unwrap();
        s.feed(&masked(FrameBuilder::continuation(&[0xba])))
            .unwrap();
        assert_eq!(s.take_events(), vec![Event::Message(Message::from("κ"))]);
        assert_eq!(s.take_output(), b"");
    }
}

// T33: continuation with nothing to continue -> Fail(1002).
#[test]
fn t33_unexpected_continuation() {
    for m in MODES {
        let mut s = server(m);
        assert_eq!(
            s.feed(&masked(FrameBuilder::continuation(b"x"))),
            Err(ProtocolError::UnexpectedContinuation)
        );
        assert_fail(&mut s, &[0x88, 0x02, 0x03, 0xea]);
    }
}

// T34: a new text frame while a fragmented message is in progress -> Fail(1002).
#[test]
fn t34_new_message_during_fragmented_one() {
    for m in MODES {
        let mut s = server(m);
        s.feed(&masked(FrameBuilder::text(b"a").fin(false)))
            .unwrap();
        assert_eq!(
            s.feed(&masked(FrameBuilder::text(b"b"))),
            Err(ProtocolError::ExpectedContinuation)
        );
        assert_fail(&mut s, &[0x88, 0x02, 0x03, 0xea]);
    }
}

// T35: Close mid-message: partial message discarded, Close echoed, CloseTransport.
#[test]
fn t35_close_mid_message() {
    for m in MODES {
        let mut s = server(m);
        s.feed(&masked(FrameBuilder::text(b"frag").fin(false)))
            .unwrap();
        s.feed(&masked(FrameBuilder::close(1000, b""))).unwrap();
        assert_eq!(s.take_output(), [0x88, 0x02, 0x03, 0xe8]);
        assert_eq!(
            s.take_events(),
            vec![
                Event::CloseReceived(Some(CloseFrame::new(CloseCode::NORMAL))),
                Event::CloseTransport
            ]
        );
    }
}

// T36: server closes the transport right after its reply; the client waits for EOF, or
// for close_timeout (10 s) if the EOF never comes.
#[test]
fn t36_who_closes_tcp() {
    for step in MODES {
        let mut pair = Pair::new();
        pair.step = step;
        pair.client
            .conn
            .close(Some(CloseFrame::new(CloseCode::NORMAL)))
            .unwrap();
        pair.pump();
        let s = pair.server.take_events();
        assert_eq!(
            s,
            vec![
                Event::CloseReceived(Some(CloseFrame::new(CloseCode::NORMAL))),
                Event::CloseTransport
            ]
        );
        let c = pair.client.take_events();
        assert_eq!(
            c,
            vec![
                Event::CloseReceived(Some(CloseFrame::new(CloseCode::NORMAL))),
                Event::CloseTransport
            ]
        );
        assert_eq!(pair.now, Duration::ZERO);
    }
    // No EOF from the server: nothing until close_timeout, then CloseTransport.
    let mut c = Endpoint::client();
    c.conn
        .close(Some(CloseFrame::new(CloseCode::NORMAL)))
        .unwrap();
    c.write_all();
    c.feed(&FrameBuilder::close(1000, b"").build()).unwrap();
    assert_eq!(
        c.take_events(),
        vec![Event::CloseReceived(Some(CloseFrame::new(
            CloseCode::NORMAL
        )))]
    );
    assert_eq!(c.conn.poll_timeout(), Some(Duration::ZERO));
    let t0 = Duration::from_secs(100);
    c.drive_timer(t0);
    assert_eq!(c.conn.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    c.drive_timer(t0 + Duration::from_millis(9999));
    c.conn.handle_timeout(t0); // spurious and backwards: no-op
    assert_eq!(c.take_events(), vec![]);
    c.drive_timer(t0 + Duration::from_secs(10));
    assert_eq!(c.take_events(), vec![Event::CloseTransport]);
    assert_eq!(c.conn.poll_timeout(), None);
    assert_eq!(c.conn.state(), State::Closed);
}

// T37: sending after close() is refused; nothing written.
#[test]
fn t37_send_after_close() {
    for mut d in [Endpoint::server(), Endpoint::client()] {
        d.conn.close(None).unwrap();
        let closing = d.take_output();
        assert_eq!(closing[0], 0x88);
        assert_eq!(d.conn.send(Message::from("x")), Err(SendError::Closing));
        assert_eq!(
            d.conn
                .send_fragment(sonar_core::DataKind::Text, Bytes::from_static(b"x"), true),
            Err(SendError::Closing)
        );
        assert_eq!(d.conn.close(None), Err(SendError::Closing));
        assert_eq!(d.take_output(), b"");
    }
}
