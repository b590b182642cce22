//! Loom models of the hand-off of a transport wake-up (`cargo xtask loom`; RUSTFLAGS="--cfg
//! loom", release). Every model checks one property: when the threads are done, no hand-off
//! is left that nobody will take. A hand-off may be pending at the end only if the keeper has
//! a wake-up it has not seen yet or its watch is armed (its timer will fire and check).
//!
//! The keeper is simulated as its task runs: it is polled only when woken (by the hub, or at
//! the end by the model), and its watch timer may fire at any of its polls.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker};

use loom::future::block_on;
use loom::sync::Mutex;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::thread;

use super::{Hub, Notify};

/// A waker that counts its wake-ups before passing them on.
struct Counting {
    wakes: std::sync::Arc<AtomicUsize>,
    inner: Waker,
}

impl Wake for Counting {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
        self.inner.wake_by_ref();
    }
}

/// What the model shares with the simulated keeper.
struct Shared {
    hub: std::sync::Arc<Hub>,
    /// The model's threads are done: check, settle and finish.
    end: AtomicBool,
    /// The keeper task's own waker, for the model's final wake-up.
    task: Mutex<Option<Waker>>,
    /// Wake-ups the hub gave the keeper.
    hub_wakes: std::sync::Arc<AtomicUsize>,
    /// A message was read and queued for the application (the connection's inbox).
    inbox: AtomicBool,
}

/// A drive: takes every hand-off, reads what the transport has into the inbox and tells a
/// waiting reader.
fn drive(shared: &Shared) {
    shared.hub.handoff_taken();
    if shared.hub.take_io_woken() {
        shared.inbox.store(true, SeqCst);
        shared.hub.notify(Notify {
            reader: true,
            ..Notify::default()
        });
    }
}

/// The keeper task (see `Keeper::poll`), without the connection state.
struct Keeper {
    shared: std::sync::Arc<Shared>,
    watching: bool,
    seen: usize,
    /// Its first poll is the connection's first round, which registers it.
    first: bool,
}

impl Future for Keeper {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let shared = self.shared.clone();
        *shared.task.lock().unwrap() = Some(cx.waker().clone());
        let end = shared.end.load(SeqCst);
        let wakes = shared.hub_wakes.load(SeqCst);
        if end && !self.first && shared.hub.handoff_pending() {
            assert!(
                wakes > self.seen || self.watching,
                "a hand-off is left that nobody will take: no wake-up for the keeper, no watch"
            );
        }
        self.seen = wakes;
        self.first = false;
        // Bounded: the watch re-arms at most a few times in a model.
        for _ in 0..4 {
            let waker = Waker::from(std::sync::Arc::new(Counting {
                wakes: shared.hub_wakes.clone(),
                inner: cx.waker().clone(),
            }));
            let call = shared.hub.keeper_polled(&waker);
            if call.needed {
                drive(&shared);
            }
            if call.start_watch {
                self.watching = true;
            }
            // The watch's timer may have fired by now.
            if self.watching {
                let check = shared.hub.watch_due();
                if check.stale {
                    drive(&shared);
                }
                self.watching = check.rearm.is_some();
            }
            if !end || !self.watching {
                break;
            }
        }
        if end {
            assert!(
                !shared.hub.handoff_pending(),
                "the keeper settled with a hand-off left"
            );
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// Runs `app` and `transport` beside a keeper that has done its first round, then checks the
/// end state (see the module docs).
fn model(app: fn(&Shared), transport: fn(&Hub)) {
    loom::model(move || {
        let shared = std::sync::Arc::new(Shared {
            hub: std::sync::Arc::new(Hub::default()),
            end: AtomicBool::new(false),
            task: Mutex::new(None),
            hub_wakes: std::sync::Arc::new(AtomicUsize::new(0)),
            inbox: AtomicBool::new(false),
        });
        let keeper = {
            let shared = shared.clone();
            thread::spawn(move || {
                block_on(Keeper {
                    shared,
                    watching: false,
                    seen: 0,
                    first: true,
                })
            })
        };
        let t = {
            let hub = shared.hub.clone();
            thread::spawn(move || transport(&hub))
        };
        app(&shared);
        t.join().unwrap();
        shared.end.store(true, SeqCst);
        if let Some(w) = shared.task.lock().unwrap().take() {
            w.wake();
        }
        keeper.join().unwrap();
    });
}

fn one_event(hub: &Hub) {
    hub.transport_woken();
}

fn two_events(hub: &Hub) {
    hub.transport_woken();
    hub.transport_woken();
}

// A `recv` future registered and then dropped (or kept and never polled again): the keeper
// takes the hand-off.
#[test]
fn a_dropped_waiter_leaves_the_event_to_the_keeper() {
    model(
        |shared| shared.hub.register_reader(Waker::noop()),
        one_event,
    );
}

// The application waits, drives once (taking whatever was handed to it by then), and waits
// again with a future it drops: an event after that is the keeper's, whether it comes
// before the keeper's watch checks the first hand-off or after.
#[test]
fn an_event_after_a_taken_hand_off_is_not_lost() {
    model(
        |shared| {
            shared.hub.register_reader(Waker::noop());
            drive(shared);
            shared.hub.register_reader(Waker::noop());
        },
        two_events,
    );
}
