//! Dead-peer detection on virtual time, on every runtime, in both roles, with the default
//! keepalive (20 s interval, 20 s pong timeout): the peer never answers, and the failure must
//! come at exactly interval + timeout of virtual time (within one 100 ms step).
//!
//! The clock is a manual `Timer`. The test advances it one step at a time and waits until the
//! connection task has polled its sleep again after each step, which means the task has
//! processed everything due up to that time: deterministic even on multi-threaded executors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::future::Future;
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use sonar_async::{ClientRequest, Config, Error, Runtime, Sleep, Timer, WebSocket};
use sonar_async_std::AsyncStd;
use sonar_smol::Smol;
use sonar_testkit::Peer;
use sonar_tokio::Tokio;

const STEP: Duration = Duration::from_millis(100);
/// Interval + timeout of the default keepalive.
const DEAD_AT: Duration = Duration::from_secs(40);
const MAX_VIRTUAL: Duration = Duration::from_secs(120);
/// Real-time bound on waiting for the task to catch up with one step.
const CATCH_UP: Duration = Duration::from_secs(10);
/// Real-time bound on the raw peer's drain (30 s of silence) and its report.
const PEER_LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Clock {
    offset_nanos: AtomicU64,
    /// Incremented by every advance; a sleep records the generation it was last polled at.
    generation: AtomicU64,
    polled_at: AtomicU64,
    wakers: Mutex<Vec<Waker>>,
}

#[derive(Clone)]
struct ManualTimer {
    base: Instant,
    clock: Arc<Clock>,
}

impl ManualTimer {
    fn new() -> Self {
        ManualTimer {
            base: Instant::now(),
            clock: Arc::default(),
        }
    }

    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.clock.offset_nanos.load(SeqCst))
    }

    fn advance(&self, by: Duration) {
        self.clock
            .offset_nanos
            .fetch_add(by.as_nanos() as u64, SeqCst);
        self.clock.generation.fetch_add(1, SeqCst);
        for w in self.clock.wakers.lock().unwrap().drain(..) {
            w.wake();
        }
    }

    /// True once a sleep was polled after the latest advance (the task went idle again).
    fn caught_up(&self) -> bool {
        self.clock.polled_at.load(SeqCst) == self.clock.generation.load(SeqCst)
    }
}

struct ManualSleep {
    deadline: Instant,
    timer: ManualTimer,
}

impl Future for ManualSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let clock = &self.timer.clock;
        clock.wakers.lock().unwrap().push(cx.waker().clone());
        clock.polled_at.store(clock.generation.load(SeqCst), SeqCst);
        if self.timer.now() >= self.deadline {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Sleep for ManualSleep {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
    }
}

impl Timer for ManualTimer {
    fn now(&self) -> Instant {
        self.base + self.elapsed()
    }
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(ManualSleep {
            deadline,
            timer: self.clone(),
        })
    }
}

/// Advances virtual time step by step until `ws` reports an error; returns the virtual time
/// at which it did.
async fn advance_until_failed(timer: &ManualTimer, ws: &mut WebSocket) -> (Duration, Error) {
    loop {
        // Let the task go idle on the current time (or finish: then it polls no sleep).
        let started = Instant::now();
        loop {
            // `recv` is cancel safe, so polling it once per round loses nothing.
            if let Some(item) = futures_util::FutureExt::now_or_never(ws.recv()) {
                let err = item.expect("an error, not a clean end").unwrap_err();
                return (timer.elapsed(), err);
            }
            if timer.caught_up() {
                break;
            }
            assert!(
                started.elapsed() < CATCH_UP,
                "connection task did not catch up"
            );
            std::thread::yield_now();
            yield_once().await;
        }
        assert!(
            timer.elapsed() < MAX_VIRTUAL,
            "no failure after {MAX_VIRTUAL:?}"
        );
        timer.advance(STEP);
    }
}

async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

fn check(at: Duration, err: &Error) {
    assert!(matches!(err, Error::Keepalive(_)), "{err}");
    assert!(at >= DEAD_AT, "declared dead at {at:?}, before {DEAD_AT:?}");
    assert!(at <= DEAD_AT + 2 * STEP, "declared dead at {at:?}");
}

/// A raw peer that completes the handshake and then only reads (never answers).
fn silent_server() -> (u16, mpsc::Receiver<Vec<u8>>) {
    let (addr, peer) = Peer::serve_one(CATCH_UP, |mut s| {
        s.accept().unwrap();
        drain(s)
    })
    .unwrap();
    (addr.port(), peer)
}

/// Every byte after the handshake, until EOF (or 30 s of silence).
fn drain(mut s: Peer) -> Vec<u8> {
    s.get_mut()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    s.read_to_end()
}

/// Client role: the peer saw a masked ping (89 88 + key + 8 bytes = 14 bytes) and then a masked
/// Close (88 98 ...).
fn saw_ping_then_close(bytes: &[u8]) -> bool {
    bytes.len() > 16 && bytes[..2] == [0x89, 0x88] && bytes[14..16] == [0x88, 0x98]
}

async fn client_role<R: Runtime>(rt: R, port: u16, timer: ManualTimer) -> (Duration, Error) {
    let tcp = rt.connect_tcp("127.0.0.1", port).await.unwrap();
    let req = ClientRequest::from_url(&format!("ws://127.0.0.1:{port}/")).unwrap();
    let (mut ws, keeper, _) =
        sonar_async::client(tcp, req, Config::default(), Arc::new(timer.clone()))
            .await
            .unwrap();
    rt.spawn(keeper.detach());
    advance_until_failed(&timer, &mut ws).await
}

async fn server_role<R: Runtime>(
    rt: R,
    addr_tx: mpsc::Sender<u16>,
    timer: ManualTimer,
) -> (Duration, Error) {
    let listener = rt.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    addr_tx
        .send(rt.local_addr(&listener).unwrap().port())
        .unwrap();
    let (tcp, _) = rt.accept_tcp(&listener).await.unwrap();
    let (mut ws, keeper, _) = sonar_async::server(tcp, Config::default(), Arc::new(timer.clone()))
        .await
        .unwrap();
    rt.spawn(keeper.detach());
    advance_until_failed(&timer, &mut ws).await
}

fn block_on<F: Future>(rt: &str, f: F) -> F::Output {
    match rt {
        "tokio" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(f),
        "smol" => smol::block_on(f),
        _ => async_std::task::block_on(f),
    }
}

fn run_client(rt: &'static str) {
    let (port, peer) = silent_server();
    let timer = ManualTimer::new();
    let (at, err) = match rt {
        "tokio" => block_on(rt, client_role(Tokio, port, timer)),
        "smol" => block_on(rt, client_role(Smol, port, timer)),
        _ => block_on(rt, client_role(AsyncStd, port, timer)),
    };
    check(at, &err);
    let seen = peer.recv_timeout(PEER_LIMIT).expect("what the peer saw");
    // Client frames are masked: first byte of the ping frame is 0x89, then a Close follows.
    assert!(saw_ping_then_close(&seen), "{rt}: peer saw {seen:02x?}");
}

fn run_server(rt: &'static str) {
    let (port_tx, port_rx) = mpsc::channel();
    let peer = std::thread::spawn(move || {
        let port = port_rx.recv_timeout(CATCH_UP).unwrap();
        let mut s = Peer::client(TcpStream::connect(("127.0.0.1", port)).unwrap());
        let head = s.connect("127.0.0.1", "/").unwrap();
        assert!(head.starts_with("HTTP/1.1 101"));
        drain(s)
    });
    let timer = ManualTimer::new();
    let (at, err) = match rt {
        "tokio" => block_on(rt, server_role(Tokio, port_tx, timer)),
        "smol" => block_on(rt, server_role(Smol, port_tx, timer)),
        _ => block_on(rt, server_role(AsyncStd, port_tx, timer)),
    };
    check(at, &err);
    let seen = peer.join().unwrap();
    // Server frames: an unmasked ping (89 08 + 8 bytes), then Close 1011 with its reason.
    assert_eq!(&seen[..2], &[0x89, 0x08], "{rt}: {seen:02x?}");
    assert_eq!(
        &seen[10..14],
        &[0x88, 0x18, 0x03, 0xf3],
        "{rt}: {seen:02x?}"
    );
    assert_eq!(&seen[14..], b"keepalive ping timeout");
}

#[test]
fn tokio_client_virtual_time() {
    run_client("tokio");
}
#[test]
fn smol_client_virtual_time() {
    run_client("smol");
}
#[test]
fn async_std_client_virtual_time() {
    run_client("async-std");
}
#[test]
fn tokio_server_virtual_time() {
    run_server("tokio");
}
#[test]
fn smol_server_virtual_time() {
    run_server("smol");
}
#[test]
fn async_std_server_virtual_time() {
    run_server("async-std");
}
