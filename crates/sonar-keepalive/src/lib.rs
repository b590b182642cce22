//! Sans-I/O WebSocket ping/pong keepalive: dead-peer detection, RTT, and a `ping()` that
//! resolves to the round-trip time.
//!
//! Two parts:
//!
//! - [`KeepAlive`]: the per-connection keepalive state machine. No clock, no timers,
//!   no tasks: `now` (a [`Duration`](core::time::Duration) since an origin the driver picks on
//!   a monotonic clock) comes in with every call, [`Output`]s and
//!   [`next_deadline`](KeepAlive::next_deadline) go out. Builds `no_std` + `alloc`.
//! - With the `std` feature, the cross-task ping registry: [`ping_channel`] gives a
//!   [`Pinger`] (for the application, `Clone + Send + Sync`) whose [`Pinger::ping`] resolves to
//!   the RTT, and a [`PingRegistry`] owned by the connection task.
//!
//! # Driver contract
//!
//! Feed these [`Input`]s to [`KeepAlive::handle`]:
//!
//! | When | Input |
//! |---|---|
//! | the opening handshake completed | [`Input::Opened`] |
//! | any bytes were read from the transport, even a partial frame | [`Input::BytesReceived`] |
//! | the codec parsed a Pong (before delivering later messages) | [`Input::PongReceived`] |
//! | the codec parsed a Ping (only needed for the flood guard) | [`Input::PingReceived`] |
//! | the last byte of a ping frame was accepted by the transport | [`Input::PingWritten`] / [`Input::PingWrittenPayload`] |
//! | the transport accepted >= 1 byte | [`Input::WriteProgress`] |
//! | the outbound queue became non-empty / empty | [`Input::OutputPending`] |
//! | reading stopped because the application does not drain messages / restarted | [`Input::ReadPaused`] / [`Input::ReadResumed`] |
//! | a Close frame was sent or received | [`Input::CloseStarted`] |
//! | the transport closed | [`Input::Closed`] |
//!
//! Then call [`KeepAlive::poll`] until it returns `None`, and act on each [`Output`]:
//!
//! - [`Output::SendPing`]: queue a Ping with the payload, ahead of data frames, at the next
//!   frame boundary; report [`Input::PingWritten`] when its last byte is written. The pong
//!   timer starts then, not at enqueue, so a ping stuck behind a large frame is not a timeout.
//! - [`Output::SendPong`]: queue an unsolicited Pong ([`Heartbeat::UnsolicitedPong`] only).
//! - [`Output::Dead`]: send Close [`DeadReason::close_code`] (1011) with
//!   [`DeadReason::close_reason`] (`"keepalive ping timeout"` / `"keepalive write stalled"`)
//!   best-effort (not when the writer is stalled), close the transport at once without waiting
//!   for the peer's Close, and report close code 1006 with this cause to the application.
//! - [`Output::Rtt`]: update the public RTT statistics (also in [`KeepAlive::rtt`]).
//! - [`Output::PingAcked`] / [`Output::PingFailed`]: [`PingRegistry::complete`] /
//!   [`PingRegistry::fail`] the user's waiter.
//! - [`Output::UnmatchedPong`]: diagnostics only.
//!
//! Finally sleep until [`KeepAlive::next_deadline`] or the next I/O event. After `poll(now)`
//! returned `None` the deadline is never `<= now`, so the loop cannot spin; it is `None` once
//! the close started. User pings: take [`PingRequest`]s from [`PingRegistry::poll_request`],
//! pass [`PingRequest::payload`] to [`KeepAlive::user_ping`], queue the returned payload as a
//! Ping, and [`PingRegistry::bind`] the request to the result. On transport close, feed
//! [`Input::Closed`], drain `poll`, then [`PingRegistry::close`] (or drop the registry).
//!
//! # Defaults and why
//!
//! - `ping_interval` 20 s, [`PingStrategy::WhenIdle`]: a ping after 20 s of **inbound**
//!   silence. Intermediaries close idle connections after 55 s (Heroku), 60 s (nginx
//!   `proxy_read_timeout`, AWS ALB) or 30 s (Jetty, .NET, Deno); 20 s stays well below all of
//!   them, and the pong makes traffic in both directions. A busy peer costs no pings.
//! - `pong_timeout` 20 s from when the ping was written, pushed back by any inbound byte (the
//!   pong may sit behind a large frame), suspended while reads are paused. A dead peer is
//!   detected within 40 s of its last byte, like python-websockets.
//! - [`PongMatch::Lenient`]: any pong proves liveness (peers that truncate or empty pongs
//!   exist), but only an exact payload match gives an RTT sample. A matching pong acknowledges
//!   its ping and every earlier one (RFC 6455 §5.5.3 lets peers answer only the latest ping).
//! - `write_stall_timeout` 20 s: output pending and zero bytes accepted for 20 s is a dead
//!   connection; any progress resets it, so a slow link that drains is never killed.
//! - `max_outstanding_pings` 16 user pings, plus one reserved keepalive slot.
//! - Generated payloads: 8 lowercase hex digits (printable ASCII, never NUL), unique among
//!   outstanding pings. RTT is `None` before the first sample; smoothed is an EWMA with α = 1/8.
//!
//! ```
//! use core::time::Duration;
//! use sonar_keepalive::{Input, KeepAlive, KeepaliveConfig, Output};
//!
//! let secs = Duration::from_secs;
//! let mut ka = KeepAlive::new(KeepaliveConfig::default(), 0);
//! ka.handle(secs(0), Input::Opened);
//! assert_eq!(ka.next_deadline(), Some(secs(20))); // a ping after 20 s of inbound silence
//! let Some(Output::SendPing { id, .. }) = ka.poll(secs(20)) else { unreachable!() };
//! ka.handle(secs(20), Input::PingWritten(id)); // the pong timer starts when it is written
//! assert_eq!(ka.poll(secs(39)), None);
//! assert!(matches!(ka.poll(secs(40)), Some(Output::Dead(_)))); // no pong within 20 s
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_code)]

extern crate alloc;

mod config;
mod error;
mod io;
mod machine;
mod payload;
#[cfg(feature = "std")]
mod registry;
#[cfg(feature = "std")]
mod sync;

#[cfg(all(test, loom, feature = "std"))]
mod loom_tests;

pub use config::{Heartbeat, KeepaliveConfig, PingFloodGuard, PingStrategy, PongMatch};
pub use error::PingError;
pub use io::{
    CLOSE_CODE_KEEPALIVE, CLOSE_CODE_PING_FLOOD, CLOSE_REASON_PING_FLOOD,
    CLOSE_REASON_PONG_TIMEOUT, CLOSE_REASON_WRITE_STALLED, DeadReason, Input, KeepaliveStats,
    MIN_RTT, Output, PingId, RttSample, RttStats,
};
pub use machine::KeepAlive;
pub use payload::{MAX_PAYLOAD_LEN, Payload};
#[cfg(feature = "std")]
pub use registry::{PingFuture, PingRegistry, PingRequest, Pinger, ping_channel};
