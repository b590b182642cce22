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
///
/// How a connection ended, as the application sees it:
///
/// ```no_run
/// use sonar_async::{Error, WebSocket};
/// # async fn demo(mut ws: WebSocket) {
/// loop {
///     match ws.recv().await {
///         Some(Ok(message)) => println!("{message:?}"),
///         // A clean close: the closing handshake completed; the status says who and why.
///         None => break println!("closed: {:?}", ws.close_status()),
///         // The peer stopped answering pings (or the transport stalled).
///         Some(Err(e @ Error::Keepalive(_))) => break println!("peer is gone: {e}"),
///         // The peer went away without a Close (FIN, reset): routine on a server.
///         Some(Err(e)) if e.is_disconnect() => break println!("disconnected: {e}"),
///         // A protocol violation (the Close sent said which: `e.close_code()`), an I/O error.
///         Some(Err(e)) => break println!("failed: {e} ({:?})", e.close_code()),
///     }
/// }
/// # }
/// ```
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

    /// True if the peer went away without a closing handshake: the transport ended (FIN
    /// without a Close frame, [`Error::AbnormalClosure`]), was reset or broke, including
    /// during the opening handshake. Usually not worth more than a debug log line on a server.
    ///
    /// ```
    /// use sonar_async::Error;
    /// let reset = Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    /// assert!(reset.is_disconnect());
    /// assert!(Error::AbnormalClosure.is_disconnect());
    /// assert!(!Error::CloseTimeout.is_disconnect());
    /// ```
    pub fn is_disconnect(&self) -> bool {
        use io::ErrorKind::{
            BrokenPipe, ConnectionAborted, ConnectionReset, NotConnected, UnexpectedEof,
        };
        match self {
            Error::AbnormalClosure | Error::HandshakeEof => true,
            Error::Io(e) => matches!(
                e.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected | UnexpectedEof
            ),
            _ => false,
        }
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

impl From<UrlError> for Error {
    fn from(e: UrlError) -> Self {
        Error::Url(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}
