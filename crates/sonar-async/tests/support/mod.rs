//! Helpers shared by the sonar-async integration tests: in-memory pairs of sonar endpoints,
//! sonar clients of a raw scripted peer, the peer's frame and handshake readers over a tokio
//! pipe (sonar-testkit's, through `Compat`), configurations and bounded waits.
//! [`peer`] holds what a raw peer reads and checks, [`transports`] the scripted transports.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod peer;
pub mod transports;

use std::sync::Arc;
use std::time::Duration;

use sonar_async::{Config, Error, WebSocket};
use sonar_tokio::{Compat, TokioTimer};
use tokio::io::{AsyncWriteExt, DuplexStream, duplex};
use tokio::task::JoinHandle;

/// Guard for virtual-time tests (virtual seconds cost nothing).
pub const LIMIT: Duration = Duration::from_secs(300);
/// Far below every keepalive deadline in these tests: only a transport wake-up (taken by the
/// waiting task, or by the keeper's watch within `TAKEOVER_DELAY`) answers in time.
pub const PROMPT: Duration = Duration::from_secs(1);

/// Keepalive off: the keeper has no deadline of its own, so anything that happens must have
/// been triggered by a wake-up (or by the keeper's watch over a hand-off not taken).
pub fn quiet() -> Config {
    let mut cfg = Config::default()
        .with_ping_interval(None)
        .with_pong_timeout(None);
    cfg.keepalive.write_stall_timeout = None;
    cfg
}

/// `cfg` with a write queue of 4 messages and a 4 KiB write buffer: a writer soon waits.
pub fn small_queues(mut cfg: Config) -> Config {
    cfg = cfg.with_write_queue(4);
    cfg.write_buffer = 4 * 1024;
    cfg
}

/// `n` bytes of JSON-like text that compresses well.
pub fn compressible(n: usize) -> String {
    "{\"event\":\"tick\",\"price\":101.25,\"size\":7}\n"
        .repeat(n / 40 + 1)
        .chars()
        .take(n)
        .collect()
}

/// Waits until `cond` holds: checked every millisecond (on tokio's paused clock, each check
/// comes once every task is idle), at most 10,000 times and within [`LIMIT`]; panics naming
/// `what` otherwise.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let wait = async {
        for _ in 0..10_000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{what}: not after 10,000 checks");
    };
    tokio::time::timeout(LIMIT, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {LIMIT:?}"));
}

/// Lets every task run until none can: on tokio's paused clock a sleep ends only once every
/// task is idle. For a check that something has *not* happened (a task still waits); 1 ms
/// of virtual time passes, less than `sonar_async::TAKEOVER_DELAY`.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// The next message `ws` receives (within [`LIMIT`]).
pub async fn recv_message(ws: &mut WebSocket) -> sonar_async::Message {
    tokio::time::timeout(LIMIT, ws.recv())
        .await
        .expect("a message in time")
        .expect("a message, not the end")
        .expect("a message, not an error")
}

/// The error `ws` receives next (within [`LIMIT`]).
pub async fn recv_error(ws: &mut WebSocket) -> Error {
    tokio::time::timeout(LIMIT, ws.recv())
        .await
        .expect("an error in time")
        .expect("an error, not the end")
        .expect_err("an error, not a message")
}

pub fn timer() -> Arc<dyn sonar_async::Timer> {
    Arc::new(TokioTimer)
}

/// A connected pair of sonar endpoints over an in-memory pipe, keepers spawned.
pub async fn pair(
    client_cfg: Config,
    server_cfg: Config,
    capacity: usize,
) -> (WebSocket, WebSocket) {
    let (a, b) = duplex(capacity);
    let server = tokio::spawn(async move {
        let (ws, keeper, _req) = sonar_async::server(Compat::new(b), server_cfg, timer())
            .await
            .unwrap();
        tokio::spawn(keeper);
        ws
    });
    let req = sonar_async::ClientRequest::new("localhost", "/");
    let (client, keeper, _acc) = sonar_async::client(Compat::new(a), req, client_cfg, timer())
        .await
        .unwrap();
    tokio::spawn(keeper);
    (client, server.await.unwrap())
}

/// Reads one frame from a raw peer stream; returns (first byte, unmasked payload).
pub async fn read_frame(s: &mut DuplexStream) -> (u8, Vec<u8>) {
    sonar_testkit::read_frame_async(&mut Compat::new(s))
        .await
        .expect("a frame")
        .into_pair()
}

/// Reads an HTTP head (bounded), consuming nothing after it.
pub async fn read_head(s: &mut DuplexStream) -> String {
    let head = sonar_testkit::read_head_exact_async(&mut Compat::new(s))
        .await
        .expect("a head");
    String::from_utf8(head).unwrap()
}

/// The 101 that accepts the request `head`.
pub fn accept_response(head: &str) -> String {
    sonar_testkit::accept_response(head, None).expect("request has a key")
}

/// A sonar client connected to a raw, scripted server over a pipe of `capacity` bytes per
/// direction; the keeper is spawned and its handle returned (abort it to drop the keeper).
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
    raw_client_inner(cfg, capacity, wrap, &[], Reads::Plain).await
}

/// A sonar server accepting a raw, scripted client over a pipe of `capacity` bytes per
/// direction; the client's request carries `extra` header lines (each ending in `\r\n`),
/// and the 101 has been read off the returned stream. The keeper is spawned.
pub async fn raw_server(
    cfg: Config,
    capacity: usize,
    extra: &str,
) -> (WebSocket, DuplexStream, JoinHandle<Result<(), Error>>) {
    let (a, mut b) = duplex(capacity);
    let request = sonar_testkit::upgrade_request("localhost", "/", sonar_testkit::SAMPLE_KEY);
    let request = request.replacen("\r\n\r\n", &format!("\r\n{extra}\r\n"), 1);
    let server = tokio::spawn(async move {
        sonar_async::server(Compat::new(a), cfg, timer())
            .await
            .unwrap()
    });
    b.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut b).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (ws, keeper, _request) = server.await.unwrap();
    (ws, b, tokio::spawn(keeper))
}

/// How the client side of a [`raw_client`] reads its transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Through futures-io `poll_read` (initialised memory, the per-thread buffer).
    Plain,
    /// Into uninitialised memory (`sonar_tokio::Compat::transport`, as sonar-tokio's own
    /// connections do).
    Spare,
}

/// [`raw_client`] reading its transport the way `reads` says.
pub async fn raw_client_reading(
    cfg: Config,
    capacity: usize,
    reads: Reads,
) -> (WebSocket, DuplexStream, JoinHandle<Result<(), Error>>) {
    raw_client_inner(cfg, capacity, |a| a, &[], reads).await
}

/// [`raw_client`] whose raw server sends `first` (frames) in the same write as its 101.
pub async fn raw_client_first(
    cfg: Config,
    capacity: usize,
    first: &[u8],
) -> (WebSocket, DuplexStream, JoinHandle<Result<(), Error>>) {
    raw_client_inner(cfg, capacity, |a| a, first, Reads::Plain).await
}

async fn raw_client_inner<T>(
    cfg: Config,
    capacity: usize,
    wrap: impl FnOnce(DuplexStream) -> T,
    first: &[u8],
    reads: Reads,
) -> (WebSocket, DuplexStream, JoinHandle<Result<(), Error>>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (a, mut b) = duplex(capacity);
    let a = wrap(a);
    let first = first.to_vec();
    let server = tokio::spawn(async move {
        let head = read_head(&mut b).await;
        let mut out = accept_response(&head).into_bytes();
        out.extend_from_slice(&first);
        b.write_all(&out).await.unwrap();
        b
    });
    let req = sonar_async::ClientRequest::new("localhost", "/");
    let transport = match reads {
        Reads::Plain => sonar_async::Transport::new(Compat::new(a)),
        Reads::Spare => Compat::transport(a),
    };
    let (ws, keeper, _) = sonar_async::client(transport, req, cfg, timer())
        .await
        .unwrap();
    let handle = tokio::spawn(keeper);
    (ws, server.await.unwrap(), handle)
}
