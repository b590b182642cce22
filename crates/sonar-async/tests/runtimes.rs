//! Loopback echo across every pair of runtimes (tokio, smol, async-std as client and as
//! server): 10,000 messages each, text and binary, 0 B to 1 MiB, over real TCP on 127.0.0.1.
//!
//! The echo server and client are written once, generically over `sonar_async::Runtime`;
//! only `block_on` differs per runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use sonar_async::{ClientRequest, CloseCode, Config, Listener, Message, Runtime};
use sonar_async_std::AsyncStd;
use sonar_smol::Smol;
use sonar_tokio::Tokio;

/// Messages per pair.
const COUNT: usize = 10_000;
/// Wall-clock bound for one pair (the test fails instead of hanging).
const PAIR_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tokio,
    Smol,
    AsyncStd,
}

fn block_on<F: Future>(kind: Kind, f: F) -> F::Output {
    match kind {
        Kind::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f),
        Kind::Smol => smol::block_on(f),
        Kind::AsyncStd => async_std::task::block_on(f),
    }
}

/// Size of message `i`: mostly small, every 100th 64 KiB, every 1000th 1 MiB, plus the
/// length-encoding edges.
fn size(i: usize) -> usize {
    const EDGES: [usize; 8] = [0, 1, 125, 126, 127, 65_535, 65_536, 65_537];
    if i % 1000 == 999 {
        1 << 20
    } else if i % 100 == 50 {
        64 * 1024
    } else if i % 10 == 3 {
        EDGES[(i / 10) % EDGES.len()]
    } else {
        (i * 37) % 2048
    }
}

fn message(i: usize) -> Message {
    let n = size(i);
    if i.is_multiple_of(2) {
        // Multi-byte UTF-8: "ü" is two bytes; pad with ASCII to the exact size.
        let mut s = "ü".repeat(n / 2);
        if n % 2 == 1 {
            s.push('x');
        }
        Message::text(s)
    } else {
        Message::binary(Bytes::from(
            (0..n).map(|k| (k + i) as u8).collect::<Vec<u8>>(),
        ))
    }
}

async fn echo_server<R: Runtime>(rt: R, addr_tx: mpsc::Sender<SocketAddr>) {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener = Listener::bind(rt, addr, Config::default()).await.unwrap();
    addr_tx.send(listener.local_addr().unwrap()).unwrap();
    let (incoming, _peer) = listener.accept().await.unwrap();
    let mut ws = incoming.upgrade().await.unwrap();
    while let Some(m) = ws.recv().await {
        ws.send(m.unwrap()).await.unwrap();
    }
    let status = ws.close_status().unwrap();
    assert_eq!(status.code, CloseCode::NORMAL);
    assert!(status.by_peer);
}

async fn echo_client<R: Runtime>(rt: R, addr: SocketAddr) {
    let request = ClientRequest::from_url(&format!("ws://{addr}/echo")).unwrap();
    let (ws, _accepted) = sonar_async::connect(&rt, request, Config::default())
        .await
        .unwrap();
    let (mut rx, mut tx) = ws.into_split();
    let writer = async {
        for i in 0..COUNT {
            tx.send(message(i)).await.unwrap();
        }
    };
    let reader = async {
        for i in 0..COUNT {
            let got = rx.recv().await.expect("connection open").unwrap();
            assert!(got == message(i), "message {i} (size {}) differs", size(i));
        }
    };
    futures_util::join!(writer, reader);
    tx.close(CloseCode::NORMAL, "done").await.unwrap();
    assert!(rx.recv().await.is_none());
    assert_eq!(rx.close_status().unwrap().code, CloseCode::NORMAL);
}

fn run_pair(server: Kind, client: Kind) {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (addr_tx, addr_rx) = mpsc::channel();
        let server_thread = std::thread::spawn(move || match server {
            Kind::Tokio => block_on(server, echo_server(Tokio, addr_tx)),
            Kind::Smol => block_on(server, echo_server(Smol, addr_tx)),
            Kind::AsyncStd => block_on(server, echo_server(AsyncStd, addr_tx)),
        });
        let addr = addr_rx.recv().unwrap();
        match client {
            Kind::Tokio => block_on(client, echo_client(Tokio, addr)),
            Kind::Smol => block_on(client, echo_client(Smol, addr)),
            Kind::AsyncStd => block_on(client, echo_client(AsyncStd, addr)),
        }
        server_thread.join().unwrap();
        done_tx.send(()).unwrap();
    });
    match done_rx.recv_timeout(PAIR_LIMIT) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{client:?} client -> {server:?} server did not finish in {PAIR_LIMIT:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{client:?} client -> {server:?} server failed (see the panic above)")
        }
    }
}

macro_rules! pair_tests {
    ($($name:ident: $server:ident <- $client:ident;)*) => {
        $(
            #[test]
            fn $name() {
                run_pair(Kind::$server, Kind::$client);
            }
        )*
    };
}

pair_tests! {
    tokio_server_tokio_client: Tokio <- Tokio;
    tokio_server_smol_client: Tokio <- Smol;
    tokio_server_async_std_client: Tokio <- AsyncStd;
    smol_server_tokio_client: Smol <- Tokio;
    smol_server_smol_client: Smol <- Smol;
    smol_server_async_std_client: Smol <- AsyncStd;
    async_std_server_tokio_client: AsyncStd <- Tokio;
    async_std_server_smol_client: AsyncStd <- Smol;
    async_std_server_async_std_client: AsyncStd <- AsyncStd;
}

/// One echo through a listener made with `Listener::from_std` from a blocking std listener
/// (it must be made non-blocking on the way in), on `rt`.
async fn echo_once_from_std<R: Runtime>(rt: R) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listener = Listener::from_std(rt.clone(), std_listener, Config::default()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = async {
        let (incoming, _peer) = listener.accept().await.unwrap();
        let mut ws = incoming.upgrade().await.unwrap();
        let m = ws.recv().await.unwrap().unwrap();
        ws.send(m).await.unwrap();
        assert!(ws.recv().await.is_none());
    };
    let client = async {
        let request = ClientRequest::from_url(&format!("ws://{addr}/")).unwrap();
        let (mut ws, _) = sonar_async::connect(&rt, request, Config::default())
            .await
            .unwrap();
        ws.send(Message::text("from std")).await.unwrap();
        assert!(ws.recv().await.unwrap().unwrap() == Message::text("from std"));
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    };
    futures_util::join!(server, client);
}

#[test]
fn a_listener_from_std_accepts_on_every_runtime() {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        block_on(Kind::Tokio, echo_once_from_std(Tokio));
        block_on(Kind::Smol, echo_once_from_std(Smol));
        block_on(Kind::AsyncStd, echo_once_from_std(AsyncStd));
        // smol on an executor of its own, run by this thread only.
        let ex = std::sync::Arc::new(smol::Executor::new());
        let rt = sonar_smol::SmolExecutor::new(ex.clone());
        smol::block_on(ex.run(echo_once_from_std(rt)));
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(PAIR_LIMIT)
        .expect("every runtime echoed through a listener from std");
}
