//! Dead-peer detection on every runtime, in both roles, with each adapter's own timer and a
//! scripted raw peer over loopback TCP that never answers pings.
//!
//! Intervals are short (200 ms ping interval, 200 ms pong timeout) so that the real timers of
//! smol and async-std are exercised; the virtual-time version of the same scenario, with the
//! default 20 s / 20 s, is in `driver.rs`. Bounds: the failure may not come before
//! interval + timeout (it cannot, the driver only reads the runtime's clock), and must come
//! within a generous 10 s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sonar_async::{ClientRequest, Config, Error, Runtime};
use sonar_async_std::AsyncStd;
use sonar_smol::Smol;
use sonar_tokio::Tokio;

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(200);
const UPPER: Duration = Duration::from_secs(10);

fn config() -> Config {
    Config::default()
        .with_ping_interval(Some(INTERVAL))
        .with_pong_timeout(Some(TIMEOUT))
}

fn block_on<F: std::future::Future>(rt: &str, f: F) -> F::Output {
    match rt {
        "tokio" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f),
        "smol" => smol::block_on(f),
        _ => async_std::task::block_on(f),
    }
}

fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "eof in head");
        head.push(b[0]);
        assert!(head.len() < 8192);
    }
    String::from_utf8(head).unwrap()
}

/// Reads one frame: (first byte, unmasked payload); None at EOF.
fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    if s.read_exact(&mut h).is_err() {
        return None;
    }
    let len = usize::from(h[1] & 0x7f);
    assert!(len <= 125, "only control frames expected here");
    let mut key = [0u8; 4];
    if h[1] & 0x80 != 0 {
        s.read_exact(&mut key).unwrap();
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    if h[1] & 0x80 != 0 {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some((h[0], payload))
}

/// What the silent peer saw after the handshake: every frame, then EOF.
fn observe_until_eof(mut s: TcpStream) -> Vec<(u8, Vec<u8>)> {
    s.set_read_timeout(Some(UPPER)).unwrap();
    let mut frames = Vec::new();
    while let Some(f) = read_frame(&mut s) {
        frames.push(f);
        assert!(frames.len() < 10, "too many frames: {frames:?}");
    }
    frames
}

fn assert_ping_then_close_1011(frames: &[(u8, Vec<u8>)]) {
    assert_eq!(frames.len(), 2, "{frames:?}");
    let (b0, ping) = &frames[0];
    assert_eq!(*b0, 0x89);
    assert_eq!(ping.len(), 8);
    let (b0, close) = &frames[1];
    assert_eq!(*b0, 0x88);
    assert_eq!(&close[..2], &1011u16.to_be_bytes());
    assert_eq!(&close[2..], b"keepalive ping timeout");
}

/// Our client against a raw server that never answers.
async fn client_role<R: Runtime>(rt: R, port: u16) -> Duration {
    let request = ClientRequest::from_url(&format!("ws://127.0.0.1:{port}/")).unwrap();
    // Taken before the handshake: keepalive's clock starts inside it, so a death measured
    // from here can never look early because this thread was slow to resume.
    let opened = Instant::now();
    let (mut ws, _) = sonar_async::connect(&rt, request, config()).await.unwrap();
    let err = ws
        .recv()
        .await
        .expect("an error, not a clean end")
        .unwrap_err();
    assert!(matches!(err, Error::Keepalive(_)), "{err}");
    assert!(err.is_timeout());
    opened.elapsed()
}

fn run_client_role(rt: &'static str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let head = read_head(&mut s);
        // Header names are case-insensitive; the base64 key itself is not.
        let key_line = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("sec-websocket-key:"))
            .unwrap();
        let key = key_line["sec-websocket-key:".len()..].trim();
        let accept = sonar_handshake::accept_key(key.as_bytes());
        write!(s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").unwrap();
        observe_until_eof(s)
    });
    let elapsed = match rt {
        "tokio" => block_on(rt, client_role(Tokio, port)),
        "smol" => block_on(rt, client_role(Smol, port)),
        _ => block_on(rt, client_role(AsyncStd, port)),
    };
    assert!(
        elapsed >= INTERVAL + TIMEOUT,
        "{rt}: dead after {elapsed:?}"
    );
    assert!(elapsed < UPPER, "{rt}: dead after {elapsed:?}");
    assert_ping_then_close_1011(&peer.join().unwrap());
}

/// Our server (runtime listener) against a raw client that never answers.
async fn server_side<R: Runtime>(rt: R, addr_tx: mpsc::Sender<std::net::SocketAddr>) -> Duration {
    let addr = "127.0.0.1:0".parse().unwrap();
    let listener = sonar_async::Listener::bind(rt, addr, config())
        .await
        .unwrap();
    addr_tx.send(listener.local_addr().unwrap()).unwrap();
    let (incoming, _) = listener.accept().await.unwrap();
    let opened = Instant::now();
    let mut ws = incoming.upgrade().await.unwrap();
    let err = ws
        .recv()
        .await
        .expect("an error, not a clean end")
        .unwrap_err();
    assert!(matches!(err, Error::Keepalive(_)), "{err}");
    opened.elapsed()
}

fn run_server_role(rt: &'static str) {
    let (addr_tx, addr_rx) = mpsc::channel();
    let peer = std::thread::spawn(move || {
        let addr = addr_rx.recv_timeout(UPPER).unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        observe_until_eof(s)
    });
    let elapsed = match rt {
        "tokio" => block_on(rt, server_side(Tokio, addr_tx)),
        "smol" => block_on(rt, server_side(Smol, addr_tx)),
        _ => block_on(rt, server_side(AsyncStd, addr_tx)),
    };
    assert!(
        elapsed >= INTERVAL + TIMEOUT,
        "{rt}: dead after {elapsed:?}"
    );
    assert!(elapsed < UPPER, "{rt}: dead after {elapsed:?}");
    assert_ping_then_close_1011(&peer.join().unwrap());
}

#[test]
fn tokio_client_detects_dead_server() {
    run_client_role("tokio");
}
#[test]
fn smol_client_detects_dead_server() {
    run_client_role("smol");
}
#[test]
fn async_std_client_detects_dead_server() {
    run_client_role("async-std");
}
#[test]
fn tokio_server_detects_dead_client() {
    run_server_role("tokio");
}
#[test]
fn smol_server_detects_dead_client() {
    run_server_role("smol");
}
#[test]
fn async_std_server_detects_dead_client() {
    run_server_role("async-std");
}
