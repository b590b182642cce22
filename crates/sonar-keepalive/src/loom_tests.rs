//! Loom models of the ping registry: `cargo xtask loom` (RUSTFLAGS="--cfg loom", release,
//! LOOM_MAX_PREEMPTIONS=2; `--deep` = 3). Only these tests run under `--cfg loom`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Context, Waker};
use core::time::Duration;

use loom::future::block_on;
use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::{
    Input, KeepAlive, KeepaliveConfig, Output, PingError, PingId, PingRegistry, PingRequest,
    ping_channel,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The driver waits for the next request like the connection task does.
fn next_request(reg: &mut PingRegistry) -> Option<PingRequest> {
    block_on(poll_fn(|cx| reg.poll_request(cx)))
}

#[test]
fn ping_then_pong_wakes_the_waiter() {
    loom::model(|| {
        let (mut reg, pinger) = ping_channel(4);
        let app = thread::spawn(move || block_on(pinger.ping(None)));
        let req = next_request(&mut reg).unwrap();
        reg.bind(req, Ok(PingId(1)));
        reg.complete(PingId(1), ms(7));
        assert_eq!(app.join().unwrap(), Ok(ms(7)));
        // The only Pinger is gone: the request stream ends.
        assert!(next_request(&mut reg).is_none());
    });
}

#[test]
fn two_tasks_racing_ping() {
    loom::model(|| {
        let (mut reg, pinger) = ping_channel(4);
        let other = pinger.clone();
        let a = thread::spawn(move || block_on(pinger.ping(Some(vec![1]))));
        let b = thread::spawn(move || block_on(other.ping(Some(vec![2]))));
        for _ in 0..2 {
            let req = next_request(&mut reg).unwrap();
            let tag = req.payload().unwrap()[0];
            reg.bind(req, Ok(PingId(u64::from(tag))));
        }
        // Each waiter gets its own pong, exactly once, in any completion order.
        reg.complete(PingId(2), ms(20));
        reg.complete(PingId(1), ms(10));
        reg.complete(PingId(1), ms(99));
        assert_eq!(a.join().unwrap(), Ok(ms(10)));
        assert_eq!(b.join().unwrap(), Ok(ms(20)));
        assert!(next_request(&mut reg).is_none());
    });
}

#[test]
fn pong_racing_close() {
    loom::model(|| {
        let (reg, pinger) = ping_channel(4);
        let reg = Arc::new(Mutex::new(reg));
        let app = thread::spawn(move || {
            let first = block_on(pinger.ping(None));
            // A ping racing the close: rejected at once or failed by close, never hanging.
            let later = block_on(pinger.ping(None));
            (first, later)
        });
        {
            let mut g = reg.lock().unwrap();
            let req = next_request(&mut g).unwrap();
            g.bind(req, Ok(PingId(1)));
        }
        let reader_reg = reg.clone();
        let reader = thread::spawn(move || reader_reg.lock().unwrap().complete(PingId(1), ms(3)));
        reg.lock().unwrap().close();
        reader.join().unwrap();
        let (first, later) = app.join().unwrap();
        assert!(
            first == Ok(ms(3)) || first == Err(PingError::ConnectionClosed),
            "{first:?}"
        );
        assert_eq!(later, Err(PingError::ConnectionClosed));
    });
}

#[test]
fn driver_dropped_mid_flight() {
    loom::model(|| {
        let (mut reg, pinger) = ping_channel(4);
        let app = thread::spawn(move || {
            let a = pinger.ping(None);
            let b = pinger.ping(None);
            (block_on(a), block_on(b))
        });
        let req = next_request(&mut reg).unwrap();
        reg.bind(req, Ok(PingId(1)));
        drop(reg);
        let (a, b) = app.join().unwrap();
        assert_eq!(a, Err(PingError::ConnectionClosed));
        assert_eq!(b, Err(PingError::ConnectionClosed));
    });
}

#[test]
fn waiter_dropped_mid_flight() {
    loom::model(|| {
        let (mut reg, pinger) = ping_channel(4);
        let app = thread::spawn(move || {
            let mut f = pinger.ping(None);
            // Poll once (registers the waker; may already see the pong), then give up.
            let _ = Pin::new(&mut f).poll(&mut Context::from_waker(Waker::noop()));
            drop(f);
        });
        let req = next_request(&mut reg).unwrap();
        reg.bind(req, Ok(PingId(1)));
        reg.complete(PingId(1), ms(1));
        reg.complete(PingId(1), ms(2));
        app.join().unwrap();
        assert_eq!(reg.waiting(), 0);
    });
}

#[test]
fn pong_acks_earlier_pings_while_new_pings_arrive() {
    loom::model(|| {
        let (mut reg, pinger) = ping_channel(4);
        let app = thread::spawn(move || {
            let a = pinger.ping(Some(b"a".to_vec()));
            let b = pinger.ping(Some(b"b".to_vec()));
            let ra = block_on(a);
            // Registered while the driver may still be acknowledging "b".
            let c = pinger.ping(Some(b"c".to_vec()));
            (ra, block_on(b), block_on(c))
        });

        let mut ka = KeepAlive::new(KeepaliveConfig::default(), 0);
        ka.handle(ms(0), Input::Opened);
        let bind_next = |reg: &mut PingRegistry, ka: &mut KeepAlive, t: Duration| {
            let req = next_request(reg).unwrap();
            let result = ka.user_ping(t, req.payload()).map(|(id, _)| id);
            if let Ok(id) = result {
                ka.handle(t, Input::PingWritten(id));
            }
            reg.bind(req, result);
        };
        bind_next(&mut reg, &mut ka, ms(1)); // "a"
        bind_next(&mut reg, &mut ka, ms(2)); // "b"
        // The pong for "b" acknowledges "a" too (FIFO, K-9).
        ka.handle(ms(10), Input::PongReceived(b"b"));
        while let Some(out) = ka.poll(ms(10)) {
            if let Output::PingAcked { id, latency } = out {
                reg.complete(id, latency);
            }
        }
        bind_next(&mut reg, &mut ka, ms(11)); // "c"
        ka.handle(ms(12), Input::Closed);
        while let Some(out) = ka.poll(ms(12)) {
            if let Output::PingFailed { id } = out {
                reg.fail(id);
            }
        }
        reg.close();

        let (a, b, c) = app.join().unwrap();
        assert_eq!(a, Ok(ms(9)));
        assert_eq!(b, Ok(ms(8)));
        assert_eq!(c, Err(PingError::ConnectionClosed));
    });
}
