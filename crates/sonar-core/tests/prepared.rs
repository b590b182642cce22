//! Prepared messages: one frame for many connections, byte-identical to what `send` queues,
//! shared rather than copied, compressed once per compressor settings without context
//! takeover, and masked per connection in the client role.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::{Buf, Bytes};
use sonar_core::testing::{FixedMask, PeerInflate, parse_frames};
use sonar_core::{Config, Connection, Deflate, Message, OpCode, PreparedMessage, RSV1, SendError};

/// Everything a connection has queued, as written to its transport.
fn wire(conn: &mut Connection) -> Vec<u8> {
    let mut out = conn.outbound();
    out.copy_to_bytes(out.remaining()).to_vec()
}

fn server(config: Config) -> Connection {
    Connection::server(config)
}

fn deflate_server(d: Deflate) -> Connection {
    server(Config::default().with_deflate(Some(d)))
}

/// Text that compresses well.
fn compressible(len: usize) -> String {
    "sonar pub/sub tick {\"price\": 101.25} "
        .chars()
        .cycle()
        .take(len)
        .collect()
}

fn messages() -> Vec<Message> {
    vec![
        Message::from("tick"),
        Message::text(String::new()),
        Message::binary(vec![7u8; 200]),
        Message::binary(vec![1u8; 70_000]),
    ]
}

#[test]
fn a_prepared_message_is_byte_identical_on_every_server_connection_and_to_send() {
    for message in messages() {
        let prepared = PreparedMessage::new(message.clone());
        let mut twin = server(Config::default());
        twin.send(message.clone()).unwrap();
        let expected = wire(&mut twin);
        for _ in 0..3 {
            let mut conn = server(Config::default());
            conn.send_prepared(&prepared).unwrap();
            assert_eq!(
                wire(&mut conn),
                expected,
                "{} bytes",
                message.payload().len()
            );
        }
    }
}

#[test]
fn a_prepared_message_is_queued_without_copying_its_payload() {
    let prepared = PreparedMessage::new(Message::binary(vec![3u8; 4096]));
    let mut conn = server(Config::default());
    conn.send_prepared(&prepared).unwrap();
    let mut out = conn.outbound();
    let header = out.chunk().len();
    assert_eq!(header, 4, "FIN+opcode, 126, 16-bit length");
    out.advance(header);
    assert_eq!(
        out.chunk().as_ptr(),
        prepared.message().payload().as_ptr(),
        "the queued payload is the prepared message's own bytes"
    );
}

#[test]
fn client_connections_mask_a_prepared_message_each_with_their_own_key() {
    let prepared = PreparedMessage::new("to the server");
    let keys = [[1, 2, 3, 4], [9, 8, 7, 6]];
    let frames: Vec<Vec<u8>> = keys
        .iter()
        .map(|&key| {
            let mut c = Connection::client(Config::default(), Box::new(FixedMask(key)));
            c.send_prepared(&prepared).unwrap();
            wire(&mut c)
        })
        .collect();
    assert_ne!(frames[0], frames[1]);
    for (bytes, key) in frames.iter().zip(keys) {
        let parsed = parse_frames(bytes);
        assert_eq!(parsed.len(), 1);
        let (header, payload) = &parsed[0];
        assert_eq!(header.mask, Some(key));
        assert_eq!(payload, b"to the server");
    }
    assert_eq!(
        prepared.message().payload().as_ref(),
        b"to the server",
        "masking works on a copy"
    );
}

#[test]
fn a_prepared_message_is_compressed_once_per_compressor_settings_without_context_takeover() {
    let text = compressible(2000);
    let prepared = PreparedMessage::new(Message::text(text.clone()));
    let shared = Deflate::new().with_server_no_context_takeover(true);
    let smaller_window = shared.with_server_max_window_bits(10);

    let mut same: Vec<Connection> = (0..3).map(|_| deflate_server(shared)).collect();
    let mut other = deflate_server(smaller_window);
    for conn in &mut same {
        conn.send_prepared(&prepared).unwrap();
    }
    assert_eq!(prepared.compressions(), 1);
    other.send_prepared(&prepared).unwrap();
    assert_eq!(prepared.compressions(), 2);

    let first = wire(&mut same[0]);
    for conn in &mut same[1..] {
        assert_eq!(wire(conn), first, "one compressed frame for equal settings");
    }
    for bytes in [first, wire(&mut other)] {
        let parsed = parse_frames(&bytes);
        let (header, payload) = &parsed[0];
        assert_eq!(header.rsv, RSV1);
        assert_eq!(header.opcode, OpCode::TEXT);
        assert!(
            payload.len() < text.len() / 4,
            "compressed: {}",
            payload.len()
        );
        let inflated = PeerInflate::new().message(payload);
        assert_eq!(inflated, text.as_bytes());
    }
    let stats = same[1].deflate_stats().unwrap();
    assert_eq!(
        stats.messages_compressed, 1,
        "a shared compression counts per connection"
    );
    assert_eq!(stats.bytes_before_compression, 2000);
}

#[test]
fn a_connection_with_context_takeover_compresses_a_prepared_message_itself() {
    let takeover = Deflate::new();
    let first = PreparedMessage::new(Message::text(compressible(1500)));
    let second = PreparedMessage::new(Message::text(compressible(1500)));
    let mut conn = deflate_server(takeover);
    let mut twin = deflate_server(takeover);
    for p in [&first, &second] {
        conn.send_prepared(p).unwrap();
        twin.send(p.message().clone()).unwrap();
    }
    assert_eq!(wire(&mut conn), wire(&mut twin));
    assert_eq!(
        first.compressions(),
        0,
        "nothing shared with context takeover"
    );
}

#[test]
fn a_prepared_message_below_the_minimum_size_goes_out_plain() {
    let d = Deflate::new()
        .with_server_no_context_takeover(true)
        .with_min_message_size(64);
    let prepared = PreparedMessage::new("short");
    let mut conn = deflate_server(d);
    conn.send_prepared(&prepared).unwrap();
    let parsed = parse_frames(&wire(&mut conn));
    assert_eq!(parsed[0].0.rsv, 0);
    assert_eq!(parsed[0].1, b"short");
    assert_eq!(prepared.compressions(), 0);
}

#[test]
fn auto_fragmentation_splits_a_prepared_message_as_send_does() {
    let config = Config::default().with_auto_fragment_size(Some(100));
    let plain = PreparedMessage::new(Message::binary(vec![5u8; 250]));
    let mut conn = server(config.clone());
    let mut twin = server(config.clone());
    conn.send_prepared(&plain).unwrap();
    twin.send(plain.message().clone()).unwrap();
    let bytes = wire(&mut conn);
    assert_eq!(bytes, wire(&mut twin));
    assert_eq!(parse_frames(&bytes).len(), 3);

    let d = Deflate::new().with_server_no_context_takeover(true);
    let compressed = PreparedMessage::new(Message::binary(
        (0..4000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    ));
    let mut conn = server(config.with_deflate(Some(d)));
    conn.send_prepared(&compressed).unwrap();
    let frames = parse_frames(&wire(&mut conn));
    assert!(frames.len() > 1, "the compressed payload is fragmented too");
    assert_eq!(frames[0].0.rsv, RSV1, "RSV1 on the first fragment");
    assert!(frames[1..].iter().all(|(h, _)| h.rsv == 0));
    assert!(frames.last().unwrap().0.fin);
    let joined: Vec<u8> = frames.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(
        Bytes::from(PeerInflate::new().message(&joined)),
        compressed.message().payload()
    );
}

#[test]
fn sending_a_prepared_message_after_close_fails_as_send_does() {
    let prepared = PreparedMessage::new("late");
    let mut conn = server(Config::default());
    conn.close(None).unwrap();
    assert_eq!(conn.send_prepared(&prepared), Err(SendError::Closing));
    let mut streaming = server(Config::default());
    streaming
        .send_fragment(sonar_core::DataKind::Text, Bytes::from_static(b"a"), false)
        .unwrap();
    assert_eq!(
        streaming.send_prepared(&prepared),
        Err(SendError::FragmentInProgress)
    );
}
