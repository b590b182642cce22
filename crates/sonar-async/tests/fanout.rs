//! Fan-out: a prepared message reaches every connection as the same frame, compressed once
//! for connections with equal compressor settings; topics deliver to every subscriber, skip
//! or close (1008) a subscriber past its backpressure limit without waiting on it, and drop
//! subscribers that left.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use sonar_async::{
    Config, DeflateConfig, Message, OnBackpressure, PreparedMessage, Topics, WebSocket,
};
use sonar_core::testing::{FrameBuilder, PeerInflate};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

mod support;
use support::{compressible, quiet, raw_server, read_frame, wait_until};

type Server = (
    WebSocket,
    DuplexStream,
    JoinHandle<Result<(), sonar_async::Error>>,
);

async fn servers(n: usize, cfg: &Config, capacity: usize, extra: &str) -> Vec<Server> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(raw_server(cfg.clone(), capacity, extra).await);
    }
    out
}

fn numbered(i: usize, len: usize) -> String {
    let mut s = format!("{i:06}:");
    while s.len() < len {
        s.push('x');
    }
    s
}

/// The number a [`numbered`] text starts with.
fn number(payload: &[u8]) -> usize {
    std::str::from_utf8(&payload[..6]).unwrap().parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn send_prepared_writes_the_same_frame_to_every_connection() {
    let mut conns = servers(3, &quiet(), 1 << 16, "").await;
    let news = PreparedMessage::new(Message::binary(vec![9u8; 300]));
    for (ws, _, _) in &mut conns {
        ws.send_prepared(&news).await.unwrap();
    }
    for (_, peer, _) in &mut conns {
        assert_eq!(read_frame(peer).await, (0x82, vec![9u8; 300]));
    }
}

#[tokio::test(start_paused = true)]
async fn publish_delivers_to_every_subscriber_of_the_topic_only() {
    let mut conns = servers(5, &quiet(), 1 << 16, "").await;
    let topics = Topics::new(1 << 20, OnBackpressure::Skip);
    for (ws, _, _) in &conns[..4] {
        assert!(topics.subscribe("ticks", &ws.sender()));
    }
    assert!(topics.subscribe("news", &conns[4].0.sender()));
    assert!(
        !topics.subscribe("ticks", &conns[0].0.sender()),
        "a second subscribe of the same connection is a no-op"
    );
    assert_eq!(topics.subscribers("ticks"), 4);

    let delivery = topics.publish("ticks", &PreparedMessage::new("tick 1"));
    assert_eq!((delivery.delivered, delivery.skipped), (4, 0));
    topics.publish("news", &PreparedMessage::new("extra"));
    for (_, peer, _) in &mut conns[..4] {
        assert_eq!(read_frame(peer).await, (0x81, b"tick 1".to_vec()));
    }
    assert_eq!(
        read_frame(&mut conns[4].1).await,
        (0x81, b"extra".to_vec()),
        "the news subscriber got no tick first"
    );
    assert_eq!(
        topics
            .publish("nobody", &PreparedMessage::new("x"))
            .delivered,
        0
    );
    assert_eq!(topics.stats().delivered, 5);
}

#[tokio::test(start_paused = true)]
async fn compressed_publish_compresses_once_for_subscribers_with_equal_settings() {
    let mut deflate = DeflateConfig::default();
    deflate.no_context_takeover = true;
    let cfg = quiet().with_deflate(deflate);
    let mut conns = servers(
        3,
        &cfg,
        1 << 16,
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    )
    .await;
    let topics = Topics::new(1 << 20, OnBackpressure::Skip);
    for (ws, _, _) in &conns {
        topics.subscribe("ticks", &ws.sender());
    }
    let text = compressible(4000);
    let prepared = PreparedMessage::new(Message::text(text.clone()));
    assert_eq!(topics.publish("ticks", &prepared).delivered, 3);
    assert_eq!(
        prepared.compressions(),
        1,
        "one compression for three subscribers"
    );
    let mut payloads = Vec::new();
    for (_, peer, _) in &mut conns {
        let (b0, payload) = read_frame(peer).await;
        assert_eq!(b0, 0xc1, "FIN + RSV1 + text");
        payloads.push(payload);
    }
    assert!(payloads.windows(2).all(|w| w[0] == w[1]));
    assert!(payloads[0].len() < text.len() / 10);
    assert_eq!(PeerInflate::new().message(&payloads[0]), text.as_bytes());
    let stats = conns[2].0.stats().deflate.unwrap();
    assert_eq!(stats.messages_compressed, 1);
}

/// Three subscribers of "t" over pipes of `capacity` bytes; the last one's peer never reads.
async fn with_a_slow_subscriber(policy: OnBackpressure, limit: usize) -> (Topics, Vec<Server>) {
    let conns = servers(3, &quiet(), 2048, "").await;
    let topics = Topics::new(limit, policy);
    for (ws, _, _) in &conns {
        topics.subscribe("t", &ws.sender());
    }
    (topics, conns)
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_past_the_limit_is_skipped_and_the_others_get_every_message() {
    const LIMIT: usize = 8 * 1024;
    const MESSAGES: usize = 60;
    let (topics, mut conns) = with_a_slow_subscriber(OnBackpressure::Skip, LIMIT).await;
    let slow_writer = conns[2].0.sender();
    let (fast, slow) = conns.split_at_mut(2);
    let mut readers = Vec::new();
    for (_, peer, _) in fast.iter_mut() {
        let mut peer = std::mem::replace(peer, tokio::io::duplex(1).0);
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..MESSAGES {
                let (b0, payload) = read_frame(&mut peer).await;
                assert_eq!(b0, 0x81);
                got.push(number(&payload));
            }
            got
        }));
    }
    let mut skipped = 0;
    let mut peak = 0;
    for i in 0..MESSAGES {
        let delivery = topics.publish("t", &PreparedMessage::new(numbered(i, 1000)));
        skipped += delivery.skipped;
        peak = peak.max(slow_writer.buffered_amount());
        tokio::task::yield_now().await;
    }
    for r in readers {
        assert_eq!(r.await.unwrap(), (0..MESSAGES).collect::<Vec<_>>());
    }
    assert!(skipped > 0, "the slow subscriber was skipped");
    assert!(
        peak <= LIMIT,
        "its unsent bytes stayed under the limit: {peak}"
    );
    assert_eq!(topics.stats().skipped, skipped as u64);
    assert_eq!(
        topics.subscribers("t"),
        3,
        "skipping keeps the subscription"
    );

    // Once it reads, the slow subscriber gets what was queued, in order, then new messages.
    let (_, peer, _) = &mut slow[0];
    let got = wait_drain(peer, MESSAGES - skipped).await;
    assert_eq!(got[0], 0);
    wait_until("the queue is written", || {
        slow_writer.buffered_amount() == 0
    })
    .await;
    topics.publish("t", &PreparedMessage::new(numbered(999, 1000)));
    assert_eq!(number(&read_frame(peer).await.1), 999);
}

/// Reads `n` numbered texts, checking they come in increasing order; returns them.
async fn wait_drain(peer: &mut DuplexStream, n: usize) -> Vec<usize> {
    let mut got = Vec::new();
    for _ in 0..n {
        let (b0, payload) = read_frame(peer).await;
        assert_eq!(b0, 0x81);
        got.push(number(&payload));
    }
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    got
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_past_the_limit_is_closed_with_1008_under_the_close_policy() {
    const LIMIT: usize = 8 * 1024;
    let (topics, mut conns) = with_a_slow_subscriber(OnBackpressure::Close, LIMIT).await;
    let mut closed = 0;
    let mut delivered_to_slow = 0;
    for i in 0..40 {
        let before = topics.subscribers("t");
        let delivery = topics.publish("t", &PreparedMessage::new(numbered(i, 1000)));
        closed += delivery.closed;
        if before == 3 && delivery.closed == 0 {
            delivered_to_slow += 1;
        }
        // The fast subscribers read as they go.
        for (_, peer, _) in &mut conns[..2] {
            assert_eq!(number(&read_frame(peer).await.1), i);
        }
    }
    assert_eq!(closed, 1);
    assert_eq!(topics.stats().closed_for_backpressure, 1);
    assert_eq!(
        topics.subscribers("t"),
        2,
        "the closed subscriber left the topic"
    );

    // The slow peer reads at last: what was queued before, then Close 1008.
    let (_, peer, _) = &mut conns[2];
    let got = wait_drain(peer, delivered_to_slow).await;
    assert_eq!(got, (0..delivered_to_slow).collect::<Vec<_>>());
    let (b0, payload) = read_frame(peer).await;
    assert_eq!(b0, 0x88, "FIN + Close");
    assert_eq!(
        payload, b"\x03\xf0subscriber too slow",
        "1008 and its reason"
    );
}

#[tokio::test(start_paused = true)]
async fn unsubscribed_and_closed_connections_leave_the_topic() {
    let mut conns = servers(3, &quiet(), 1 << 16, "").await;
    let topics = Topics::new(1 << 20, OnBackpressure::Skip);
    for (ws, _, _) in &conns {
        topics.subscribe("a", &ws.sender());
        topics.subscribe("b", &ws.sender());
    }
    assert!(topics.unsubscribe("a", &conns[0].0.sender()));
    assert!(!topics.unsubscribe("a", &conns[0].0.sender()));
    assert_eq!(topics.unsubscribe_all(&conns[1].0.sender()), 2);
    assert_eq!((topics.subscribers("a"), topics.subscribers("b")), (1, 2));

    // conns[2]'s peer closes; once its connection is over, the next publish drops it.
    let (ws, peer, _) = &mut conns[2];
    peer.write_all(&FrameBuilder::close(1000, b"").mask([1, 2, 3, 4]).build())
        .await
        .unwrap();
    assert!(ws.recv().await.is_none());
    let delivery = topics.publish("a", &PreparedMessage::new("after"));
    assert_eq!((delivery.delivered, delivery.gone), (0, 1));
    assert_eq!(topics.subscribers("a"), 0);
    assert_eq!(topics.subscribers("b"), 1, "and every other topic");
}
