//! Backpressure: a full write queue makes `send` wait and an unread read queue stops reading
//! (bounded memory), and both resume without losing or reordering anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use sonar_async::{Error, Message};
use sonar_core::testing::FrameBuilder;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

mod support;
use support::peer::{STREAM, drain_texts, text_payload};
use support::{PROMPT, quiet, raw_client, read_frame, small_queues, wait_until};

// A writer blocked on a full write queue (the peer does not read) and a reader parked in
// `recv`, in two tasks: when the peer writes and starts reading, both make progress.
#[tokio::test(start_paused = true)]
async fn blocked_writer_and_parked_reader_both_progress() {
    let (ws, mut peer, _driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let (mut rd, mut wr) = ws.into_split();
    let watch = wr.clone();
    let writer = tokio::spawn(async move {
        for i in 0..STREAM {
            wr.send(Message::text(text_payload(i))).await.unwrap();
        }
        wr
    });
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(m) = rd.recv().await {
            got.push(m.unwrap());
            if got.len() == 3 {
                break;
            }
        }
        (rd, got)
    });
    wait_until("bytes wait for the peer", || watch.buffered_amount() > 0).await;
    assert!(
        !writer.is_finished(),
        "the peer reads nothing: the writer waits"
    );
    assert!(!reader.is_finished());
    for w in ["a", "b", "c"] {
        peer.write_all(&FrameBuilder::text(w.as_bytes()).build())
            .await
            .unwrap();
    }
    let (_rd, got) = timeout(PROMPT, reader)
        .await
        .expect("reader woken")
        .unwrap();
    assert_eq!(
        got,
        [Message::text("a"), Message::text("b"), Message::text("c")]
    );
    // The writer resumes: the whole stream comes.
    drain_texts(&mut peer, 0).await;
    let _wr = timeout(PROMPT, writer).await.unwrap().unwrap();
    drop(watch);
}

// Read backpressure: an application that does not read makes the connection stop reading
// after `read_queue` messages, so the peer's writes block (bounded memory) however long it
// waits (10 s on the paused clock); then every message arrives, in order.
#[tokio::test(start_paused = true)]
async fn unread_messages_hold_the_peer_back_then_arrive_in_order() {
    let cfg = quiet().with_read_queue(4);
    let (mut ws, mut peer, _driver) = raw_client(cfg, 4 * 1024).await;
    let flood = tokio::spawn(async move {
        for i in 0..2_000u32 {
            peer.write_all(&FrameBuilder::binary(&i.to_be_bytes()).build())
                .await
                .unwrap();
        }
        peer
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!flood.is_finished(), "the peer must be held back");
    for i in 0..2_000u32 {
        let m = timeout(PROMPT, ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::binary(Bytes::copy_from_slice(&i.to_be_bytes())));
    }
    let _peer = flood.await.unwrap();
}

// Unsolicited pongs are bounded too (by the codec's control queue): a peer that reads
// nothing cannot make an application's `pong` loop grow the outbound queue without end.
// `pong` refuses with `QueueFull` rather than waiting for room, and works again once the
// peer reads.
#[tokio::test(start_paused = true)]
async fn unsolicited_pongs_are_bounded() {
    let (mut ws, mut peer, _driver) = raw_client(small_queues(quiet()), 1024).await;
    let mut accepted = 0usize;
    let err = loop {
        match ws.pong(Bytes::from_static(&[7u8; 100])).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100_000, "pongs are never refused");
    };
    assert!(
        matches!(err, Error::Send(sonar_core::SendError::QueueFull)),
        "{err}"
    );
    assert!(accepted < 1_000, "{accepted} pongs queued");
    for _ in 0..accepted {
        let (b0, p) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
        assert_eq!((b0, p), (0x8a, vec![7u8; 100]));
    }
    ws.pong(Bytes::from_static(b"again")).await.unwrap();
    let (b0, p) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
    assert_eq!((b0, p.as_slice()), (0x8a, &b"again"[..]));
}
