//! The sans-I/O keepalive state machine.

use alloc::collections::VecDeque;
use core::time::Duration;

use crate::{
    DeadReason, Heartbeat, Input, KeepaliveConfig, KeepaliveStats, MIN_RTT, Output, Payload,
    PingError, PingId, PingStrategy, PongMatch, RttSample, RttStats,
};

#[cfg(all(test, not(loom)))]
mod tests;

/// The shortest effective ping interval: a zero interval must not make `poll` loop forever.
const MIN_PING_INTERVAL: Duration = Duration::from_millis(1);

/// Unpolled [`Output::UnmatchedPong`] events kept at most; more are only counted in the stats,
/// so a pong flood cannot grow the event queue.
const MAX_QUEUED_UNMATCHED: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Open,
    /// Close started or keepalive declared death: no pings, no deadlines; user pings still wait.
    Closing,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Keepalive,
    User,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    id: PingId,
    payload: Payload,
    kind: Kind,
    queued_at: Duration,
    written_at: Option<Duration>,
}

impl Outstanding {
    /// The write time, or the queue time if the write was never reported.
    fn sent_at(&self) -> Duration {
        self.written_at.unwrap_or(self.queued_at)
    }
}

/// The sans-I/O keepalive machine of one connection.
///
/// It owns no clock, timer or task: every call takes `now`, a [`Duration`] since an origin the
/// driver picks on a monotonic clock. A `now` earlier than one seen before counts as "no time
/// passed".
///
/// # Polling order
///
/// 1. Feed every event with [`handle`](Self::handle), and user pings with
///    [`user_ping`](Self::user_ping).
/// 2. Call [`poll`](Self::poll) until it returns `None`, acting on each [`Output`].
/// 3. Sleep until [`next_deadline`](Self::next_deadline) (or the next I/O event), then go to 2.
///
/// ```
/// use core::time::Duration;
/// use sonar_keepalive::{Input, KeepAlive, KeepaliveConfig, Output};
///
/// let s = Duration::from_secs;
/// let mut ka = KeepAlive::new(KeepaliveConfig::default(), 0);
/// ka.handle(s(0), Input::Opened);
/// assert_eq!(ka.poll(s(1)), None);
/// assert_eq!(ka.next_deadline(), Some(s(20)));
/// let Some(Output::SendPing { id, payload }) = ka.poll(s(20)) else { unreachable!() };
/// ka.handle(s(20), Input::PingWritten(id));
/// ka.handle(s(21), Input::PongReceived(&payload));
/// assert!(matches!(ka.poll(s(21)), Some(Output::Rtt(r)) if r.rtt == s(1)));
/// ```
#[derive(Debug, Clone)]
pub struct KeepAlive {
    config: KeepaliveConfig,
    salt: u32,
    counter: u32,
    next_id: u64,
    phase: Phase,
    /// The latest `now` seen: time never goes backwards inside the machine.
    now: Duration,
    last_rx: Duration,
    last_ka_ping_at: Duration,
    outstanding: VecDeque<Outstanding>,
    /// A keepalive ping is outstanding and liveness is not yet satisfied.
    ka_wait: bool,
    read_paused: bool,
    resume_floor: Option<Duration>,
    output_pending: bool,
    last_write_progress: Duration,
    rtt: Option<RttStats>,
    events: VecDeque<Output>,
    queued_unmatched: usize,
    stats: KeepaliveStats,
    flood_window_start: Duration,
    flood_count: u32,
}

impl KeepAlive {
    /// A machine for one connection, not yet open. `salt` is caller randomness that makes
    /// generated payloads unpredictable; payload `n` is the hex of `n ^ salt`, with `n`
    /// counting from 1.
    pub fn new(config: KeepaliveConfig, salt: u32) -> Self {
        Self {
            config,
            salt,
            counter: 0,
            next_id: 1,
            phase: Phase::Connecting,
            now: Duration::ZERO,
            last_rx: Duration::ZERO,
            last_ka_ping_at: Duration::ZERO,
            outstanding: VecDeque::new(),
            ka_wait: false,
            read_paused: false,
            resume_floor: None,
            output_pending: false,
            last_write_progress: Duration::ZERO,
            rtt: None,
            events: VecDeque::new(),
            queued_unmatched: 0,
            stats: KeepaliveStats::default(),
            flood_window_start: Duration::ZERO,
            flood_count: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &KeepaliveConfig {
        &self.config
    }

    /// Feeds one event (see [`Input`] for when to report each). Never emits I/O itself: outputs
    /// are queued for [`poll`](Self::poll).
    pub fn handle(&mut self, now: Duration, input: Input<'_>) {
        let now = self.advance(now);
        if self.phase == Phase::Closed {
            return;
        }
        match input {
            Input::Opened => {
                if self.phase == Phase::Connecting {
                    self.phase = Phase::Open;
                    self.last_rx = now;
                    self.last_ka_ping_at = now;
                    self.last_write_progress = now;
                    self.flood_window_start = now;
                }
            }
            Input::BytesReceived => self.last_rx = now,
            Input::PongReceived(payload) => self.on_pong(now, payload),
            Input::PingReceived => self.on_ping(now),
            Input::PingWritten(id) => {
                self.last_write_progress = now;
                if let Some(e) = self
                    .outstanding
                    .iter_mut()
                    .find(|e| e.id == id && e.written_at.is_none())
                {
                    e.written_at = Some(now);
                }
            }
            Input::PingWrittenPayload(payload) => {
                self.last_write_progress = now;
                if let Some(e) = self
                    .outstanding
                    .iter_mut()
                    .find(|e| e.payload == payload && e.written_at.is_none())
                {
                    e.written_at = Some(now);
                }
            }
            Input::WriteProgress => self.last_write_progress = now,
            Input::OutputPending(pending) => {
                if pending && !self.output_pending {
                    self.last_write_progress = now;
                }
                self.output_pending = pending;
            }
            Input::ReadPaused => self.read_paused = true,
            Input::ReadResumed => {
                if self.read_paused {
                    self.read_paused = false;
                    self.resume_floor = Some(now);
                }
            }
            Input::CloseStarted => {
                if matches!(self.phase, Phase::Connecting | Phase::Open) {
                    self.phase = Phase::Closing;
                }
            }
            Input::Closed => self.on_closed(),
        }
    }

    /// Registers a user ping and returns its id and payload; the caller
    /// queues the Ping frame itself (nothing is emitted through [`poll`](Self::poll)), reports
    /// [`Input::PingWritten`] once written, and later gets [`Output::PingAcked`] or
    /// [`Output::PingFailed`] for it, exactly once.
    ///
    /// `payload: None` generates a unique 8-byte ASCII payload.
    ///
    /// # Errors
    /// [`PingError::NotOpen`] outside OPEN, [`PingError::PayloadTooLong`] above 125 bytes,
    /// [`PingError::TooManyOutstandingPings`] beyond `max_outstanding_pings`,
    /// [`PingError::DuplicatePingPayload`] if a ping with that payload is outstanding.
    pub fn user_ping(
        &mut self,
        now: Duration,
        payload: Option<&[u8]>,
    ) -> Result<(PingId, Payload), PingError> {
        let now = self.advance(now);
        if self.phase != Phase::Open {
            return Err(PingError::NotOpen);
        }
        let payload = match payload {
            Some(p) => Payload::new(p)?,
            None => self.fresh_payload(),
        };
        let users = self
            .outstanding
            .iter()
            .filter(|e| e.kind == Kind::User)
            .count();
        if users >= self.config.max_outstanding_pings {
            return Err(PingError::TooManyOutstandingPings);
        }
        if self.outstanding.iter().any(|e| e.payload == payload) {
            return Err(PingError::DuplicatePingPayload);
        }
        let id = self.push_outstanding(now, payload, Kind::User);
        self.stats.user_pings_sent = self.stats.user_pings_sent.saturating_add(1);
        Ok((id, payload))
    }

    /// Forgets an outstanding user ping without emitting anything, e.g. when the codec refused
    /// to queue its frame after [`user_ping`](Self::user_ping) succeeded. Returns whether it
    /// was outstanding. A later pong with its payload is then unmatched.
    pub fn cancel_ping(&mut self, id: PingId) -> bool {
        let before = self.outstanding.len();
        self.outstanding
            .retain(|e| !(e.id == id && e.kind == Kind::User));
        self.outstanding.len() != before
    }

    /// The next output, or `None` when there is nothing to do until the next input or
    /// [`next_deadline`](Self::next_deadline). Queued outputs come first, then timers fire:
    /// write stall, pong timeout, then the next keepalive ping.
    pub fn poll(&mut self, now: Duration) -> Option<Output> {
        let now = self.advance(now);
        if let Some(event) = self.events.pop_front() {
            if event == Output::UnmatchedPong {
                self.queued_unmatched = self.queued_unmatched.saturating_sub(1);
            }
            return Some(event);
        }
        if self.phase != Phase::Open {
            return None;
        }
        if let Some(deadline) = self.stall_deadline()
            && now >= deadline
        {
            self.phase = Phase::Closing;
            return Some(Output::Dead(DeadReason::WriteStalled {
                waited: now.saturating_sub(self.last_write_progress),
            }));
        }
        if let Some((deadline, written)) = self.pong_deadline()
            && now >= deadline
        {
            self.phase = Phase::Closing;
            return Some(Output::Dead(DeadReason::PongTimeout {
                waited: now.saturating_sub(written),
            }));
        }
        if let Some(due) = self.ping_due()
            && now >= due
        {
            self.last_ka_ping_at = now;
            return Some(match self.config.heartbeat {
                Heartbeat::UnsolicitedPong => {
                    self.stats.heartbeat_pongs_sent =
                        self.stats.heartbeat_pongs_sent.saturating_add(1);
                    Output::SendPong {
                        payload: Payload::EMPTY,
                    }
                }
                Heartbeat::Ping => {
                    // Only reached with a keepalive ping outstanding when pong_timeout is
                    // None: the stale one is replaced (at most one, K-11).
                    self.outstanding.retain(|e| e.kind != Kind::Keepalive);
                    let payload = self.fresh_payload();
                    let id = self.push_outstanding(now, payload, Kind::Keepalive);
                    self.ka_wait = true;
                    self.stats.keepalive_pings_sent =
                        self.stats.keepalive_pings_sent.saturating_add(1);
                    Output::SendPing { id, payload }
                }
            });
        }
        None
    }

    /// The earliest time at which [`poll`](Self::poll) has something to do without new input:
    /// `None` if no timer runs (not open, closing, or everything disabled). After `poll(now)`
    /// returned `None`, this is never `<= now`.
    pub fn next_deadline(&self) -> Option<Duration> {
        if self.phase != Phase::Open {
            return None;
        }
        [
            self.stall_deadline(),
            self.pong_deadline().map(|(d, _)| d),
            self.ping_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// RTT statistics: `None` before the first sample.
    pub fn rtt(&self) -> Option<RttStats> {
        self.rtt
    }

    /// Diagnostic counters.
    pub fn stats(&self) -> KeepaliveStats {
        self.stats
    }

    /// How many pings (keepalive and user) are waiting for a pong.
    pub fn outstanding_pings(&self) -> usize {
        self.outstanding.len()
    }

    /// Frees the memory of the internal queues that are empty (pings waiting for a pong,
    /// outputs not yet polled), as `Vec::shrink_to_fit` does: between pings an idle
    /// connection's machine then holds only its fixed-size state.
    pub fn shrink_to_fit(&mut self) {
        if self.outstanding.is_empty() {
            self.outstanding.shrink_to_fit();
        }
        if self.events.is_empty() {
            self.events.shrink_to_fit();
        }
    }

    /// Whether the machine is OPEN (pings allowed, timers running).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    // --- internals ---

    fn advance(&mut self, now: Duration) -> Duration {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    fn push_outstanding(&mut self, now: Duration, payload: Payload, kind: Kind) -> PingId {
        let id = PingId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        self.outstanding.push_back(Outstanding {
            id,
            payload,
            kind,
            queued_at: now,
            written_at: None,
        });
        id
    }

    /// A generated payload unique among outstanding pings. Distinct counters give distinct
    /// payloads, so this takes at most `outstanding.len() + 1` tries.
    fn fresh_payload(&mut self) -> Payload {
        let mut tries = self.outstanding.len().saturating_add(1);
        loop {
            self.counter = self.counter.wrapping_add(1);
            let p = Payload::generated(self.counter, self.salt);
            tries = tries.saturating_sub(1);
            if tries == 0 || !self.outstanding.iter().any(|e| e.payload == p) {
                return p;
            }
        }
    }

    fn push_event(&mut self, event: Output) {
        self.events.push_back(event);
    }

    fn on_pong(&mut self, now: Duration, payload: &[u8]) {
        self.last_rx = now;
        self.stats.pongs_received = self.stats.pongs_received.saturating_add(1);
        if let Some(i) = self.outstanding.iter().position(|e| e.payload == payload) {
            // FIFO acknowledgement (K-9): the match and every earlier ping.
            let mut matched_rtt = Duration::ZERO;
            for (n, e) in self.outstanding.drain(..=i).enumerate() {
                let latency = now.saturating_sub(e.sent_at()).max(MIN_RTT);
                match e.kind {
                    Kind::User => {
                        self.stats.pings_acked = self.stats.pings_acked.saturating_add(1);
                        self.events
                            .push_back(Output::PingAcked { id: e.id, latency });
                    }
                    Kind::Keepalive => self.ka_wait = false,
                }
                if n == i {
                    matched_rtt = latency;
                }
            }
            self.stats.pongs_matched = self.stats.pongs_matched.saturating_add(1);
            let sample = self.record_rtt(matched_rtt);
            self.push_event(Output::Rtt(sample));
        } else {
            self.stats.unmatched_pongs = self.stats.unmatched_pongs.saturating_add(1);
            if self.queued_unmatched < MAX_QUEUED_UNMATCHED {
                self.queued_unmatched += 1;
                self.push_event(Output::UnmatchedPong);
            }
        }
        if self.ka_wait && self.config.pong_match == PongMatch::Lenient {
            // K-7: any pong proves the peer's writer alive; no RTT sample for the keepalive ping.
            self.ka_wait = false;
            self.outstanding.retain(|e| e.kind != Kind::Keepalive);
        }
    }

    fn on_ping(&mut self, now: Duration) {
        self.last_rx = now;
        self.stats.pings_received = self.stats.pings_received.saturating_add(1);
        let Some(guard) = self.config.ping_flood else {
            return;
        };
        if self.phase != Phase::Open {
            return;
        }
        if now >= self.flood_window_start.saturating_add(guard.window) {
            self.flood_window_start = now;
            self.flood_count = 0;
        }
        self.flood_count = self.flood_count.saturating_add(1);
        if self.flood_count > guard.max_pings {
            self.phase = Phase::Closing;
            self.push_event(Output::Dead(DeadReason::PingFlood {
                pings: self.flood_count,
                window: guard.window,
            }));
        }
    }

    fn on_closed(&mut self) {
        self.phase = Phase::Closed;
        self.ka_wait = false;
        let failed: VecDeque<Outstanding> = core::mem::take(&mut self.outstanding);
        for e in failed {
            if e.kind == Kind::User {
                self.stats.pings_failed = self.stats.pings_failed.saturating_add(1);
                self.events.push_back(Output::PingFailed { id: e.id });
            }
        }
    }

    fn record_rtt(&mut self, rtt: Duration) -> RttSample {
        let stats = match self.rtt {
            None => RttStats {
                last: rtt,
                smoothed: rtt,
                min: rtt,
                samples: 1,
            },
            Some(prev) => RttStats {
                last: rtt,
                smoothed: ewma(prev.smoothed, rtt),
                min: prev.min.min(rtt),
                samples: prev.samples.saturating_add(1),
            },
        };
        self.rtt = Some(stats);
        RttSample {
            rtt,
            smoothed: stats.smoothed,
            min: stats.min,
        }
    }

    fn stall_deadline(&self) -> Option<Duration> {
        let timeout = self.config.write_stall_timeout?;
        self.output_pending
            .then(|| self.last_write_progress.saturating_add(timeout))
    }

    /// The pong deadline and the keepalive ping's write time, if the pong timer runs.
    fn pong_deadline(&self) -> Option<(Duration, Duration)> {
        if !self.ka_wait || self.read_paused || self.config.heartbeat != Heartbeat::Ping {
            return None;
        }
        let timeout = self.config.pong_timeout?;
        let entry = self
            .outstanding
            .iter()
            .find(|e| e.kind == Kind::Keepalive)?;
        // K-6: the timer runs from the write. If the driver reports no pending output but never
        // reported the write either, fall back to the queue time rather than never firing.
        let written = match entry.written_at {
            Some(w) => w,
            None if !self.output_pending => entry.queued_at,
            None => return None,
        };
        // K-15: inbound bytes push the deadline; K-14: so does resuming reads.
        let base = written
            .max(self.last_rx)
            .max(self.resume_floor.unwrap_or(written));
        Some((base.saturating_add(timeout), written))
    }

    fn ping_due(&self) -> Option<Duration> {
        let interval = self.config.ping_interval?.max(MIN_PING_INTERVAL);
        if self.ka_wait && self.config.pong_timeout.is_some() {
            return None;
        }
        let base = match self.config.strategy {
            PingStrategy::WhenIdle => self.last_rx.max(self.last_ka_ping_at),
            PingStrategy::Periodic => self.last_ka_ping_at,
        };
        Some(base.saturating_add(interval))
    }
}

/// `smoothed + (sample - smoothed) / 8`, i.e. `(7 * smoothed + sample) / 8`, saturating.
fn ewma(smoothed: Duration, sample: Duration) -> Duration {
    let n = (smoothed.as_nanos().saturating_mul(7)).saturating_add(sample.as_nanos()) / 8;
    let secs = u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX);
    let nanos = u32::try_from(n % 1_000_000_000).unwrap_or(0);
    Duration::new(secs, nanos)
}
