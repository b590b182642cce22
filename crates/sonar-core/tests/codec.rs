//! Codec behaviour beyond the spec table: limits, zero-copy, the extension seam, streaming
//! sends, vectored output, masking, and property-based round trips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::{Buf, Bytes, BytesMut};
use proptest::prelude::*;
use sonar_core::testing::{Endpoint, FrameBuilder, Pair};
use sonar_core::{
    CloseCode, Config, Connection, DataKind, Event, Extension, ExtensionError, FrameHeader,
    MAX_HEADER_LEN, Message, OpCode, ProtocolError, RSV1, SendError, apply_mask,
    apply_mask_reference,
};

#[test]
fn mask_matches_reference_for_every_length_and_offset() {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    for len in 0..=64usize {
        for offset in 0..=3usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask(&mut fast, key, offset);
            apply_mask_reference(&mut slow, key, offset);
            assert_eq!(fast, slow, "len {len} offset {offset}");
            // Unaligned start inside a larger buffer.
            let mut buf = vec![0u8; len + 3];
            buf[3..].copy_from_slice(&data);
            apply_mask(&mut buf[3..], key, offset);
            assert_eq!(&buf[3..], &slow[..]);
        }
    }
}

#[test]
fn oversized_data_frame_fails_1009_at_header() {
    let config = Config::default().with_max_frame_size(1000);
    let mut s = Endpoint::new(Connection::server(config));
    // Header only: 16-bit length 1001, masked.
    let err = s.feed(&[0x82, 0xfe, 0x03, 0xe9]).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::FrameTooLarge {
            len: 1001,
            max: 1000
        }
    );
    assert_eq!(s.take_output(), [0x88, 0x02, 0x03, 0xf1]);
    assert_eq!(s.take_events(), vec![Event::CloseTransport]);
}

#[test]
fn oversized_message_fails_1009_across_fragments() {
    let config = Config::default().with_max_message_size(10);
    let mut s = Endpoint::new(Connection::server(config));
    s.feed(
        &FrameBuilder::binary(&[1; 6])
            .fin(false)
            .mask([0; 4])
            .build(),
    )
    .unwrap();
    // Second fragment's header declares 5 more bytes: 11 > 10, before any payload.
    let err = s.feed(&[0x00, 0x85]).unwrap_err();
    assert_eq!(err, ProtocolError::MessageTooLarge { len: 11, max: 10 });
    assert_eq!(err.close_code(), CloseCode::TOO_BIG);
    assert_eq!(s.take_output(), [0x88, 0x02, 0x03, 0xf1]);
}

#[test]
fn single_frame_message_is_not_copied() {
    let mut server = Connection::server(Config::default());
    let mut buf = BytesMut::with_capacity(4096);
    buf.extend_from_slice(&FrameBuilder::binary(&[7; 1000]).mask([1, 2, 3, 4]).build());
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + 4096;
    server.handle_read(&mut buf).unwrap();
    let Some(Event::Message(Message::Binary(p))) = server.poll_event() else {
        panic!()
    };
    assert_eq!(&p[..], &[7; 1000][..]);
    assert!(range.contains(&(p.as_ptr() as usize)), "payload was copied");
}

#[test]
fn server_outbound_is_vectored_without_payload_copy() {
    let mut server = Connection::server(Config::default());
    let payload = Bytes::from(vec![9u8; 100]);
    server.send(Message::Binary(payload.clone())).unwrap();
    server.ping(Bytes::from_static(b"p")).unwrap();
    let out = server.outbound();
    let mut slices = [std::io::IoSlice::new(&[]); 8];
    let n = out.chunks_vectored(&mut slices);
    // Ping first (control priority), then the data header and the payload itself.
    assert_eq!(n, 4);
    assert_eq!(&*slices[0], &[0x89, 0x01]);
    assert_eq!(&*slices[1], b"p");
    assert_eq!(&*slices[2], &[0x82, 100]);
    assert_eq!(slices[3].as_ptr(), payload.as_ptr());
    assert_eq!(out.remaining(), 2 + 1 + 2 + 100);
}

#[test]
fn ping_sent_event_after_last_byte() {
    let mut s = Endpoint::server();
    s.conn.ping(Bytes::from_static(b"abc")).unwrap();
    s.write(4);
    assert_eq!(s.take_events(), vec![]);
    s.write(1);
    assert_eq!(
        s.take_events(),
        vec![Event::PingSent(Bytes::from_static(b"abc"))]
    );
}

#[test]
fn streaming_send_fragments() {
    let mut s = Endpoint::server();
    let euro = "€".as_bytes();
    s.conn
        .send_fragment(DataKind::Text, Bytes::copy_from_slice(&euro[..1]), false)
        .unwrap();
    assert_eq!(
        s.conn.send(Message::from("x")),
        Err(SendError::FragmentInProgress)
    );
    assert_eq!(
        s.conn.send_fragment(DataKind::Binary, Bytes::new(), true),
        Err(SendError::FragmentKindMismatch)
    );
    assert_eq!(
        s.conn
            .send_fragment(DataKind::Text, Bytes::from_static(b"\xff"), true),
        Err(SendError::InvalidUtf8)
    );
    s.conn
        .send_fragment(DataKind::Text, Bytes::copy_from_slice(&euro[1..]), true)
        .unwrap();
    assert_eq!(s.take_output(), [0x01, 0x01, 0xe2, 0x80, 0x02, 0x82, 0xac]);
}

#[test]
fn control_api_limits() {
    let mut s = Endpoint::new(Connection::server(
        Config::default().with_max_queued_control(2),
    ));
    assert_eq!(
        s.conn.ping(Bytes::from(vec![0; 126])),
        Err(SendError::ControlTooLong)
    );
    s.conn.ping(Bytes::new()).unwrap();
    s.conn.pong(Bytes::new()).unwrap();
    assert_eq!(s.conn.ping(Bytes::new()), Err(SendError::QueueFull));
    assert_eq!(s.take_output(), [0x89, 0x00, 0x8a, 0x00]);
}

#[test]
fn close_after_data_already_queued() {
    let mut s = Endpoint::server();
    s.conn.send(Message::from("a")).unwrap();
    s.conn
        .close(Some(sonar_core::CloseFrame::with_reason(
            CloseCode::GOING_AWAY,
            "bye",
        )))
        .unwrap();
    assert_eq!(
        s.take_output(),
        [0x81, 0x01, b'a', 0x88, 0x05, 0x03, 0xe9, b'b', b'y', b'e']
    );
}

#[test]
fn fail_keeps_partly_written_frame_then_closes() {
    let mut s = Endpoint::server();
    s.conn
        .send(Message::Binary(Bytes::from(vec![1u8; 10])))
        .unwrap();
    s.conn
        .send(Message::Binary(Bytes::from(vec![2u8; 10])))
        .unwrap();
    s.write(5);
    s.feed(&[0x89, 0x00]).unwrap_err();
    let out = s.take_output();
    // The first frame finishes, the second is dropped, then Close 1002.
    assert_eq!(out.len(), 12 + 4);
    assert_eq!(&out[12..], &[0x88, 0x02, 0x03, 0xea]);
}

#[test]
fn auto_pong_off_hands_pings_to_app() {
    let mut s = Endpoint::new(Connection::server(Config::default().with_auto_pong(false)));
    s.feed(&FrameBuilder::ping(b"x").mask([0; 4]).build())
        .unwrap();
    assert_eq!(s.take_output(), b"");
    assert_eq!(s.take_events(), vec![Event::Ping(Bytes::from_static(b"x"))]);
}

#[test]
fn eof_without_close_is_abnormal() {
    let mut s = Endpoint::server();
    s.conn.handle_eof();
    assert_eq!(s.take_events(), vec![Event::CloseTransport]);
    assert_eq!(s.conn.close_code(), Some(CloseCode::ABNORMAL));
}

#[test]
fn server_close_timeout_without_peer_close() {
    let mut s = Endpoint::server();
    s.conn.close(None).unwrap();
    s.write_all();
    let t0 = core::time::Duration::from_secs(5);
    s.drive_timer(t0);
    assert_eq!(
        s.conn.poll_timeout(),
        Some(t0 + core::time::Duration::from_secs(10))
    );
    s.drive_timer(t0 + core::time::Duration::from_secs(10));
    assert_eq!(s.take_events(), vec![Event::CloseTransport]);
}

/// A toy extension: RSV1 means "payload reversed".
struct Reverse;
impl Extension for Reverse {
    fn rsv_bits(&self) -> u8 {
        RSV1
    }
    fn decode(&mut self, rsv: u8, p: Bytes, max: usize) -> Result<Bytes, ExtensionError> {
        assert_eq!(rsv, RSV1);
        if p.len() > max {
            return Err(ExtensionError {
                code: CloseCode::TOO_BIG,
                reason: "too big",
            });
        }
        Ok(p.iter().rev().copied().collect::<Vec<u8>>().into())
    }
    fn encode(&mut self, _: DataKind, p: Bytes) -> Result<(u8, Bytes), ExtensionError> {
        Ok((RSV1, p.iter().rev().copied().collect::<Vec<u8>>().into()))
    }
}

#[test]
fn extension_seam_transforms_both_ways() {
    let cfg = || Config::default().with_extension(|| Box::new(Reverse));
    let mut pair = Pair::with_configs(cfg(), cfg());
    pair.client.conn.send(Message::from("hello")).unwrap();
    pair.server
        .conn
        .send(Message::Binary(Bytes::from_static(b"abc")))
        .unwrap();
    pair.pump();
    assert_eq!(
        pair.server.take_events(),
        vec![Event::Message(Message::from("hello"))]
    );
    assert_eq!(
        pair.client.take_events(),
        vec![Event::Message(Message::Binary(Bytes::from_static(b"abc")))]
    );
    // RSV1 on a continuation is an error even with the extension.
    let mut s = Endpoint::new(Connection::server(cfg()));
    s.feed(
        &FrameBuilder::text(b"ab")
            .rsv(RSV1)
            .fin(false)
            .mask([0; 4])
            .build(),
    )
    .unwrap();
    assert_eq!(
        s.feed(
            &FrameBuilder::continuation(b"c")
                .rsv(RSV1)
                .mask([0; 4])
                .build()
        ),
        Err(ProtocolError::ReservedBits(RSV1))
    );
    // Without the extension RSV1 on data fails.
    let mut s = Endpoint::server();
    assert_eq!(
        s.feed(&FrameBuilder::text(b"ab").rsv(RSV1).mask([0; 4]).build()),
        Err(ProtocolError::ReservedBits(RSV1))
    );
}

fn message_strategy() -> impl Strategy<Value = Message> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(|v| Message::Binary(v.into())),
        ".{0,500}".prop_map(|s: String| Message::Text(s.into())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn header_round_trip(fin: bool, rsv in 0u8..8, op in 0u8..16, masked: bool, key: [u8; 4], len in prop_oneof![0u64..200, 0u64..70000, 0u64..(1 << 63)]) {
        let h = FrameHeader { fin, rsv: rsv << 4, opcode: OpCode::from_bits(op), mask: masked.then_some(key), len };
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut out);
        prop_assert_eq!(FrameHeader::parse(&out[..n]), Ok(Some((h, n))));
        for cut in 0..n {
            prop_assert_eq!(FrameHeader::parse(&out[..cut]), Ok(None));
        }
    }

    #[test]
    fn messages_round_trip_through_pair(
        msgs in proptest::collection::vec(message_strategy(), 1..6),
        step in prop_oneof![Just(None), (1usize..64).prop_map(Some)],
        frag in prop_oneof![Just(None), (1usize..700).prop_map(Some)],
    ) {
        let cfg = Config::default().with_auto_fragment_size(frag);
        let mut pair = Pair::with_configs(cfg.clone(), cfg);
        pair.step = step;
        for m in &msgs {
            pair.client.conn.send(m.clone()).unwrap();
            pair.server.conn.send(m.clone()).unwrap();
        }
        pair.client.conn.ping(Bytes::from_static(b"k")).unwrap();
        pair.pump();
        let expect: Vec<Event> = msgs.iter().cloned().map(Event::Message).collect();
        let s: Vec<Event> = pair.server.take_events().into_iter().filter(|e| matches!(e, Event::Message(_))).collect();
        let c: Vec<Event> = pair.client.take_events().into_iter().filter(|e| matches!(e, Event::Message(_) )).collect();
        prop_assert_eq!(&s, &expect);
        prop_assert_eq!(&c, &expect);
        // Clean close afterwards.
        pair.client.conn.close(None).unwrap();
        pair.pump();
        prop_assert!(pair.client.transport_closed && pair.server.transport_closed);
    }

    #[test]
    fn byte_at_a_time_equals_one_shot(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut a = Endpoint::server();
        let ra = a.feed(&input);
        let mut b = Endpoint::server().chunked(Some(1));
        let rb = b.feed(&input);
        prop_assert_eq!(ra, rb);
        prop_assert_eq!(a.take_events(), b.take_events());
        prop_assert_eq!(a.take_output(), b.take_output());
    }
}

#[test]
fn connection_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Connection>();
    assert_send::<Config>();
    assert_send::<Event>();
}

#[test]
fn pair_close_timeout_on_virtual_clock() {
    let mut pair = Pair::new();
    pair.hold_server_output = true;
    pair.client.conn.close(None).unwrap();
    pair.pump();
    assert_eq!(pair.server.take_events(), vec![Event::CloseReceived(None)]);
    pair.advance(core::time::Duration::from_millis(9_999));
    assert!(!pair.client.transport_closed && !pair.server.transport_closed);
    pair.advance(core::time::Duration::from_millis(1));
    assert_eq!(pair.client.take_events(), vec![Event::CloseTransport]);
    assert_eq!(pair.server.take_events(), vec![Event::CloseTransport]);
    assert_eq!(pair.client.conn.close_code(), Some(CloseCode::ABNORMAL));
}

#[test]
fn pong_never_enters_a_partly_written_frame() {
    let mut s = Endpoint::server();
    // A pong partly written when a newer ping arrives: the old pong finishes first.
    s.feed(&FrameBuilder::ping(b"A").mask([0; 4]).build())
        .unwrap();
    s.write(1);
    s.feed(&FrameBuilder::ping(b"B").mask([0; 4]).build())
        .unwrap();
    assert_eq!(s.take_output(), [0x8a, 0x01, b'A', 0x8a, 0x01, b'B']);
    // A user ping partly written: the auto-pong waits for its last byte.
    s.conn.ping(Bytes::from_static(b"me")).unwrap();
    s.write(3);
    s.feed(&FrameBuilder::ping(b"C").mask([0; 4]).build())
        .unwrap();
    assert_eq!(s.take_output(), [0x89, 0x02, b'm', b'e', 0x8a, 0x01, b'C']);
}

#[test]
fn unstarted_frames_are_overtaken_by_pongs() {
    let mut s = Endpoint::server();
    s.conn.send(Message::binary(vec![1u8; 3])).unwrap();
    s.conn.ping(Bytes::from_static(b"p")).unwrap();
    s.feed(&FrameBuilder::ping(b"q").mask([0; 4]).build())
        .unwrap();
    // Auto-pong, then the user ping, then data (C-15).
    assert_eq!(
        s.take_output(),
        [0x8a, 0x01, b'q', 0x89, 0x01, b'p', 0x82, 0x03, 1, 1, 1]
    );
}

#[test]
fn owed_pong_dropped_when_close_arrives() {
    // C-14: ping then Close in one read while the writer is blocked: only the Close reply.
    let mut s = Endpoint::server();
    let mut input = FrameBuilder::ping(b"p").mask([0; 4]).build();
    input.extend(FrameBuilder::close(1000, b"").mask([0; 4]).build());
    s.feed(&input).unwrap();
    assert_eq!(s.take_output(), [0x88, 0x02, 0x03, 0xe8]);
}
