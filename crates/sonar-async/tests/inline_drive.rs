//! Stress and wake-up tests of the inline-drive design (issue 8 follow-up): the connection's
//! state is driven by whoever waits (`recv`, `send`, `flush`, `next`, the keeper task), and
//! every I/O wake-up must reach someone who acts on it.
//!
//! In memory (`tokio::io::duplex`) on tokio's virtual clock where timing matters; the
//! multi-thread stress test runs on real time with a timeout as its only guard.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sonar_async::{CloseCode, Config, Error, Message, WebSocket};
use sonar_core::testing::FrameBuilder;
use sonar_tokio::Compat;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

mod support;
use support::{pair, raw_client, raw_client_with, read_frame, timer};

/// Guard for virtual-time tests (virtual seconds cost nothing).
const LIMIT: Duration = Duration::from_secs(300);
/// Far below every keepalive deadline in these tests: only an I/O wake-up answers in time.
const PROMPT: Duration = Duration::from_secs(1);

/// Keepalive off: the keeper has no deadline of its own, so anything that happens must have
/// been triggered by a wake-up.
fn quiet() -> Config {
    let mut cfg = Config::default()
        .with_ping_interval(None)
        .with_pong_timeout(None);
    cfg.keepalive.write_stall_timeout = None;
    cfg
}

/// Reads frames until one with first byte `b0` comes; returns it and the number of Text
/// frames read before it (asserting their payloads are `m0`, `m1`, ... in order from `next`).
async fn read_until(s: &mut DuplexStream, b0: u8, next_text: &mut usize) -> Vec<u8> {
    loop {
        let (got, payload) = read_frame(s).await;
        if got == b0 {
            return payload;
        }
        assert_eq!(got, 0x81, "unexpected frame {got:#04x}");
        assert_eq!(payload, text_payload(*next_text).as_bytes());
        *next_text += 1;
    }
}

/// Messages a streaming writer sends in the tests below.
const STREAM: usize = 400;

/// Reads the rest of a stream of `STREAM` text messages, from message `next` on.
async fn drain_texts(s: &mut DuplexStream, mut next: usize) {
    let drain = async {
        while next < STREAM {
            let (b0, payload) = read_frame(s).await;
            assert_eq!(b0, 0x81);
            assert_eq!(payload, text_payload(next).as_bytes());
            next += 1;
        }
    };
    timeout(PROMPT, drain).await.expect("the stream is written");
}

fn text_payload(i: usize) -> String {
    format!("m{i:05}{}", "x".repeat(1000))
}

/// A transport that counts how often the connection polls it, and fails once a cap is
/// passed (a spinning connection then ends instead of hanging the virtual clock).
struct Counted {
    inner: DuplexStream,
    polls: Arc<std::sync::atomic::AtomicUsize>,
    cap: usize,
}

impl Counted {
    fn tick(&self) -> std::io::Result<()> {
        let n = self
            .polls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n >= self.cap {
            return Err(std::io::Error::other("polled too often: busy loop"));
        }
        Ok(())
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.tick()?;
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.tick()?;
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.tick()?;
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A raw client whose transport polls are counted (cap: `cap`).
async fn counted_client(
    cfg: Config,
    capacity: usize,
    cap: usize,
) -> (
    WebSocket,
    DuplexStream,
    JoinHandle<Result<(), Error>>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = polls.clone();
    let (ws, peer, driver) = raw_client_with(cfg, capacity, move |inner| Counted {
        inner,
        polls: p,
        cap,
    })
    .await;
    (ws, peer, driver, polls)
}

fn polls(p: &std::sync::atomic::AtomicUsize) -> usize {
    p.load(std::sync::atomic::Ordering::Relaxed)
}

// ---- stress: both halves in two tasks on two threads -------------------------------------

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

// 20,000 messages each way at once, each echoed back, reader and writers in separate tasks on
// two worker threads: every message arrives, in order, and nothing stalls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_echo_20k_both_ways_on_two_threads() {
    let run = async {
        let (client, server) = pair(Config::default(), Config::default(), 64 * 1024).await;
        stress(client, server, 20_000).await;
    };
    timeout(Duration::from_secs(120), run)
        .await
        .expect("stress echo finished in time");
}

// The same with every queue at its minimum (one message in, one out, a one-byte write
// buffer) over a 64-byte pipe: reading and writing pause and resume on nearly every message,
// which is where a lost wake-up between the threads would show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_echo_with_minimal_queues_on_two_threads() {
    let mut cfg = Config::default().with_read_queue(1).with_write_queue(1);
    cfg.write_buffer = 1;
    let run = async {
        let (client, server) = pair(cfg.clone(), cfg, 64).await;
        stress(client, server, 3_000).await;
    };
    timeout(Duration::from_secs(120), run)
        .await
        .expect("stress echo finished in time");
}

// The same over real TCP on 127.0.0.1 (the kernel's buffers and readiness instead of a pipe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_echo_over_loopback_tcp() {
    let run = async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (ws, driver, _req) =
                sonar_async::server(Compat::new(tcp), Config::default(), timer())
                    .await
                    .unwrap();
            tokio::spawn(driver);
            ws
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = sonar_async::ClientRequest::new("localhost", "/");
        let (client, driver, _) =
            sonar_async::client(Compat::new(tcp), req, Config::default(), timer())
                .await
                .unwrap();
        tokio::spawn(driver);
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

// ---- backpressure and wake-ups ------------------------------------------------------------

fn small_queues(mut cfg: Config) -> Config {
    cfg = cfg.with_write_queue(4);
    cfg.write_buffer = 4 * 1024;
    cfg
}

// A writer blocked on a full write queue (the peer does not read) and a reader parked in
// `recv`, in two tasks: when the peer writes and starts reading, both make progress.
#[tokio::test(start_paused = true)]
async fn blocked_writer_and_parked_reader_both_progress() {
    let (ws, mut peer, _driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let (mut rd, mut wr) = ws.into_split();
    let writer = tokio::spawn(async move {
        for i in 0..200 {
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
    tokio::time::sleep(Duration::from_secs(2)).await;
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
    let mut next = 0;
    let drain = async {
        while next < 200 {
            let (b0, payload) = read_frame(&mut peer).await;
            assert_eq!(b0, 0x81);
            assert_eq!(payload, text_payload(next).as_bytes());
            next += 1;
        }
    };
    timeout(PROMPT, drain).await.expect("writer resumed");
    let _wr = timeout(PROMPT, writer).await.unwrap().unwrap();
}

// The application only sends and is blocked on a full queue (the peer does not read) when
// the peer sends a Ping: once the peer reads again, the Pong comes at once (keepalive off, so
// no deadline can rescue a lost wake-up).
#[tokio::test(start_paused = true)]
async fn ping_arriving_while_send_is_blocked_is_answered() {
    let (mut ws, mut peer, _driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    // Unconstrained: tokio's cooperative budget must not hand the keeper a spurious wake-up
    // that would hide a lost one.
    let writer = tokio::spawn(tokio::task::unconstrained(async move {
        for i in 0..STREAM {
            ws.send(Message::text(text_payload(i))).await.unwrap();
        }
        ws
    }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writer.is_finished(), "the writer waits for room");
    peer.write_all(&FrameBuilder::ping(b"p1").build())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut next = 0;
    let pong = timeout(PROMPT, read_until(&mut peer, 0x8a, &mut next))
        .await
        .expect("the ping is answered once the peer reads");
    assert_eq!(pong, b"p1");
    // About 8 messages were queued or in the pipe when the ping came: the pong goes out
    // right behind them, not after the whole stream.
    assert!(next <= 16, "pong only after {next} of {STREAM} messages");
    drain_texts(&mut peer, next).await;
    let _ws = writer.await.unwrap();
}

// The same stream through the `Sink` (an unguarded waiter, so the hub wakes the keeper
// too): the pong goes out right behind what was queued. Shows the bound used above holds
// when the wake-up reaches a task that reads.
#[tokio::test(start_paused = true)]
async fn ping_arriving_while_sink_is_blocked_is_answered() {
    let (mut ws, mut peer, _driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let writer = tokio::spawn(tokio::task::unconstrained(async move {
        for i in 0..STREAM {
            SinkExt::send(&mut ws, Message::text(text_payload(i)))
                .await
                .unwrap();
        }
        ws
    }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writer.is_finished(), "the writer waits for room");
    peer.write_all(&FrameBuilder::ping(b"p1").build())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut next = 0;
    let pong = timeout(PROMPT, read_until(&mut peer, 0x8a, &mut next))
        .await
        .expect("the ping is answered once the peer reads");
    assert_eq!(pong, b"p1");
    assert!(next <= 16, "pong only after {next} of {STREAM} messages");
    drain_texts(&mut peer, next).await;
    let _ws = writer.await.unwrap();
}

// Same as above without any blocked writer: the keeper alone answers (control test for the
// one above).
#[tokio::test(start_paused = true)]
async fn ping_is_answered_while_the_application_is_idle() {
    let (_ws, mut peer, _driver) = raw_client(quiet(), 4 * 1024).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    peer.write_all(&FrameBuilder::ping(b"p1").build())
        .await
        .unwrap();
    let (b0, pong) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
    assert_eq!((b0, pong.as_slice()), (0x8a, &b"p1"[..]));
}

// A user ping requested while another task is blocked in `send` goes out once the peer reads.
#[tokio::test(start_paused = true)]
async fn user_ping_while_send_is_blocked_goes_out() {
    let (ws, mut peer, _driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let pinger = ws.sender();
    let mut ws = ws;
    // Unconstrained: tokio's cooperative budget must not hand the keeper a spurious wake-up
    // that would hide a lost one.
    let writer = tokio::spawn(tokio::task::unconstrained(async move {
        for i in 0..STREAM {
            ws.send(Message::text(text_payload(i))).await.unwrap();
        }
        ws
    }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writer.is_finished(), "the writer waits for room");
    let ping = tokio::spawn(async move { pinger.ping_with(b"u1".to_vec()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
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

// The peer's Close arrives while the application waits in `flush` (peer not reading): once the
// peer reads, the Close is answered and the connection ends, without the close timeout.
#[tokio::test(start_paused = true)]
async fn peer_close_arriving_while_flush_waits_is_answered() {
    let (mut ws, mut peer, _driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let writer = tokio::spawn(async move {
        for i in 0..3 {
            ws.send(Message::text(text_payload(i))).await.unwrap();
        }
        // 3 KB queued, 4 KB pipe minus what it holds: the flush waits for the peer.
        for i in 3..8 {
            ws.send(Message::text(text_payload(i))).await.unwrap();
        }
        ws.flush().await.unwrap();
        ws
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writer.is_finished());
    peer.write_all(&FrameBuilder::close(1000, b"bye").build())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut next = 0;
    let close = timeout(PROMPT, read_until(&mut peer, 0x88, &mut next))
        .await
        .expect("our Close answers the peer's");
    assert_eq!(close, 1000u16.to_be_bytes());
    assert_eq!(next, 8);
    let _ws = timeout(PROMPT, writer).await.unwrap().unwrap();
}

// Read backpressure: an application that does not read makes the connection stop reading
// after `read_queue` messages, so the peer's writes block (bounded memory); then everything
// arrives in order.
#[tokio::test(start_paused = true)]
async fn unread_messages_stop_the_peer() {
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
        assert_eq!(m.payload().as_ref(), i.to_be_bytes());
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

// ---- closing and dropping -----------------------------------------------------------------

// `close()` from the writer task while another task is parked in `recv()`: recv ends with
// None, close returns, both sides see Close 1000 (on two threads, real time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_from_writer_task_ends_parked_recv() {
    let run = async {
        let (client, mut server) = pair(Config::default(), Config::default(), 64 * 1024).await;
        let echo = tokio::spawn(async move {
            let mut n = 0;
            while let Some(m) = server.recv().await {
                server.send(m.unwrap()).await.unwrap();
                n += 1;
            }
            (n, server.close_status())
        });
        let (mut rd, mut wr) = client.into_split();
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while let Some(m) = rd.recv().await {
                m.unwrap();
                n += 1;
            }
            (n, rd.close_status())
        });
        for i in 0..100 {
            wr.send(Message::text(format!("{i}"))).await.unwrap();
        }
        wr.flush().await.unwrap();
        // Let the echoes arrive and the reader park again.
        tokio::time::sleep(Duration::from_millis(50)).await;
        wr.close(CloseCode::NORMAL, "bye").await.unwrap();
        let (got, status) = reader.await.unwrap();
        assert_eq!(got, 100);
        let status = status.unwrap();
        assert_eq!((status.code, status.by_peer), (CloseCode::NORMAL, false));
        let (echoed, peer_status) = echo.await.unwrap();
        assert_eq!(echoed, 100);
        let peer_status = peer_status.unwrap();
        assert_eq!(peer_status.code, CloseCode::NORMAL);
        assert_eq!(peer_status.reason, "bye");
        assert!(wr.send(Message::text("late")).await.is_err());
    };
    timeout(Duration::from_secs(30), run)
        .await
        .expect("no stall");
}

// Same on virtual time, current thread, with a raw peer: recv parked, close from another task,
// the peer answers the Close, recv returns None and close returns well before the close
// timeout.
#[tokio::test(start_paused = true)]
async fn close_while_recv_parked_completes_without_timeout() {
    let (ws, mut peer, _driver) = raw_client(quiet(), 64 * 1024).await;
    let (mut rd, mut wr) = ws.into_split();
    let reader = tokio::spawn(async move { rd.recv().await.map(|r| r.map_err(|e| e.to_string())) });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let start = tokio::time::Instant::now();
    let closer = tokio::spawn(async move {
        wr.close(CloseCode::NORMAL, "bye").await.unwrap();
        wr
    });
    let (b0, payload) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
    assert_eq!(b0, 0x88);
    assert_eq!(&payload[..2], 1000u16.to_be_bytes());
    assert_eq!(&payload[2..], b"bye");
    peer.write_all(&FrameBuilder::close(1000, b"").build())
        .await
        .unwrap();
    // A client waits for the server to close the TCP connection (RFC 6455 §7.1.1).
    peer.shutdown().await.unwrap();
    assert_eq!(timeout(PROMPT, reader).await.unwrap().unwrap(), None);
    let _wr = timeout(PROMPT, closer).await.unwrap().unwrap();
    assert!(start.elapsed() < PROMPT);
    let mut rest = Vec::new();
    assert_eq!(
        peer.read_to_end(&mut rest).await.unwrap(),
        0,
        "transport closed"
    );
}

// A writer blocked on a full queue when the application starts closing: its `send` fails
// promptly (it can never queue) instead of sleeping until the connection has finished.
#[tokio::test(start_paused = true)]
async fn blocked_send_fails_promptly_when_closing_starts() {
    let (ws, _peer, _driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let mut closer = ws.sender();
    let mut ws = ws;
    let writer = tokio::spawn(async move {
        let mut result = Ok(());
        for i in 0..40 {
            result = ws.send(Message::text(text_payload(i))).await;
            if result.is_err() {
                break;
            }
        }
        result
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writer.is_finished());
    let close = tokio::spawn(async move { closer.close(CloseCode::NORMAL, "").await });
    let r = timeout(PROMPT, writer)
        .await
        .expect("the blocked send returns once closing started")
        .unwrap();
    assert!(r.is_err());
    drop(close);
}

// The rest of the case above: the peer never reads, so our Close never leaves; the blocked
// send has failed at once, and `close` returns `CloseTimeout` by the close timeout (3 s).
#[tokio::test(start_paused = true)]
async fn blocked_send_fails_at_once_and_close_ends_by_the_close_timeout() {
    let cfg = small_queues(quiet()).with_close_timeout(Duration::from_secs(3));
    let (ws, _peer, driver) = raw_client(cfg, 4 * 1024).await;
    let mut closer = ws.sender();
    let mut ws = ws;
    let writer = tokio::spawn(async move {
        for i in 0..STREAM {
            ws.send(Message::text(text_payload(i))).await?;
        }
        Ok::<_, Error>(ws)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writer.is_finished());
    let start = tokio::time::Instant::now();
    let close = tokio::spawn(async move { closer.close(CloseCode::NORMAL, "").await });
    let r = timeout(PROMPT, writer)
        .await
        .expect("the blocked send returns once closing started")
        .unwrap();
    assert!(r.is_err());
    let closed = timeout(Duration::from_secs(4), close)
        .await
        .expect("close returns by the close timeout")
        .unwrap();
    assert!(matches!(closed, Err(Error::CloseTimeout)), "{closed:?}");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    let _ = timeout(PROMPT, driver)
        .await
        .expect("driver finished")
        .unwrap();
}

// Dropping the Driver while a task waits in recv: recv returns (an error, then None) instead
// of hanging, and the peer sees the transport closed.
#[tokio::test(start_paused = true)]
async fn dropping_the_driver_ends_a_parked_recv() {
    let (ws, mut peer, driver) = raw_client(quiet(), 64 * 1024).await;
    let (mut rd, wr) = ws.into_split();
    let reader = tokio::spawn(async move {
        let first = rd.recv().await;
        let second = rd.recv().await;
        (first.map(|r| r.is_err()), second.is_none())
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!reader.is_finished());
    driver.abort();
    assert!(driver.await.unwrap_err().is_cancelled());
    let (first, second) = timeout(PROMPT, reader)
        .await
        .expect("recv returns")
        .unwrap();
    assert_eq!(first, Some(true), "the error is reported once");
    assert!(second, "then the end");
    let mut rest = Vec::new();
    assert_eq!(
        timeout(PROMPT, peer.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap(),
        0
    );
    drop(wr);
}

// Dropping the Driver while a task is blocked in send (peer not reading): send returns an error.
#[tokio::test(start_paused = true)]
async fn dropping_the_driver_ends_a_blocked_send() {
    let (mut ws, _peer, driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let writer = tokio::spawn(async move {
        for i in 0..40 {
            ws.send(Message::text(text_payload(i))).await?;
        }
        Ok::<_, Error>(())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writer.is_finished());
    driver.abort();
    let r = timeout(PROMPT, writer)
        .await
        .expect("send returns")
        .unwrap();
    assert!(r.is_err());
}

async fn expect_close_1000(peer: &mut DuplexStream) {
    let (b0, payload) = timeout(PROMPT, read_frame(peer))
        .await
        .expect("a Close comes");
    assert_eq!((b0, payload.as_slice()), (0x88, &1000u16.to_be_bytes()[..]));
    peer.write_all(&FrameBuilder::close(1000, b"").build())
        .await
        .unwrap();
    peer.shutdown().await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        timeout(PROMPT, peer.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap(),
        0,
        "transport closed after the handshake"
    );
}

// Dropping every handle (whole socket, halves in either order, with an extra sender) closes
// with 1000, and not before the last handle is gone.
#[tokio::test(start_paused = true)]
async fn dropping_every_handle_sends_close_1000() {
    for variant in 0..4 {
        let (ws, mut peer, driver) = raw_client(quiet(), 64 * 1024).await;
        match variant {
            0 => drop(ws),
            1 => {
                let (rd, wr) = ws.into_split();
                drop(rd);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(wr);
            }
            2 => {
                let (rd, wr) = ws.into_split();
                drop(wr);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(rd);
            }
            _ => {
                let extra = ws.sender();
                drop(ws);
                tokio::time::sleep(Duration::from_millis(10)).await;
                peer.write_all(&FrameBuilder::ping(b"still").build())
                    .await
                    .unwrap();
                let (b0, p) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
                assert_eq!((b0, p.as_slice()), (0x8a, &b"still"[..]), "still open");
                drop(extra);
            }
        }
        expect_close_1000(&mut peer).await;
        let r = timeout(PROMPT, driver).await.unwrap().unwrap();
        assert!(r.is_ok(), "variant {variant}: {r:?}");
    }
}

// Only the reader dropped: the writer keeps working, the peer's messages are discarded and its
// pings still answered.
#[tokio::test(start_paused = true)]
async fn reader_dropped_writer_keeps_working() {
    let (ws, mut peer, _driver) = raw_client(quiet(), 64 * 1024).await;
    let (rd, mut wr) = ws.into_split();
    drop(rd);
    for i in 0..50u8 {
        peer.write_all(&FrameBuilder::text(b"ignored").build())
            .await
            .unwrap();
        peer.write_all(&FrameBuilder::ping(&[i]).build())
            .await
            .unwrap();
        let (b0, p) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
        assert_eq!((b0, p.as_slice()), (0x8a, &[i][..]));
        wr.send(Message::text(format!("w{i}"))).await.unwrap();
        let (b0, p) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
        assert_eq!((b0, p), (0x81, format!("w{i}").into_bytes()));
    }
}

// ---- cancellation -------------------------------------------------------------------------

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
    tokio::time::sleep(Duration::from_millis(10)).await;
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

// recv cancelled repeatedly by a timer in a `select!` loop that also sends on each tick:
// no message is lost, pings are answered, every tick's message reaches the peer.
#[tokio::test(start_paused = true)]
async fn select_loop_of_next_and_a_ticking_sender() {
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

// Stream/Sink echo between two sonar endpoints: `next()` and `SinkExt::send` on both sides.
#[tokio::test(start_paused = true)]
async fn stream_and_sink_echo() {
    let (mut client, server) = pair(Config::default(), Config::default(), 16 * 1024).await;
    let echo = tokio::spawn(async move {
        let (mut rx, mut tx) = server.into_split();
        while let Some(m) = rx.next().await {
            tx.send(m.unwrap()).await.unwrap();
        }
    });
    for i in 0..2_000u32 {
        let msg = if i % 2 == 0 {
            Message::text("y".repeat((i as usize * 37) % 3000))
        } else {
            Message::binary(Bytes::from(vec![i as u8; (i as usize * 101) % 9000]))
        };
        SinkExt::send(&mut client, msg.clone()).await.unwrap();
        let got = timeout(LIMIT, client.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, msg, "message {i}");
    }
    SinkExt::close(&mut client).await.unwrap();
    assert!(client.next().await.is_none());
    timeout(LIMIT, echo).await.unwrap().unwrap();
    assert_eq!(client.close_status().unwrap().code, CloseCode::NORMAL);
}

// ---- busy loops ---------------------------------------------------------------------------

// An idle connection with keepalive on, over 10 virtual minutes: the transport is polled a
// bounded number of times per ping round trip (no spinning keeper).
#[tokio::test(start_paused = true)]
async fn idle_connection_does_not_spin() {
    let (ws, mut peer, _driver, count) =
        counted_client(Config::default(), 64 * 1024, 100_000).await;
    let start = polls(&count);
    let mut pings = 0;
    let answer = async {
        loop {
            let (b0, p) = read_frame(&mut peer).await;
            assert_eq!(b0, 0x89);
            peer.write_all(&FrameBuilder::pong(&p).build())
                .await
                .unwrap();
            pings += 1;
        }
    };
    let _ = timeout(Duration::from_secs(600), answer).await;
    let used = polls(&count) - start;
    eprintln!("idle: {used} transport polls for {pings} pings");
    // One ping every 20 s: 30 round trips.
    assert!((29..=31).contains(&pings), "{pings} pings");
    assert!(
        used <= 20 * pings,
        "{used} transport polls for {pings} pings"
    );
    assert!(ws.close_status().is_none(), "still open");
}

// The peer floods pings and reads nothing: pongs are owed but cannot be written. The codec
// stops in front of each ping whose pong is still owed; the connection must not spin on that.
#[tokio::test(start_paused = true)]
async fn ping_flood_with_blocked_output_does_not_spin() {
    let (mut ws, mut peer, _driver, count) = counted_client(quiet(), 4 * 1024, 200_000).await;
    let mut flood = Vec::new();
    for i in 0..20_000u32 {
        flood.extend(FrameBuilder::ping(&i.to_be_bytes()).build());
    }
    let writer = tokio::spawn(async move {
        // Blocks once both the pipe and the connection stop taking bytes.
        let _ = peer.write_all(&flood).await;
        peer
    });
    // An application that waits for messages meanwhile.
    let reader = tokio::spawn(async move {
        let r = ws.recv().await.map(|r| r.map_err(|e| e.to_string()));
        (ws, r)
    });
    tokio::time::sleep(Duration::from_secs(30)).await;
    let used = polls(&count);
    eprintln!(
        "ping flood: {used} transport polls, peer done: {}",
        writer.is_finished()
    );
    assert!(used < 200_000, "busy loop: {used} transport polls");
    let mut peer = if writer.is_finished() {
        writer.await.unwrap()
    } else {
        // Still blocked: our side stopped reading (bounded) without spinning. Unblock it.
        writer.abort();
        reader.abort();
        return;
    };
    // Everything was read: the connection is still alive and answers.
    peer.write_all(&FrameBuilder::text(b"done").build())
        .await
        .unwrap();
    let (_ws, r) = timeout(PROMPT, reader).await.unwrap().unwrap();
    assert_eq!(r, Some(Ok(Message::text("done"))));
}

// ---- limitation: a guarded future that is kept but not polled -----------------------------

// A `recv` future polled once and then kept (pinned in a loop, its task busy elsewhere) holds
// the hub's wake-ups: the peer's ping waits until the future is polled or dropped.
#[tokio::test(start_paused = true)]
async fn ping_is_answered_while_a_kept_recv_future_is_not_polled() {
    let (ws, mut peer, _driver) = raw_client(quiet(), 64 * 1024).await;
    let (mut rd, _wr) = ws.into_split();
    // Let the keeper run its first round and go to sleep.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut recv = Box::pin(rd.recv());
    assert!(futures_util::poll!(&mut recv).is_pending());
    peer.write_all(&FrameBuilder::ping(b"k").build())
        .await
        .unwrap();
    // The application is busy with something else; `recv` is neither polled nor dropped.
    let (b0, p) = timeout(PROMPT, read_frame(&mut peer))
        .await
        .expect("the keeper answers the ping");
    assert_eq!((b0, p.as_slice()), (0x8a, &b"k"[..]));
    drop(recv);
}

// ---- cancellation stress on two threads ---------------------------------------------------

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

// Dropping the Driver fails a pending user ping instead of leaving it waiting.
#[tokio::test(start_paused = true)]
async fn dropping_the_driver_fails_a_pending_ping() {
    let (ws, mut peer, driver) = raw_client(quiet(), 64 * 1024).await;
    let pinger = ws.sender();
    let ping = tokio::spawn(async move { pinger.ping_with(b"x".to_vec()).await });
    let (b0, _) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
    assert_eq!(b0, 0x89);
    driver.abort();
    let r = timeout(PROMPT, ping).await.expect("ping returns").unwrap();
    assert!(r.is_err());
    drop(ws);
}

// The peer vanishes (transport EOF, no Close) while one task is parked in recv and another in
// a blocked send: both return promptly, with errors, and the status is 1006.
#[tokio::test(start_paused = true)]
async fn peer_eof_ends_parked_recv_and_blocked_send() {
    let (ws, peer, driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let (mut rd, mut wr) = ws.into_split();
    let reader = tokio::spawn(async move {
        let r = rd.recv().await.map(|r| r.map_err(|e| e.to_string()));
        (rd, r)
    });
    let writer = tokio::spawn(async move {
        for i in 0..STREAM {
            if wr.send(Message::text(text_payload(i))).await.is_err() {
                return i;
            }
        }
        STREAM
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!reader.is_finished() && !writer.is_finished());
    drop(peer);
    let (rd, r) = timeout(PROMPT, reader)
        .await
        .expect("recv returns")
        .unwrap();
    assert!(!matches!(r, Some(Ok(_))), "{r:?}");
    let sent = timeout(PROMPT, writer)
        .await
        .expect("send returns")
        .unwrap();
    assert!(sent < STREAM);
    let status = rd.close_status().unwrap();
    assert_eq!((status.code, status.by_peer), (CloseCode::ABNORMAL, false));
    let _ = timeout(PROMPT, driver)
        .await
        .expect("driver finished")
        .unwrap();
}

// Default configuration, a sender streaming without end (always waiting for room) and a peer
// that reads everything quickly and sends one Ping: the Pong must come within a second. (When a
// waiting writer drove writes only, it came with our own keepalive ping ~20 s later, the
// keeper's next deadline: more than a typical peer's pong timeout.)
#[tokio::test(start_paused = true)]
async fn ping_is_answered_while_streaming_at_line_rate() {
    let (mut ws, mut peer, _driver) = raw_client(small_queues(Config::default()), 4 * 1024).await;
    let writer = tokio::spawn(tokio::task::unconstrained(async move {
        let mut i = 0usize;
        while ws.send(Message::text(text_payload(i % 1000))).await.is_ok() {
            i += 1;
        }
    }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    peer.write_all(&FrameBuilder::ping(b"p1").build())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
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
            start.elapsed() < Duration::from_secs(30),
            "no pong in 30 s ({frames} frames)"
        );
    };
    writer.abort();
    assert!(latency < PROMPT, "pong after {latency:?} ({frames} frames)");
}
