//! Connecting again: a client retries while the server is away and connects once it is back;
//! a rejection such as 403 is never retried.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use sonar_tokio::{ClientRequest, Config, Error, Message, Reconnect, RetryPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

fn quick() -> RetryPolicy {
    RetryPolicy::new()
        .with_initial_delay(Duration::from_millis(5))
        .with_max_delay(Duration::from_millis(50))
        .with_max_tries(100)
}

fn request(addr: SocketAddr) -> ClientRequest {
    ClientRequest::from_url(&format!("ws://{addr}/")).unwrap()
}

/// Accepts `n` TCP connections on `listener` and drops each at once (a server that is going
/// away), then gives the port up.
async fn drop_connections(listener: TcpListener, n: usize) {
    for _ in 0..n {
        let (tcp, _) = listener.accept().await.unwrap();
        drop(tcp);
    }
}

// The server goes away after one connection (its next three connections are dropped during
// the handshake, then nothing listens for a moment) and comes back on the same port: the
// client connects again by itself and the new connection works.
#[tokio::test]
async fn a_client_connects_again_when_the_server_comes_back() {
    let run = async {
        let listener = sonar_tokio::listen("127.0.0.1:0".parse().unwrap(), Config::default())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = Reconnect::new(
            sonar_tokio::Tokio,
            request(addr),
            Config::default(),
            quick(),
        );
        let first = tokio::spawn(async move {
            let (incoming, _) = listener.accept().await.unwrap();
            let mut ws = incoming.upgrade().await.unwrap();
            ws.close(sonar_tokio::CloseCode::GOING_AWAY, "restarting")
                .await
                .unwrap();
        });
        let (mut ws, _) = client.next().await.unwrap().unwrap();
        assert!(ws.recv().await.is_none(), "the server closed");
        let status = ws.close_status().expect("a closing handshake");
        assert_eq!(
            (status.code, status.reason.as_str(), status.by_peer),
            (sonar_tokio::CloseCode::GOING_AWAY, "restarting", true)
        );
        first.await.unwrap();
        // Away: three tries fail in the handshake.
        let away = TcpListener::bind(addr).await.unwrap();
        let retrying = tokio::spawn(async move {
            let next = client.next().await;
            (client, next)
        });
        drop_connections(away, 3).await;
        // Back, on the same port.
        let listener = sonar_tokio::listen(addr, Config::default()).await.unwrap();
        let (incoming, _) = listener.accept().await.unwrap();
        let mut server = incoming.upgrade().await.unwrap();
        let (_client, next) = retrying.await.unwrap();
        let (mut ws, _) = next.unwrap().expect("connected again");
        ws.send("after the restart").await.unwrap();
        assert_eq!(
            server.recv().await.unwrap().unwrap(),
            Message::text("after the restart")
        );
    };
    timeout(LIMIT, run).await.expect("no stall");
}

// A 403 is the server's answer, not a failure to reach it: one try, and the client stops.
#[tokio::test]
async fn a_rejected_upgrade_is_not_retried() {
    let run = async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut tries = 0;
            // Answers 403 to every request until the client gives up (it closes its end).
            while let Ok(Ok((mut tcp, _))) =
                timeout(Duration::from_millis(500), listener.accept()).await
            {
                tries += 1;
                let mut head = [0u8; 4096];
                let _ = tcp.read(&mut head).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
            tries
        });
        let mut client = Reconnect::new(
            sonar_tokio::Tokio,
            request(addr),
            Config::default(),
            quick(),
        );
        let err = client.next().await.unwrap().unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Handshake(sonar_tokio::ClientError::Rejected { status: 403, .. })
            ),
            "{err:?}"
        );
        assert!(!err.is_transient());
        assert!(client.next().await.is_none(), "the client stopped");
        assert_eq!(server.await.unwrap(), 1, "one try only");
    };
    timeout(LIMIT, run).await.expect("no stall");
}

// With a limit on tries and nothing listening, the client gives up with the last error.
#[tokio::test]
async fn the_client_gives_up_after_its_last_try() {
    let run = async {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let policy = quick().with_max_tries(3);
        let err = sonar_tokio::generic::connect_retrying(
            &sonar_tokio::Tokio,
            request(addr),
            Config::default(),
            &policy,
        )
        .await
        .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
    };
    timeout(LIMIT, run).await.expect("no stall");
}
