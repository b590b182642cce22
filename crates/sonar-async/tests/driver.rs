//! The connection task end to end, in memory, on tokio's virtual clock (no sleeps: paused
//! time advances only when every task is idle).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use sonar_async::{CloseCode, Config, Error, Message, Role};
use sonar_core::testing::FrameBuilder;
use sonar_tokio::Compat;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::time::{Instant, timeout};

mod support;
use support::{read_frame, timer};

async fn pair(
    client_cfg: Config,
    server_cfg: Config,
) -> (sonar_async::WebSocket, sonar_async::WebSocket) {
    support::pair(client_cfg, server_cfg, 64 * 1024).await
}

const LIMIT: Duration = Duration::from_secs(300);

/// A sonar client connected to a raw, scripted server. The 101 and `first` go out in one write.
async fn client_with_raw_server(
    cfg: Config,
    first: &[u8],
) -> (sonar_async::WebSocket, DuplexStream) {
    // The driver's handle is dropped: the task keeps running, detached.
    let (ws, peer, _driver) = support::raw_client_first(cfg, 64 * 1024, first).await;
    (ws, peer)
}

#[tokio::test(start_paused = true)]
async fn echo_text_and_binary_of_many_sizes() {
    let (mut client, mut server) = pair(Config::default(), Config::default()).await;
    let echo = tokio::spawn(async move {
        while let Some(m) = server.recv().await {
            server.send(m.unwrap()).await.unwrap();
        }
        server.close_status()
    });
    let sizes = [0usize, 1, 125, 126, 65_535, 65_536, 200_000, 1 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        let msg = if i % 2 == 0 {
            Message::text("é".repeat(n / 2))
        } else {
            Message::binary(Bytes::from(vec![i as u8; n]))
        };
        client.send(msg.clone()).await.unwrap();
        let got = timeout(LIMIT, client.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got, msg, "size {n}");
    }
    client.close(CloseCode::NORMAL, "done").await.unwrap();
    assert!(client.recv().await.is_none());
    let status = echo.await.unwrap().expect("server saw the close");
    assert_eq!(status.code, CloseCode::NORMAL);
    assert_eq!(status.reason, "done");
    assert!(status.by_peer);
    let mine = client.close_status().unwrap();
    assert_eq!(mine.code, CloseCode::NORMAL);
    assert!(!mine.by_peer);
}

// C-24 / B6: the 101 and the first frames arrive in one write; the Ping is answered and the
// Text delivered (spec T18 through the whole stack).
#[tokio::test(start_paused = true)]
async fn frames_coalesced_with_the_101_are_not_lost() {
    let mut first = FrameBuilder::ping(b"hi").build();
    first.extend(FrameBuilder::text(b"Hello").build());
    let (mut ws, mut peer) = client_with_raw_server(Config::default(), &first).await;
    let m = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::text("Hello"));
    let (b0, payload) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
    assert_eq!(b0, 0x8a, "pong with FIN set");
    assert_eq!(payload, b"hi");
}

// The application only writes and never reads: the peer's pings are still answered.
#[tokio::test(start_paused = true)]
async fn pings_are_answered_while_the_application_only_writes() {
    let (mut ws, mut peer) = client_with_raw_server(Config::default(), &[]).await;
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

// `recv` and `next()` drive the connection inline. One cancelled by a `select!` (here a
// timeout) must not keep the transport's wake-ups for itself: the peer's pings are answered
// at once by the driver while the application neither reads nor writes.
#[tokio::test(start_paused = true)]
async fn pings_are_answered_after_a_cancelled_recv() {
    use futures_util::StreamExt;
    let (mut ws, mut peer) = client_with_raw_server(Config::default(), &[]).await;
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
        // Far below the keepalive interval (20 s): only an I/O wake-up can answer in time.
        let (b0, payload) = timeout(Duration::from_secs(1), read_frame(&mut peer))
            .await
            .expect("the ping is answered while nobody reads");
        assert_eq!(b0, 0x8a);
        assert_eq!(payload, [7, i]);
    }
    // The messages are still there for the next reader.
    peer.write_all(&FrameBuilder::text(b"after").build())
        .await
        .unwrap();
    let m = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::text("after"));
}

// A transport that ends without a closing handshake is a failure (1006), not a clean end:
// the messages before it arrive, then `AbnormalClosure` once, then `None`.
#[tokio::test(start_paused = true)]
async fn transport_eof_without_close_is_an_abnormal_closure() {
    let first = FrameBuilder::text(b"last words").build();
    let (mut ws, mut peer) = client_with_raw_server(Config::default(), &first).await;
    peer.shutdown().await.unwrap();
    let m = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::text("last words"));
    let err = timeout(LIMIT, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::AbnormalClosure), "{err}");
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    let status = ws.close_status().unwrap();
    assert_eq!(status.code, CloseCode::ABNORMAL);
    assert!(!status.by_peer);
}

// Large messages pipelined: `recv` returns the first one without first reading everything
// that has arrived (the application answers it while the rest comes in); the rest follows.
#[tokio::test(start_paused = true)]
async fn recv_returns_the_first_large_message_before_reading_all_input() {
    const SIZE: usize = 64 * 1024;
    const COUNT: usize = 8;
    let (mut ws, mut peer, _driver) = support::raw_client(Config::default(), 4 * 1024 * 1024).await;
    let mut burst = Vec::new();
    for i in 0..COUNT {
        burst.extend(FrameBuilder::binary(&vec![i as u8; SIZE]).build());
    }
    peer.write_all(&burst).await.unwrap();
    let first = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, Message::binary(vec![0u8; SIZE]));
    let read_so_far = ws.stats().bytes_in as usize;
    assert!(
        read_so_far < burst.len() / 2,
        "read {read_so_far} of {} bytes before returning the first message",
        burst.len()
    );
    for i in 1..COUNT {
        let m = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::binary(vec![i as u8; SIZE]), "message {i}");
    }
}

// A peer that stops answering pings is declared dead within ping interval + pong timeout,
// gets a best-effort Close 1011, and the application sees a timeout error.
#[tokio::test(start_paused = true)]
async fn silent_peer_is_declared_dead_within_interval_plus_timeout() {
    let cfg = Config::default()
        .with_ping_interval(Some(Duration::from_secs(20)))
        .with_pong_timeout(Some(Duration::from_secs(20)));
    let start = Instant::now();
    let (mut ws, mut peer) = client_with_raw_server(cfg, &[]).await;
    let err = timeout(LIMIT, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
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
    let mut rest = Vec::new();
    assert_eq!(
        timeout(LIMIT, peer.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap(),
        0
    );
}

// A peer that answers pings keeps the connection alive indefinitely, and RTT is measured.
#[tokio::test(start_paused = true)]
async fn answering_peer_stays_alive_and_rtt_is_measured() {
    let (ws, mut peer) = client_with_raw_server(Config::default(), &[]).await;
    for _ in 0..5 {
        let (b0, ping) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
        assert_eq!(b0, 0x89);
        tokio::time::sleep(Duration::from_millis(50)).await;
        peer.write_all(&FrameBuilder::pong(&ping).build())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    let rtt = ws.rtt().expect("rtt measured");
    assert!(
        rtt.last >= Duration::from_millis(50) && rtt.last < Duration::from_millis(60),
        "{rtt:?}"
    );
    assert!(ws.close_status().is_none(), "still open");
    assert_eq!(ws.stats().pongs_matched, 5);
}

// User ping() resolves to the RTT; truncated, empty and unsolicited pongs never complete it
// wrongly or crash anything.
#[tokio::test(start_paused = true)]
async fn user_ping_survives_broken_pongs() {
    let cfg = Config::default().with_ping_interval(None);
    let (ws, mut peer) = client_with_raw_server(cfg, &[]).await;
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
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(ws.stats().pongs_unmatched, 4);
}

// Read backpressure: an application that stops reading stops the connection from reading
// (bounded memory), and every message arrives in order once it reads again.
#[tokio::test(start_paused = true)]
async fn slow_reader_gets_every_message_in_order() {
    let cfg = Config::default().with_read_queue(4);
    let (mut ws, mut peer) = client_with_raw_server(cfg, &[]).await;
    let writer = tokio::spawn(async move {
        for i in 0..200u32 {
            peer.write_all(&FrameBuilder::binary(&i.to_be_bytes()).build())
                .await
                .unwrap();
        }
        peer
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..200u32 {
        let m = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::binary(Bytes::copy_from_slice(&i.to_be_bytes())));
    }
    drop(writer.await.unwrap());
}

// A protocol violation by the peer fails the connection with the RFC's close code and the
// application sees the typed error after the messages that came before it.
#[tokio::test(start_paused = true)]
async fn protocol_error_is_reported_after_earlier_messages() {
    let mut first = FrameBuilder::text(b"before").build();
    first.extend(FrameBuilder::new(0x0b, b"").build()); // reserved opcode
    let (mut ws, mut peer) = client_with_raw_server(Config::default(), &first).await;
    let m = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::text("before"));
    let err = timeout(LIMIT, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL_ERROR));
    let (b0, close) = read_frame(&mut peer).await;
    assert_eq!((b0, &close[..]), (0x88, &1002u16.to_be_bytes()[..]));
    assert!(ws.recv().await.is_none());
}

// A server that never answers the handshake costs only the handshake timeout.
#[tokio::test(start_paused = true)]
async fn stalled_handshake_times_out() {
    let (a, _b) = duplex(1024);
    let req = sonar_async::ClientRequest::new("localhost", "/");
    let start = Instant::now();
    let cfg = Config::default().with_handshake_timeout(Duration::from_secs(10));
    let err = sonar_async::client(Compat::new(a), req, cfg, timer())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HandshakeTimeout));
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

// from_upgraded: leftover bytes that another HTTP server read past the head reach the codec.
#[tokio::test(start_paused = true)]
async fn from_upgraded_consumes_leftover_first() {
    let (a, mut b) = duplex(1024);
    let leftover = FrameBuilder::text(b"early").mask([1, 2, 3, 4]).build();
    let (mut ws, driver) = sonar_async::from_upgraded(
        Compat::new(a),
        Role::Server,
        &leftover,
        Config::default(),
        timer(),
    );
    tokio::spawn(driver);
    let m = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::text("early"));
    ws.send(Message::text("reply")).await.unwrap();
    let (b0, payload) = read_frame(&mut b).await;
    assert_eq!((b0, payload.as_slice()), (0x81, &b"reply"[..]));
}

/// A transport that moves at most one byte per call and answers `Pending` every other call
/// (waking itself at once): the worst a socket can legally do.
struct Trickle<T> {
    inner: T,
    read_turn: bool,
    write_turn: bool,
}

impl<T> Trickle<T> {
    fn new(inner: T) -> Self {
        Trickle {
            inner,
            read_turn: false,
            write_turn: false,
        }
    }
}

impl<T: futures_io::AsyncRead + Unpin> futures_io::AsyncRead for Trickle<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.read_turn = !self.read_turn;
        if !self.read_turn {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let n = buf.len().min(1);
        std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut buf[..n])
    }
}

impl<T: futures_io::AsyncWrite + Unpin> futures_io::AsyncWrite for Trickle<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.write_turn = !self.write_turn;
        if !self.write_turn {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let n = buf.len().min(1);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, &buf[..n])
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_close(cx)
    }
}

// Every read and write moves one byte and every other call is Pending, on both sides and
// through both handshakes: the result is the same as with a fast transport.
#[tokio::test(start_paused = true)]
async fn one_byte_reads_and_writes_with_pending_change_nothing() {
    let (a, b) = duplex(64);
    let server = tokio::spawn(async move {
        let io = Trickle::new(Compat::new(b));
        let (mut ws, driver, req) = sonar_async::server(io, Config::default(), timer())
            .await
            .unwrap();
        tokio::spawn(driver);
        assert_eq!(req.path(), "/trickle");
        while let Some(m) = ws.recv().await {
            ws.send(m.unwrap()).await.unwrap();
        }
        ws.close_status().unwrap()
    });
    let req = sonar_async::ClientRequest::new("localhost", "/trickle");
    let io = Trickle::new(Compat::new(a));
    let (mut ws, driver, _) = sonar_async::client(io, req, Config::default(), timer())
        .await
        .unwrap();
    tokio::spawn(driver);
    for n in [0usize, 1, 126, 3000] {
        let msg = Message::text("ä".repeat(n));
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(
            timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap(),
            msg
        );
    }
    ws.close(CloseCode::GOING_AWAY, "bye").await.unwrap();
    let status = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(
        (status.code, status.reason.as_str()),
        (CloseCode::GOING_AWAY, "bye")
    );
}

// K-13: the peer stops reading; once our writes make no progress for write_stall_timeout
// (20 s) the connection is declared dead with WriteStalled, not hung forever.
#[tokio::test(start_paused = true)]
async fn write_stall_is_detected() {
    let (ws, peer) = client_with_raw_server(Config::default(), &[]).await;
    let mut ws = ws;
    let start = Instant::now();
    // 1 MiB into a 64 KiB pipe that nobody drains.
    ws.send(Message::binary(Bytes::from(vec![7u8; 1 << 20])))
        .await
        .unwrap();
    let err = timeout(LIMIT, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
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

// recv() is cancel safe: racing it against a timer in select! loses no message.
#[tokio::test(start_paused = true)]
async fn recv_is_cancel_safe_under_select() {
    let (mut ws, mut peer) = client_with_raw_server(Config::default(), &[]).await;
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
    let (mut ws, mut peer) = client_with_raw_server(cfg, &[]).await;
    // Big messages fill the pipe, the driver's write buffer and then the queue.
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

// Autobahn 2.10: ten pings that arrive in one read get ten pongs, in order, with their
// payloads, when the transport is writable (the auto-pong slot coalesces only while it is not).
#[tokio::test(start_paused = true)]
async fn every_ping_of_a_burst_is_answered_when_writable() {
    let mut burst = Vec::new();
    for i in 0..10u8 {
        burst.extend(FrameBuilder::ping(&[b'p', i]).build());
    }
    let (_ws, mut peer) = client_with_raw_server(Config::default(), &burst).await;
    for i in 0..10u8 {
        let (b0, payload) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
        assert_eq!((b0, payload.as_slice()), (0x8a, &[b'p', i][..]), "pong {i}");
    }
}

// Autobahn 3.x/4.x strictness: valid messages, then a bad frame, in one write. The
// application's echoes of the valid messages reach the peer before the failing Close 1002,
// and the application sees the typed error right after those messages.
#[tokio::test(start_paused = true)]
async fn answers_to_messages_before_a_protocol_error_go_out_first() {
    let mut first = Vec::new();
    first.extend(FrameBuilder::text(b"one").build());
    first.extend(FrameBuilder::text(b"two").build());
    first.extend(FrameBuilder::new(0x03, b"").build()); // reserved opcode
    let (mut ws, mut peer) = client_with_raw_server(Config::default(), &first).await;
    let app = tokio::spawn(async move {
        let mut echoed = 0;
        loop {
            match ws.recv().await {
                Some(Ok(m)) => {
                    ws.send(m).await.unwrap();
                    echoed += 1;
                }
                Some(Err(e)) => return (echoed, e),
                None => panic!("ended without the error"),
            }
        }
    });
    for want in [&b"one"[..], b"two"] {
        let (b0, payload) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
        assert_eq!((b0, payload.as_slice()), (0x81, want));
    }
    let (b0, close) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
    assert_eq!((b0, close.as_slice()), (0x88, &1002u16.to_be_bytes()[..]));
    let (echoed, err) = app.await.unwrap();
    assert_eq!(echoed, 2);
    assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL_ERROR));
}

// An application that does not read does not hold the failing Close back for long: it goes
// out after the 1 s grace.
#[tokio::test(start_paused = true)]
async fn failing_close_goes_out_after_the_grace_if_nobody_reads() {
    let mut first = FrameBuilder::text(b"unread").build();
    first.extend(FrameBuilder::new(0x0b, b"").build());
    let start = Instant::now();
    let (_ws, mut peer) = client_with_raw_server(Config::default(), &first).await;
    let (b0, close) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
    assert_eq!((b0, close.as_slice()), (0x88, &1002u16.to_be_bytes()[..]));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100),
        "{waited:?}"
    );
}
