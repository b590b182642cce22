//! Opening a connection: the handshake is bounded by its timeout, and frames that arrive
//! with the `101` or were read past the head by another HTTP server reach the codec.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use sonar_async::{Config, Error, Message, Role};
use sonar_core::testing::FrameBuilder;
use sonar_tokio::Compat;
use tokio::io::duplex;
use tokio::time::{Instant, timeout};

mod support;
use support::{LIMIT, raw_client_first, read_frame, recv_message, timer};

// C-24 / B6: the 101 and the first frames arrive in one write; the Ping is answered and the
// Text delivered (spec T18 through the whole stack).
#[tokio::test(start_paused = true)]
async fn frames_coalesced_with_the_101_are_not_lost() {
    let mut first = FrameBuilder::ping(b"hi").build();
    first.extend(FrameBuilder::text(b"Hello").build());
    let (mut ws, mut peer, _driver) = raw_client_first(Config::default(), 64 * 1024, &first).await;
    let m = recv_message(&mut ws).await;
    assert_eq!(m, Message::text("Hello"));
    let (b0, payload) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
    assert_eq!(b0, 0x8a, "pong with FIN set");
    assert_eq!(payload, b"hi");
}

// from_upgraded: leftover bytes that another HTTP server read past the head reach the codec.
#[tokio::test(start_paused = true)]
async fn from_upgraded_consumes_leftover_first() {
    let (a, mut b) = duplex(1024);
    let leftover = FrameBuilder::text(b"early").mask([1, 2, 3, 4]).build();
    let (mut ws, keeper) = sonar_async::from_upgraded(
        Compat::new(a),
        Role::Server,
        &leftover,
        Config::default(),
        timer(),
    );
    tokio::spawn(keeper);
    let m = recv_message(&mut ws).await;
    assert_eq!(m, Message::text("early"));
    ws.send(Message::text("reply")).await.unwrap();
    let (b0, payload) = read_frame(&mut b).await;
    assert_eq!((b0, payload.as_slice()), (0x81, &b"reply"[..]));
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
