//! Messages round trip between two sonar endpoints whole and in order, whatever their size
//! and kind, through `send`/`recv` or `Sink`/`Stream`, over the worst legal transport.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sonar_async::{CloseCode, Config, Message};
use sonar_tokio::Compat;
use tokio::io::duplex;
use tokio::time::timeout;

mod support;
use support::transports::Trickle;
use support::{LIMIT, pair, recv_message, timer};

#[tokio::test(start_paused = true)]
async fn echo_text_and_binary_of_many_sizes() {
    let (mut client, mut server) = pair(Config::default(), Config::default(), 64 * 1024).await;
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
        let got = recv_message(&mut client).await;
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

// Stream/Sink echo between two sonar endpoints: `next()` and `SinkExt::send` on both sides.
#[tokio::test(start_paused = true)]
async fn stream_and_sink_round_trip_every_message() {
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

// Every read and write moves one byte and every other call is Pending, on both sides and
// through both handshakes: the result is the same as with a fast transport.
#[tokio::test(start_paused = true)]
async fn one_byte_reads_and_writes_with_pending_change_nothing() {
    let (a, b) = duplex(64);
    let server = tokio::spawn(async move {
        let io = Trickle::new(Compat::new(b));
        let (mut ws, keeper, req) = sonar_async::server(io, Config::default(), timer())
            .await
            .unwrap();
        tokio::spawn(keeper);
        assert_eq!(req.path(), "/trickle");
        while let Some(m) = ws.recv().await {
            ws.send(m.unwrap()).await.unwrap();
        }
        ws.close_status().unwrap()
    });
    let req = sonar_async::ClientRequest::new("localhost", "/trickle");
    let io = Trickle::new(Compat::new(a));
    let (mut ws, keeper, _) = sonar_async::client(io, req, Config::default(), timer())
        .await
        .unwrap();
    tokio::spawn(keeper);
    for n in [0usize, 1, 126, 3000] {
        let msg = Message::text("ä".repeat(n));
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(recv_message(&mut ws).await, msg);
    }
    ws.close(CloseCode::GOING_AWAY, "bye").await.unwrap();
    let status = timeout(LIMIT, server).await.unwrap().unwrap();
    assert_eq!(
        (status.code, status.reason.as_str()),
        (CloseCode::GOING_AWAY, "bye")
    );
}
