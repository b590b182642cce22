//! Configuration of the keepalive machine.

use core::time::Duration;

/// When keepalive pings are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PingStrategy {
    /// Ping after `ping_interval` of **inbound** silence (and at least `ping_interval` after the
    /// previous keepalive ping). A busy peer costs no pings. The default.
    #[default]
    WhenIdle,
    /// Ping every `ping_interval`, whatever the traffic: a steady RTT series.
    Periodic,
}

/// Which pongs satisfy the keepalive liveness wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PongMatch {
    /// Any pong received while a keepalive ping is outstanding proves the peer alive; only an
    /// exact payload match gives an RTT sample. Survives peers that truncate or empty pongs.
    /// The default.
    #[default]
    Lenient,
    /// Only a pong acknowledging the keepalive ping itself (exact payload, or a later ping's
    /// exact payload) clears the wait. Other pongs count as inbound bytes.
    Strict,
}

/// What keepalive sends when the interval elapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Heartbeat {
    /// A ping, with a pong timeout: liveness detection. The default.
    #[default]
    Ping,
    /// An unsolicited empty pong (RFC 6455 §5.5.3 "unidirectional heartbeat"): traffic for
    /// proxies, no liveness detection, no pong timeout.
    UnsolicitedPong,
}

/// The optional ping-flood guard: more than `max_pings` inbound pings within one
/// `window` kills the connection with Close 1008.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PingFloodGuard {
    /// Inbound pings allowed per window.
    pub max_pings: u32,
    /// The length of one counting window.
    pub window: Duration,
}

impl PingFloodGuard {
    /// A guard allowing `max_pings` inbound pings per `window`.
    pub const fn new(max_pings: u32, window: Duration) -> Self {
        Self { max_pings, window }
    }
}

/// Configuration of [`KeepAlive`](crate::KeepAlive). `Default` gives the documented defaults below.
///
/// ```
/// use core::time::Duration;
/// use sonar_keepalive::{KeepaliveConfig, PingStrategy};
/// let c = KeepaliveConfig::default()
///     .with_ping_interval(Some(Duration::from_secs(30)))
///     .with_strategy(PingStrategy::Periodic);
/// assert_eq!(c.pong_timeout, Some(Duration::from_secs(20)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct KeepaliveConfig {
    /// Time between keepalive pings (see [`PingStrategy`]). `None` disables keepalive pings and
    /// their pong timeout; user pings still work. Default 20 s, well below the 55-60 s
    /// idle limits of Heroku, nginx and AWS load balancers. Values under 1 ms count as 1 ms.
    pub ping_interval: Option<Duration>,
    /// How long to wait for a pong, counted from when the ping was written and pushed back by
    /// any inbound bytes. `None`: keep pinging, never declare the peer dead.
    /// Default 20 s (worst-case detection `ping_interval + pong_timeout` = 40 s).
    pub pong_timeout: Option<Duration>,
    /// When pings are sent. Default [`PingStrategy::WhenIdle`].
    pub strategy: PingStrategy,
    /// Which pongs satisfy liveness. Default [`PongMatch::Lenient`].
    pub pong_match: PongMatch,
    /// Declare the connection dead when output is pending and the transport accepted zero bytes
    /// for this long. Default 20 s. `None` disables it.
    pub write_stall_timeout: Option<Duration>,
    /// Bound on outstanding *user* pings; keepalive has one more, reserved slot.
    /// Default 16.
    pub max_outstanding_pings: usize,
    /// Ping (default) or unsolicited pong.
    pub heartbeat: Heartbeat,
    /// The ping-flood guard, off by default.
    pub ping_flood: Option<PingFloodGuard>,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        Self {
            ping_interval: Some(Duration::from_secs(20)),
            pong_timeout: Some(Duration::from_secs(20)),
            strategy: PingStrategy::WhenIdle,
            pong_match: PongMatch::Lenient,
            write_stall_timeout: Some(Duration::from_secs(20)),
            max_outstanding_pings: 16,
            heartbeat: Heartbeat::Ping,
            ping_flood: None,
        }
    }
}

impl KeepaliveConfig {
    /// Sets [`ping_interval`](Self::ping_interval).
    #[must_use]
    pub const fn with_ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets [`pong_timeout`](Self::pong_timeout).
    #[must_use]
    pub const fn with_pong_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.pong_timeout = timeout;
        self
    }

    /// Sets [`strategy`](Self::strategy).
    #[must_use]
    pub const fn with_strategy(mut self, strategy: PingStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets [`pong_match`](Self::pong_match).
    #[must_use]
    pub const fn with_pong_match(mut self, pong_match: PongMatch) -> Self {
        self.pong_match = pong_match;
        self
    }

    /// Sets [`write_stall_timeout`](Self::write_stall_timeout).
    #[must_use]
    pub const fn with_write_stall_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_stall_timeout = timeout;
        self
    }

    /// Sets [`max_outstanding_pings`](Self::max_outstanding_pings).
    #[must_use]
    pub const fn with_max_outstanding_pings(mut self, max: usize) -> Self {
        self.max_outstanding_pings = max;
        self
    }

    /// Sets [`heartbeat`](Self::heartbeat).
    #[must_use]
    pub const fn with_heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets [`ping_flood`](Self::ping_flood).
    #[must_use]
    pub const fn with_ping_flood(mut self, guard: Option<PingFloodGuard>) -> Self {
        self.ping_flood = guard;
        self
    }
}
