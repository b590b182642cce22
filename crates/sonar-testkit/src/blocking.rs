//! One implementation for blocking and futures-io readers: a blocking `Read` seen as an
//! `AsyncRead` that is always ready, and a one-poll executor for the futures built on it.

use std::future::Future;
use std::io::{self, Read};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

/// How often one read interrupted by a signal is tried again.
const MAX_INTERRUPTS: usize = 16;

/// A blocking reader as an `AsyncRead` that never returns `Pending` (it blocks instead).
pub(crate) struct Blocking<'a, R>(pub(crate) &'a mut R);

impl<R: Read> futures_io::AsyncRead for Blocking<'_, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // As std's `read_exact` does, a read interrupted by a signal is tried again (bounded).
        let r = self.get_mut();
        let mut result = r.0.read(buf);
        for _ in 0..MAX_INTERRUPTS {
            match result {
                Err(ref e) if e.kind() == io::ErrorKind::Interrupted => result = r.0.read(buf),
                _ => break,
            }
        }
        Poll::Ready(result)
    }
}

/// Runs a future that only awaits [`Blocking`] readers: it completes in its first poll. A
/// `Pending` (a future that awaits anything else) is an `io::Error`, not a hang.
pub(crate) fn run<T, E: From<io::Error>>(f: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(io::Error::other("a blocking read returned pending").into()),
    }
}
