//! What the application can read about a connection: how it ended, and its counters.

use sonar_core::CloseCode;
use sonar_keepalive::RttStats;

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

impl CloseStatus {
    /// True for a normal end: code 1000 (normal), 1001 (going away, such as a closed
    /// browser tab) or 1005 (a Close without a code), the codes Python `websockets` reports
    /// as `ConnectionClosedOK`.
    ///
    /// ```
    /// use sonar_async::{CloseCode, CloseStatus};
    /// let status = CloseStatus { code: CloseCode::GOING_AWAY, reason: String::new(), by_peer: true };
    /// assert!(status.is_normal());
    /// ```
    pub fn is_normal(&self) -> bool {
        [
            CloseCode::NORMAL,
            CloseCode::GOING_AWAY,
            CloseCode::NO_STATUS_RECEIVED,
        ]
        .contains(&self.code)
    }
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
    /// permessage-deflate's byte counts (payload bytes before and after compression, each
    /// way), `None` when it was not negotiated.
    pub deflate: Option<sonar_core::DeflateStats>,
}
