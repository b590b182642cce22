//! How many task polls an echo costs: the application's task does the work, and the
//! connection's keeper task stays asleep on the fast path (one wake-up per event).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use sonar_async::{Config, Message};
use sonar_tokio::{Compat, TokioTimer};

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
                let (mut ws, driver, _req) =
                    sonar_async::server(Compat::new(tcp), Config::default(), Arc::new(TokioTimer))
                        .await
                        .unwrap();
                tokio::spawn(counted(driver, &keeper));
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
// polled per echo: only by its watch over the hand-offs, at most twice per
// `TAKEOVER_DELAY` of the run and connection, however many echoes that covers (the watch
// itself, taking over from a task that does not drive, is covered by the kept-future and
// cancellation tests).
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
            let checks = p.elapsed.as_nanos() / sonar_async::TAKEOVER_DELAY.as_nanos() + 2;
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
