//! `client_raw`: the client handshake that hands back the raw transport, for tools that
//! read and write frames themselves. Frames that arrive in the same segment as the `101`
//! must come back as the leftover, and the handshake is bounded by its timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use futures_util::io::AsyncReadExt;
use sonar_async::{ClientRequest, Config, Error, client_raw};
use sonar_core::testing::FrameBuilder;
use sonar_tokio::{Compat, TokioTimer};
use tokio::io::{AsyncWriteExt, duplex};

mod support;
use support::{accept_response, read_head};

#[tokio::test]
async fn frames_in_the_same_segment_as_the_101_are_returned_as_leftover() {
    let ping = FrameBuilder::ping(b"first").build();
    let text = FrameBuilder::text(b"hello").build();
    let later = FrameBuilder::pong(b"later").build();
    let (a, mut b) = duplex(64 * 1024);
    let (coalesced, after) = (ping.clone(), later.clone());
    let tail = text.clone();
    let (handshake_done, go_on) = futures_channel::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let head = read_head(&mut b).await;
        // One write: the 101 head and two frames in the same segment.
        let mut segment = accept_response(&head).into_bytes();
        segment.extend_from_slice(&coalesced);
        segment.extend_from_slice(&tail);
        b.write_all(&segment).await.unwrap();
        // A later segment, once the client is done with the handshake.
        go_on.await.unwrap();
        b.write_all(&after).await.unwrap();
        (head, b)
    });
    let request = ClientRequest::new("localhost", "/");
    let mut raw = client_raw(Compat::new(a), request, &Config::default(), &TokioTimer)
        .await
        .unwrap();
    handshake_done.send(()).unwrap();
    let (head, _peer) = server.await.unwrap();

    let mut expected = ping;
    expected.extend_from_slice(&text);
    assert_eq!(&raw.leftover[..], &expected[..]);
    assert_eq!(raw.accepted.subprotocol, None);
    // The request goes out as given: a raw caller has no inflater, so no deflate offer.
    assert!(
        !head.to_ascii_lowercase().contains("permessage-deflate"),
        "{head}"
    );
    // The transport goes on where the leftover ends.
    let mut next = vec![0u8; later.len()];
    raw.io.read_exact(&mut next).await.unwrap();
    assert_eq!(next, later);
}

#[tokio::test]
async fn a_101_alone_leaves_no_leftover() {
    let (a, mut b) = duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let head = read_head(&mut b).await;
        b.write_all(accept_response(&head).as_bytes())
            .await
            .unwrap();
        b
    });
    let request = ClientRequest::new("localhost", "/");
    let raw = client_raw(Compat::new(a), request, &Config::default(), &TokioTimer)
        .await
        .unwrap();
    let _peer = server.await.unwrap();
    assert!(raw.leftover.is_empty());
}

#[tokio::test]
async fn a_refused_upgrade_is_a_handshake_error() {
    let (a, mut b) = duplex(64 * 1024);
    let server = tokio::spawn(async move {
        read_head(&mut b).await;
        b.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        b
    });
    let request = ClientRequest::new("localhost", "/");
    let result = client_raw(Compat::new(a), request, &Config::default(), &TokioTimer).await;
    let _peer = server.await.unwrap();
    assert!(matches!(result, Err(Error::Handshake(_))), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_fails_with_the_handshake_timeout() {
    let (a, _silent) = duplex(64 * 1024);
    let config = Config::default().with_handshake_timeout(Duration::from_secs(3));
    let request = ClientRequest::new("localhost", "/");
    let result = client_raw(Compat::new(a), request, &config, &TokioTimer).await;
    assert!(matches!(result, Err(Error::HandshakeTimeout)), "{result:?}");
}

#[cfg(not(feature = "rustls"))]
#[tokio::test]
async fn wss_without_the_rustls_feature_is_refused() {
    let (a, _peer) = duplex(1024);
    let request = ClientRequest::from_url("wss://localhost/").unwrap();
    let result = client_raw(Compat::new(a), request, &Config::default(), &TokioTimer).await;
    assert!(matches!(result, Err(Error::TlsNotEnabled)), "{result:?}");
}
