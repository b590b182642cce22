//! Helpers shared by the sonar-async integration tests: in-memory endpoints and a raw peer's
//! frame and handshake readers.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::Arc;

use sonar_async::{Config, Error, WebSocket};
use sonar_tokio::{Compat, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::task::JoinHandle;

pub fn timer() -> Arc<dyn sonar_async::Timer> {
    Arc::new(TokioTimer)
}

/// A connected pair of sonar endpoints over an in-memory pipe, drivers spawned.
pub async fn pair(
    client_cfg: Config,
    server_cfg: Config,
    capacity: usize,
) -> (WebSocket, WebSocket) {
    let (a, b) = duplex(capacity);
    let server = tokio::spawn(async move {
        let (ws, driver, _req) = sonar_async::server(Compat::new(b), server_cfg, timer())
            .await
            .unwrap();
        tokio::spawn(driver);
        ws
    });
    let req = sonar_async::ClientRequest::new("localhost", "/");
    let (client, driver, _acc) = sonar_async::client(Compat::new(a), req, client_cfg, timer())
        .await
        .unwrap();
    tokio::spawn(driver);
    (client, server.await.unwrap())
}

/// Reads one frame from a raw peer stream; returns (first byte, unmasked payload).
pub async fn read_frame(s: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.unwrap();
    let masked = h[1] & 0x80 != 0;
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        len = u64::from(s.read_u16().await.unwrap());
    } else if len == 127 {
        len = s.read_u64().await.unwrap();
    }
    let mut key = [0u8; 4];
    if masked {
        s.read_exact(&mut key).await.unwrap();
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await.unwrap();
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    (h[0], payload)
}

pub async fn read_head(s: &mut DuplexStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
        assert!(head.len() < 8192, "head too long");
    }
    String::from_utf8(head).unwrap()
}

pub fn accept_for(head: &str) -> String {
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then_some(value)
        })
        .expect("request has a key");
    sonar_handshake::accept_key(key.trim().as_bytes())
}

/// A sonar client connected to a raw, scripted server over a pipe of `capacity` bytes per
/// direction; the driver is spawned and its handle returned (abort it to drop the driver).
pub async fn raw_client(
    cfg: Config,
    capacity: usize,
) -> (WebSocket, DuplexStream, JoinHandle<Result<(), Error>>) {
    raw_client_with(cfg, capacity, |a| a).await
}

/// [`raw_client`] over a wrapped transport (a test's wrapper, for example one that counts polls).
pub async fn raw_client_with<T>(
    cfg: Config,
    capacity: usize,
    wrap: impl FnOnce(DuplexStream) -> T,
) -> (WebSocket, DuplexStream, JoinHandle<Result<(), Error>>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (a, mut b) = duplex(capacity);
    let a = wrap(a);
    let server = tokio::spawn(async move {
        let head = read_head(&mut b).await;
        let out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            accept_for(&head)
        );
        b.write_all(out.as_bytes()).await.unwrap();
        b
    });
    let req = sonar_async::ClientRequest::new("localhost", "/");
    let (ws, driver, _) = sonar_async::client(Compat::new(a), req, cfg, timer())
        .await
        .unwrap();
    let handle = tokio::spawn(driver);
    (ws, server.await.unwrap(), handle)
}
