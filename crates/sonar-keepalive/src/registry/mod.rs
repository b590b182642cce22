//! The cross-task ping registry behind a user-facing `ping()` that resolves to the RTT.
//!
//! The application holds [`Pinger`]s (any task, any thread); the connection task owns the one
//! [`PingRegistry`] next to its [`KeepAlive`](crate::KeepAlive). Every waiter completes exactly
//! once, with its RTT or with an error; nothing waits forever, nothing completes twice.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use crate::sync::{Arc, AtomicU8, AtomicU64, AtomicWaker, Mutex, Ordering, lock};
use crate::{MAX_PAYLOAD_LEN, PingError, PingId};

#[cfg(all(test, not(loom)))]
mod tests;

// The state word of a waiter slot. Every transition is a read-modify-write.
/// Nobody has completed the slot yet.
const PENDING: u8 = 0;
/// The completer claimed the slot and is writing the value.
const WRITING: u8 = 1;
/// Completed with `Ok(nanos)`.
const DONE_OK: u8 = 2;
/// Completed with an error (`DONE_ERR + error code`).
const DONE_ERR: u8 = 8;
/// The waiter dropped its future; the value will never be read.
const ABANDONED: u8 = 255;

fn error_code(e: PingError) -> u8 {
    match e {
        PingError::DuplicatePingPayload => 1,
        PingError::TooManyOutstandingPings => 2,
        PingError::PayloadTooLong => 3,
        PingError::NotOpen => 4,
        PingError::ConnectionClosed => 5,
    }
}

fn error_from_code(code: u8) -> Option<PingError> {
    Some(match code {
        1 => PingError::DuplicatePingPayload,
        2 => PingError::TooManyOutstandingPings,
        3 => PingError::PayloadTooLong,
        4 => PingError::NotOpen,
        5 => PingError::ConnectionClosed,
        _ => return None,
    })
}

/// One waiter: a state word, a value cell and the waiter's waker.
#[derive(Debug)]
pub(crate) struct Slot {
    state: AtomicU8,
    nanos: AtomicU64,
    waker: AtomicWaker,
}

impl Slot {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(PENDING),
            nanos: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        }
    }

    /// Completes the slot unless it is already complete or abandoned. Returns whether this call
    /// completed it: a second completion is a no-op, never a panic.
    fn complete(&self, result: Result<Duration, PingError>) -> bool {
        if self
            .state
            .compare_exchange(PENDING, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let code = match result {
            Ok(latency) => {
                let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
                self.nanos.swap(nanos, Ordering::Relaxed);
                DONE_OK
            }
            Err(e) => DONE_ERR + error_code(e),
        };
        // Release publishes `nanos`. If the waiter abandoned the slot meanwhile, this swap
        // returns ABANDONED and there is nobody to wake.
        if self.state.swap(code, Ordering::AcqRel) == WRITING {
            self.waker.wake();
        }
        true
    }

    /// The result, once complete.
    fn result(&self) -> Option<Result<Duration, PingError>> {
        match self.state.load(Ordering::Acquire) {
            DONE_OK => Some(Ok(Duration::from_nanos(self.nanos.load(Ordering::Relaxed)))),
            code if code > DONE_ERR => error_from_code(code - DONE_ERR).map(Err),
            _ => None,
        }
    }

    /// The waiter is gone.
    fn abandon(&self) {
        self.state.swap(ABANDONED, Ordering::AcqRel);
    }

    fn is_abandoned(&self) -> bool {
        self.state.load(Ordering::Acquire) == ABANDONED
    }
}

#[derive(Debug)]
struct Queue {
    requests: VecDeque<PingRequest>,
    max_queued: usize,
    pingers: usize,
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    driver: AtomicWaker,
}

/// Creates the two ends of a connection's ping registry. At most `max_queued` requests wait
/// between the [`Pinger`]s and the connection task; beyond that, `ping()` resolves to
/// [`PingError::TooManyOutstandingPings`] at once.
///
/// ```
/// use core::future::Future;
/// use core::pin::pin;
/// use core::task::{Context, Poll, Waker};
/// use core::time::Duration;
/// use sonar_keepalive::{Input, KeepAlive, KeepaliveConfig, Output, ping_channel};
///
/// let mut cx = Context::from_waker(Waker::noop());
/// let (mut registry, pinger) = ping_channel(8);
/// let mut ka = KeepAlive::new(KeepaliveConfig::default(), 0);
/// ka.handle(Duration::ZERO, Input::Opened);
///
/// // Application task:
/// let mut rtt = pin!(pinger.ping(Some(b"hello".to_vec())));
/// assert!(rtt.as_mut().poll(&mut cx).is_pending());
///
/// // Connection task: hand the request to the machine, send the ping, bind the waiter.
/// let Poll::Ready(Some(request)) = registry.poll_request(&mut cx) else { unreachable!() };
/// let result = ka.user_ping(Duration::ZERO, request.payload()).map(|(id, _payload)| id);
/// registry.bind(request, result);
/// // ... the ping is written, the pong arrives 3 ms later:
/// ka.handle(Duration::from_millis(3), Input::PongReceived(b"hello"));
/// while let Some(out) = ka.poll(Duration::from_millis(3)) {
///     if let Output::PingAcked { id, latency } = out {
///         registry.complete(id, latency);
///     }
/// }
/// assert_eq!(rtt.as_mut().poll(&mut cx), Poll::Ready(Ok(Duration::from_millis(3))));
/// ```
pub fn ping_channel(max_queued: usize) -> (PingRegistry, Pinger) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            requests: VecDeque::new(),
            max_queued,
            pingers: 1,
            closed: false,
        }),
        driver: AtomicWaker::new(),
    });
    (
        PingRegistry {
            shared: shared.clone(),
            waiters: Vec::new(),
            closed: false,
        },
        Pinger { shared },
    )
}

/// The application's handle for pinging the peer: `Clone + Send + Sync`.
#[derive(Debug)]
pub struct Pinger {
    shared: Arc<Shared>,
}

impl Clone for Pinger {
    fn clone(&self) -> Self {
        let mut q = lock(&self.shared.queue);
        q.pingers = q.pingers.saturating_add(1);
        drop(q);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        let mut q = lock(&self.shared.queue);
        q.pingers = q.pingers.saturating_sub(1);
        let last = q.pingers == 0;
        drop(q);
        if last {
            self.shared.driver.wake();
        }
    }
}

impl Pinger {
    /// Sends a ping and resolves to its RTT when the pong arrives.
    ///
    /// `payload: None` lets keepalive generate a unique 8-byte ASCII payload. The future
    /// resolves to an error if the connection closes first, or at once if the payload is too
    /// long, the registry is closed, or the queue is full. Dropping the future is allowed: the
    /// ping still goes out, its pong is simply not reported.
    pub fn ping(&self, payload: Option<Vec<u8>>) -> PingFuture {
        if payload.as_ref().is_some_and(|p| p.len() > MAX_PAYLOAD_LEN) {
            return PingFuture::ready(Err(PingError::PayloadTooLong));
        }
        let mut q = lock(&self.shared.queue);
        if q.closed {
            return PingFuture::ready(Err(PingError::ConnectionClosed));
        }
        if q.requests.len() >= q.max_queued {
            return PingFuture::ready(Err(PingError::TooManyOutstandingPings));
        }
        let slot = Arc::new(Slot::new());
        q.requests.push_back(PingRequest {
            payload,
            slot: Some(slot.clone()),
        });
        drop(q);
        self.shared.driver.wake();
        PingFuture {
            state: FutureState::Waiting(Waiter { slot }),
        }
    }

    /// Whether the connection side has closed: every later `ping()` fails at once.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.queue).closed
    }
}

/// Drops the waiter's interest in its slot.
#[derive(Debug)]
struct Waiter {
    slot: Arc<Slot>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.slot.abandon();
    }
}

#[derive(Debug)]
enum FutureState {
    Waiting(Waiter),
    Done(Result<Duration, PingError>),
}

/// The future of [`Pinger::ping`]: the RTT of the ping, or why there is none.
/// `Send + Unpin`; polling it again after completion returns the same result.
#[derive(Debug)]
#[must_use = "a ping future does nothing useful unless polled"]
pub struct PingFuture {
    state: FutureState,
}

impl PingFuture {
    fn ready(result: Result<Duration, PingError>) -> Self {
        Self {
            state: FutureState::Done(result),
        }
    }
}

impl Future for PingFuture {
    type Output = Result<Duration, PingError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = match &self.state {
            FutureState::Done(r) => return Poll::Ready(*r),
            FutureState::Waiting(w) => match w.slot.result() {
                Some(r) => r,
                None => {
                    w.slot.waker.register(cx.waker());
                    match w.slot.result() {
                        Some(r) => r,
                        None => return Poll::Pending,
                    }
                }
            },
        };
        self.state = FutureState::Done(result);
        Poll::Ready(result)
    }
}

/// A ping asked for by a [`Pinger`], taken by the connection task from
/// [`PingRegistry::poll_request`]. Hand [`payload`](Self::payload) to
/// [`KeepAlive::user_ping`](crate::KeepAlive::user_ping), then give the request and the result
/// to [`PingRegistry::bind`]. Dropping a request fails its waiter with
/// [`PingError::ConnectionClosed`].
#[derive(Debug)]
pub struct PingRequest {
    payload: Option<Vec<u8>>,
    slot: Option<Arc<Slot>>,
}

impl PingRequest {
    /// The requested payload, or `None` to generate one.
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    /// Whether the waiter already dropped its future (the driver may skip the ping).
    pub fn is_abandoned(&self) -> bool {
        self.slot.as_ref().is_none_or(|s| s.is_abandoned())
    }

    fn finish(mut self, result: Result<Duration, PingError>) {
        if let Some(slot) = self.slot.take() {
            slot.complete(result);
        }
    }
}

impl Drop for PingRequest {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.complete(Err(PingError::ConnectionClosed));
        }
    }
}

/// The connection task's side of the ping registry. Dropping it is [`close`](Self::close).
#[derive(Debug)]
pub struct PingRegistry {
    shared: Arc<Shared>,
    waiters: Vec<(PingId, Arc<Slot>)>,
    closed: bool,
}

impl PingRegistry {
    /// The next queued request, registering the task's waker. `Ready(None)` once every
    /// [`Pinger`] is gone (and the queue is empty) or the registry is closed.
    pub fn poll_request(&mut self, cx: &mut Context<'_>) -> Poll<Option<PingRequest>> {
        if self.closed {
            return Poll::Ready(None);
        }
        // Register before looking, so that a request queued in between wakes us.
        self.shared.driver.register(cx.waker());
        let mut q = lock(&self.shared.queue);
        if let Some(request) = q.requests.pop_front() {
            return Poll::Ready(Some(request));
        }
        if q.pingers == 0 {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// The next queued request, without registering a waker.
    pub fn try_request(&mut self) -> Option<PingRequest> {
        if self.closed {
            return None;
        }
        lock(&self.shared.queue).requests.pop_front()
    }

    /// Binds a request to the result of
    /// [`KeepAlive::user_ping`](crate::KeepAlive::user_ping): `Ok(id)` makes the waiter wait
    /// for [`complete`](Self::complete)/[`fail`](Self::fail) of `id`; `Err(e)` completes it
    /// with `e` at once.
    pub fn bind(&mut self, request: PingRequest, result: Result<PingId, PingError>) {
        match result {
            Ok(_) if self.closed => request.finish(Err(PingError::ConnectionClosed)),
            Err(e) => request.finish(Err(e)),
            Ok(id) => {
                let mut request = request;
                if let Some(slot) = request.slot.take() {
                    // Forget waiters that went away, so the list stays bounded by the
                    // machine's outstanding pings.
                    self.waiters.retain(|(_, s)| !s.is_abandoned());
                    self.waiters.push((id, slot));
                }
            }
        }
    }

    /// Completes the waiter of `id` with its RTT ([`Output::PingAcked`](crate::Output)).
    /// Unknown, already completed or abandoned ids are ignored.
    pub fn complete(&mut self, id: PingId, latency: Duration) {
        if let Some(slot) = self.take_waiter(id) {
            slot.complete(Ok(latency));
        }
    }

    /// Fails the waiter of `id` with [`PingError::ConnectionClosed`]
    /// ([`Output::PingFailed`](crate::Output)). Unknown ids are ignored.
    pub fn fail(&mut self, id: PingId) {
        if let Some(slot) = self.take_waiter(id) {
            slot.complete(Err(PingError::ConnectionClosed));
        }
    }

    /// The connection closed: every waiter, bound or still queued, gets
    /// [`PingError::ConnectionClosed`], and later `ping()` calls fail at once.
    pub fn close(&mut self) {
        self.closed = true;
        let queued = {
            let mut q = lock(&self.shared.queue);
            q.closed = true;
            core::mem::take(&mut q.requests)
        };
        // Dropping a request fails its waiter.
        drop(queued);
        for (_, slot) in self.waiters.drain(..) {
            slot.complete(Err(PingError::ConnectionClosed));
        }
    }

    /// How many bound waiters are still waiting for a pong.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    fn take_waiter(&mut self, id: PingId) -> Option<Arc<Slot>> {
        let pos = self.waiters.iter().position(|(i, _)| *i == id)?;
        Some(self.waiters.swap_remove(pos).1)
    }
}

impl Drop for PingRegistry {
    fn drop(&mut self) {
        self.close();
    }
}
