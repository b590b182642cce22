//! How many task and transport polls a connection costs: in an echo the application's task
//! does the work and the connection's keeper task stays asleep (one wake-up per event); an
//! idle connection and one flooded with pings it cannot answer do not spin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use sonar_async::{Config, Message};
use sonar_core::testing::FrameBuilder;
use sonar_tokio::{Compat, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

mod support;
use support::transports::{counted_client, polls};
use support::{PROMPT, quiet, read_frame};

/// A future that counts its polls.
struct Counted<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicU64>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

fn counted<F: Future>(inner: F, polls: &Arc<AtomicU64>) -> Counted<F> {
    Counted {
        inner: Box::pin(inner),
        polls: polls.clone(),
    }
}

/// What the server side of an echo run cost in task polls.
struct Polls {
    echoes: u64,
    app: u64,
    keeper: u64,
    elapsed: Duration,
}

/// Task polls on the server side of `conns` TCP connections, each echoing `echoes` 16-byte
/// messages in a closed loop.
async fn echo_polls(conns: usize, echoes: usize) -> Polls {
    let app = Arc::new(AtomicU64::new(0));
    let keeper = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = {
        let (app, keeper) = (app.clone(), keeper.clone());
        tokio::spawn(async move {
            for _ in 0..conns {
                let (tcp, _) = listener.accept().await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let (mut ws, keeper_task, _req) =
                    sonar_async::server(Compat::new(tcp), Config::default(), Arc::new(TokioTimer))
                        .await
                        .unwrap();
                tokio::spawn(counted(keeper_task, &keeper));
                tokio::spawn(counted(
                    async move {
                        while let Some(Ok(m)) = ws.recv().await {
                            if ws.send(m).await.is_err() {
                                break;
                            }
                        }
                    },
                    &app,
                ));
            }
        })
    };
    let mut clients = Vec::new();
    for _ in 0..conns {
        let mut ws = sonar_tokio::connect(&format!("ws://{addr}/"))
            .await
            .unwrap();
        clients.push(tokio::spawn(async move {
            // Settle: the handshake and both keepers' first rounds are not echoes.
            ws.send(Message::binary(vec![0u8; 16])).await.unwrap();
            ws.recv().await.unwrap().unwrap();
            ws
        }));
    }
    let mut ready = Vec::new();
    for c in clients {
        ready.push(c.await.unwrap());
    }
    server.await.unwrap();
    let (app0, keeper0) = (app.load(Relaxed), keeper.load(Relaxed));
    let start = std::time::Instant::now();
    let mut runs = Vec::new();
    for mut ws in ready {
        runs.push(tokio::spawn(async move {
            for i in 0..echoes {
                let payload = [i as u8; 16];
                ws.send(Message::binary(payload.to_vec())).await.unwrap();
                let echo = ws.recv().await.unwrap().unwrap();
                assert_eq!(echo.payload().as_ref(), payload);
            }
            ws
        }));
    }
    let mut done = Vec::new();
    for r in runs {
        done.push(r.await.unwrap());
    }
    let polls = Polls {
        echoes: (conns * echoes) as u64,
        app: app.load(Relaxed) - app0,
        keeper: keeper.load(Relaxed) - keeper0,
        elapsed: start.elapsed(),
    };
    let per = |n: u64| n as f64 / polls.echoes as f64;
    eprintln!(
        "{conns} conns x {echoes} echoes: {:.3} application polls, {:.3} keeper polls per echo",
        per(polls.app),
        per(polls.keeper)
    );
    drop(done);
    polls
}

// The application's task is woken once per echo and does the work. The keeper is not
// polled per echo: only by its watch over the hand-offs, whose checks back off to
// `WATCH_INTERVAL_MAX` apart while the application takes every hand-off: one check per
// `WATCH_INTERVAL_MAX` and connection once backed off, whatever the number of echoes.
// Allowed are four per `WATCH_INTERVAL_MAX` plus twelve per connection, because backing off
// takes a few checks and a takeover (a hand-off still waiting at the next check, which a
// loaded test machine can cause) starts the gaps again from `TAKEOVER_DELAY`. Checks every
// `TAKEOVER_DELAY` (the watch before it backed off) cost
// 0.096 keeper polls per echo at 64 connections, release, above this bound (3,048 polls
// against 2,048 allowed in one run); the watch itself, taking over from a task that does
// not drive, is covered by the kept-future and cancellation tests.
#[tokio::test]
async fn an_echo_wakes_only_the_application_task() {
    let run = async {
        for conns in [1, 64] {
            let p = echo_polls(conns, 500).await;
            assert!(
                p.app <= p.echoes * 3 / 2,
                "{} application polls for {} echoes",
                p.app,
                p.echoes
            );
            let half_max = sonar_async::WATCH_INTERVAL_MAX.as_nanos() / 2;
            let checks = p.elapsed.as_nanos() / half_max + 6;
            let watch_polls = 2 * conns as u128 * checks;
            assert!(
                u128::from(p.keeper) <= watch_polls + u128::from(p.echoes) / 100,
                "{} keeper polls for {} echoes in {:?} ({watch_polls} allowed for the watch)",
                p.keeper,
                p.echoes,
                p.elapsed
            );
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the echoes finish");
}

// An idle connection with keepalive on, over 10 virtual minutes: the transport is polled a
// bounded number of times per ping round trip (no spinning keeper).
#[tokio::test(start_paused = true)]
async fn idle_connection_does_not_spin() {
    let (ws, mut peer, _driver, count) =
        counted_client(Config::default(), 64 * 1024, 100_000).await;
    let start = polls(&count);
    let mut pings = 0;
    let answer = async {
        loop {
            let (b0, p) = read_frame(&mut peer).await;
            assert_eq!(b0, 0x89);
            peer.write_all(&FrameBuilder::pong(&p).build())
                .await
                .unwrap();
            pings += 1;
        }
    };
    let _ = timeout(Duration::from_secs(600), answer).await;
    let used = polls(&count) - start;
    eprintln!("idle: {used} transport polls for {pings} pings");
    // One ping every 20 s: 30 round trips.
    assert!((29..=31).contains(&pings), "{pings} pings");
    assert!(
        used <= 20 * pings,
        "{used} transport polls for {pings} pings"
    );
    assert!(ws.close_status().is_none(), "still open");
}

// The peer floods pings and reads nothing: pongs are owed but cannot be written. The codec
// stops in front of each ping whose pong is still owed; the connection must not spin on that.
#[tokio::test(start_paused = true)]
async fn ping_flood_with_blocked_output_does_not_spin() {
    let (mut ws, mut peer, _driver, count) = counted_client(quiet(), 4 * 1024, 200_000).await;
    let mut flood = Vec::new();
    for i in 0..20_000u32 {
        flood.extend(FrameBuilder::ping(&i.to_be_bytes()).build());
    }
    let writer = tokio::spawn(async move {
        // Blocks once both the pipe and the connection stop taking bytes.
        let _ = peer.write_all(&flood).await;
        peer
    });
    // An application that waits for messages meanwhile.
    let reader = tokio::spawn(async move {
        let r = ws.recv().await.map(|r| r.map_err(|e| e.to_string()));
        (ws, r)
    });
    tokio::time::sleep(Duration::from_secs(30)).await;
    let used = polls(&count);
    eprintln!(
        "ping flood: {used} transport polls, peer done: {}",
        writer.is_finished()
    );
    assert!(used < 200_000, "busy loop: {used} transport polls");
    let mut peer = if writer.is_finished() {
        writer.await.unwrap()
    } else {
        // Still blocked: our side stopped reading (bounded) without spinning. Unblock it.
        writer.abort();
        reader.abort();
        return;
    };
    // Everything was read: the connection is still alive and answers.
    peer.write_all(&FrameBuilder::text(b"done").build())
        .await
        .unwrap();
    let (_ws, r) = timeout(PROMPT, reader).await.unwrap().unwrap();
    assert_eq!(r, Some(Ok(Message::text("done"))));
}
