//! The keeper task of a connection: keepalive deadlines, and progress while nobody else
//! drives (see [`crate::conn`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::conn::{Inner, Mode, TAKEOVER_DELAY};
use crate::{Error, Sleep, Timer};

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
#[must_use = "keepalive and the closing handshake need the keeper to be polled (spawn it)"]
pub struct Keeper {
    inner: Arc<Inner>,
    sleep: Option<Pin<Box<dyn Sleep>>>,
    armed: Option<Duration>,
    /// The watch over hand-offs to the application (see `conn/hub.rs`): a sleep of
    /// [`TAKEOVER_DELAY`] or the gap the hub asks for, armed while hand-offs come.
    watch: Option<Pin<Box<dyn Sleep>>>,
    watching: bool,
    timer: Arc<dyn Timer>,
    finished: bool,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keeper")
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Keeper {
    /// This keeper as a task to spawn and forget: it resolves to `()`, and the error that
    /// ended the connection (which the application's handles report as well) is logged at
    /// debug level. Runtime adapters spawn this; it is no larger than the keeper itself, where
    /// an `async move { keeper.await }` block would hold the keeper twice.
    ///
    /// ```
    /// # async fn demo(io: impl futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static,
    /// #     timer: std::sync::Arc<dyn sonar_async::Timer>) -> Result<(), sonar_async::Error> {
    /// let (ws, keeper, _request) = sonar_async::server(io, sonar_async::Config::default(), timer).await?;
    /// let task = keeper.detach(); // spawn it on any executor: `tokio::spawn(task)`
    /// # drop((ws, task)); Ok(()) }
    /// ```
    pub fn detach(self) -> DetachedKeeper {
        DetachedKeeper(self)
    }

    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        let timer = inner.lock().timer();
        Keeper {
            inner,
            sleep: None,
            armed: None,
            watch: None,
            watching: false,
            timer,
            finished: false,
        }
    }
}

impl Future for Keeper {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let call = this.inner.hub.keeper_polled(cx.waker());
        // The first poll drives (the connection's first round); later ones only when there
        // is work for the keeper.
        let mut drive = call.needed || this.sleep.is_none();
        if call.start_watch {
            this.arm_watch(TAKEOVER_DELAY);
            this.watching = true;
        }
        drive |= this.poll_watch(cx);
        if !drive
            && let Some(sleep) = this.sleep.as_mut()
            && sleep.as_mut().poll(cx).is_pending()
        {
            // No work of its own, every hand-off taken or still fresh, no deadline due.
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
            st.set_keeper_deadline(deadline);
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
        this.inner.hub.wake_keeper();
        Poll::Pending
    }
}

impl Keeper {
    /// Sets the watch to check `after` from now.
    fn arm_watch(&mut self, after: Duration) {
        let at = self.timer.now() + after;
        match self.watch.as_mut() {
            Some(w) => w.as_mut().reset(at),
            None => self.watch = Some(self.timer.sleep_until(at)),
        }
    }

    /// Polls the watch; true if a hand-off was not taken in time (the keeper drives).
    fn poll_watch(&mut self, cx: &mut Context<'_>) -> bool {
        let mut stale = false;
        // Bounded: a reset sleep that is ready at once is checked at most twice.
        for _ in 0..2 {
            if !self.watching {
                break;
            }
            let Some(w) = self.watch.as_mut() else {
                break;
            };
            if w.as_mut().poll(cx).is_pending() {
                break;
            }
            let check = self.inner.hub.watch_due();
            stale |= check.stale;
            if let Some(after) = check.rearm {
                self.arm_watch(after);
            } else {
                // A quiet connection holds no watch timer.
                self.watching = false;
                self.watch = None;
            }
        }
        stale
    }
}

/// A [`Keeper`] that resolves to `()` (see [`Keeper::detach`]).
#[must_use = "keepalive and the closing handshake need the keeper to be polled (spawn it)"]
#[derive(Debug)]
pub struct DetachedKeeper(Keeper);

impl Future for DetachedKeeper {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready(Err(error)) => {
                tracing::debug!(%error, "websocket connection ended with an error");
                Poll::Ready(())
            }
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if !self.finished {
            self.inner.lock().abort_now();
        }
    }
}
