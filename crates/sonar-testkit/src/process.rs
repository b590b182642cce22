//! Child processes in tests and tools: a guard that never leaves one behind, and bounded
//! waits for its exit and for a line of its output.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often [`ChildGuard::wait_timeout`] asks whether the child has exited: std has no
/// timed wait, so the bounded wait polls `try_wait` at this interval.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// The most lines one wait looks at (a bound on top of the time limit).
const MAX_LINES: usize = 1 << 20;

/// A bounded wait that ended without what it waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitError {
    /// The limit passed first.
    Timeout(Duration),
    /// The output ended (the pipe closed) first.
    Closed,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Timeout(limit) => write!(f, "nothing within {limit:?}"),
            WaitError::Closed => f.write_str("the output ended first"),
        }
    }
}

impl std::error::Error for WaitError {}

/// A child process that is killed and reaped when dropped, so that no server outlives a
/// failed test or step. Derefs to the [`Child`].
#[derive(Debug)]
pub struct ChildGuard(Child);

impl ChildGuard {
    /// Guards a spawned child.
    pub fn new(child: Child) -> Self {
        ChildGuard(child)
    }

    /// Spawns `cmd` and guards the child.
    pub fn spawn(cmd: &mut Command) -> io::Result<Self> {
        cmd.spawn().map(ChildGuard)
    }

    /// Waits at most `limit` for the child to exit: `Ok(None)` if it is still running (it is
    /// not killed: drop the guard, or wait again).
    pub fn wait_timeout(&mut self, limit: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok(Some(status));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            thread::sleep(left.min(EXIT_POLL));
        }
    }

    /// [`wait_timeout`](Self::wait_timeout) for a test: the exit status, or a panic naming
    /// `what` if the child is still running after `limit` (the guard then kills it).
    #[allow(clippy::panic)]
    pub fn expect_exit(&mut self, limit: Duration, what: &str) -> ExitStatus {
        match self.wait_timeout(limit) {
            Ok(Some(status)) => status,
            Ok(None) => panic!("{what} did not exit within {limit:?}"),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of a pipe, read on a thread and handed over a channel, with bounded waits.
#[derive(Debug)]
pub struct LineReader {
    rx: Receiver<String>,
}

impl LineReader {
    /// Reads `r` line by line on a thread until it ends, fails, or the reader is dropped.
    pub fn spawn<R: Read + Send + 'static>(r: R) -> Self {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineReader { rx }
    }

    /// The next line, waiting at most `limit`.
    pub fn next_line(&self, limit: Duration) -> Result<String, WaitError> {
        self.rx.recv_timeout(limit).map_err(|e| match e {
            RecvTimeoutError::Timeout => WaitError::Timeout(limit),
            RecvTimeoutError::Disconnected => WaitError::Closed,
        })
    }

    /// The first line for which `pred` holds, waiting at most `limit` in all; the lines before
    /// it are skipped.
    pub fn wait_for(
        &self,
        limit: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String, WaitError> {
        let deadline = Instant::now() + limit;
        for _ in 0..MAX_LINES {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return Err(WaitError::Timeout(limit)),
                Err(RecvTimeoutError::Disconnected) => return Err(WaitError::Closed),
            }
        }
        Err(WaitError::Timeout(limit))
    }

    /// [`wait_for`](Self::wait_for) for a test: the line, or a panic naming `what`.
    #[allow(clippy::panic)]
    pub fn expect_line(
        &self,
        limit: Duration,
        what: &str,
        pred: impl FnMut(&str) -> bool,
    ) -> String {
        self.wait_for(limit, pred)
            .unwrap_or_else(|e| panic!("no line {what}: {e}"))
    }

    /// The lines as they come, until the pipe closes or `limit` has passed in all.
    pub fn lines_for(&self, limit: Duration) -> impl Iterator<Item = String> + '_ {
        let deadline = Instant::now() + limit;
        (0..MAX_LINES).map_while(move |_| {
            let left = deadline.saturating_duration_since(Instant::now());
            self.rx.recv_timeout(left).ok()
        })
    }

    /// Every line until the pipe closes, or until `limit` has passed (then the lines so far).
    pub fn collect_for(&self, limit: Duration) -> Vec<String> {
        self.lines_for(limit).collect()
    }

    /// Keeps draining the pipe on a thread (so the child never writes into a closed pipe),
    /// discarding the lines.
    pub fn drain(self) {
        thread::spawn(move || self.rx.iter().for_each(drop));
    }
}

/// The whole of a pipe as text, read on a thread (lossy: a read error ends it).
pub fn text_of<R: Read + Send + 'static>(mut r: R) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_matching_line_and_reports_the_end() {
        let lines = LineReader::spawn(&b"one\nlistening on 127.0.0.1:1\nthree\n"[..]);
        let got = lines.wait_for(Duration::from_secs(5), |l| l.contains("listening on"));
        assert_eq!(got.unwrap(), "listening on 127.0.0.1:1");
        assert_eq!(lines.collect_for(Duration::from_secs(5)), ["three"]);
        assert_eq!(
            lines.wait_for(Duration::from_secs(5), |_| true),
            Err(WaitError::Closed)
        );
    }

    #[test]
    fn a_silent_pipe_times_out() {
        let (_keep_open, rx) = {
            let (tx, rx) = mpsc::channel::<String>();
            (tx, LineReader { rx })
        };
        let limit = Duration::from_millis(20);
        assert_eq!(rx.wait_for(limit, |_| true), Err(WaitError::Timeout(limit)));
    }

    #[test]
    fn the_guard_waits_bounded_and_kills_on_drop() {
        let mut done = ChildGuard::spawn(&mut Command::new("true")).unwrap();
        let status = done.wait_timeout(Duration::from_secs(10)).unwrap();
        assert!(status.is_some_and(|s| s.success()));
        let mut running = ChildGuard::spawn(Command::new("sleep").arg("30")).unwrap();
        assert_eq!(
            running.wait_timeout(Duration::from_millis(20)).unwrap(),
            None
        );
        // Killed, not waited for: the drop returns at once, not after 30 s.
        let started = Instant::now();
        drop(running);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
