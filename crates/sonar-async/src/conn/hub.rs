//! The wakers of one connection, and the hand-off of a transport wake-up to whoever will
//! drive the connection next.
//!
//! The transport and the ping registry are polled with one waker, the [`Hub`]. When it
//! fires, it wakes the application tasks waiting in `recv`, `send` or `flush`: they drive the
//! connection themselves (an echo costs one task wake-up, and the keeper is not polled). If
//! nobody waits, it wakes the keeper.
//!
//! A woken task may not drive: its future was dropped in a `select!`, or is kept and not
//! polled while the task is busy elsewhere. The keeper covers that with its *watch*: the
//! first hand-off after a quiet spell wakes the keeper once, which checks
//! [`TAKEOVER_DELAY`] later whether the latest hand-off was taken, and drives itself if not.
//! While hand-offs keep coming and being taken, the checks back off (the gap doubles up to
//! [`WATCH_INTERVAL_MAX`]): a busy connection costs the keeper about ten polls a second, not
//! a hundred. A hand-off found waiting at two checks in a row, with nobody driving between
//! them, is taken over; so the longer an application has taken its hand-offs, the longer
//! it may take one (its task queued behind many others) before the keeper steps in. A
//! hand-off nobody takes waits [`TAKEOVER_DELAY`] after a quiet spell, and at most twice
//! [`WATCH_INTERVAL_MAX`].
//!
//! Locking: waker slots are updated under the hub's own mutex and woken after it is
//! released. The connection's state lock may be held while the hub's is taken, never the
//! other way round (the hub's waker runs from the transport, where the state lock may be
//! held by the same thread).

use std::task::{Wake, Waker};
use std::time::Duration;

use crate::sync::{AtomicBool, Mutex, MutexGuard, Ordering, lock};

/// How long the keeper lets an application task that was woken for an event take it, before
/// it handles the event itself (a `recv` future kept but not polled, or dropped). This bounds
/// the extra latency of a ping answered for such an application.
pub const TAKEOVER_DELAY: Duration = Duration::from_millis(10);

/// The longest gap between two checks of the keeper's watch, reached while an application
/// keeps taking the hand-offs it is woken for (the gaps double from [`TAKEOVER_DELAY`]). A
/// hand-off an application stops taking is taken over at the second check that finds it:
/// at most twice this after it was made.
pub const WATCH_INTERVAL_MAX: Duration = Duration::from_millis(100);

/// Where the keeper's watch over hand-offs stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Watch {
    /// No hand-off since the last check: the next one wakes the keeper.
    #[default]
    Off,
    /// A hand-off woke the keeper to start watching; it has not armed its check yet.
    Requested,
    /// The keeper checks at its next watch deadline.
    Armed,
}

/// The wakers waiting on one connection.
#[derive(Default)]
struct Waiters {
    reader: Option<Waker>,
    writers: Vec<Waker>,
    closed: Vec<Waker>,
    keeper: Option<Waker>,
    /// A wake-up was handed to an application task that has not driven since.
    handed_off: bool,
    /// Hand-offs so far, and as of the keeper's last check.
    handoffs: u64,
    checked: u64,
    watch: Watch,
    /// The hand-off waiting now was already waiting at the last check (or when the watch
    /// was armed): nobody has driven since.
    waited_since_check: bool,
    /// How often the gap between checks has doubled since the watch started or last took
    /// over (see [`Waiters::gap`]); a count rather than a `Duration`, to keep the hub small.
    doublings: u8,
    /// The keeper was woken for work of its own.
    keeper_needed: bool,
}

impl Waiters {
    /// The gap between the watch's checks: [`TAKEOVER_DELAY`] doubled `doublings` times, at
    /// most [`WATCH_INTERVAL_MAX`] (`watch_due` stops doubling there, so the shift is small).
    fn gap(&self) -> Duration {
        (TAKEOVER_DELAY * (1u32 << self.doublings)).min(WATCH_INTERVAL_MAX)
    }

    fn any_waiter(&self) -> bool {
        self.reader.is_some() || !self.writers.is_empty() || !self.closed.is_empty()
    }
}

/// What the connection's state asks the hub to wake (see [`Hub::notify`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Notify {
    /// The connection is over: wake everyone.
    pub(crate) done: bool,
    /// `recv` has something to return.
    pub(crate) reader: bool,
    /// `send` has room (or the connection is closing) and writers may go on.
    pub(crate) writers: bool,
    /// The keeper must run (a deadline moved earlier).
    pub(crate) keeper: bool,
}

/// What the keeper found when it was polled (see [`Hub::keeper_polled`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeeperCall {
    /// It was woken for work of its own: drive.
    pub(crate) needed: bool,
    /// A hand-off asked it to watch: arm the watch deadline.
    pub(crate) start_watch: bool,
}

/// What the keeper's watch found at its deadline (see [`Hub::watch_due`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WatchCheck {
    /// A hand-off has waited since the last check: the keeper drives.
    pub(crate) stale: bool,
    /// When to check again; `None` if no hand-off came since the last check (the watch
    /// ends, and the next hand-off starts it again).
    pub(crate) rearm: Option<Duration>,
}

/// The waker the transport and the ping registry are polled with (see the module docs).
#[derive(Default)]
pub(crate) struct Hub {
    waiters: Mutex<Waiters>,
    /// Some application task is registered (a hint, read under the state lock, which every
    /// registration also holds).
    waiting: AtomicBool,
    /// The hub was woken since the transport's read last returned `Pending`: reading again
    /// may make progress. Until then a read would only repeat the `Pending` (on some
    /// runtimes at the cost of a system call), and the waker it registered still holds.
    io_woken: AtomicBool,
}

impl Wake for Hub {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.transport_woken();
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Waiters> {
        lock(&self.waiters)
    }

    /// Updates the `waiting` hint; call with the waiters locked.
    fn update_waiting(&self, w: &Waiters) {
        self.waiting.store(w.any_waiter(), Ordering::Relaxed);
    }

    /// The transport (or the ping registry) has news: hand it to the waiting application
    /// tasks, or to the keeper if nobody waits.
    pub(crate) fn transport_woken(&self) {
        self.io_woken.store(true, Ordering::Release);
        let mut wake = Vec::new();
        {
            let mut w = self.lock();
            wake.extend(w.reader.take());
            wake.append(&mut w.writers);
            if wake.is_empty() {
                w.keeper_needed = true;
                wake.extend(w.keeper.clone());
            } else {
                w.handed_off = true;
                w.handoffs = w.handoffs.wrapping_add(1);
                if w.watch == Watch::Off {
                    w.watch = Watch::Requested;
                    wake.extend(w.keeper.clone());
                }
            }
            self.update_waiting(&w);
        }
        for w in wake {
            w.wake();
        }
    }

    /// Whether the transport was woken since the last call (see `io_woken`).
    pub(crate) fn take_io_woken(&self) -> bool {
        self.io_woken.swap(false, Ordering::Acquire)
    }

    /// The keeper is being polled: registers its waker and says why it was woken.
    pub(crate) fn keeper_polled(&self, waker: &Waker) -> KeeperCall {
        let mut w = self.lock();
        match &w.keeper {
            Some(k) if k.will_wake(waker) => {}
            _ => w.keeper = Some(waker.clone()),
        }
        let needed = std::mem::take(&mut w.keeper_needed);
        let start_watch = w.watch == Watch::Requested;
        if start_watch {
            w.watch = Watch::Armed;
            w.checked = w.handoffs;
            // The hand-off that asked for the watch is as old as the watch.
            w.waited_since_check = w.handed_off;
            w.doublings = 0;
        }
        KeeperCall {
            needed,
            start_watch,
        }
    }

    /// The keeper's watch deadline passed (it was armed [`TAKEOVER_DELAY`] after the watch
    /// started, then at the gaps this returns): has a hand-off waited since the last check,
    /// and when is the next one? When no hand-off came since the last check, the watch ends
    /// and the next hand-off wakes the keeper again.
    pub(crate) fn watch_due(&self) -> WatchCheck {
        let mut w = self.lock();
        let waiting = w.handed_off;
        let stale = waiting && w.waited_since_check;
        let came = w.handoffs != w.checked;
        w.checked = w.handoffs;
        w.waited_since_check = waiting;
        let rearm = if stale || !came {
            // Taken over (the keeper drives), or quiet: back to the shortest gap.
            w.doublings = 0;
            came.then_some(TAKEOVER_DELAY)
        } else if waiting {
            // A hand-off made since the last check: still waiting at the next one (after the
            // same gap), it is taken over. The more reliably the application has taken its
            // hand-offs, the longer it may take one (a busy scheduler, not a lost wake-up).
            Some(w.gap())
        } else {
            // Every hand-off was taken: the application drives; check less often.
            if w.gap() < WATCH_INTERVAL_MAX {
                w.doublings += 1;
            }
            Some(w.gap())
        };
        if rearm.is_none() {
            w.watch = Watch::Off;
        }
        WatchCheck { stale, rearm }
    }

    /// Wakes the keeper for work of its own.
    pub(crate) fn wake_keeper(&self) {
        let keeper = {
            let mut w = self.lock();
            w.keeper_needed = true;
            w.keeper.clone()
        };
        if let Some(k) = keeper {
            k.wake();
        }
    }

    /// Some application task waits (a hint; see `waiting`).
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    fn register(slot: &mut Option<Waker>, waker: &Waker) {
        match slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    pub(crate) fn register_reader(&self, waker: &Waker) {
        let mut w = self.lock();
        Self::register(&mut w.reader, waker);
        self.waiting.store(true, Ordering::Relaxed);
    }

    pub(crate) fn register_writer(&self, waker: &Waker) {
        let mut w = self.lock();
        if !w.writers.iter().any(|x| x.will_wake(waker)) {
            w.writers.push(waker.clone());
        }
        self.waiting.store(true, Ordering::Relaxed);
    }

    pub(crate) fn register_closed(&self, waker: &Waker) {
        let mut w = self.lock();
        if !w.closed.iter().any(|x| x.will_wake(waker)) {
            w.closed.push(waker.clone());
        }
        self.waiting.store(true, Ordering::Relaxed);
    }

    /// A hand-off has not been taken yet (for the loom models).
    #[cfg(all(test, loom))]
    fn handoff_pending(&self) -> bool {
        self.lock().handed_off
    }

    /// Someone is driving the connection: every hand-off so far is taken.
    pub(crate) fn handoff_taken(&self) {
        let mut w = self.lock();
        w.handed_off = false;
        w.waited_since_check = false;
    }

    /// Wakes the waiters whose condition holds (see [`Notify`]).
    pub(crate) fn notify(&self, n: Notify) {
        let mut wake: Vec<Waker> = Vec::new();
        {
            let mut w = self.lock();
            if n.done {
                wake.extend(w.reader.take());
                wake.append(&mut w.writers);
                wake.append(&mut w.closed);
            } else {
                if n.reader {
                    wake.extend(w.reader.take());
                }
                if n.writers {
                    wake.append(&mut w.writers);
                }
            }
            if n.keeper {
                w.keeper_needed = true;
                wake.extend(w.keeper.clone());
            }
            self.update_waiting(&w);
        }
        for w in wake {
            w.wake();
        }
    }
}

#[cfg(all(test, loom))]
mod loom_models;

#[cfg(all(test, not(loom)))]
mod tests;
