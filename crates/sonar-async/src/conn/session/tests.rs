//! The session on virtual time, without an executor or a transport: the peer's bytes go
//! in through the read buffers, and what would be written is taken from `outbound`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use super::*;
use bytes::Buf;
use sonar_core::testing::FrameBuilder;

const KEY: [u8; 4] = [1, 2, 3, 4];

fn server(config: Config) -> Session {
    let conn = Connection::server(super::super::codec_config(&config, None));
    Session::new(conn, &config, 7, BytesMut::new())
}

fn no_keepalive() -> Config {
    Config::default()
        .with_ping_interval(None)
        .with_pong_timeout(None)
}

/// The peer's bytes arrive in one read.
fn receive(s: &mut Session, now: Duration, bytes: &[u8]) {
    assert!(s.wants_read(), "the session does not want to read");
    let (buf, _, _) = s.read_buffers();
    buf.extend_from_slice(bytes);
    s.handle_read(now, Ok(bytes.len()));
}

/// One full round of steps without I/O, repeated while one made progress (bounded).
fn settle(s: &mut Session, now: Duration) {
    for _ in 0..32 {
        let mut progress = s.handle_input(now);
        progress |= s.handle_timeout(now);
        progress |= s.poll_keepalive(now);
        progress |= s.poll_events(now, || now);
        progress |= s.commit_failure(now);
        if !progress {
            return;
        }
    }
    panic!("the session did not settle");
}

/// Everything the transport would write now (the transport takes it all).
fn written(s: &mut Session, now: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    while s.wants_write() {
        let mut o = s.outbound();
        let n = o.chunk().len();
        out.extend_from_slice(o.chunk());
        o.advance(n);
        s.wrote(now, n);
    }
    s.write_stopped(now, false);
    s.poll_events(now, || now);
    s.flushed();
    out
}

fn message(s: &mut Session, now: Duration) -> Option<Message> {
    match s.take_message(|| now) {
        Some(Some(Ok(m))) => Some(m),
        _ => None,
    }
}

#[test]
fn handshake_leftover_bytes_are_the_first_message() {
    let config = no_keepalive();
    let conn = Connection::server(super::super::codec_config(&config, None));
    let leftover = BytesMut::from(&FrameBuilder::text(b"early").mask(KEY).build()[..]);
    let mut s = Session::new(conn, &config, 7, leftover);
    assert!(!s.wants_read(), "buffered input is parsed before any read");
    settle(&mut s, Duration::ZERO);
    assert_eq!(
        message(&mut s, Duration::ZERO),
        Some(Message::from("early"))
    );
    assert!(s.wants_read());
}

#[test]
fn a_ping_is_answered_with_a_fin_pong_of_the_same_payload() {
    let mut s = server(no_keepalive());
    let now = Duration::from_millis(5);
    receive(&mut s, now, &FrameBuilder::ping(b"abcd").mask(KEY).build());
    settle(&mut s, now);
    assert_eq!(written(&mut s, now), [0x8a, 4, b'a', b'b', b'c', b'd']);
    assert_eq!(s.stats().pings_received, 1);
}

#[test]
fn a_full_inbox_stops_reading_and_taking_a_message_resumes_it_through_the_keeper() {
    let mut s = server(no_keepalive().with_read_queue(2));
    let now = Duration::ZERO;
    let mut bytes = FrameBuilder::text(b"1").mask(KEY).build();
    bytes.extend(FrameBuilder::text(b"2").mask(KEY).build());
    bytes.extend(FrameBuilder::text(b"3").mask(KEY).build());
    receive(&mut s, now, &bytes);
    settle(&mut s, now);
    assert!(!s.wants_read(), "reading goes on with a full inbox");
    let _ = s.take_keeper_wanted();
    assert_eq!(message(&mut s, now), Some(Message::from("1")));
    assert!(
        s.take_keeper_wanted(),
        "resuming did not ask for the keeper"
    );
    settle(&mut s, now);
    assert_eq!(message(&mut s, now), Some(Message::from("2")));
    assert_eq!(message(&mut s, now), Some(Message::from("3")));
    assert!(s.wants_read());
}

#[test]
fn keepalive_pings_an_idle_peer_and_aborts_when_no_pong_comes() {
    let interval = Duration::from_secs(10);
    let timeout = Duration::from_secs(5);
    let config = Config::default()
        .with_ping_interval(Some(interval))
        .with_pong_timeout(Some(timeout));
    let mut s = server(config);
    settle(&mut s, Duration::ZERO);
    // The first ping is due one interval of inbound silence after the open.
    assert_eq!(s.next_deadline(), Some(interval));
    settle(&mut s, interval - Duration::from_millis(1));
    assert!(!s.wants_write(), "pinged before the interval");
    settle(&mut s, interval);
    // Its payload is generated: the hex of 1 ^ salt (the session's salt is 7).
    let payload = sonar_keepalive::Payload::generated(1, 7);
    let mut ping = vec![0x89, payload.as_bytes().len() as u8];
    ping.extend_from_slice(payload.as_bytes());
    assert_eq!(written(&mut s, interval), ping);
    assert_eq!(s.next_step(), TransportStep::Run);
    // The pong is timed from when the ping was written.
    let dead_at = interval + timeout;
    assert_eq!(s.next_deadline(), Some(dead_at));
    settle(&mut s, dead_at - Duration::from_millis(1));
    assert_eq!(s.next_step(), TransportStep::Run, "declared dead early");
    settle(&mut s, dead_at);
    assert_eq!(s.next_step(), TransportStep::Abort);
    assert!(matches!(s.error_now(), Some(Error::Keepalive(_))));
    // Close 1011 is queued best-effort, for the transport to write if it takes it at once.
    let close = written(&mut s, dead_at);
    assert_eq!(close.get(..4), Some(&[0x88, close[1], 0x03, 0xf3][..]));
    assert_eq!(&close[4..], b"keepalive ping timeout");
    s.finish(dead_at);
    assert!(s.is_done());
    assert_eq!(
        s.close_status().map(|c| c.code),
        Some(CloseCode::ABNORMAL),
        "a dead peer's connection ends abnormally"
    );
}

#[test]
fn a_pong_to_a_user_ping_reports_its_latency_on_the_virtual_clock() {
    let mut s = server(no_keepalive());
    let sent = Duration::from_secs(1);
    let id = s.user_ping(sent, Some(b"rtt")).expect("ping queued");
    assert_eq!(written(&mut s, sent), [0x89, 3, b'r', b't', b't']);
    let back = sent + Duration::from_millis(40);
    receive(&mut s, back, &FrameBuilder::pong(b"rtt").mask(KEY).build());
    settle(&mut s, back);
    assert_eq!(
        s.take_ping_updates(),
        vec![PingUpdate::Acked(id, Duration::from_millis(40))]
    );
    assert_eq!(s.stats().pongs_matched, 1);
}

#[test]
fn mismatched_and_unsolicited_pongs_are_counted_and_leave_a_user_ping_waiting() {
    let mut s = server(no_keepalive());
    let now = Duration::from_secs(1);
    let id = s.user_ping(now, Some(b"abcd")).expect("ping queued");
    written(&mut s, now);
    let mut bytes = FrameBuilder::pong(b"abc").mask(KEY).build();
    bytes.extend(FrameBuilder::pong(b"").mask(KEY).build());
    receive(&mut s, now, &bytes);
    settle(&mut s, now);
    assert!(s.take_ping_updates().is_empty());
    assert_eq!(s.stats().pongs_unmatched, 2);
    assert_eq!(s.next_step(), TransportStep::Run);
    // When the connection ends the waiter fails once, not twice.
    s.finish(now);
    assert_eq!(s.take_ping_updates(), vec![PingUpdate::Failed(id)]);
}

#[test]
fn a_protocol_error_waits_for_the_reader_before_its_close_1002_goes_out() {
    let mut s = server(no_keepalive());
    let now = Duration::ZERO;
    let mut bytes = FrameBuilder::text(b"before").mask(KEY).build();
    bytes.extend(
        FrameBuilder::text(b"x")
            .rsv(sonar_core::RSV2)
            .mask(KEY)
            .build(),
    );
    receive(&mut s, now, &bytes);
    settle(&mut s, now);
    assert!(matches!(s.lifecycle(), Lifecycle::Failing { .. }));
    assert!(written(&mut s, now).is_empty(), "the Close went out early");
    assert_eq!(message(&mut s, now), Some(Message::from("before")));
    assert!(matches!(
        s.take_message(|| now),
        Some(Some(Err(Error::Protocol(_))))
    ));
    settle(&mut s, now);
    assert_eq!(written(&mut s, now), [0x88, 2, 0x03, 0xea]);
    assert!(s.is_closing());
}

#[test]
fn a_protocol_error_sends_its_close_after_the_grace_when_the_reader_never_comes() {
    let mut s = server(no_keepalive());
    receive(
        &mut s,
        Duration::ZERO,
        &FrameBuilder::text(b"x")
            .rsv(sonar_core::RSV3)
            .mask(KEY)
            .build(),
    );
    settle(&mut s, Duration::ZERO);
    assert_eq!(s.next_deadline(), Some(FAIL_GRACE));
    settle(&mut s, FAIL_GRACE - Duration::from_millis(1));
    assert!(!s.wants_write());
    settle(&mut s, FAIL_GRACE);
    assert_eq!(written(&mut s, FAIL_GRACE), [0x88, 2, 0x03, 0xea]);
}

#[test]
fn the_peers_close_is_echoed_and_then_the_transport_closes_with_its_status() {
    let mut s = server(no_keepalive());
    let now = Duration::ZERO;
    receive(
        &mut s,
        now,
        &FrameBuilder::close(4000, b"bye").mask(KEY).build(),
    );
    settle(&mut s, now);
    assert!(s.is_closing());
    // The code is echoed, not the reason.
    assert_eq!(written(&mut s, now), [0x88, 2, 0x0f, 0xa0]);
    assert_eq!(s.next_step(), TransportStep::Close);
    s.finish(now);
    let status = s.close_status().expect("a close status");
    assert_eq!(
        (status.code.as_u16(), status.reason.as_str(), status.by_peer),
        (4000, "bye", true)
    );
    assert!(s.result().is_ok());
}

#[test]
fn dropping_every_handle_closes_with_1000() {
    let mut s = server(no_keepalive());
    s.writer_cloned();
    s.writer_dropped(Duration::ZERO);
    s.writer_dropped(Duration::ZERO);
    assert!(!s.is_closing(), "closed while the reader lives");
    s.reader_dropped(Duration::ZERO);
    assert!(s.is_closing());
    assert_eq!(written(&mut s, Duration::ZERO), [0x88, 2, 0x03, 0xe8]);
}

#[test]
fn our_close_times_out_when_the_peer_never_answers() {
    let mut s = server(no_keepalive());
    s.close(Duration::ZERO, Some(CloseFrame::new(CloseCode::NORMAL)));
    assert!(s.take_keeper_wanted());
    written(&mut s, Duration::ZERO);
    settle(&mut s, Duration::ZERO);
    let timeout = s
        .next_deadline()
        .expect("the close handshake has a deadline");
    assert!(timeout > Duration::ZERO);
    settle(&mut s, timeout - Duration::from_millis(1));
    assert_eq!(
        s.next_step(),
        TransportStep::Run,
        "closed before the timeout"
    );
    settle(&mut s, timeout);
    assert_eq!(s.next_step(), TransportStep::Close);
    s.finish(timeout);
    assert!(matches!(s.close_result(), Err(Error::CloseTimeout)));
}

#[test]
fn sends_during_a_burst_are_batched_until_the_inbox_is_empty() {
    let mut s = server(no_keepalive());
    let now = Duration::ZERO;
    let mut bytes = FrameBuilder::text(b"a").mask(KEY).build();
    bytes.extend(FrameBuilder::text(b"b").mask(KEY).build());
    receive(&mut s, now, &bytes);
    settle(&mut s, now);
    let a = message(&mut s, now).expect("a");
    s.queue(|c| c.send(a)).expect("queued");
    assert!(
        !s.write_at_once(WriteWhen::Now),
        "wrote while a message waits"
    );
    assert!(
        s.take_keeper_wanted(),
        "a deferred write must ask for the keeper"
    );
    let b = message(&mut s, now).expect("b");
    s.queue(|c| c.send(b)).expect("queued");
    assert!(s.write_at_once(WriteWhen::Now));
    assert_eq!(written(&mut s, now), [0x81, 1, b'a', 0x81, 1, b'b']);
}

#[test]
fn the_end_of_the_peers_stream_ends_the_session_abnormally_once_messages_are_taken() {
    let mut s = server(no_keepalive());
    let now = Duration::ZERO;
    receive(&mut s, now, &FrameBuilder::text(b"last").mask(KEY).build());
    settle(&mut s, now);
    assert!(s.wants_read());
    s.handle_read(now, Ok(0));
    settle(&mut s, now);
    assert_eq!(message(&mut s, now), Some(Message::from("last")));
    assert_eq!(s.next_step(), TransportStep::Close);
    s.finish(now);
    assert!(matches!(
        s.take_message(|| now),
        Some(Some(Err(Error::AbnormalClosure)))
    ));
    assert!(matches!(s.take_message(|| now), Some(None)));
}

#[test]
fn an_idle_session_lets_go_of_the_last_frames_memory_and_its_queues() {
    let mut s = server(no_keepalive());
    let now = Duration::ZERO;
    let payload = vec![b'x'; 1024];
    receive(
        &mut s,
        now,
        &FrameBuilder::binary(&payload).mask(KEY).build(),
    );
    settle(&mut s, now);
    let m = message(&mut s, now).expect("the message");
    s.queue(|c| c.send(Message::from("reply"))).expect("queued");
    assert_eq!(written(&mut s, now), b"\x81\x05reply");
    let received = m.into_payload();
    assert_eq!(received, payload);
    assert!(
        !received.is_unique(),
        "the read buffer still shares the frame's allocation"
    );
    assert!(s.inbox.capacity() > 0);

    s.shrink_to_fit();
    assert!(received.is_unique(), "the read buffer let go of it");
    assert_eq!(s.inbox.capacity(), 0);
    assert_eq!(s.ping_updates.capacity(), 0);

    // The next message allocates again.
    receive(&mut s, now, &FrameBuilder::text(b"again").mask(KEY).build());
    settle(&mut s, now);
    assert_eq!(message(&mut s, now), Some(Message::from("again")));
}

#[test]
fn shrinking_keeps_a_message_not_yet_taken_and_a_frame_in_progress() {
    let mut s = server(no_keepalive());
    let now = Duration::ZERO;
    let frame = FrameBuilder::text(b"held").mask(KEY).build();
    let second = FrameBuilder::text(b"second half").mask(KEY).build();
    let mut bytes = frame.to_vec();
    bytes.extend_from_slice(&second[..5]);
    receive(&mut s, now, &bytes);
    settle(&mut s, now);
    s.shrink_to_fit();
    assert_eq!(&s.read_buf[..], &second[..5], "the partial frame stays");
    receive(&mut s, now, &second[5..]);
    settle(&mut s, now);
    assert_eq!(message(&mut s, now), Some(Message::from("held")));
    assert_eq!(message(&mut s, now), Some(Message::from("second half")));
}

#[test]
fn more_input_started_only_once_bytes_of_the_next_frame_are_in() {
    let mut s = server(no_keepalive());
    let now = Duration::ZERO;
    let first = FrameBuilder::binary(&[7; 300]).mask(KEY).build();
    receive(&mut s, now, &first);
    settle(&mut s, now);
    assert!(!s.inbox_is_empty());
    assert!(
        !s.more_input_started(),
        "a closed loop: nothing after the message"
    );
    let second = FrameBuilder::binary(&[8; 300]).mask(KEY).build();
    receive(&mut s, now, &second[..3]);
    settle(&mut s, now);
    assert!(s.more_input_started(), "a partial header is the next frame");
    receive(&mut s, now, &second[3..10]);
    settle(&mut s, now);
    assert!(
        s.more_input_started(),
        "a parsed header waiting for its payload"
    );
}
