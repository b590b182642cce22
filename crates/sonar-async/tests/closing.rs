//! How a connection ends: the closing handshake from any task, a failure by the peer (a
//! protocol error, a transport that ends without a Close), dropped handles and a dropped
//! keeper; every waiting call returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use sonar_async::{CloseCode, Config, Error, Message};
use sonar_core::testing::FrameBuilder;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout};

mod support;
use support::peer::{STREAM, expect_close_1000, expect_eof, read_until, text_payload};
use support::{
    LIMIT, PROMPT, pair, quiet, raw_client, raw_client_first, read_frame, recv_error, recv_message,
    settle, small_queues, wait_until,
};

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
        // The echoes arrive (the reader then parks again).
        wait_until("every echo is back", || wr.stats().messages_in == 100).await;
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
    settle().await;
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
    expect_eof(&mut peer, "transport closed").await;
}

// The peer's Close arrives while the application waits in `flush` (peer not reading): once the
// peer reads, the Close is answered and the connection ends, without the close timeout.
#[tokio::test(start_paused = true)]
async fn peer_close_arriving_while_flush_waits_is_answered() {
    let (mut ws, mut peer, _driver) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let watch = ws.sender();
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
    wait_until("bytes wait for the peer", || watch.buffered_amount() > 0).await;
    assert!(!writer.is_finished());
    peer.write_all(&FrameBuilder::close(1000, b"bye").build())
        .await
        .unwrap();
    settle().await;
    let mut next = 0;
    let close = timeout(PROMPT, read_until(&mut peer, 0x88, &mut next))
        .await
        .expect("our Close answers the peer's");
    assert_eq!(close, 1000u16.to_be_bytes());
    assert_eq!(next, 8);
    let _ws = timeout(PROMPT, writer).await.unwrap().unwrap();
}

// A writer blocked on a full queue (the peer never reads) when the application starts
// closing: its `send` fails promptly (it can never queue) instead of sleeping until the
// connection has finished; our Close never leaves, so `close` returns `CloseTimeout` by the
// close timeout (3 s).
#[tokio::test(start_paused = true)]
async fn blocked_send_fails_at_once_and_close_ends_by_the_close_timeout() {
    let cfg = small_queues(quiet()).with_close_timeout(Duration::from_secs(3));
    let (ws, _peer, keeper) = raw_client(cfg, 4 * 1024).await;
    let mut closer = ws.sender();
    let mut ws = ws;
    let writer = tokio::spawn(async move {
        for i in 0..STREAM {
            ws.send(Message::text(text_payload(i))).await?;
        }
        Ok::<_, Error>(ws)
    });
    wait_until("bytes wait for the peer", || closer.buffered_amount() > 0).await;
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
    let _ = timeout(PROMPT, keeper)
        .await
        .expect("keeper finished")
        .unwrap();
}

// A protocol violation by the peer fails the connection with the RFC's close code and the
// application sees the typed error after the messages that came before it.
#[tokio::test(start_paused = true)]
async fn protocol_error_is_reported_after_earlier_messages() {
    let mut first = FrameBuilder::text(b"before").build();
    first.extend(FrameBuilder::new(0x0b, b"").build()); // reserved opcode
    let (mut ws, mut peer, _driver) = raw_client_first(Config::default(), 64 * 1024, &first).await;
    let m = recv_message(&mut ws).await;
    assert_eq!(m, Message::text("before"));
    let err = recv_error(&mut ws).await;
    assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL_ERROR));
    let (b0, close) = read_frame(&mut peer).await;
    assert_eq!((b0, &close[..]), (0x88, &1002u16.to_be_bytes()[..]));
    assert!(ws.recv().await.is_none());
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
    let (mut ws, mut peer, _driver) = raw_client_first(Config::default(), 64 * 1024, &first).await;
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
    let (_ws, mut peer, _driver) = raw_client_first(Config::default(), 64 * 1024, &first).await;
    let (b0, close) = timeout(LIMIT, read_frame(&mut peer)).await.unwrap();
    assert_eq!((b0, close.as_slice()), (0x88, &1002u16.to_be_bytes()[..]));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100),
        "{waited:?}"
    );
}

// A transport that ends without a closing handshake is a failure (1006), not a clean end:
// the messages before it arrive, then `AbnormalClosure` once, then `None`.
#[tokio::test(start_paused = true)]
async fn transport_eof_without_close_is_an_abnormal_closure() {
    let first = FrameBuilder::text(b"last words").build();
    let (mut ws, mut peer, _driver) = raw_client_first(Config::default(), 64 * 1024, &first).await;
    peer.shutdown().await.unwrap();
    let m = recv_message(&mut ws).await;
    assert_eq!(m, Message::text("last words"));
    let err = recv_error(&mut ws).await;
    assert!(matches!(err, Error::AbnormalClosure), "{err}");
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    let status = ws.close_status().unwrap();
    assert_eq!(status.code, CloseCode::ABNORMAL);
    assert!(!status.by_peer);
}

// The peer vanishes (transport EOF, no Close) while one task is parked in recv and another in
// a blocked send: both return promptly, with errors, and the status is 1006.
#[tokio::test(start_paused = true)]
async fn peer_eof_ends_parked_recv_and_blocked_send() {
    let (ws, peer, keeper) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let (mut rd, mut wr) = ws.into_split();
    let watch = wr.clone();
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
    wait_until("bytes wait for the peer", || watch.buffered_amount() > 0).await;
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
    let _ = timeout(PROMPT, keeper)
        .await
        .expect("keeper finished")
        .unwrap();
}

// Dropping every handle (whole socket, halves in either order, with an extra sender) closes
// with 1000, and not before the last handle is gone.
#[tokio::test(start_paused = true)]
async fn dropping_every_handle_sends_close_1000() {
    for variant in 0..4 {
        let (ws, mut peer, keeper) = raw_client(quiet(), 64 * 1024).await;
        match variant {
            0 => drop(ws),
            1 => {
                let (rd, wr) = ws.into_split();
                drop(rd);
                settle().await;
                drop(wr);
            }
            2 => {
                let (rd, wr) = ws.into_split();
                drop(wr);
                settle().await;
                drop(rd);
            }
            _ => {
                let extra = ws.sender();
                drop(ws);
                settle().await;
                peer.write_all(&FrameBuilder::ping(b"still").build())
                    .await
                    .unwrap();
                let (b0, p) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
                assert_eq!((b0, p.as_slice()), (0x8a, &b"still"[..]), "still open");
                drop(extra);
            }
        }
        expect_close_1000(&mut peer).await;
        let r = timeout(PROMPT, keeper).await.unwrap().unwrap();
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

// Dropping the Keeper while a task waits in recv: recv returns (an error, then None) instead
// of hanging, and the peer sees the transport closed.
#[tokio::test(start_paused = true)]
async fn dropping_the_driver_ends_a_parked_recv() {
    let (ws, mut peer, keeper) = raw_client(quiet(), 64 * 1024).await;
    let (mut rd, wr) = ws.into_split();
    let reader = tokio::spawn(async move {
        let first = rd.recv().await;
        let second = rd.recv().await;
        (first.map(|r| r.is_err()), second.is_none())
    });
    settle().await;
    assert!(!reader.is_finished());
    keeper.abort();
    assert!(keeper.await.unwrap_err().is_cancelled());
    let (first, second) = timeout(PROMPT, reader)
        .await
        .expect("recv returns")
        .unwrap();
    assert_eq!(first, Some(true), "the error is reported once");
    assert!(second, "then the end");
    expect_eof(&mut peer, "the keeper is gone").await;
    drop(wr);
}

// Dropping the Keeper while a task is blocked in send (peer not reading): send returns an error.
#[tokio::test(start_paused = true)]
async fn dropping_the_driver_ends_a_blocked_send() {
    let (mut ws, _peer, keeper) = raw_client(small_queues(quiet()), 4 * 1024).await;
    let watch = ws.sender();
    let writer = tokio::spawn(async move {
        for i in 0..40 {
            ws.send(Message::text(text_payload(i))).await?;
        }
        Ok::<_, Error>(())
    });
    wait_until("bytes wait for the peer", || watch.buffered_amount() > 0).await;
    assert!(!writer.is_finished());
    keeper.abort();
    let r = timeout(PROMPT, writer)
        .await
        .expect("send returns")
        .unwrap();
    assert!(r.is_err());
}

// Dropping the Keeper fails a pending user ping instead of leaving it waiting.
#[tokio::test(start_paused = true)]
async fn dropping_the_driver_fails_a_pending_ping() {
    let (ws, mut peer, keeper) = raw_client(quiet(), 64 * 1024).await;
    let pinger = ws.sender();
    let ping = tokio::spawn(async move { pinger.ping_with(b"x".to_vec()).await });
    let (b0, _) = timeout(PROMPT, read_frame(&mut peer)).await.unwrap();
    assert_eq!(b0, 0x89);
    keeper.abort();
    let r = timeout(PROMPT, ping).await.expect("ping returns").unwrap();
    assert!(r.is_err());
    drop(ws);
}
