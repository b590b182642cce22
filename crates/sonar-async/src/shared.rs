//! State shared between the connection task and the application's handles.

use std::sync::Mutex;
use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

use atomic_waker::AtomicWaker;

use sonar_core::CloseCode;
use sonar_keepalive::RttStats;

use crate::Error;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseStatus {
    /// The close code of the connection (RFC 6455 §7.1.5): the code of the first Close frame
    /// received, 1005 if it had none, 1006 if no Close frame was received at all.
    pub code: CloseCode,
    /// The reason text of the peer's Close frame (empty if none).
    pub reason: String,
    /// True if the peer sent Close first.
    pub by_peer: bool,
}

/// Counters of one connection, read with [`crate::WebSocket::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Data messages delivered to the application.
    pub messages_in: u64,
    /// Data messages the application sent.
    pub messages_out: u64,
    /// Bytes read from the transport.
    pub bytes_in: u64,
    /// Bytes written to the transport.
    pub bytes_out: u64,
    /// Pings received from the peer.
    pub pings_received: u64,
    /// Pings sent (keepalive and user pings).
    pub pings_sent: u64,
    /// Pongs that matched one of our outstanding pings.
    pub pongs_matched: u64,
    /// Pongs that matched nothing (unsolicited, truncated, duplicate).
    pub pongs_unmatched: u64,
    /// Round-trip time of pings, `None` before the first matching pong.
    pub rtt: Option<RttStats>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) pings_received: AtomicU64,
    pub(crate) pings_sent: AtomicU64,
    pub(crate) pongs_matched: AtomicU64,
    pub(crate) pongs_unmatched: AtomicU64,
}

pub(crate) enum Outcome {
    Closed(CloseStatus),
    Failed(Error, Option<CloseStatus>),
}

#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    pub(crate) rtt: Mutex<Option<RttStats>>,
    pub(crate) outcome: Mutex<Option<Outcome>>,
    /// Set once Close was sent or received: new data messages are refused.
    pub(crate) closing: AtomicBool,
    /// A protocol error the application sees at the end of the messages that preceded it,
    /// before the connection task has finished (it is still sending the answers).
    pub(crate) early_error: Mutex<Option<Error>>,
    /// The application has read to the end of the messages (or dropped its reader).
    pub(crate) reader_done: AtomicBool,
    /// Wakes the connection task when `reader_done` is set.
    pub(crate) driver: AtomicWaker,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            messages_in: c.messages_in.load(Relaxed),
            messages_out: c.messages_out.load(Relaxed),
            bytes_in: c.bytes_in.load(Relaxed),
            bytes_out: c.bytes_out.load(Relaxed),
            pings_received: c.pings_received.load(Relaxed),
            pings_sent: c.pings_sent.load(Relaxed),
            pongs_matched: c.pongs_matched.load(Relaxed),
            pongs_unmatched: c.pongs_unmatched.load(Relaxed),
            rtt: self.rtt(),
        }
    }

    pub(crate) fn rtt(&self) -> Option<RttStats> {
        self.rtt.lock().map(|g| *g).unwrap_or(None)
    }

    pub(crate) fn set_rtt(&self, rtt: Option<RttStats>) {
        if let Ok(mut g) = self.rtt.lock() {
            *g = rtt;
        }
    }

    /// The error that ended the connection, if it failed.
    pub(crate) fn error(&self) -> Option<Error> {
        if let Some(e) = self.early_error.lock().ok()?.clone() {
            return Some(e);
        }
        match self.outcome.lock().ok()?.as_ref()? {
            Outcome::Failed(e, _) => Some(e.clone()),
            Outcome::Closed(_) => None,
        }
    }

    pub(crate) fn close_status(&self) -> Option<CloseStatus> {
        match self.outcome.lock().ok()?.as_ref()? {
            Outcome::Closed(s) => Some(s.clone()),
            Outcome::Failed(_, s) => s.clone(),
        }
    }

    pub(crate) fn set_early_error(&self, e: Error) {
        if let Ok(mut g) = self.early_error.lock()
            && g.is_none()
        {
            *g = Some(e);
        }
    }

    /// Called by the reader: it has taken every message (or is gone).
    pub(crate) fn mark_reader_done(&self) {
        self.reader_done.store(true, Release);
        self.driver.wake();
    }

    pub(crate) fn reader_done(&self) -> bool {
        self.reader_done.load(Acquire)
    }

    pub(crate) fn finish(&self, outcome: Outcome) {
        if let Ok(mut g) = self.outcome.lock()
            && g.is_none()
        {
            *g = Some(outcome);
        }
        self.closing.store(true, Relaxed);
    }
}
