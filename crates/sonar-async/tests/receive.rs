//! The receive path: frames arrive whole and in order however the transport's reads cut
//! them (a read that ends one large frame and starts the next, a Ping between them), and
//! `recv` returns a message without first reading all that has arrived.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use sonar_async::{Config, Message};
use sonar_core::testing::FrameBuilder;
use support::{Reads, raw_client, raw_client_reading, read_frame, recv_message};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

/// A payload whose every byte depends on its position and on `seed`.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

// Large frames back to back, a Ping between two of them and a small text last, written in
// pieces of every size pattern: every message arrives intact and in order, and the Ping is
// answered. Reads of up to 64 KiB end large frames and start the next ones at every offset;
// both read paths (futures-io into initialised memory, tokio into uninitialised memory).
#[tokio::test]
async fn large_frames_cut_anywhere_by_reads_arrive_whole_and_in_order() {
    let messages = [
        payload(64 * 1024, 1),
        payload(64 * 1024 + 7, 2),
        payload(100_000, 3),
        payload(300_000, 4),
        payload(3, 5),
        payload(70_000, 6),
    ];
    let mut stream = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        stream.extend(FrameBuilder::binary(m).build());
        if i == 1 {
            stream.extend(FrameBuilder::ping(b"between").build());
        }
    }
    stream.extend(FrameBuilder::text(b"end").build());
    let cases = [usize::MAX, 65_536, 65_543, 1_000, 17]
        .into_iter()
        .flat_map(|piece| [(piece, Reads::Plain), (piece, Reads::Spare)]);
    for (piece, reads) in cases {
        let run = async {
            let (mut ws, mut peer, _driver) =
                raw_client_reading(Config::default(), 1 << 20, reads).await;
            let writer = {
                let stream = stream.clone();
                tokio::spawn(async move {
                    for chunk in stream.chunks(piece.min(stream.len())) {
                        peer.write_all(chunk).await.unwrap();
                    }
                    peer
                })
            };
            for (i, m) in messages.iter().enumerate() {
                let got = ws.recv().await.unwrap().unwrap();
                assert!(got.is_binary(), "message {i}");
                assert_eq!(got.payload().len(), m.len(), "message {i}");
                assert!(
                    got.payload().as_ref() == m.as_slice(),
                    "message {i} differs"
                );
            }
            assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("end"));
            let mut peer = writer.await.unwrap();
            let (b0, pong) = read_frame(&mut peer).await;
            assert_eq!((b0, pong.as_slice()), (0x8a, &b"between"[..]));
        };
        timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("pieces of {piece} bytes, {reads:?} reads: stalled"));
    }
}

// Large messages pipelined: `recv` returns the first one without first reading everything
// that has arrived (the application answers it while the rest comes in); the rest follows.
#[tokio::test(start_paused = true)]
async fn recv_returns_the_first_large_message_before_reading_all_input() {
    const SIZE: usize = 64 * 1024;
    const COUNT: usize = 8;
    let (mut ws, mut peer, _driver) = raw_client(Config::default(), 4 * 1024 * 1024).await;
    let mut burst = Vec::new();
    for i in 0..COUNT {
        burst.extend(FrameBuilder::binary(&vec![i as u8; SIZE]).build());
    }
    peer.write_all(&burst).await.unwrap();
    let first = recv_message(&mut ws).await;
    assert_eq!(first, Message::binary(vec![0u8; SIZE]));
    let read_so_far = ws.stats().bytes_in as usize;
    assert!(
        read_so_far < burst.len() / 2,
        "read {read_so_far} of {} bytes before returning the first message",
        burst.len()
    );
    for i in 1..COUNT {
        let m = recv_message(&mut ws).await;
        assert_eq!(m, Message::binary(vec![i as u8; SIZE]), "message {i}");
    }
}
