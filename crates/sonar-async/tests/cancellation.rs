//! Cancel safety: `recv`, `next` and `send` dropped in a `select!` (or a `recv` future kept and
//! not polled) lose no message, queue nothing half, strand no other task, and leave the
//! peer's pings answered (by the keeper within `TAKEOVER_DELAY` when nobody drives).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sonar_async::{Config, Message, WsReader};
use sonar_core::testing::FrameBuilder;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

mod support;
use support::peer::text_payload;
use support::{
    LIMIT, PROMPT, pair, quiet, raw_client, read_frame, recv_message, settle, small_queues,
};

// recv() is cancel safe: racing it against a timer in select! loses no message.
#[tokio::test(start_paused = true)]
async fn recv_is_cancel_safe_under_select() {
    let (mut ws, mut peer, _driver) = raw_client(Config::default(), 64 * 1024).await;
    let writer = tokio::spawn(async move {
        for i in 0..100u32 {
            peer.write_all(&FrameBuilder::binary(&i.to_be_bytes()).build())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        peer
    });
    let mut got = Vec::new();
    let mut cancelled = 0;
    while got.len() < 100 {
        tokio::select! {
            m = ws.recv() => got.push(m.unwrap().unwrap()),
            () = tokio::time::sleep(Duration::from_millis(2)) => cancelled += 1,
        }
        assert!(cancelled < 10_000, "bounded");
    }
    assert!(cancelled > 0, "the race was exercised");
    for (i, m) in got.into_iter().enumerate() {
        assert_eq!(
            m,
            Message::binary(Bytes::copy_from_slice(&(i as u32).to_be_bytes()))
        );
    }
    drop(writer.await.unwrap());
}

// send() is cancel safe: a send cancelled while the queue is full has not queued its
// message; every send that returned Ok is delivered, in order.
#[tokio::test(start_paused = true)]
async fn send_is_cancel_safe_under_select() {
    let cfg = Config::default().with_write_queue(2);
    let (mut ws, mut peer, _driver) = raw_client(cfg, 64 * 1024).await;
    // Big messages fill the pipe, the connection's write buffer and then the queue.
    let big = |i: u8| Message::binary(Bytes::from(vec![i; 300 * 1024]));
    let mut sent = Vec::new();
    let mut cancelled = None;
    for i in 0..20u8 {
        match timeout(Duration::from_millis(100), ws.send(big(i))).await {
            Ok(r) => {
                r.unwrap();
                sent.push(i);
            }
            Err(_) => {
                cancelled = Some(i);
                break;
            }
        }
    }
    let cancelled = cancelled.expect("the queue filled up");
    let sender = tokio::spawn(async move {
        ws.send(Message::text("marker")).await.unwrap();
        ws
    });
    let mut seen = Vec::new();
    loop {
        let (b0, payload) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
        if b0 == 0x81 {
            assert_eq!(payload, b"marker");
            break;
        }
        // Auto-fragmentation (64 KiB): a binary start frame (0x02, FIN unset) begins each
        // message, continuations (0x00 / 0x80) carry the rest.
        match b0 & 0x0f {
            0x2 => seen.push(payload[0]),
            0x0 => {}
            other => panic!("unexpected opcode {other:#x}"),
        }
        assert!(seen.len() <= 20);
    }
    assert_eq!(seen, sent, "cancelled message {cancelled} must not be sent");
    drop(sender.await.unwrap());
}

// Two clones blocked in send; one is cancelled (its message is not queued). The other still
// finishes once the peer reads, and the order of what was sent is kept.
#[tokio::test(start_paused = true)]
async fn cancelled_send_does_not_strand_other_writers() {
    let (ws, mut peer, _driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let mut a = ws.sender();
    let mut b = ws.sender();
    let mut i = 0;
    // Fill until a send waits.
    while timeout(
        Duration::from_millis(10),
        a.send(Message::text(text_payload(i))),
    )
    .await
    .is_ok()
    {
        i += 1;
        assert!(i < 100, "the queue must fill");
    }
    let queued = i; // message `i` was cancelled, not queued
    let other = tokio::spawn(async move {
        b.send(Message::text(text_payload(1000))).await.unwrap();
        b
    });
    settle().await;
    assert!(!other.is_finished());
    // Cancel a second waiting send of `a` (with `b` also waiting).
    assert!(
        timeout(
            Duration::from_millis(10),
            a.send(Message::text("cancelled"))
        )
        .await
        .is_err()
    );
    let mut next = 0;
    let drain = async {
        while next < queued {
            let (b0, payload) = read_frame(&mut peer).await;
            assert_eq!(b0, 0x81);
            assert_eq!(payload, text_payload(next).as_bytes());
            next += 1;
        }
        read_frame(&mut peer).await
    };
    let (b0, last) = timeout(PROMPT, drain)
        .await
        .expect("the other writer proceeds");
    assert_eq!((b0, last), (0x81, text_payload(1000).into_bytes()));
    let _b = timeout(PROMPT, other).await.unwrap().unwrap();
    drop(ws);
}

// `recv` and `next()` drive the connection themselves. One cancelled by a `select!` (here a
// timeout) takes no hand-off: the keeper's watch answers the peer's pings within
// `TAKEOVER_DELAY` while the application neither reads nor writes.
#[tokio::test(start_paused = true)]
async fn pings_are_answered_after_a_cancelled_recv() {
    use futures_util::StreamExt;
    let (mut ws, mut peer, _driver) = raw_client(Config::default(), 64 * 1024).await;
    for i in 0..4u8 {
        let cancelled = if i % 2 == 0 {
            timeout(Duration::from_millis(50), ws.recv()).await.is_err()
        } else {
            timeout(Duration::from_millis(50), ws.next()).await.is_err()
        };
        assert!(cancelled, "nothing to receive yet");
        peer.write_all(&FrameBuilder::ping(&[7, i]).build())
            .await
            .unwrap();
        let sent = tokio::time::Instant::now();
        // Far below the keepalive interval (20 s): only the keeper taking over the hand-off of
        // the transport's wake-up can answer in time.
        let (b0, payload) = timeout(Duration::from_secs(1), read_frame(&mut peer))
            .await
            .expect("the ping is answered while nobody reads");
        assert_eq!(b0, 0x8a);
        assert_eq!(payload, [7, i]);
        let waited = sent.elapsed();
        assert!(
            waited <= 2 * sonar_async::TAKEOVER_DELAY,
            "ping {i} answered after {waited:?}"
        );
    }
    // The messages are still there for the next reader.
    peer.write_all(&FrameBuilder::text(b"after").build())
        .await
        .unwrap();
    let m = recv_message(&mut ws).await;
    assert_eq!(m, Message::text("after"));
}

// A `recv` future polled once and then kept (pinned in a loop, its task busy elsewhere): the
// transport's wake-up is handed to its task, which does not drive, so the keeper's watch
// takes the hand-off over and answers the peer's ping within `TAKEOVER_DELAY`.
#[tokio::test(start_paused = true)]
async fn ping_is_answered_while_a_kept_recv_future_is_not_polled() {
    let (ws, mut peer, _driver) = raw_client(quiet(), 64 * 1024).await;
    let (mut rd, _wr) = ws.into_split();
    // Let the keeper run its first round and go to sleep.
    settle().await;
    let waited = ping_wait_with_a_kept_recv(&mut rd, &mut peer, b"k").await;
    assert!(
        waited <= 2 * sonar_async::TAKEOVER_DELAY,
        "the keeper took over after {waited:?}"
    );
}

/// Polls a `recv` future once and keeps it (the application is busy with something else:
/// `recv` is neither polled again nor dropped), sends a ping from the peer, and returns how
/// long the pong took.
async fn ping_wait_with_a_kept_recv(
    rd: &mut WsReader,
    peer: &mut DuplexStream,
    payload: &[u8],
) -> Duration {
    let mut recv = Box::pin(rd.recv());
    assert!(futures_util::poll!(&mut recv).is_pending());
    peer.write_all(&FrameBuilder::ping(payload).build())
        .await
        .unwrap();
    let sent = tokio::time::Instant::now();
    let (b0, p) = timeout(PROMPT, read_frame(peer))
        .await
        .expect("the keeper answers the ping");
    assert_eq!((b0, p.as_slice()), (0x8a, payload));
    sent.elapsed()
}

// After a busy spell, in which the application took every hand-off and the keeper's watch
// backed off to checks `WATCH_INTERVAL_MAX` apart, an application that stops polling its
// kept `recv` still has the peer's ping answered within twice `WATCH_INTERVAL_MAX` (the
// spell is long enough for uncapped doubling gaps to overshoot that).
#[tokio::test(start_paused = true)]
async fn ping_is_answered_when_a_busy_application_stops_polling_recv() {
    use sonar_async::WATCH_INTERVAL_MAX;
    let (ws, mut peer, _driver) = raw_client(quiet(), 64 * 1024).await;
    let (mut rd, _wr) = ws.into_split();
    const MESSAGES: u8 = 100;
    let writer = tokio::spawn(async move {
        for i in 0..MESSAGES {
            tokio::time::sleep(Duration::from_millis(7)).await;
            peer.write_all(&FrameBuilder::binary(&[i]).build())
                .await
                .unwrap();
        }
        peer
    });
    for i in 0..MESSAGES {
        let m = timeout(PROMPT, rd.recv()).await.expect("a message in time");
        assert_eq!(m.unwrap().unwrap(), Message::binary(vec![i]));
    }
    let mut peer = writer.await.unwrap();
    let waited = ping_wait_with_a_kept_recv(&mut rd, &mut peer, b"late").await;
    assert!(
        waited <= 2 * WATCH_INTERVAL_MAX,
        "the keeper took over after {waited:?}"
    );
}

// recv cancelled repeatedly by a timer in a `select!` loop that also sends on each tick:
// no message is lost, pings are answered, every tick's message reaches the peer.
#[tokio::test(start_paused = true)]
async fn next_cancelled_by_a_ticking_select_loses_nothing_and_pings_are_answered() {
    let (mut ws, mut peer, _driver) = raw_client(quiet(), 64 * 1024).await;
    let app = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(7));
        let mut received = Vec::new();
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                m = ws.next() => match m {
                    Some(m) => received.push(m.unwrap()),
                    None => break,
                },
                _ = tick.tick() => {
                    ticks += 1;
                    assert!(ticks < 100_000, "the peer never closed");
                    if ticks <= 100 {
                        SinkExt::send(&mut ws, Message::text(format!("t{ticks}"))).await.unwrap();
                    }
                }
            }
        }
        (received, ticks)
    });
    let mut ticks_seen = 0u32;
    let mut pongs = 0u32;
    for i in 0..100u32 {
        peer.write_all(&FrameBuilder::text(format!("p{i}").as_bytes()).build())
            .await
            .unwrap();
        if i % 3 == 0 {
            peer.write_all(&FrameBuilder::ping(&i.to_be_bytes()).build())
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Collect what the application wrote: 100 tick messages and 34 pongs, in tick order.
    let collect = async {
        while ticks_seen < 100 || pongs < 34 {
            let (b0, p) = read_frame(&mut peer).await;
            match b0 {
                0x81 => {
                    ticks_seen += 1;
                    assert_eq!(p, format!("t{ticks_seen}").into_bytes());
                }
                0x8a => {
                    assert_eq!(p, (pongs * 3).to_be_bytes());
                    pongs += 1;
                }
                other => panic!("unexpected frame {other:#04x}"),
            }
        }
    };
    timeout(Duration::from_secs(5), collect)
        .await
        .expect("all ticks and pongs");
    peer.write_all(&FrameBuilder::close(1000, b"").build())
        .await
        .unwrap();
    let (b0, _) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
    assert_eq!(b0, 0x88);
    peer.shutdown().await.unwrap();
    let (received, _) = timeout(PROMPT, app).await.unwrap().unwrap();
    let want: Vec<Message> = (0..100).map(|i| Message::text(format!("p{i}"))).collect();
    assert_eq!(received, want);
}

// `recv` cancelled over and over (a biased select with `yield_now`) on a multi-thread runtime,
// while the peer streams 20,000 messages and pings: every message arrives once, in order,
// every ping is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_cancelled_constantly_loses_nothing() {
    const N: u32 = 20_000;
    let run = async {
        let (client, mut server) = pair(quiet(), quiet(), 16 * 1024).await;
        let (mut rd, _wr) = client.into_split();
        let reader = tokio::spawn(async move {
            let mut next = 0u32;
            let mut cancelled = 0u64;
            while next < N {
                tokio::select! {
                    biased;
                    m = rd.recv() => {
                        let m = m.unwrap().unwrap();
                        assert_eq!(m.payload().as_ref(), next.to_be_bytes());
                        next += 1;
                    }
                    () = tokio::task::yield_now() => cancelled += 1,
                }
            }
            (rd, cancelled)
        });
        let pinger = server.sender();
        let pings = tokio::spawn(async move {
            let mut n = 0;
            for _ in 0..200 {
                pinger.ping().await.unwrap();
                n += 1;
            }
            n
        });
        for i in 0..N {
            server
                .send(Message::binary(Bytes::copy_from_slice(&i.to_be_bytes())))
                .await
                .unwrap();
        }
        let (_rd, cancelled) = reader.await.unwrap();
        assert_eq!(pings.await.unwrap(), 200);
        assert!(cancelled > 0, "the select never cancelled recv");
    };
    timeout(Duration::from_secs(120), run)
        .await
        .expect("no stall");
}
