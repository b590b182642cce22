//! Dead-peer detection on every runtime, in both roles, with each adapter's own timer and a
//! scripted raw peer over loopback TCP that never answers pings.
//!
//! Intervals are short (200 ms ping interval, 200 ms pong timeout) so that the real timers of
//! smol and async-std are exercised; the virtual-time version of the same scenario, with the
//! default 20 s / 20 s, is in `keepalive.rs`. Bounds: the failure may not come before
//! interval + timeout (it cannot, the connection only reads the runtime's clock), and must come
//! within a generous 10 s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sonar_async::{ClientRequest, Config, Error, Runtime};
use sonar_async_std::AsyncStd;
use sonar_smol::Smol;
use sonar_testkit::Peer;
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

/// What the silent peer saw after the handshake: every frame (first byte, unmasked payload),
/// then EOF.
fn observe_until_eof(mut s: Peer) -> Vec<(u8, Vec<u8>)> {
    s.get_mut().set_read_timeout(Some(UPPER)).unwrap();
    let mut frames = Vec::new();
    while let Ok(f) = s.recv() {
        assert!(f.payload.len() <= 125, "only control frames expected here");
        frames.push(f.into_pair());
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
    let (addr, peer) = Peer::serve_one(UPPER, |mut s| {
        s.accept().unwrap();
        observe_until_eof(s)
    })
    .unwrap();
    let port = addr.port();
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
    assert_ping_then_close_1011(&peer.recv_timeout(UPPER).expect("what the peer saw"));
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
        let mut s = Peer::client(TcpStream::connect(addr).unwrap());
        let head = s.connect("127.0.0.1", "/").unwrap();
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
