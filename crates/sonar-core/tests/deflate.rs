//! permessage-deflate in the codec (RFC 7692 §6, §7.2), named after the sections they check:
//! RSV1 rules, compression with the tail stripped, inflation with the tail appended and
//! resumable across reads and fragments, context takeover, window bits, limits, bad data.
#![cfg(feature = "deflate")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use proptest::prelude::*;
use sonar_core::testing::{
    Endpoint, FixedMask, FrameBuilder, Pair, PeerDeflate, PeerInflate, RFC_KEY, deflate, inflate,
    parse_frames, server_close,
};
use sonar_core::{
    CloseCode, Config, Connection, DataKind, Deflate, Event, Message, OpCode, ProtocolError, RSV1,
    RSV2, RSV3,
};

/// A server with permessage-deflate agreed as `d`.
fn server(d: Deflate) -> Endpoint {
    Endpoint::new(Connection::server(Config::default().with_deflate(Some(d))))
}

fn client(d: Deflate) -> Endpoint {
    Endpoint::new(Connection::client(
        Config::default().with_deflate(Some(d)),
        Box::new(FixedMask(RFC_KEY)),
    ))
}

/// Compresses everything (no minimum size).
fn all() -> Deflate {
    Deflate::new().with_min_message_size(0)
}

fn text(s: &str) -> Message {
    Message::text(String::from(s))
}

/// Text with repeats near and far (distances above 512 bytes and above 4 KiB).
fn sample(len: usize) -> String {
    let words = [
        "sonar ",
        "websocket ",
        "deflate ",
        "window ",
        "context ",
        "takeover ",
        "frame ",
        "message ",
        "ping ",
        "{\"id\":",
        "\"value\":[1,2,3]} ",
    ];
    let mut s = String::new();
    let mut x: u32 = 12345;
    while s.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        s.push_str(words[(x >> 16) as usize % words.len()]);
        if x.is_multiple_of(7) {
            s.push_str(&format!("{}", x % 100_000));
        }
    }
    s.truncate(len);
    s
}

/// Pseudo-random (incompressible) bytes.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn messages(events: Vec<Event>) -> Vec<Message> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

// ----- §6.1: RSV1 ------------------------------------------------------------------------

#[test]
fn rfc7692_6_1_rsv1_without_negotiation_is_1002() {
    let mut s = Endpoint::server();
    let frame = FrameBuilder::text(b"Hello")
        .compressed()
        .mask([0; 4])
        .build();
    assert_eq!(
        s.feed(&frame).unwrap_err(),
        ProtocolError::ReservedBits(RSV1)
    );
    assert_eq!(s.take_output(), server_close(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn rfc7692_6_1_rsv1_on_continuation_is_1002() {
    let mut s = server(all());
    let z = deflate(sample(200).as_bytes());
    let (a, b) = z.split_at(50);
    s.feed(
        &FrameBuilder::text(a)
            .rsv(RSV1)
            .fin(false)
            .mask([0; 4])
            .build(),
    )
    .unwrap();
    let err = s
        .feed(&FrameBuilder::continuation(b).rsv(RSV1).mask([0; 4]).build())
        .unwrap_err();
    assert_eq!(err, ProtocolError::ReservedBits(RSV1));
    assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    assert_eq!(s.take_output(), server_close(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn rfc7692_6_1_rsv1_on_control_frame_is_1002() {
    for op in [0x8u8, 0x9, 0xA] {
        let mut s = server(all());
        let payload: &[u8] = if op == 0x8 { &[0x03, 0xe8] } else { b"x" };
        let err = s
            .feed(
                &FrameBuilder::new(op, payload)
                    .rsv(RSV1)
                    .mask([0; 4])
                    .build(),
            )
            .unwrap_err();
        assert_eq!(err, ProtocolError::ReservedBits(RSV1), "opcode {op:#x}");
        assert_eq!(s.take_output(), server_close(CloseCode::PROTOCOL_ERROR));
    }
}

#[test]
fn rfc7692_6_1_rsv2_and_rsv3_stay_reserved_with_deflate() {
    for rsv in [RSV2, RSV3, RSV1 | RSV2] {
        let mut s = server(all());
        let frame = FrameBuilder::text(&deflate(b"Hello"))
            .rsv(rsv)
            .mask([0; 4])
            .build();
        let err = s.feed(&frame).unwrap_err();
        assert_eq!(err, ProtocolError::ReservedBits(rsv & !RSV1));
    }
}

#[test]
fn rfc7692_6_1_uncompressed_messages_still_pass_with_deflate() {
    let mut s = server(all());
    s.feed(&FrameBuilder::text(b"plain").mask([0; 4]).build())
        .unwrap();
    assert_eq!(messages(s.take_events()), [text("plain")]);
}

#[test]
fn rfc7692_6_1_rsv1_only_on_the_first_frame_of_a_sent_message() {
    let config = Config::default()
        .with_deflate(Some(all()))
        .with_auto_fragment_size(Some(16));
    let mut s = Endpoint::new(Connection::server(config));
    let msg = sample(3000);
    s.conn.send(text(&msg)).unwrap();
    let frames = parse_frames(&s.take_output());
    assert!(frames.len() > 2);
    for (i, (h, _)) in frames.iter().enumerate() {
        assert_eq!(h.rsv, if i == 0 { RSV1 } else { 0 }, "frame {i}");
        assert_eq!(
            h.opcode,
            if i == 0 {
                OpCode::TEXT
            } else {
                OpCode::CONTINUATION
            }
        );
    }
    let z: Vec<u8> = frames.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(inflate(&z), msg.as_bytes());
}

#[test]
fn rfc7692_6_1_streamed_fragments_go_out_uncompressed() {
    let mut s = server(all());
    s.conn
        .send_fragment(DataKind::Text, Bytes::from(sample(100)), false)
        .unwrap();
    s.conn
        .send_fragment(DataKind::Text, Bytes::from(sample(100)), true)
        .unwrap();
    let frames = parse_frames(&s.take_output());
    assert!(frames.iter().all(|(h, _)| h.rsv == 0));
}

// ----- §7.2.1: compression ----------------------------------------------------------------

#[test]
fn rfc7692_7_2_1_compress_strips_the_tail() {
    // The §7.2.3.1 example: "Hello" compresses to f2 48 cd c9 c9 07 00.
    let mut s = server(all());
    s.conn.send(text("Hello")).unwrap();
    assert_eq!(
        s.take_output(),
        [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
    );
}

#[test]
fn rfc7692_7_2_1_client_masks_the_compressed_payload() {
    let mut c = client(all());
    c.conn.send(text("Hello")).unwrap();
    let frames = parse_frames(&c.take_output());
    assert_eq!(frames.len(), 1);
    let (h, p) = &frames[0];
    assert_eq!((h.rsv, h.mask), (RSV1, Some(RFC_KEY)));
    assert_eq!(p, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
}

#[test]
fn rfc7692_6_messages_below_the_minimum_size_go_out_uncompressed() {
    let mut s = server(Deflate::new().with_min_message_size(10));
    s.conn.send(text("short")).unwrap();
    s.conn.send(text("long enough to compress")).unwrap();
    let frames = parse_frames(&s.take_output());
    assert_eq!(frames[0].0.rsv, 0);
    assert_eq!(frames[0].1, b"short");
    assert_eq!(frames[1].0.rsv, RSV1);
    assert_eq!(inflate(&frames[1].1), b"long enough to compress");
}

#[test]
fn rfc7692_7_1_2_window_bits_8_sends_uncompressed() {
    // No backend can compress with an 8-bit window: the agreement is honoured by not
    // compressing at all (and nothing is allocated for it).
    let mut s = server(all().with_server_max_window_bits(8));
    s.conn.send(text(&sample(5000))).unwrap();
    let frames = parse_frames(&s.take_output());
    assert_eq!(frames[0].0.rsv, 0);
    assert_eq!(s.conn.deflate_state(), Some((false, false)));
    // The other direction still inflates.
    s.feed(
        &FrameBuilder::text(&sample(300).into_bytes())
            .compressed()
            .mask([0; 4])
            .build(),
    )
    .unwrap();
    assert_eq!(messages(s.take_events()), [text(&sample(300))]);
}

#[test]
fn rfc7692_7_2_1_no_context_takeover_sends_incompressible_data_plain() {
    let mut s = server(all().with_server_no_context_takeover(true));
    let data = noise(2000);
    s.conn.send(Message::binary(data.clone())).unwrap();
    let frames = parse_frames(&s.take_output());
    assert_eq!((frames[0].0.rsv, &frames[0].1), (0, &data));
}

// ----- §7.2.2: decompression --------------------------------------------------------------

#[test]
fn rfc7692_7_2_2_inflate_appends_tail() {
    // §7.2.3.1: a compressed "Hello" as the RFC writes it (tail already removed).
    let mut c = client(all());
    c.feed(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
        .unwrap();
    assert_eq!(messages(c.take_events()), [text("Hello")]);
}

#[test]
fn rfc7692_7_2_3_1_fragmented_hello() {
    let mut c = client(all());
    c.feed(&[0x41, 0x03, 0xf2, 0x48, 0xcd]).unwrap();
    c.feed(&[0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00]).unwrap();
    assert_eq!(messages(c.take_events()), [text("Hello")]);
}

#[test]
fn rfc7692_7_2_3_2_sharing_the_window_across_messages() {
    let mut c = client(all());
    c.feed(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
        .unwrap();
    c.feed(&[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap();
    assert_eq!(messages(c.take_events()), [text("Hello"), text("Hello")]);
}

#[test]
fn rfc7692_7_2_3_3_stored_block() {
    let mut c = client(all());
    c.feed(&[
        0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ])
    .unwrap();
    assert_eq!(messages(c.take_events()), [text("Hello")]);
}

#[test]
fn rfc7692_7_2_3_4_final_block_then_more_messages() {
    let mut c = client(all());
    let bfinal = [0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    c.feed(&bfinal).unwrap();
    c.feed(&bfinal).unwrap();
    // A final block exactly at the end of the message (no 0x00 after it) also works.
    c.feed(&[0xc1, 0x07, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
        .unwrap();
    c.feed(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
        .unwrap();
    assert_eq!(messages(c.take_events()), vec![text("Hello"); 4]);
}

#[test]
fn rfc7692_7_2_3_6_empty_compressed_message() {
    let mut c = client(all());
    // An empty payload with RSV1 (the tail alone is an empty stored block), and 0x00.
    c.feed(&[0xc2, 0x00]).unwrap();
    c.feed(&[0xc2, 0x01, 0x00]).unwrap();
    assert_eq!(
        messages(c.take_events()),
        [Message::binary(Bytes::new()), Message::binary(Bytes::new())]
    );
    // Sending one: plain (RSV1 clear), which every receiver reads the same way.
    let mut s = server(all());
    s.conn.send(Message::binary(Bytes::new())).unwrap();
    assert_eq!(s.take_output(), [0x82, 0x00]);
}

#[test]
fn rfc7692_7_2_2_empty_payload_with_context_takeover_keeps_the_stream_intact() {
    // A zlib peer with context takeover compresses an empty message to nothing at all; the
    // tail must not be appended then, or the next message would be read as stored data.
    let mut c = client(all());
    let mut peer = PeerDeflate::new(15);
    let z1 = peer.message(b"Hello Hello Hello");
    let z2 = peer.message(b"");
    let z3 = peer.message(b"Hello again");
    assert!(z2.is_empty());
    for z in [&z1, &z2, &z3] {
        c.feed(&FrameBuilder::text(z).rsv(RSV1).build()).unwrap();
    }
    assert_eq!(
        messages(c.take_events()),
        [text("Hello Hello Hello"), text(""), text("Hello again")]
    );
}

#[test]
fn rfc7692_7_2_2_inflate_resumes_across_one_byte_reads() {
    let msg = sample(20_000);
    let z = deflate(msg.as_bytes());
    let mut s = server(all()).chunked(Some(1));
    let chunks: Vec<&[u8]> = z.chunks(777).collect();
    let last = chunks.len() - 1;
    let mut wire = Vec::new();
    for (i, part) in chunks.iter().enumerate() {
        let f = if i == 0 {
            FrameBuilder::text(part).rsv(RSV1)
        } else {
            FrameBuilder::continuation(part)
        };
        wire.extend(f.fin(i == last).mask([1, 2, 3, 4]).build());
    }
    s.feed(&wire).unwrap();
    assert_eq!(messages(s.take_events()), [text(&msg)]);
}

#[test]
fn rfc7692_6_2_fragmented_compressed_message_with_interleaved_pings() {
    let msg = sample(5000);
    let z = deflate(msg.as_bytes());
    let mut s = server(all()).writable(true);
    let third = z.len() / 3;
    let mut wire = FrameBuilder::text(&z[..third])
        .rsv(RSV1)
        .fin(false)
        .mask([0; 4])
        .build();
    wire.extend(FrameBuilder::ping(b"1").mask([0; 4]).build());
    wire.extend(
        FrameBuilder::continuation(&z[third..2 * third])
            .fin(false)
            .mask([0; 4])
            .build(),
    );
    wire.extend(FrameBuilder::ping(b"2").mask([0; 4]).build());
    wire.extend(FrameBuilder::pong(b"3").mask([0; 4]).build());
    wire.extend(
        FrameBuilder::continuation(&z[2 * third..])
            .mask([0; 4])
            .build(),
    );
    for chunk in [None, Some(1), Some(5)] {
        let mut s2 = server(all()).writable(true).chunked(chunk);
        s2.feed(&wire).unwrap();
        assert_eq!(
            s2.take_events(),
            [
                Event::Ping("1".into()),
                Event::Ping("2".into()),
                Event::Pong("3".into()),
                Event::Message(text(&msg)),
            ]
        );
        let frames = parse_frames(&s2.take_output());
        assert_eq!(frames.len(), 2, "two pongs");
    }
    s.feed(&wire).unwrap();
}

#[test]
fn rfc7692_6_2_invalid_utf8_after_inflate_is_1007() {
    let mut s = server(all());
    let frame = FrameBuilder::text(&deflate(b"ok \xff\xfe"))
        .rsv(RSV1)
        .mask([0; 4])
        .build();
    assert_eq!(s.feed(&frame).unwrap_err(), ProtocolError::InvalidUtf8);
    assert_eq!(s.take_output(), server_close(CloseCode::INVALID_PAYLOAD));
}

#[test]
fn rfc7692_6_2_invalid_utf8_fails_fast_before_the_last_fragment() {
    let mut s = server(all());
    let mut data = b"valid start ".to_vec();
    data.extend_from_slice(&[0xc3, 0x28]);
    data.extend_from_slice(sample(2000).as_bytes());
    let z = deflate(&data);
    let err = s
        .feed(
            &FrameBuilder::text(&z)
                .rsv(RSV1)
                .fin(false)
                .mask([0; 4])
                .build(),
        )
        .unwrap_err();
    assert_eq!(err, ProtocolError::InvalidUtf8);
}

#[test]
fn rfc7692_6_2_truncated_utf8_at_the_end_is_1007() {
    let mut s = server(all());
    let frame = FrameBuilder::text(&deflate("é".as_bytes()[..1].as_ref()))
        .rsv(RSV1)
        .mask([0; 4])
        .build();
    assert_eq!(s.feed(&frame).unwrap_err(), ProtocolError::InvalidUtf8);
}

#[test]
fn rfc7692_7_2_2_invalid_deflate_data_is_1007() {
    // BTYPE=11 is reserved: not a deflate stream.
    for bad in [
        &[0xff, 0xff, 0xff][..],
        &[0x07, 0x00],
        &[0x02, 0xff, 0xff, 0x00],
    ] {
        let mut s = server(all());
        let err = s
            .feed(&FrameBuilder::binary(bad).rsv(RSV1).mask([0; 4]).build())
            .unwrap_err();
        assert_eq!(err, ProtocolError::InvalidCompressedData, "{bad:?}");
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
        assert_eq!(s.take_output(), server_close(CloseCode::INVALID_PAYLOAD));
    }
}

#[test]
fn rfc7692_7_2_2_inflated_size_limit_is_1009() {
    let config = Config::default()
        .with_deflate(Some(all()))
        .with_max_message_size(1000);
    let mut s = Endpoint::new(Connection::server(config));
    let z = deflate(&[b'a'; 1001]);
    assert!(z.len() < 100);
    let err = s
        .feed(&FrameBuilder::binary(&z).rsv(RSV1).mask([0; 4]).build())
        .unwrap_err();
    assert!(
        matches!(err, ProtocolError::MessageTooLarge { max: 1000, .. }),
        "{err:?}"
    );
    assert_eq!(s.take_output(), server_close(CloseCode::TOO_BIG));
    // Exactly at the limit is fine.
    let config = Config::default()
        .with_deflate(Some(all()))
        .with_max_message_size(1000);
    let mut s = Endpoint::new(Connection::server(config));
    s.feed(
        &FrameBuilder::binary(&deflate(&[b'a'; 1000]))
            .rsv(RSV1)
            .mask([0; 4])
            .build(),
    )
    .unwrap();
    assert_eq!(messages(s.take_events())[0].payload().len(), 1000);
}

#[test]
fn rfc7692_7_2_2_incompressible_message_under_the_limit_passes_despite_expansion() {
    // Level 1 (fixed codes) expands random bytes: the wire size may pass max_message_size
    // while the inflated size does not.
    let data = noise(10_000);
    let z = PeerDeflate::with_level(15, 1).message(&data);
    assert!(z.len() > data.len());
    let config = Config::default()
        .with_deflate(Some(all()))
        .with_max_message_size(10_000);
    let mut s = Endpoint::new(Connection::server(config));
    s.feed(&FrameBuilder::binary(&z).rsv(RSV1).mask([0; 4]).build())
        .unwrap();
    assert_eq!(messages(s.take_events()), [Message::binary(data)]);
    // The wire limit for compressed messages is an eighth above the limit.
    let config = Config::default()
        .with_deflate(Some(all()))
        .with_max_message_size(1000);
    let mut s = Endpoint::new(Connection::server(config));
    let err = s
        .feed(
            &FrameBuilder::binary(&[0; 1190])
                .rsv(RSV1)
                .mask([0; 4])
                .build(),
        )
        .unwrap_err();
    assert_eq!(
        err,
        ProtocolError::MessageTooLarge {
            len: 1190,
            max: 1000
        }
    );
}

#[test]
fn rfc7692_6_2_close_in_the_middle_of_a_compressed_message() {
    let mut s = server(all());
    let z = deflate(sample(1000).as_bytes());
    s.feed(
        &FrameBuilder::text(&z[..10])
            .rsv(RSV1)
            .fin(false)
            .mask([0; 4])
            .build(),
    )
    .unwrap();
    s.feed(&FrameBuilder::close(1000, b"").mask([0; 4]).build())
        .unwrap();
    let ev = s.take_events();
    assert!(matches!(ev[0], Event::CloseReceived(_)), "{ev:?}");
    assert_eq!(s.conn.deflate_state(), Some((false, false)));
}

// ----- §7.1.1: context takeover -----------------------------------------------------------

#[test]
fn rfc7692_7_1_1_context_takeover_across_messages() {
    let msg = sample(2000);
    // Our compressor: the second identical message is much smaller with takeover.
    let mut s = server(all().with_level(6));
    s.conn.send(text(&msg)).unwrap();
    s.conn.send(text(&msg)).unwrap();
    let f = parse_frames(&s.take_output());
    assert!(
        f[1].1.len() * 4 < f[0].1.len(),
        "{} vs {}",
        f[1].1.len(),
        f[0].1.len()
    );
    let mut peer = PeerInflate::new();
    assert_eq!(peer.message(&f[0].1), msg.as_bytes());
    assert_eq!(peer.message(&f[1].1), msg.as_bytes());
    assert_eq!(s.conn.deflate_state(), Some((true, false)));
    // Our decompressor keeps the peer's context.
    let mut peer = PeerDeflate::new(15);
    let z1 = peer.message(msg.as_bytes());
    let z2 = peer.message(msg.as_bytes());
    assert!(z2.len() * 4 < z1.len());
    s.feed(&FrameBuilder::text(&z1).rsv(RSV1).mask([0; 4]).build())
        .unwrap();
    s.feed(&FrameBuilder::text(&z2).rsv(RSV1).mask([0; 4]).build())
        .unwrap();
    assert_eq!(messages(s.take_events()), [text(&msg), text(&msg)]);
    assert_eq!(s.conn.deflate_state(), Some((true, true)));
}

#[test]
fn rfc7692_7_1_1_1_server_no_context_takeover_resets_and_frees_the_compressor() {
    let msg = sample(2000);
    let mut s = server(all().with_server_no_context_takeover(true));
    s.conn.send(text(&msg)).unwrap();
    assert_eq!(s.conn.deflate_state(), Some((false, false)));
    s.conn.send(text(&msg)).unwrap();
    let f = parse_frames(&s.take_output());
    assert_eq!(f[0].1, f[1].1, "same bytes: no shared window");
    let mut peer = PeerInflate::new().no_context_takeover();
    assert_eq!(peer.message(&f[1].1), msg.as_bytes());
}

#[test]
fn rfc7692_7_1_1_2_client_no_context_takeover_frees_the_servers_decompressor() {
    let msg = sample(2000);
    let mut s = server(all().with_client_no_context_takeover(true));
    let mut peer = PeerDeflate::new(15).no_context_takeover();
    for _ in 0..3 {
        let z = peer.message(msg.as_bytes());
        s.feed(&FrameBuilder::text(&z).rsv(RSV1).mask([0; 4]).build())
            .unwrap();
        assert_eq!(s.conn.deflate_state(), Some((false, false)));
    }
    assert_eq!(messages(s.take_events()), vec![text(&msg); 3]);
    // A peer that relies on the context it agreed to drop is caught.
    let mut cheat = PeerDeflate::new(15);
    let _ = cheat.message(msg.as_bytes());
    let z = cheat.message(msg.as_bytes());
    let err = s
        .feed(&FrameBuilder::text(&z).rsv(RSV1).mask([0; 4]).build())
        .unwrap_err();
    assert_eq!(err, ProtocolError::InvalidCompressedData);
}

#[test]
fn rfc7692_7_1_1_client_role_uses_client_parameters_for_its_compressor() {
    let msg = sample(2000);
    let mut c = client(all().with_client_no_context_takeover(true));
    c.conn.send(text(&msg)).unwrap();
    c.conn.send(text(&msg)).unwrap();
    let f = parse_frames(&c.take_output());
    assert_eq!(f[0].1, f[1].1);
    assert_eq!(c.conn.deflate_state(), Some((false, false)));
}

// ----- §7.1.2: window bits, and every combination through the pair ------------------------

#[test]
fn rfc7692_7_1_2_window_bits_9_to_15_round_trip() {
    let msg = sample(100_000);
    for bits in 9..=15u8 {
        let d = all()
            .with_server_max_window_bits(bits)
            .with_client_max_window_bits(bits);
        let config = Config::default().with_deflate(Some(d));
        let mut pair = Pair::with_configs(config.clone(), config);
        pair.client.conn.send(text(&msg)).unwrap();
        pair.server.conn.send(text(&msg)).unwrap();
        pair.pump();
        assert_eq!(
            messages(pair.server.take_events()),
            [text(&msg)],
            "bits {bits}"
        );
        assert_eq!(
            messages(pair.client.take_events()),
            [text(&msg)],
            "bits {bits}"
        );
    }
}

#[test]
fn rfc7692_7_1_2_our_compressor_stays_within_its_window() {
    // A decompressor whose window is exactly `bits` (stricter than ours) decodes what we
    // compress with `bits`.
    let msg = sample(50_000);
    for bits in 9..=15u8 {
        let mut s = server(all().with_server_max_window_bits(bits));
        s.conn.send(text(&msg)).unwrap();
        let f = parse_frames(&s.take_output());
        let mut z = f[0].1.clone();
        z.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = vec![0u8; msg.len() + 100];
        let mut inf = zlib_rs::Inflate::new(false, bits);
        let r = inf.decompress(&z, &mut out, zlib_rs::InflateFlush::SyncFlush);
        assert!(r.is_ok(), "bits {bits}: {r:?}");
        assert_eq!(
            &out[..inf.total_out() as usize],
            msg.as_bytes(),
            "bits {bits}"
        );
    }
}

#[test]
fn rfc7692_7_round_trip_with_every_parameter_combination() {
    let texts = [sample(10), sample(300), sample(20_000), String::new()];
    let bin = noise(3000);
    let mut combos = 0u32;
    for snct in [false, true] {
        for cnct in [false, true] {
            for sbits in [8u8, 9, 12, 15] {
                for cbits in [8u8, 9, 12, 15] {
                    let d = Deflate::new()
                        .with_server_no_context_takeover(snct)
                        .with_client_no_context_takeover(cnct)
                        .with_server_max_window_bits(sbits)
                        .with_client_max_window_bits(cbits)
                        .with_min_message_size(if combos.is_multiple_of(2) { 0 } else { 64 });
                    let config = Config::default()
                        .with_deflate(Some(d))
                        .with_auto_fragment_size(Some(if combos.is_multiple_of(3) {
                            100
                        } else {
                            4096
                        }));
                    let mut pair = Pair::with_configs(config.clone(), config);
                    pair.step = if combos.is_multiple_of(4) {
                        Some(7)
                    } else {
                        None
                    };
                    let mut expect = Vec::new();
                    for round in 0..2 {
                        for t in &texts {
                            pair.client.conn.send(text(t)).unwrap();
                            pair.server.conn.send(text(t)).unwrap();
                            expect.push(text(t));
                        }
                        pair.client.conn.send(Message::binary(bin.clone())).unwrap();
                        pair.server.conn.send(Message::binary(bin.clone())).unwrap();
                        expect.push(Message::binary(bin.clone()));
                        pair.client.conn.ping(Bytes::from_static(b"p")).unwrap();
                        pair.pump();
                        let got_s = messages(pair.server.take_events());
                        let got_c = messages(pair.client.take_events());
                        let ctx = format!(
                            "snct {snct} cnct {cnct} sbits {sbits} cbits {cbits} round {round}"
                        );
                        assert_eq!(got_s, expect, "{ctx}");
                        assert_eq!(got_c, expect, "{ctx}");
                        assert!(
                            pair.server.error.is_none() && pair.client.error.is_none(),
                            "{ctx}"
                        );
                        expect.clear();
                        // Idle: the sides that reset hold no state.
                        let (sc, sd) = pair.server.conn.deflate_state().unwrap();
                        let (cc, cd) = pair.client.conn.deflate_state().unwrap();
                        assert_eq!((sc && snct, sd && cnct), (false, false), "{ctx}");
                        assert_eq!((cc && cnct, cd && snct), (false, false), "{ctx}");
                        assert!(!sc || sbits > 8, "{ctx}");
                    }
                    combos += 1;
                }
            }
        }
    }
    assert_eq!(combos, 64);
}

#[test]
fn rfc7692_7_every_split_of_a_compressed_message_over_reads() {
    let msg = sample(600);
    let frame = FrameBuilder::text(&deflate(msg.as_bytes()))
        .rsv(RSV1)
        .mask([9, 8, 7, 6])
        .build();
    for split in 0..=frame.len() {
        let mut s = server(all());
        s.feed(&frame[..split]).unwrap();
        s.feed(&frame[split..]).unwrap();
        assert_eq!(messages(s.take_events()), [text(&msg)], "split {split}");
    }
}

#[test]
fn rfc7692_6_deflate_stats_count_what_went_through_deflate() {
    let msg = sample(5000);
    let mut pair = Pair::with_configs(
        Config::default().with_deflate(Some(Deflate::new())),
        Config::default().with_deflate(Some(Deflate::new())),
    );
    pair.client.conn.send(text(&msg)).unwrap();
    pair.client.conn.send(text("tiny")).unwrap(); // below the minimum size: not counted
    pair.pump();
    let c = pair.client.conn.deflate_stats().unwrap();
    let s = pair.server.conn.deflate_stats().unwrap();
    assert_eq!(
        (c.messages_compressed, c.bytes_before_compression),
        (1, 5000)
    );
    assert!(c.bytes_compressed > 0 && c.bytes_compressed < 2000, "{c:?}");
    assert_eq!(s.messages_inflated, 1);
    assert_eq!(s.bytes_received_compressed, c.bytes_compressed);
    assert_eq!(s.bytes_inflated, 5000);
    assert_eq!(Endpoint::server().conn.deflate_stats(), None);
}

// ----- property: any messages, any parameters, any read sizes ------------------------------

fn message_strategy() -> impl Strategy<Value = Message> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Message::binary),
        ".{0,300}".prop_map(|s: String| Message::text(s)),
        (0usize..20_000).prop_map(|n| Message::text(sample(n))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn rfc7692_7_messages_round_trip_with_any_parameters(
        msgs in proptest::collection::vec(message_strategy(), 1..6),
        flags in 0u8..16,
        sbits in 8u8..=15,
        cbits in 8u8..=15,
        level in 0u8..=9,
        mem in 1u8..=9,
        step in prop_oneof![Just(None), (1usize..64).prop_map(Some)],
        frag in prop_oneof![Just(None), (1usize..700).prop_map(Some)],
    ) {
        let d = Deflate::new()
            .with_server_no_context_takeover(flags & 1 != 0)
            .with_client_no_context_takeover(flags & 2 != 0)
            .with_server_max_window_bits(sbits)
            .with_client_max_window_bits(cbits)
            .with_level(level)
            .with_memory_level(mem)
            .with_min_message_size(if flags & 4 != 0 { 0 } else { 100 });
        let cfg = Config::default().with_deflate(Some(d)).with_auto_fragment_size(frag);
        let mut pair = Pair::with_configs(cfg.clone(), cfg);
        pair.step = step;
        for m in &msgs {
            pair.client.conn.send(m.clone()).unwrap();
            pair.server.conn.send(m.clone()).unwrap();
        }
        pair.client.conn.ping(Bytes::from_static(b"k")).unwrap();
        pair.pump();
        prop_assert_eq!(messages(pair.server.take_events()), msgs.clone());
        prop_assert_eq!(messages(pair.client.take_events()), msgs);
        prop_assert!(pair.server.error.is_none() && pair.client.error.is_none());
    }
}
