//! What goes into and comes out of the keepalive machine.

use core::time::Duration;

use crate::Payload;

/// Identifies one ping (keepalive or user) for the life of a [`KeepAlive`](crate::KeepAlive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PingId(pub(crate) u64);

impl PingId {
    /// The raw number: ids count up from 1 per machine.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// An id from its raw number, for drivers and tests that keep ids elsewhere.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

/// An event the driver reports to [`KeepAlive::handle`](crate::KeepAlive::handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input<'a> {
    /// The opening handshake completed: the connection is OPEN. Starts all timers.
    Opened,
    /// Any inbound bytes were read, even a partial frame.
    BytesReceived,
    /// A complete, validated Pong frame with this payload was received.
    PongReceived(&'a [u8]),
    /// A complete Ping frame was received (feeds the optional flood guard; also counts as
    /// inbound bytes). The codec answers it; keepalive does not.
    PingReceived,
    /// The last byte of the ping with this id was accepted by the transport.
    PingWritten(PingId),
    /// Like [`PingWritten`](Self::PingWritten), for codecs that report written pings by
    /// payload: marks the oldest unwritten ping with this payload.
    PingWrittenPayload(&'a [u8]),
    /// The transport accepted at least one byte.
    WriteProgress,
    /// Whether the outbound queue is non-empty.
    OutputPending(bool),
    /// The driver stopped reading because the application is not draining messages.
    ReadPaused,
    /// The driver reads again.
    ReadResumed,
    /// A Close frame was sent or received: no more keepalive pings.
    CloseStarted,
    /// The transport is closed: outstanding user pings fail.
    Closed,
}

/// Why keepalive declared the connection dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadReason {
    /// No pong (and, after the ping was written, no inbound byte) for `pong_timeout`.
    PongTimeout {
        /// How long keepalive waited for the pong after the ping was written.
        waited: Duration,
    },
    /// Output was pending and the transport accepted nothing for `write_stall_timeout`.
    WriteStalled {
        /// How long the transport took no bytes (since the last write progress, or since
        /// output became pending).
        waited: Duration,
    },
    /// More inbound pings than the flood guard allows in one window.
    PingFlood {
        /// Pings counted in the window.
        pings: u32,
        /// The window length.
        window: Duration,
    },
}

/// The smallest round-trip time ever reported: a pong read at the same clock reading as
/// its ping was written (a coarse or virtual clock) measures one nanosecond, never zero.
pub const MIN_RTT: Duration = Duration::from_nanos(1);

/// Close code 1011 (Internal Error), sent best-effort on a keepalive death.
pub const CLOSE_CODE_KEEPALIVE: u16 = 1011;
/// Close code 1008 (Policy Violation), sent on a ping flood.
pub const CLOSE_CODE_PING_FLOOD: u16 = 1008;
/// Close reason for [`DeadReason::PongTimeout`].
pub const CLOSE_REASON_PONG_TIMEOUT: &str = "keepalive ping timeout";
/// Close reason for [`DeadReason::WriteStalled`].
pub const CLOSE_REASON_WRITE_STALLED: &str = "keepalive write stalled";
/// Close reason for [`DeadReason::PingFlood`].
pub const CLOSE_REASON_PING_FLOOD: &str = "ping flood";

impl DeadReason {
    /// The close code the driver sends best-effort: 1011, or 1008 for a ping flood.
    ///
    /// ```
    /// use sonar_keepalive::DeadReason;
    /// use core::time::Duration;
    /// let r = DeadReason::PongTimeout { waited: Duration::from_secs(20) };
    /// assert_eq!((r.close_code(), r.close_reason()), (1011, "keepalive ping timeout"));
    /// assert_eq!(r.to_string(), "no pong for 20s after a ping");
    /// ```
    pub const fn close_code(&self) -> u16 {
        match self {
            Self::PingFlood { .. } => CLOSE_CODE_PING_FLOOD,
            _ => CLOSE_CODE_KEEPALIVE,
        }
    }

    /// The close reason the driver sends with [`close_code`](Self::close_code).
    pub const fn close_reason(&self) -> &'static str {
        match self {
            Self::PongTimeout { .. } => CLOSE_REASON_PONG_TIMEOUT,
            Self::WriteStalled { .. } => CLOSE_REASON_WRITE_STALLED,
            Self::PingFlood { .. } => CLOSE_REASON_PING_FLOOD,
        }
    }
}

/// What happened, with the time waited (the close reason sent to the peer is
/// [`DeadReason::close_reason`]).
impl core::fmt::Display for DeadReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::PongTimeout { waited } => write!(f, "no pong for {waited:?} after a ping"),
            Self::WriteStalled { waited } => {
                write!(f, "the transport took no bytes for {waited:?}")
            }
            Self::PingFlood { pings, window } => {
                write!(f, "ping flood: {pings} pings within {window:?}")
            }
        }
    }
}

/// One RTT measurement, with the statistics after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RttSample {
    /// This sample: pong received − ping written (or queued, if the write was not reported).
    pub rtt: Duration,
    /// EWMA with α = 1/8 (RFC 6298 SRTT style), including this sample.
    pub smoothed: Duration,
    /// The smallest sample so far.
    pub min: Duration,
}

/// Application-level RTT statistics: they include the peer's scheduling and head-of-line
/// delay, unlike TCP's RTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RttStats {
    /// The latest sample.
    pub last: Duration,
    /// EWMA with α = 1/8.
    pub smoothed: Duration,
    /// The smallest sample.
    pub min: Duration,
    /// How many samples were taken.
    pub samples: u64,
}

/// Counters, for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct KeepaliveStats {
    /// Keepalive pings emitted as [`Output::SendPing`].
    pub keepalive_pings_sent: u64,
    /// User pings accepted by `user_ping`.
    pub user_pings_sent: u64,
    /// Unsolicited heartbeat pongs emitted as [`Output::SendPong`].
    pub heartbeat_pongs_sent: u64,
    /// Pongs received.
    pub pongs_received: u64,
    /// Pongs that exactly matched an outstanding ping.
    pub pongs_matched: u64,
    /// Pongs that matched nothing (truncated, empty, duplicate, unsolicited).
    pub unmatched_pongs: u64,
    /// User pings acknowledged ([`Output::PingAcked`]).
    pub pings_acked: u64,
    /// User pings failed at close ([`Output::PingFailed`]).
    pub pings_failed: u64,
    /// Inbound pings reported with [`Input::PingReceived`].
    pub pings_received: u64,
}

/// Something the driver must act on, returned by [`KeepAlive::poll`](crate::KeepAlive::poll).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Queue a Ping with this payload (ahead of data), then report
    /// [`Input::PingWritten`] when its last byte is accepted.
    SendPing {
        /// The ping's id.
        id: PingId,
        /// Its payload (generated: 8 printable ASCII bytes).
        payload: Payload,
    },
    /// Queue an unsolicited Pong ([`Heartbeat::UnsolicitedPong`](crate::Heartbeat)).
    SendPong {
        /// Its payload (empty).
        payload: Payload,
    },
    /// The connection is dead: send Close [`DeadReason::close_code`] best-effort (not if the
    /// writer is stalled), close the transport at once, report 1006 + this cause.
    Dead(DeadReason),
    /// A new RTT sample.
    Rtt(RttSample),
    /// A user ping was acknowledged: complete its waiter with `latency`.
    PingAcked {
        /// The user ping.
        id: PingId,
        /// Pong received − ping written.
        latency: Duration,
    },
    /// A user ping will never be acknowledged (connection closed): fail its waiter.
    PingFailed {
        /// The user ping.
        id: PingId,
    },
    /// A pong matched no outstanding ping (diagnostics only; also counted in the stats).
    UnmatchedPong,
}
