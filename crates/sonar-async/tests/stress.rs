//! Stress on two threads: both halves of both endpoints busy in separate tasks, in memory and
//! over loopback TCP; every message arrives, in order, and nothing stalls (real time, a
//! timeout as the only guard).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use sonar_async::{CloseCode, Config, Message, WebSocket};
use sonar_tokio::Compat;
use tokio::time::timeout;

mod support;
use support::{pair, small_queues, timer};

/// The message number `i` of side `side`: mixed sizes and kinds, self-describing (side byte,
/// then the index as 8 ASCII digits) so the receiver can check order.
fn stress_message(side: u8, i: u32) -> Message {
    const SIZES: [usize; 8] = [0, 1, 10, 125, 126, 700, 4_000, 20_000];
    let mut size = SIZES[(i as usize * 7 + side as usize) % SIZES.len()];
    if i.is_multiple_of(997) {
        size = 70_000; // a 64-bit length header now and then
    }
    let mut s = format!("{}{i:08}", side as char);
    s.extend(std::iter::repeat_n((b'a' + (i % 26) as u8) as char, size));
    if i.is_multiple_of(2) {
        Message::text(s)
    } else {
        Message::binary(Bytes::from(s.into_bytes()))
    }
}

fn parse(m: &Message) -> (u8, u32) {
    let p = m.payload();
    let side = p[0];
    let i = std::str::from_utf8(&p[1..9]).unwrap().parse().unwrap();
    (side, i)
}

/// One side of the stress test: sends its own `n` messages from one task, echoes the peer's
/// from another (fed by an unbounded channel so the reader never stops reading), and checks
/// in its reader that both streams arrive complete and in order.
async fn stress_side(
    ws: WebSocket,
    side: u8,
    n: u32,
) -> (sonar_async::WsReader, sonar_async::WsWriter) {
    let (mut rd, wr) = ws.into_split();
    let mut own = wr.clone();
    let mut echo = wr;
    let sender = tokio::spawn(async move {
        for i in 0..n {
            own.send(stress_message(side, i)).await.unwrap();
        }
        own
    });
    let (tx, mut rx) = futures_channel::mpsc::unbounded::<Message>();
    let echoer = tokio::spawn(async move {
        while let Some(m) = rx.next().await {
            echo.send(m).await.unwrap();
        }
        echo
    });
    let (mut own_next, mut peer_next) = (0u32, 0u32);
    while own_next < n || peer_next < n {
        let m = rd.recv().await.expect("open").expect("no error");
        let (from, i) = parse(&m);
        if from == side {
            assert_eq!(
                i, own_next,
                "own echo out of order on side {}",
                side as char
            );
            assert_eq!(m, stress_message(side, i));
            own_next += 1;
        } else {
            assert_eq!(
                i, peer_next,
                "peer message out of order on side {}",
                side as char
            );
            assert_eq!(m, stress_message(from, i));
            peer_next += 1;
            tx.unbounded_send(m).unwrap();
        }
    }
    drop(tx);
    let own = sender.await.unwrap();
    drop(own);
    let echo = echoer.await.unwrap();
    (rd, echo)
}

/// Runs both stress sides over a connected pair and closes cleanly; checks the counters.
async fn stress(client: WebSocket, server: WebSocket, n: u32) {
    let c = tokio::spawn(stress_side(client, b'C', n));
    let s = tokio::spawn(stress_side(server, b'S', n));
    let (_crd, mut cwr) = c.await.unwrap();
    let (mut srd, _swr) = s.await.unwrap();
    cwr.close(CloseCode::NORMAL, "done").await.unwrap();
    assert!(srd.recv().await.is_none());
    let status = srd.close_status().unwrap();
    assert_eq!(status.code, CloseCode::NORMAL);
    assert!(status.by_peer);
    let stats = cwr.stats();
    assert_eq!(stats.messages_out, u64::from(2 * n));
    assert_eq!(stats.messages_in, u64::from(2 * n));
}

/// [`stress`] over an in-memory pair of `capacity` bytes per direction, within 120 s.
async fn stress_in_memory(cfg: Config, capacity: usize, n: u32) {
    let run = async {
        let (client, server) = pair(cfg.clone(), cfg, capacity).await;
        stress(client, server, n).await;
    };
    timeout(Duration::from_secs(120), run)
        .await
        .expect("stress echo finished in time");
}

// 20,000 messages each way at once, each echoed back, reader and writers in separate tasks on
// two worker threads: every message arrives, in order, and nothing stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_echo_20k_both_ways_on_two_threads() {
    stress_in_memory(Config::default(), 64 * 1024, 20_000).await;
}

// The same with every queue at its minimum (one message in, one out, a one-byte write
// buffer) over a 64-byte pipe: reading and writing pause and resume on nearly every message,
// which is where a lost wake-up between the threads would show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_echo_with_minimal_queues_on_two_threads() {
    let mut cfg = Config::default().with_read_queue(1).with_write_queue(1);
    cfg.write_buffer = 1;
    stress_in_memory(cfg, 64, 3_000).await;
}

// The same over real TCP on 127.0.0.1 (the kernel's buffers and readiness instead of a pipe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_echo_over_loopback_tcp() {
    let run = async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (ws, keeper, _req) =
                sonar_async::server(Compat::new(tcp), Config::default(), timer())
                    .await
                    .unwrap();
            tokio::spawn(keeper);
            ws
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = sonar_async::ClientRequest::new("localhost", "/");
        let (client, keeper, _) =
            sonar_async::client(Compat::new(tcp), req, Config::default(), timer())
                .await
                .unwrap();
        tokio::spawn(keeper);
        stress(client, server.await.unwrap(), 20_000).await;
    };
    timeout(Duration::from_secs(120), run)
        .await
        .expect("stress echo finished in time");
}

// Four cloned senders in four tasks on two threads share one small write queue while the
// peer echoes: each sender's messages arrive in its own order, none is lost or stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloned_senders_share_a_small_queue_on_two_threads() {
    const PER: u32 = 3_000;
    let run = async {
        let cfg = small_queues(Config::default());
        let (client, mut server) = pair(cfg.clone(), cfg, 8 * 1024).await;
        let echo = tokio::spawn(async move {
            while let Some(m) = server.recv().await {
                server.send(m.unwrap()).await.unwrap();
            }
        });
        let (mut rd, wr) = client.into_split();
        let mut senders = Vec::new();
        for k in 0..4u8 {
            let mut w = wr.clone();
            senders.push(tokio::spawn(async move {
                for i in 0..PER {
                    let mut p = vec![k];
                    p.extend_from_slice(&i.to_be_bytes());
                    p.resize(5 + (i as usize * 13) % 2000, k);
                    w.send(Message::binary(p)).await.unwrap();
                }
            }));
        }
        let mut next = [0u32; 4];
        for _ in 0..4 * PER {
            let m = rd.recv().await.unwrap().unwrap();
            let p = m.payload();
            let k = p[0] as usize;
            let i = u32::from_be_bytes(p[1..5].try_into().unwrap());
            assert_eq!(i, next[k], "sender {k} out of order");
            next[k] += 1;
        }
        for s in senders {
            s.await.unwrap();
        }
        let mut wr = wr;
        wr.close(CloseCode::NORMAL, "").await.unwrap();
        echo.await.unwrap();
        assert!(rd.recv().await.is_none());
    };
    timeout(Duration::from_secs(120), run)
        .await
        .expect("fan-out finished in time");
}
