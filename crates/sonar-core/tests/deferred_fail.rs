//! `Config::defer_fail_close`: a protocol error stops input at once, but the failing Close
//! waits for `commit_failure`, so answers to the messages before the error can go out first.
#![allow(clippy::unwrap_used, missing_docs)]

use bytes::{Buf, BytesMut};
use sonar_core::testing::FrameBuilder;
use sonar_core::{
    CloseCode, CloseFrame, Config, Connection, Event, Message, ProtocolError, SendError,
};

fn server() -> Connection {
    Connection::server(Config::default().with_defer_fail_close(true))
}

fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut out = conn.outbound();
    out.copy_to_bytes(out.remaining()).to_vec()
}

fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

fn masked(f: FrameBuilder) -> Vec<u8> {
    f.mask([0, 0, 0, 0]).build()
}

#[test]
fn answers_before_the_error_go_out_before_the_failing_close() {
    let mut conn = server();
    let mut input = BytesMut::new();
    input.extend(masked(FrameBuilder::text(b"one")));
    input.extend(masked(FrameBuilder::text(b"two")));
    input.extend(masked(FrameBuilder::new(0x03, b""))); // reserved opcode
    input.extend(masked(FrameBuilder::ping(b"after"))); // never processed (C-25)
    let err = conn.handle_read(&mut input).unwrap_err();
    assert!(matches!(err, ProtocolError::ReservedOpcode(_)));
    assert!(conn.failure_pending());
    assert_eq!(
        events(&mut conn),
        [
            Event::Message(Message::from("one")),
            Event::Message(Message::from("two"))
        ]
    );
    // Nothing written yet: no Close, and no pong for the ping after the error.
    assert!(!conn.wants_write());
    // Input after the error is discarded; the error is sticky.
    let mut more = BytesMut::from(&masked(FrameBuilder::text(b"three"))[..]);
    assert_eq!(conn.handle_read(&mut more), Err(err.clone()));
    assert!(events(&mut conn).is_empty());
    // The application answers; control frames are refused meanwhile.
    conn.send(Message::from("one")).unwrap();
    conn.send(Message::from("two")).unwrap();
    assert_eq!(conn.ping("x".into()), Err(SendError::Closing));
    conn.commit_failure();
    assert!(!conn.failure_pending());
    assert_eq!(
        drain(&mut conn),
        [
            &[0x81, 3][..],
            b"one",
            &[0x81, 3],
            b"two",
            &[0x88, 2, 0x03, 0xea]
        ]
        .concat()
    );
    // Server: the transport is closed once the failing Close is written.
    assert_eq!(events(&mut conn), [Event::CloseTransport]);
    assert_eq!(conn.send(Message::from("late")), Err(SendError::Closed));
}

#[test]
fn commit_uses_the_error_code_even_when_the_app_closes() {
    let mut conn = server();
    // Invalid UTF-8 in a text frame: 1007.
    let mut input = BytesMut::from(&masked(FrameBuilder::text(&[0xff]))[..]);
    assert!(conn.handle_read(&mut input).is_err());
    // The application's close is turned into the failing Close with the error's code.
    conn.close(Some(CloseFrame::new(CloseCode::NORMAL)))
        .unwrap();
    assert_eq!(drain(&mut conn), [0x88, 2, 0x03, 0xef]);
    // Committing again is a no-op.
    conn.commit_failure();
    assert!(!conn.wants_write());
}

#[test]
fn eof_while_pending_commits_and_closes() {
    let mut conn = server();
    let mut input = BytesMut::from(&masked(FrameBuilder::binary(b"x").rsv(0x40))[..]);
    assert!(conn.handle_read(&mut input).is_err());
    conn.handle_eof();
    assert!(!conn.failure_pending());
    // The peer is gone: the transport is closed at once, whatever is queued.
    assert!(events(&mut conn).contains(&Event::CloseTransport));
}

#[test]
fn without_the_option_the_close_is_queued_at_once_and_unsent_data_dropped() {
    let mut conn = Connection::server(Config::default());
    conn.send(Message::from("queued before the error")).unwrap();
    let mut input = BytesMut::from(&masked(FrameBuilder::new(0x0b, b""))[..]);
    assert!(conn.handle_read(&mut input).is_err());
    assert!(!conn.failure_pending());
    assert_eq!(drain(&mut conn), [0x88, 2, 0x03, 0xea]);
    conn.commit_failure(); // no-op
    assert!(!conn.wants_write());
}
