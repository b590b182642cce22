//! The keeper task of a connection: keepalive deadlines, and progress while nobody else
//! drives (see [`crate::conn`]).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::conn::{Inner, Mode};
use crate::{Error, Sleep};

/// The keeper task of one WebSocket: a future that runs until the connection is closed.
///
/// The application's handles do the connection's work inline (`recv` reads and parses,
/// `send` writes), so an echo costs one task wake-up. The keeper covers everything else:
/// it sends keepalive pings and declares a silent peer dead, answers the peer's pings while
/// the application is busy elsewhere, writes what is left, and sees the closing handshake
/// through. Runtime adapters spawn it; without an adapter, spawn it on any executor (or poll
/// it alongside the application with a `select`). Dropping it closes the transport at once.
/// It resolves to `Ok(())` after a completed closing handshake and to the error that ended
/// the connection otherwise (the same error the application's handles report).
#[must_use = "keepalive and the closing handshake need the driver to be polled (spawn it)"]
pub struct Driver<T> {
    inner: Arc<Inner>,
    sleep: Option<Pin<Box<dyn Sleep>>>,
    armed: Option<Duration>,
    finished: bool,
    _io: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Driver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<T> Driver<T> {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Driver {
            inner,
            sleep: None,
            armed: None,
            finished: false,
            _io: PhantomData,
        }
    }
}

impl<T> Future for Driver<T> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.inner.hub.keeper_idle(cx.waker())
            && let Some(sleep) = this.sleep.as_mut()
            && sleep.as_mut().poll(cx).is_pending()
        {
            // Woken only as the backup of a hand-off the application has taken, and no
            // deadline is due: nothing to do.
            return Poll::Pending;
        }
        // Bounded: a sleep that completes at once is polled again at most this often.
        for _ in 0..4 {
            let mut st = this.inner.lock();
            if !st.is_done() {
                st.drive(Mode::Full, cx);
            }
            if st.is_done() {
                this.finished = true;
                return Poll::Ready(st.result());
            }
            let deadline = st.next_deadline();
            st.keeper_deadline = deadline;
            let Some(deadline) = deadline else {
                return Poll::Pending;
            };
            let at = st.origin() + deadline;
            let timer = match &this.sleep {
                Some(_) => None,
                None => Some(st.timer()),
            };
            drop(st);
            match &mut this.sleep {
                Some(s) if this.armed != Some(deadline) => s.as_mut().reset(at),
                Some(_) => {}
                None => this.sleep = timer.map(|t| t.sleep_until(at)),
            }
            this.armed = Some(deadline);
            match this.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    this.armed = None;
                    // Deadlines are due even if the clock reads a hair early.
                    this.inner.lock().clock_floor(deadline);
                }
                _ => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T> Drop for Driver<T> {
    fn drop(&mut self) {
        if !self.finished {
            self.inner.lock().abort_now();
        }
    }
}
