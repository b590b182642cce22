//! The errors of this crate.

/// Why a ping could not be sent, or why its pong will never be reported.
///
/// Returned by [`KeepAlive::user_ping`](crate::KeepAlive::user_ping) and, with the `std`
/// feature, by the future of `Pinger::ping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum PingError {
    /// A ping with the same payload is still waiting for its pong.
    #[error("a ping with this payload is already outstanding")]
    DuplicatePingPayload,
    /// `max_outstanding_pings` user pings are already waiting, or the queue between
    /// the pingers and the connection task is full.
    #[error("too many outstanding pings")]
    TooManyOutstandingPings,
    /// The payload is longer than the 125 bytes a control frame can carry (RFC 6455 §5.5).
    #[error("ping payload longer than 125 bytes")]
    PayloadTooLong,
    /// The connection is not open: the handshake has not finished, or the close has started.
    #[error("connection is not open")]
    NotOpen,
    /// The connection closed before the pong arrived.
    #[error("connection closed before the pong arrived")]
    ConnectionClosed,
}
