//! What an application relies on when it uses a connection: round-trip times that are never
//! zero, a `Sink` whose flush means written, a close status known when the stream ends,
//! one failure reported by every call, and errors that print their cause once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::error::Error as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_util::SinkExt;
use sonar_async::{CloseCode, Config, Error, Message, Role, Sleep, Timer};
use sonar_core::Connection;
use sonar_core::testing::FrameBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

mod support;

const LIMIT: Duration = Duration::from_secs(60);

/// A clock that moves one microsecond every time it is read, so that two events read at
/// different moments always get different times, and two events given one reading do not.
struct TickingClock {
    origin: Instant,
    ticks: AtomicU64,
}

const TICK: Duration = Duration::from_micros(1);

struct NeverSleep;

impl std::future::Future for NeverSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Sleep for NeverSleep {
    fn reset(self: Pin<&mut Self>, _deadline: Instant) {}
}

impl Timer for TickingClock {
    fn now(&self) -> Instant {
        let n = self.ticks.fetch_add(1, Ordering::Relaxed);
        self.origin + TICK * u32::try_from(n).unwrap()
    }
    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(NeverSleep)
    }
}

/// A transport whose far end is a sans-I/O server in the same call: whatever the client
/// writes is parsed at once, and the server's answers (pongs to pings) are readable as soon
/// as the write returns, so a ping and its pong can be handled in one drive.
struct AnsweringPeer {
    peer: Connection,
    inbound: BytesMut,
    to_client: BytesMut,
    reader: Option<Waker>,
}

impl AnsweringPeer {
    fn new() -> Self {
        AnsweringPeer {
            peer: Connection::server(sonar_core::Config::default()),
            inbound: BytesMut::new(),
            to_client: BytesMut::new(),
            reader: None,
        }
    }
}

impl futures_io::AsyncRead for AnsweringPeer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.to_client.is_empty() {
            self.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(self.to_client.len());
        buf[..n].copy_from_slice(&self.to_client[..n]);
        self.to_client.advance(n);
        Poll::Ready(Ok(n))
    }
}

impl futures_io::AsyncWrite for AnsweringPeer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.inbound.extend_from_slice(buf);
        this.peer.handle_read(&mut this.inbound).unwrap();
        while this.peer.poll_event().is_some() {}
        while this.peer.wants_write() {
            let mut out = this.peer.outbound();
            let chunk = out.chunk().to_vec();
            out.advance(chunk.len());
            this.to_client.extend_from_slice(&chunk);
        }
        if !this.to_client.is_empty()
            && let Some(w) = this.reader.take()
        {
            w.wake();
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

// The time a ping left and the time its pong arrived are each read when that happens: a pong
// that is read in the same drive as the write of its ping still measures the time between.
#[tokio::test]
async fn rtt_is_never_zero_when_the_pong_is_read_in_the_same_drive_as_its_ping() {
    let clock = Arc::new(TickingClock {
        origin: Instant::now(),
        ticks: AtomicU64::new(0),
    });
    let (ws, keeper) = sonar_async::from_upgraded(
        AnsweringPeer::new(),
        Role::Client,
        &[],
        Config::default(),
        clock,
    );
    let keeper = tokio::spawn(keeper);
    for i in 0..200 {
        let rtt = timeout(LIMIT, ws.ping()).await.unwrap().unwrap();
        assert!(rtt >= TICK, "ping {i} measured {rtt:?}");
    }
    let stats = ws.rtt().expect("pongs were measured");
    assert!(stats.min >= TICK, "min rtt {:?}", stats.min);
    keeper.abort();
}

/// Reads and counts everything the raw peer receives until the connection ends.
async fn drain(mut peer: tokio::io::DuplexStream) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while let Ok(n) = peer.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}

// `SinkExt::send` resolves after `poll_flush`, which (as the `Sink` contract says) is ready
// only once every byte of the message was written to the transport.
#[tokio::test]
async fn sink_send_resolves_only_after_the_message_is_written() {
    const SIZE: usize = 8 << 20;
    let (mut ws, peer, _keeper) = support::raw_client(Config::default(), 64 * 1024).await;
    let reader = tokio::spawn(drain(peer));
    let message = Message::binary(vec![7u8; SIZE]);
    timeout(LIMIT, SinkExt::send(&mut ws, message))
        .await
        .unwrap()
        .unwrap();
    let written = ws.stats().bytes_out;
    assert!(
        written >= SIZE as u64,
        "only {written} of {SIZE} bytes were written when send resolved"
    );
    drop(ws);
    reader.abort();
}

// `SinkExt::close` waits for the closing handshake, like `WebSocket::close`.
#[tokio::test]
async fn sink_close_waits_for_the_closing_handshake() {
    let (mut client, mut server) = support::pair(Config::default(), Config::default(), 4096).await;
    let echo = tokio::spawn(async move { while server.recv().await.is_some() {} });
    timeout(LIMIT, SinkExt::close(&mut client))
        .await
        .unwrap()
        .unwrap();
    let status = client.close_status().expect("closed when close resolved");
    assert_eq!(status.code, CloseCode::NORMAL);
    echo.await.unwrap();
}

async fn failed_by_a_reserved_opcode() -> (sonar_async::WebSocket, tokio::io::DuplexStream) {
    let (mut ws, mut peer, _keeper) = support::raw_client(Config::default(), 64 * 1024).await;
    peer.write_all(&FrameBuilder::new(0x0b, b"").build())
        .await
        .unwrap();
    let err = timeout(LIMIT, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL_ERROR));
    (ws, peer)
}

// When `recv` says the stream has ended, the close status is known, whether the connection
// failed with a protocol error or the transport ended without a Close.
#[tokio::test]
async fn close_status_is_known_when_recv_returns_none_after_a_protocol_error() {
    let (mut ws, mut peer) = failed_by_a_reserved_opcode().await;
    // The peer reads our failing Close and goes away without answering it.
    let peer = tokio::spawn(async move {
        let (b0, payload) = support::read_frame(&mut peer).await;
        assert_eq!((b0, &payload[..]), (0x88, &1002u16.to_be_bytes()[..]));
    });
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    let status = ws
        .close_status()
        .expect("status known at the end of the stream");
    assert_eq!(
        status.code,
        CloseCode::ABNORMAL,
        "the peer never sent a Close"
    );
    peer.await.unwrap();
}

#[tokio::test]
async fn close_status_is_known_when_recv_returns_none_after_the_transport_ended() {
    let (mut ws, peer, _keeper) = support::raw_client(Config::default(), 64 * 1024).await;
    drop(peer);
    let err = timeout(LIMIT, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::AbnormalClosure), "{err:?}");
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    let status = ws
        .close_status()
        .expect("status known at the end of the stream");
    assert_eq!(status.code, CloseCode::ABNORMAL);
}

// After a failure, every call reports that failure (not a generic "not open").
#[tokio::test(start_paused = true)]
async fn every_call_after_a_protocol_error_reports_that_error() {
    let (mut ws, peer) = failed_by_a_reserved_opcode().await;
    let reader = tokio::spawn(drain(peer));
    let is_original = |e: &Error| {
        matches!(e, Error::Protocol(_)) && e.close_code() == Some(CloseCode::PROTOCOL_ERROR)
    };
    let ping = timeout(LIMIT, ws.ping()).await.unwrap().unwrap_err();
    assert!(is_original(&ping), "ping: {ping:?}");
    let send = ws.send(Message::text("late")).await.unwrap_err();
    assert!(is_original(&send), "send: {send:?}");
    let pong = ws.pong(&b"late"[..]).await.unwrap_err();
    assert!(is_original(&pong), "pong: {pong:?}");
    ws.closed().await;
    let ping = timeout(LIMIT, ws.ping()).await.unwrap().unwrap_err();
    assert!(is_original(&ping), "ping after the end: {ping:?}");
    let send = ws.send(Message::text("later")).await.unwrap_err();
    assert!(is_original(&send), "send after the end: {send:?}");
    reader.abort();
}

/// `Display` of an error and of each of its sources, joined as `anyhow`'s `{:#}` prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

// A wrapper's `Display` does not repeat its source: printed as a chain, the cause appears once.
#[test]
fn an_error_chain_names_each_cause_once() {
    let io = Error::from(io::Error::new(
        io::ErrorKind::ConnectionRefused,
        "refused here",
    ));
    assert_eq!(
        chain(&io).matches("refused here").count(),
        1,
        "{}",
        chain(&io)
    );
    assert!(io.source().is_some());

    let url = sonar_async::ClientRequest::from_url("http://x/").unwrap_err();
    let url = Error::Url(url);
    let inner = url
        .source()
        .expect("the url error is the source")
        .to_string();
    assert_eq!(chain(&url).matches(&inner).count(), 1, "{}", chain(&url));

    let dead = Error::Keepalive(sonar_async::DeadReason::PongTimeout {
        waited: Duration::from_secs(20),
    });
    let text = dead.to_string();
    assert_eq!(text.matches("keepalive").count(), 1, "{text}");
    assert!(text.contains("20s"), "reports the time waited: {text}");
}

// `try_send` never waits: it hands the message back when the queue is full, and says so when
// the connection is closing. `buffered_amount` is what waits for the transport.
#[tokio::test(start_paused = true)]
async fn try_send_hands_the_message_back_when_the_queue_is_full_or_closed() {
    let config = Config::default().with_write_buffer(4096);
    // A raw peer that never reads, over a 1 KiB pipe.
    let (ws, _peer, _keeper) = support::raw_client(config, 1024).await;
    let (_reader, mut writer) = ws.into_split();
    let message = Message::binary(vec![1u8; 1000]);
    let mut queued = 0;
    let full = loop {
        match writer.try_send(message.clone()) {
            Ok(()) => queued += 1,
            Err(e) => break e,
        }
        assert!(queued < 100, "the queue is bounded");
    };
    assert!(
        matches!(full, sonar_async::TrySendError::Full(_)),
        "{full:?}"
    );
    assert_eq!(full.into_message(), message, "the message comes back");
    assert!(
        writer.buffered_amount() >= 4096 - 1024,
        "{}",
        writer.buffered_amount()
    );

    let mut other = writer.clone();
    let closing = tokio::spawn(async move { other.close(CloseCode::NORMAL, "").await });
    tokio::task::yield_now().await;
    let closed = writer.try_send(message.clone()).unwrap_err();
    assert!(
        matches!(closed, sonar_async::TrySendError::Closed(..)),
        "{closed:?}"
    );
    closing.abort();
}

// The owned halves go back together; halves of two connections do not.
#[tokio::test(start_paused = true)]
async fn into_split_halves_reunite_only_with_their_own_connection() {
    let (a, b) = support::pair(Config::default(), Config::default(), 4096).await;
    let (a_rx, a_tx) = a.into_split();
    let (b_rx, b_tx) = b.into_split();
    let err = a_rx.reunite(b_tx).unwrap_err();
    let sonar_async::ReuniteError(a_rx, b_tx) = err;
    let mut a = a_rx.reunite(a_tx.clone()).unwrap();
    let mut b = b_rx.reunite(b_tx).unwrap();
    a.send("after reunite").await.unwrap();
    let got = timeout(LIMIT, b.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(got.as_text(), Some("after reunite"));
}

// `futures::StreamExt::split` works on a `WebSocket` as on any `Stream + Sink`, in the order
// tokio-tungstenite users write: `(write, read)`.
#[tokio::test(start_paused = true)]
async fn stream_ext_split_gives_sink_then_stream() {
    use futures_util::StreamExt;
    let (a, mut b) = support::pair(Config::default(), Config::default(), 4096).await;
    let (mut write, mut read) = a.split();
    write.send(Message::from("via SplitSink")).await.unwrap();
    let got = timeout(LIMIT, b.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::from("via SplitSink"));
    b.send(String::from("via SplitStream")).await.unwrap();
    let got = timeout(LIMIT, read.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got.into_text().as_deref(), Some("via SplitStream"));
}
