//! The errors of the async layer.

use std::io;
use std::sync::Arc;

use sonar_core::{CloseCode, ProtocolError, SendError};
use sonar_handshake::{ClientError, Rejection, UrlError};
use sonar_keepalive::{DeadReason, PingError};

/// Why a connection failed, or why an operation on it could not be done.
///
/// The error that ended a connection is shared by all of its handles, so it is cheap to
/// clone (an I/O error is kept behind an `Arc`). Once a connection has failed, every call on
/// it reports that same error.
///
/// `Display` names what failed, and the cause is the [`source`](std::error::Error::source)
/// (never both, so a chain printed with `anyhow`'s `{:#}` names each cause once): print
/// the chain to see, for example, `i/o error: Connection refused (os error 111)`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    #[error("i/o error")]
    Io(#[source] Arc<io::Error>),
    /// The peer broke the protocol; the connection was failed with the error's close code.
    #[error("protocol error")]
    Protocol(#[source] ProtocolError),
    /// Keepalive declared the peer dead (no pong in time, or the transport took no bytes).
    #[error("keepalive: {0}")]
    Keepalive(DeadReason),
    /// The peer did not complete the opening handshake in time.
    #[error("opening handshake timed out")]
    HandshakeTimeout,
    /// The transport ended without a closing handshake: no Close frame came from the peer
    /// (close code 1006 in [`CloseStatus`](crate::CloseStatus)).
    #[error("connection closed without a closing handshake (1006)")]
    AbnormalClosure,
    /// The closing handshake did not complete in time; the transport was closed anyway.
    #[error("closing handshake timed out")]
    CloseTimeout,
    /// The server refused or botched the upgrade (client side).
    #[error("opening handshake failed")]
    Handshake(#[source] ClientError),
    /// The client's upgrade request was refused with an HTTP error (server side).
    #[error("upgrade request rejected with status {}", .0.status)]
    Rejected(Rejection),
    /// The transport ended before the handshake completed.
    #[error("connection closed during the opening handshake")]
    HandshakeEof,
    /// The operation was refused by the protocol state (for example a message after Close).
    #[error("message refused")]
    Send(#[source] SendError),
    /// A ping could not be sent or answered.
    #[error("ping failed")]
    Ping(#[source] PingError),
    /// The URL is not a valid `ws://` or `wss://` URL.
    #[error("invalid url")]
    Url(#[source] UrlError),
    /// The host of a `wss://` URL is not a valid TLS server name.
    #[error("invalid tls server name")]
    InvalidServerName,
    /// A `wss://` URL was given but TLS support is not enabled.
    #[error("wss:// needs the `rustls` feature")]
    TlsNotEnabled,
    /// The connection is closed; no more messages can be sent or received.
    #[error("connection closed")]
    ConnectionClosed,
}

impl Error {
    /// True for every failure caused by a deadline: keepalive, handshake and close timeouts.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::Keepalive(_) | Error::HandshakeTimeout | Error::CloseTimeout
        )
    }

    /// The close code that this side sent (or would have sent) because of this error, if any.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Protocol(e) => Some(e.close_code()),
            Error::Keepalive(reason) => CloseCode::new(reason.close_code()),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}
