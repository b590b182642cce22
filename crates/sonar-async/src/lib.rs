//! The one async WebSocket connection driver of sonar, for any runtime.
//!
//! `sonar-async` knows `async` but no runtime: it works over any [`futures_io`] stream and
//! takes time from a [`Timer`]. The runtime adapters (`sonar-tokio`, `sonar-smol`,
//! `sonar-async-std`) supply those two things and spawn the [`Keeper`].
//!
//! A connection is the transport, the sans-I/O codec (`sonar-core`) and keepalive
//! (`sonar-keepalive`) behind one lock, and two ways to move it forward:
//! - the [`WebSocket`] handle (a `Stream` and `Sink` of [`Message`]s, which can be
//!   [split](WebSocket::into_split) into a reader and a cloneable writer) does the work inline:
//!   `recv` reads and parses, `send` encodes and writes, so an echo costs one task wake-up;
//! - the [`Keeper`], a small keeper future to spawn, answers pings, sends keepalive pings,
//!   measures RTT and detects dead peers whenever the application is not waiting on the
//!   connection (busy elsewhere, only writing, or cancelled out of a `recv`).
//!
//! Fan-out: a [`PreparedMessage`] is framed once and queued to any number of connections
//! ([`WsWriter::send_prepared`]); [`Topics`] publishes one to every subscriber of a topic,
//! with a backpressure limit per subscriber.
//!
//! Handshakes: [`client`], [`server`], [`server_with`], [`from_upgraded`] for streams
//! upgraded by another HTTP server, and [`client_raw`] for tools that want the raw transport
//! after the client handshake.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sonar_async::{Config, Error, Timer};
//!
//! /// An echo server over any futures-io stream, on any executor.
//! async fn echo<T>(io: T, timer: Arc<dyn Timer>) -> Result<(), Error>
//! where
//!     T: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static,
//! {
//!     let (mut ws, keeper, _request) = sonar_async::server(io, Config::default(), timer).await?;
//!     // Spawn `keeper` on the executor: it answers pings and runs keepalive from now on.
//!     # drop(keeper);
//!     while let Some(message) = ws.recv().await {
//!         ws.send(message?).await?;
//!     }
//!     Ok(())
//! }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod config;
mod conn;
mod error;
mod handshake;
mod keeper;
mod pubsub;
mod reconnect;
mod rng;
mod runtime;
mod shared;
mod socket;
mod sync;
mod timer;
#[cfg(feature = "rustls")]
pub mod tls;

pub use config::{CodecConfig, Config, DeflateConfig, KeepaliveConfig};
pub use conn::{ReadIntoSpare, TAKEOVER_DELAY, Transport, WATCH_INTERVAL_MAX};
pub use error::Error;
pub use handshake::{
    ClientStream, RawClient, client, client_raw, from_upgraded, from_upgraded_deflate, server,
    server_with,
};
pub use keeper::{DetachedKeeper, Keeper};
pub use pubsub::{Delivery, OnBackpressure, TopicStats, Topics};
pub use reconnect::{Reconnect, RetryPolicy, connect_retrying};
pub use runtime::{
    BoxFuture, Incoming, Listener, RefFuture, Runtime, accept_with, connect, connect_url,
};
pub use shared::{CloseStatus, Stats};
pub use socket::{ReuniteError, TrySendError, WebSocket, WsReader, WsWriter};
pub use timer::{Sleep, Timer};

pub use sonar_core::{
    CloseCode, CloseFrame, Message, PreparedMessage, ProtocolError, Role, SendError, Utf8Bytes,
};
pub use sonar_handshake::{
    AcceptOptions, Accepted, ClientError, ClientRequest, DeflateAnswer, DeflateParams,
    RejectReason, Rejection, Request as UpgradeRequest, StatusCode, UrlError,
};
pub use sonar_keepalive::{DeadReason, PingError, RttStats};
