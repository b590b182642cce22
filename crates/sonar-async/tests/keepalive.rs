//! Pings and pongs: the peer's pings are answered whatever the application is doing (writing,
//! blocked in `send`, idle), user pings go out and resolve to the RTT, and our keepalive
//! declares a silent or stalled peer dead. On tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use sonar_async::{Config, Error, Message, WebSocket};
use sonar_core::testing::FrameBuilder;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout};

mod support;
use support::peer::{STREAM, drain_texts, expect_eof, read_until, text_payload};
use support::{
    LIMIT, PROMPT, quiet, raw_client, raw_client_first, read_frame, recv_error, settle,
    small_queues, wait_until,
};

// The application only writes and never reads: the peer's pings are still answered.
#[tokio::test(start_paused = true)]
async fn pings_are_answered_while_the_application_only_writes() {
    let (mut ws, mut peer, _driver) = raw_client(Config::default(), 64 * 1024).await;
    for i in 0..3u8 {
        peer.write_all(&FrameBuilder::ping(&[0x0d, 0x90, 0x0f, i]).build())
            .await
            .unwrap();
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        // The pong and our message, in either order.
        let mut seen_pong = false;
        let mut seen_text = false;
        for _ in 0..2 {
            let (b0, payload) = timeout(Duration::from_secs(1), read_frame(&mut peer))
                .await
                .unwrap();
            match b0 {
                0x8a => {
                    assert_eq!(payload, [0x0d, 0x90, 0x0f, i]);
                    seen_pong = true;
                }
                0x81 => {
                    assert_eq!(payload, format!("m{i}").as_bytes());
                    seen_text = true;
                }
                other => panic!("unexpected frame {other:#04x}"),
            }
        }
        assert!(seen_pong && seen_text);
    }
}

/// How a test's writer sends: `WebSocket::send` or the `Sink`.
#[derive(Clone, Copy, Debug)]
enum Via {
    Send,
    Sink,
}

impl Via {
    async fn send(self, ws: &mut WebSocket, m: Message) -> Result<(), Error> {
        match self {
            Via::Send => ws.send(m).await,
            Via::Sink => SinkExt::send(ws, m).await,
        }
    }
}

// The application only sends and is blocked on a full queue (the peer does not read) when
// the peer sends a Ping: the wake-up goes to the waiting writer, which reads it, and once the
// peer reads again the Pong comes right behind what was queued (keepalive off, so no keepalive
// deadline can rescue a lost wake-up). The same through `send` and through the `Sink`.
#[tokio::test(start_paused = true)]
async fn ping_arriving_while_send_or_sink_is_blocked_is_answered() {
    for via in [Via::Send, Via::Sink] {
        let (mut ws, mut peer, _driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
        let watch = ws.sender();
        // Unconstrained: tokio's cooperative budget must not hand the keeper a spurious
        // wake-up that would hide a lost one.
        let writer = tokio::spawn(tokio::task::unconstrained(async move {
            for i in 0..STREAM {
                via.send(&mut ws, Message::text(text_payload(i)))
                    .await
                    .unwrap();
            }
            ws
        }));
        wait_until("bytes wait for the peer", || watch.buffered_amount() > 0).await;
        assert!(!writer.is_finished(), "{via:?}: the writer waits for room");
        peer.write_all(&FrameBuilder::ping(b"p1").build())
            .await
            .unwrap();
        wait_until("the ping is read", || watch.stats().pings_received == 1).await;
        let mut next = 0;
        let pong = timeout(PROMPT, read_until(&mut peer, 0x8a, &mut next))
            .await
            .expect("the ping is answered once the peer reads");
        assert_eq!(pong, b"p1", "{via:?}");
        // About 8 messages were queued or in the pipe when the ping came: the pong goes out
        // right behind them, not after the whole stream.
        assert!(
            next <= 16,
            "{via:?}: pong only after {next} of {STREAM} messages"
        );
        drain_texts(&mut peer, next).await;
        let _ws = writer.await.unwrap();
    }
}

// Same as above without any blocked writer: nobody waits, so the hub wakes the keeper, which
// answers (control test for the one above).
#[tokio::test(start_paused = true)]
async fn ping_is_answered_while_the_application_is_idle() {
    let (_ws, mut peer, _driver) = raw_client(quiet(), 4 * 1024).await;
    settle().await;
    peer.write_all(&FrameBuilder::ping(b"p1").build())
        .await
        .unwrap();
    let (b0, pong) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
    assert_eq!((b0, pong.as_slice()), (0x8a, &b"p1"[..]));
}

// Default configuration, a sender streaming without end (always waiting for room) and a peer
// that reads everything quickly and sends one Ping: the Pong comes within a second, not with
// our own keepalive ping ~20 s later (more than a typical peer's pong timeout).
#[tokio::test(start_paused = true)]
async fn ping_is_answered_while_streaming_at_line_rate() {
    let (mut ws, mut peer, _driver) = raw_client(small_queues(Config::default()), 4 * 1024).await;
    let watch = ws.sender();
    let writer = tokio::spawn(tokio::task::unconstrained(async move {
        // Far more than the peer reads in the 30 s the test allows.
        for i in 0..1_000_000usize {
            if ws
                .send(Message::text(text_payload(i % 1000)))
                .await
                .is_err()
            {
                break;
            }
        }
    }));
    wait_until("bytes wait for the peer", || watch.buffered_amount() > 0).await;
    peer.write_all(&FrameBuilder::ping(b"p1").build())
        .await
        .unwrap();
    wait_until("the ping is read", || watch.stats().pings_received == 1).await;
    let start = tokio::time::Instant::now();
    let mut frames = 0u64;
    let latency = loop {
        let (b0, p) = read_frame(&mut peer).await;
        frames += 1;
        if b0 == 0x8a {
            assert_eq!(p, b"p1");
            break start.elapsed();
        }
        if frames.is_multiple_of(8) {
            // The peer reads ~8 MB/s of virtual time.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30) && frames < 1_000_000,
            "no pong in 30 s ({frames} frames)"
        );
    };
    writer.abort();
    assert!(latency < PROMPT, "pong after {latency:?} ({frames} frames)");
}

// Autobahn 2.10: ten pings that arrive in one read get ten pongs, in order, with their
// payloads, when the transport is writable (the auto-pong slot coalesces only while it is not).
#[tokio::test(start_paused = true)]
async fn every_ping_of_a_burst_is_answered_when_writable() {
    let mut burst = Vec::new();
    for i in 0..10u8 {
        burst.extend(FrameBuilder::ping(&[b'p', i]).build());
    }
    let (_ws, mut peer, _driver) = raw_client_first(Config::default(), 64 * 1024, &burst).await;
    for i in 0..10u8 {
        let (b0, payload) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
        assert_eq!((b0, payload.as_slice()), (0x8a, &[b'p', i][..]), "pong {i}");
    }
}

// A user ping requested while another task is blocked in `send` goes out once the peer reads.
#[tokio::test(start_paused = true)]
async fn user_ping_while_send_is_blocked_goes_out() {
    let (ws, mut peer, _driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let pinger = ws.sender();
    let watch = ws.sender();
    let mut ws = ws;
    // Unconstrained: tokio's cooperative budget must not hand the keeper a spurious wake-up
    // that would hide a lost one.
    let writer = tokio::spawn(tokio::task::unconstrained(async move {
        for i in 0..STREAM {
            ws.send(Message::text(text_payload(i))).await.unwrap();
        }
        ws
    }));
    wait_until("bytes wait for the peer", || watch.buffered_amount() > 0).await;
    assert!(!writer.is_finished(), "the writer waits for room");
    let ping = tokio::spawn(async move { pinger.ping_with(b"u1".to_vec()).await });
    wait_until("the user ping is queued", || watch.stats().pings_sent == 1).await;
    let mut next = 0;
    let payload = timeout(PROMPT, read_until(&mut peer, 0x89, &mut next))
        .await
        .expect("the user ping is written once the peer reads");
    assert_eq!(payload, b"u1");
    assert!(next <= 16, "ping only after {next} of {STREAM} messages");
    peer.write_all(&FrameBuilder::pong(b"u1").build())
        .await
        .unwrap();
    drain_texts(&mut peer, next).await;
    let _ws = writer.await.unwrap();
    timeout(PROMPT, ping).await.unwrap().unwrap().unwrap();
}

// User ping() resolves to the RTT; truncated, empty and unsolicited pongs never complete it
// wrongly or crash anything.
#[tokio::test(start_paused = true)]
async fn user_ping_survives_broken_pongs() {
    let cfg = Config::default().with_ping_interval(None);
    let (ws, mut peer, _driver) = raw_client(cfg, 64 * 1024).await;
    let pinger = ws.sender();
    let waiter = tokio::spawn(async move { pinger.ping_with(vec![0x0d, 0x90, 0x0f, 0x00]).await });
    let (b0, ping) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
    assert_eq!((b0, ping.as_slice()), (0x89, &[0x0d, 0x90, 0x0f, 0x00][..]));
    // Truncated, empty and unsolicited pongs first: ignored.
    peer.write_all(&FrameBuilder::pong(&[0x0d, 0x90, 0x0f]).build())
        .await
        .unwrap();
    peer.write_all(&FrameBuilder::pong(b"").build())
        .await
        .unwrap();
    peer.write_all(&FrameBuilder::pong(b"unsolicited").build())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished());
    peer.write_all(&FrameBuilder::pong(&[0x0d, 0x90, 0x0f, 0x00]).build())
        .await
        .unwrap();
    // The same pong again: no double completion, no crash.
    peer.write_all(&FrameBuilder::pong(&[0x0d, 0x90, 0x0f, 0x00]).build())
        .await
        .unwrap();
    let rtt = timeout(LIMIT, waiter).await.unwrap().unwrap().unwrap();
    assert_eq!(rtt, Duration::from_millis(20));
    wait_until("the last pong is read", || ws.stats().pongs_unmatched >= 4).await;
    assert_eq!(ws.stats().pongs_unmatched, 4);
}

// A peer that answers pings keeps the connection alive indefinitely, and RTT is measured.
#[tokio::test(start_paused = true)]
async fn answering_peer_stays_alive_and_rtt_is_measured() {
    let (ws, mut peer, _driver) = raw_client(Config::default(), 64 * 1024).await;
    for _ in 0..5 {
        let (b0, ping) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
        assert_eq!(b0, 0x89);
        tokio::time::sleep(Duration::from_millis(50)).await;
        peer.write_all(&FrameBuilder::pong(&ping).build())
            .await
            .unwrap();
    }
    wait_until("the last pong is read", || ws.stats().pongs_matched == 5).await;
    let rtt = ws.rtt().expect("rtt measured");
    assert!(
        rtt.last >= Duration::from_millis(50) && rtt.last < Duration::from_millis(60),
        "{rtt:?}"
    );
    assert!(ws.close_status().is_none(), "still open");
    assert_eq!(ws.stats().pongs_matched, 5);
}

// A peer that stops answering pings is declared dead within ping interval + pong timeout,
// gets a best-effort Close 1011, and the application sees a timeout error.
#[tokio::test(start_paused = true)]
async fn silent_peer_is_declared_dead_within_interval_plus_timeout() {
    let cfg = Config::default()
        .with_ping_interval(Some(Duration::from_secs(20)))
        .with_pong_timeout(Some(Duration::from_secs(20)));
    let start = Instant::now();
    let (mut ws, mut peer, _driver) = raw_client(cfg, 64 * 1024).await;
    let err = recv_error(&mut ws).await;
    let elapsed = start.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(matches!(err, Error::Keepalive(_)));
    assert!(elapsed >= Duration::from_secs(40), "{elapsed:?}");
    assert!(elapsed <= Duration::from_secs(41), "{elapsed:?}");
    // What the peer saw: one keepalive ping (8 printable bytes), then Close 1011.
    let (b0, ping) = read_frame(&mut peer).await;
    assert_eq!(b0, 0x89);
    assert_eq!(ping.len(), 8);
    assert!(ping.iter().all(|b| (0x21..=0x7e).contains(b)));
    let (b0, close) = read_frame(&mut peer).await;
    assert_eq!(b0, 0x88);
    assert_eq!(&close[..2], &1011u16.to_be_bytes());
    assert_eq!(&close[2..], b"keepalive ping timeout");
    // And the transport is closed without waiting for the peer's Close.
    expect_eof(&mut peer, "after Close 1011").await;
}

// K-13: the peer stops reading; once our writes make no progress for write_stall_timeout
// (20 s) the connection is declared dead with WriteStalled, not hung forever.
#[tokio::test(start_paused = true)]
async fn write_stall_is_detected() {
    let (ws, peer, _driver) = raw_client(Config::default(), 64 * 1024).await;
    let mut ws = ws;
    let start = Instant::now();
    // 1 MiB into a 64 KiB pipe that nobody drains.
    ws.send(Message::binary(Bytes::from(vec![7u8; 1 << 20])))
        .await
        .unwrap();
    let err = recv_error(&mut ws).await;
    let elapsed = start.elapsed();
    assert!(
        matches!(
            err,
            Error::Keepalive(sonar_async::DeadReason::WriteStalled { .. })
        ),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_secs(20) && elapsed <= Duration::from_secs(21),
        "{elapsed:?}"
    );
    drop(peer);
}
