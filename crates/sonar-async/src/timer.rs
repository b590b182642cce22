//! The timer seam: the one thing about time that a runtime adapter provides.

use core::future::Future;
use core::pin::Pin;
use std::time::Instant;

/// A source of monotonic time and of sleeps, provided by a runtime adapter.
///
/// The driver reads the clock only through [`Timer::now`], so a runtime with virtual time
/// (tokio's `time::pause`, a manual test timer) controls every keepalive and close deadline.
///
/// ```
/// use std::{pin::Pin, time::Instant};
/// use sonar_async::{Sleep, Timer};
///
/// /// A timer whose sleeps never fire: deadlines are only checked when the driver wakes for I/O.
/// struct Never;
/// struct NeverSleep;
/// impl std::future::Future for NeverSleep {
///     type Output = ();
///     fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
///         std::task::Poll::Pending
///     }
/// }
/// impl Sleep for NeverSleep {
///     fn reset(self: Pin<&mut Self>, _deadline: Instant) {}
/// }
/// impl Timer for Never {
///     fn now(&self) -> Instant { Instant::now() }
///     fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn Sleep>> { Box::pin(NeverSleep) }
/// }
/// ```
pub trait Timer: Send + Sync + 'static {
    /// The current time of this runtime's monotonic clock.
    fn now(&self) -> Instant;
    /// A future that completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>>;
}

/// A sleep created by a [`Timer`] that can be moved to a new deadline without reallocating.
pub trait Sleep: Future<Output = ()> + Send + 'static {
    /// Moves the deadline; the next poll completes at the new one.
    fn reset(self: Pin<&mut Self>, deadline: Instant);
}
