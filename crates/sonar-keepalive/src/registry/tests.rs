//! Registry behaviour on one thread (the loom models cover the races).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use std::vec::Vec;

use super::*;
use crate::{Input, KeepAlive, KeepaliveConfig, Output};

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, StdOrdering::SeqCst);
    }
}

fn counting() -> (StdArc<CountingWaker>, Waker) {
    let c = StdArc::new(CountingWaker::default());
    (c.clone(), Waker::from(c))
}

fn poll_once(f: &mut PingFuture, waker: &Waker) -> Poll<Result<Duration, PingError>> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

fn next_request(reg: &mut PingRegistry) -> Option<PingRequest> {
    match reg.poll_request(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => None,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn ping_resolves_to_the_rtt_and_wakes_the_waiter() {
    let (mut reg, pinger) = ping_channel(4);
    let (count, waker) = counting();
    let mut f = pinger.ping(Some(b"abc".to_vec()));
    assert_eq!(poll_once(&mut f, &waker), Poll::Pending);
    let req = next_request(&mut reg).unwrap();
    assert_eq!(req.payload(), Some(&b"abc"[..]));
    reg.bind(req, Ok(PingId(7)));
    assert_eq!(reg.waiting(), 1);
    reg.complete(PingId(7), ms(12));
    assert_eq!(count.0.load(StdOrdering::SeqCst), 1);
    assert_eq!(poll_once(&mut f, &waker), Poll::Ready(Ok(ms(12))));
    // Polling again returns the same result, never a panic.
    assert_eq!(poll_once(&mut f, &waker), Poll::Ready(Ok(ms(12))));
    assert_eq!(reg.waiting(), 0);
}

#[test]
fn requests_wake_the_driver() {
    let (mut reg, pinger) = ping_channel(4);
    let (count, waker) = counting();
    assert!(
        reg.poll_request(&mut Context::from_waker(&waker))
            .is_pending()
    );
    let _f = pinger.ping(None);
    assert_eq!(count.0.load(StdOrdering::SeqCst), 1);
    let req = next_request(&mut reg).unwrap();
    assert_eq!(req.payload(), None);
}

#[test]
fn t45_double_completion_is_a_no_op() {
    // T45 / K-8: a duplicate pong never completes a waiter twice.
    let (mut reg, pinger) = ping_channel(4);
    let mut f = pinger.ping(None);
    let req = next_request(&mut reg).unwrap();
    reg.bind(req, Ok(PingId(1)));
    reg.complete(PingId(1), ms(5));
    reg.complete(PingId(1), ms(9));
    reg.fail(PingId(1));
    reg.close();
    assert_eq!(poll_once(&mut f, Waker::noop()), Poll::Ready(Ok(ms(5))));
}

#[test]
fn t47_dropped_waiter_then_pong() {
    // T47: the app drops its future; the pong arrives later: no panic, entry removed, RTT
    // still recorded by the machine.
    let (mut reg, pinger) = ping_channel(4);
    let mut ka = KeepAlive::new(KeepaliveConfig::default(), 0);
    ka.handle(ms(0), Input::Opened);
    let f = pinger.ping(Some(b"a".to_vec()));
    let req = next_request(&mut reg).unwrap();
    let result = ka.user_ping(ms(0), req.payload()).map(|(id, _)| id);
    reg.bind(req, result);
    drop(f);
    ka.handle(ms(30), Input::PongReceived(b"a"));
    let mut rtt = false;
    while let Some(out) = ka.poll(ms(30)) {
        match out {
            Output::PingAcked { id, latency } => reg.complete(id, latency),
            Output::Rtt(s) => rtt = s.rtt == ms(30),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(rtt);
    assert_eq!(reg.waiting(), 0);
    assert_eq!(ka.outstanding_pings(), 0);
}

#[test]
fn t11_truncated_pong_leaves_the_waiter_pending() {
    // T11: ping 0d 90 0f 00 answered by 0d 90 0f: UnmatchedPong, waiter still pending.
    let (mut reg, pinger) = ping_channel(4);
    let mut ka = KeepAlive::new(KeepaliveConfig::default(), 0);
    ka.handle(ms(0), Input::Opened);
    let mut f = pinger.ping(Some(vec![0x0d, 0x90, 0x0f, 0x00]));
    let req = next_request(&mut reg).unwrap();
    let result = ka.user_ping(ms(0), req.payload()).map(|(id, _)| id);
    reg.bind(req, result);
    ka.handle(ms(10), Input::PongReceived(&[0x0d, 0x90, 0x0f]));
    assert_eq!(ka.poll(ms(10)), Some(Output::UnmatchedPong));
    assert_eq!(ka.poll(ms(10)), None);
    assert_eq!(ka.stats().unmatched_pongs, 1);
    assert_eq!(poll_once(&mut f, Waker::noop()), Poll::Pending);
    // Zero-length and unsolicited pongs do not touch it either.
    ka.handle(ms(11), Input::PongReceived(b""));
    ka.handle(ms(11), Input::PongReceived(b"unsolicited pong payload"));
    while let Some(out) = ka.poll(ms(11)) {
        assert_eq!(out, Output::UnmatchedPong);
    }
    assert_eq!(poll_once(&mut f, Waker::noop()), Poll::Pending);
    // Closing fails it exactly once.
    ka.handle(ms(12), Input::Closed);
    while let Some(out) = ka.poll(ms(12)) {
        if let Output::PingFailed { id } = out {
            reg.fail(id);
        }
    }
    assert_eq!(
        poll_once(&mut f, Waker::noop()),
        Poll::Ready(Err(PingError::ConnectionClosed))
    );
}

#[test]
fn bind_error_completes_at_once() {
    let (mut reg, pinger) = ping_channel(4);
    let mut f = pinger.ping(Some(b"a".to_vec()));
    let req = next_request(&mut reg).unwrap();
    reg.bind(req, Err(PingError::DuplicatePingPayload));
    assert_eq!(
        poll_once(&mut f, Waker::noop()),
        Poll::Ready(Err(PingError::DuplicatePingPayload))
    );
    assert_eq!(reg.waiting(), 0);
}

#[test]
fn close_fails_bound_and_queued_waiters_and_later_pings() {
    let (mut reg, pinger) = ping_channel(4);
    let (count, waker) = counting();
    let mut bound = pinger.ping(None);
    let mut queued = pinger.ping(None);
    assert!(poll_once(&mut bound, &waker).is_pending());
    assert!(poll_once(&mut queued, &waker).is_pending());
    let req = next_request(&mut reg).unwrap();
    reg.bind(req, Ok(PingId(1)));
    reg.close();
    assert_eq!(count.0.load(StdOrdering::SeqCst), 2);
    for f in [&mut bound, &mut queued] {
        assert_eq!(
            poll_once(f, Waker::noop()),
            Poll::Ready(Err(PingError::ConnectionClosed))
        );
    }
    assert!(pinger.is_closed());
    let mut later = pinger.ping(None);
    assert_eq!(
        poll_once(&mut later, Waker::noop()),
        Poll::Ready(Err(PingError::ConnectionClosed))
    );
    assert!(next_request(&mut reg).is_none());
    assert!(matches!(
        reg.poll_request(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(None)
    ));
}

#[test]
fn dropping_the_registry_is_close() {
    let (mut reg, pinger) = ping_channel(4);
    let mut bound = pinger.ping(None);
    let mut queued = pinger.ping(None);
    let req = next_request(&mut reg).unwrap();
    reg.bind(req, Ok(PingId(1)));
    drop(reg);
    for f in [&mut bound, &mut queued] {
        assert_eq!(
            poll_once(f, Waker::noop()),
            Poll::Ready(Err(PingError::ConnectionClosed))
        );
    }
}

#[test]
fn dropping_a_request_fails_its_waiter() {
    let (mut reg, pinger) = ping_channel(4);
    let mut f = pinger.ping(None);
    let req = next_request(&mut reg).unwrap();
    assert!(!req.is_abandoned());
    drop(req);
    assert_eq!(
        poll_once(&mut f, Waker::noop()),
        Poll::Ready(Err(PingError::ConnectionClosed))
    );
}

#[test]
fn abandoned_request_is_visible_to_the_driver() {
    let (mut reg, pinger) = ping_channel(4);
    drop(pinger.ping(None));
    let req = next_request(&mut reg).unwrap();
    assert!(req.is_abandoned());
    reg.bind(req, Ok(PingId(3)));
    reg.complete(PingId(3), ms(1));
    // Binding prunes abandoned waiters.
    let _g = pinger.ping(None);
    let req = next_request(&mut reg).unwrap();
    reg.bind(req, Ok(PingId(4)));
    assert_eq!(reg.waiting(), 1);
}

#[test]
fn queue_is_bounded() {
    let (mut reg, pinger) = ping_channel(2);
    let _a = pinger.ping(None);
    let _b = pinger.ping(None);
    let mut c = pinger.ping(None);
    assert_eq!(
        poll_once(&mut c, Waker::noop()),
        Poll::Ready(Err(PingError::TooManyOutstandingPings))
    );
    let _ = next_request(&mut reg).unwrap();
    let mut d = pinger.ping(None);
    assert!(poll_once(&mut d, Waker::noop()).is_pending());
}

#[test]
fn too_long_payload_fails_at_once() {
    let (mut reg, pinger) = ping_channel(2);
    let mut f = pinger.ping(Some(vec![0; 126]));
    assert_eq!(
        poll_once(&mut f, Waker::noop()),
        Poll::Ready(Err(PingError::PayloadTooLong))
    );
    assert!(next_request(&mut reg).is_none());
}

#[test]
fn last_pinger_gone_ends_the_request_stream() {
    let (mut reg, pinger) = ping_channel(4);
    let (count, waker) = counting();
    let second = pinger.clone();
    let _f = second.ping(None);
    drop(pinger);
    assert!(reg.try_request().is_some());
    assert!(
        reg.poll_request(&mut Context::from_waker(&waker))
            .is_pending()
    );
    drop(second);
    assert_eq!(count.0.load(StdOrdering::SeqCst), 1);
    assert!(matches!(
        reg.poll_request(&mut Context::from_waker(&waker)),
        Poll::Ready(None)
    ));
}

#[test]
fn t46_fifo_through_machine_and_registry() {
    // T46 end to end: "a" then "b", pong "b" acknowledges both with their own latencies.
    let (mut reg, pinger) = ping_channel(4);
    let mut ka = KeepAlive::new(KeepaliveConfig::default(), 0);
    ka.handle(ms(0), Input::Opened);
    let mut fa = pinger.ping(Some(b"a".to_vec()));
    let mut fb = pinger.ping(Some(b"b".to_vec()));
    for t in [1_000, 2_000] {
        let req = next_request(&mut reg).unwrap();
        let (id, _) = ka.user_ping(ms(t), req.payload()).unwrap();
        ka.handle(ms(t), Input::PingWritten(id));
        reg.bind(req, Ok(id));
    }
    ka.handle(ms(3_000), Input::PongReceived(b"b"));
    let mut outs = Vec::new();
    while let Some(out) = ka.poll(ms(3_000)) {
        if let Output::PingAcked { id, latency } = out {
            reg.complete(id, latency);
        }
        outs.push(out);
    }
    assert_eq!(outs.len(), 3);
    assert_eq!(
        poll_once(&mut fa, Waker::noop()),
        Poll::Ready(Ok(ms(2_000)))
    );
    assert_eq!(
        poll_once(&mut fb, Waker::noop()),
        Poll::Ready(Ok(ms(1_000)))
    );
}

#[test]
fn handles_are_send_sync_unpin() {
    fn send_sync<T: Send + Sync>() {}
    fn send_unpin<T: Send + Unpin>() {}
    send_sync::<Pinger>();
    send_sync::<PingRegistry>();
    send_sync::<PingRequest>();
    send_unpin::<PingFuture>();
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Ping,
        TakeAndBind(bool),
        Complete(u8),
        Fail(u8),
        DropFuture(u8),
        DropRequest,
        PollAll,
        Close,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Ping),
            3 => any::<bool>().prop_map(Op::TakeAndBind),
            3 => any::<u8>().prop_map(Op::Complete),
            1 => any::<u8>().prop_map(Op::Fail),
            1 => any::<u8>().prop_map(Op::DropFuture),
            1 => Just(Op::DropRequest),
            2 => Just(Op::PollAll),
            1 => Just(Op::Close),
        ]
    }

    proptest! {
        #[test]
        fn every_waiter_completes_at_most_once_and_close_completes_all(
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let (mut reg, pinger) = ping_channel(4);
            // (future, result seen so far)
            let mut futures: Vec<(PingFuture, Option<Result<Duration, PingError>>)> = Vec::new();
            let mut next_id = 0u64;
            let mut bound: Vec<u64> = Vec::new();
            let check = |futures: &mut Vec<(PingFuture, Option<Result<Duration, PingError>>)>| {
                for (f, seen) in futures.iter_mut() {
                    if let Poll::Ready(r) = poll_once(f, Waker::noop()) {
                        // Once resolved, the result never changes.
                        if let Some(prev) = seen {
                            assert_eq!(*prev, r);
                        }
                        *seen = Some(r);
                    } else {
                        assert!(seen.is_none(), "a resolved future went back to pending");
                    }
                }
            };
            for op in ops {
                match op {
                    Op::Ping => futures.push((pinger.ping(None), None)),
                    Op::TakeAndBind(ok) => {
                        if let Some(req) = reg.try_request() {
                            next_id += 1;
                            if ok {
                                bound.push(next_id);
                                reg.bind(req, Ok(PingId(next_id)));
                            } else {
                                reg.bind(req, Err(PingError::DuplicatePingPayload));
                            }
                        }
                    }
                    Op::Complete(i) => {
                        if !bound.is_empty() {
                            let id = bound[usize::from(i) % bound.len()];
                            reg.complete(PingId(id), Duration::from_millis(id));
                        }
                    }
                    Op::Fail(i) => {
                        if !bound.is_empty() {
                            reg.fail(PingId(bound[usize::from(i) % bound.len()]));
                        }
                    }
                    Op::DropFuture(i) => {
                        if !futures.is_empty() {
                            let n = usize::from(i) % futures.len();
                            drop(futures.swap_remove(n));
                        }
                    }
                    Op::DropRequest => drop(reg.try_request()),
                    Op::PollAll => check(&mut futures),
                    Op::Close => reg.close(),
                }
                check(&mut futures);
                prop_assert!(reg.waiting() <= bound.len());
            }
            reg.close();
            check(&mut futures);
            for (_, seen) in &futures {
                prop_assert!(seen.is_some(), "a waiter hangs after close");
            }
        }
    }
}
