//! The one test harness of sonar's tests, benches and xtask, in the style of
//! `sonar_core::testing` (and quinn-proto's `tests/util.rs`): small documented helpers that
//! every test uses instead of writing its own.
//!
//! - [`read_head`] / [`read_head_exact`] / [`read_head_exact_async`]: an HTTP head up to
//!   `\r\n\r\n`, bounded by [`MAX_HEAD`].
//! - [`read_frame`] / [`read_frame_async`]: one frame, parsed with
//!   [`sonar_core::FrameHeader::parse`], payload unmasked, bounded by [`MAX_PAYLOAD`].
//! - [`accept_response`] (the 101 for a request head, with [`sonar_handshake::accept_key`])
//!   and [`upgrade_request`]: the two handshake heads a raw peer writes.
//! - [`Peer`]: a raw blocking WebSocket peer over any `Read + Write` (a `TcpStream`), server or
//!   client side, that sends [`FrameBuilder`] frames (masked on the client side) and keeps the
//!   bytes read past a head.
//! - [`ChildGuard`], [`LineReader`], [`text_of`]: a child process killed and reaped on drop,
//!   bounded waits for its exit and for a line of its output (no fixed sleeps).
//!
//! Every read is bounded in size, every wait in time. Errors are typed; the helpers panic
//! only where the name says so (`expect_*`) or on a broken invariant of the helper itself.
//!
//! ```
//! # #[cfg(feature = "ws")] {
//! use sonar_testkit::{FrameBuilder, Peer, accept_response, read_frame, upgrade_request};
//!
//! // A client's request, answered by a server peer; the 101 it writes carries the accept key.
//! let request = upgrade_request("127.0.0.1", "/", sonar_testkit::SAMPLE_KEY);
//! let response = accept_response(&request, None).unwrap();
//! assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
//!
//! // A frame as a peer sends it, read back.
//! let mut wire: &[u8] = &FrameBuilder::ping(b"hi").mask([1, 2, 3, 4]).build();
//! let frame = read_frame(&mut wire).unwrap();
//! assert_eq!((frame.first(), frame.payload.as_slice()), (0x89, &b"hi"[..]));
//! # let _ = Peer::server(std::io::Cursor::new(Vec::<u8>::new()));
//! # }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

#[cfg(feature = "ws")]
mod blocking;
#[cfg(feature = "ws")]
mod frame;
#[cfg(feature = "ws")]
mod handshake;
#[cfg(feature = "ws")]
mod head;
#[cfg(feature = "ws")]
mod peer;
mod process;

#[cfg(feature = "ws")]
pub use frame::{Frame, FrameError, MAX_PAYLOAD, read_frame, read_frame_async};
#[cfg(feature = "ws")]
pub use handshake::{HandshakeError, SAMPLE_ACCEPT, SAMPLE_KEY, accept_response, upgrade_request};
#[cfg(feature = "ws")]
pub use head::{Head, HeadError, MAX_HEAD, read_head, read_head_exact, read_head_exact_async};
#[cfg(feature = "ws")]
pub use peer::{Peer, PeerError};
pub use process::{ChildGuard, LineReader, WaitError, text_of};
#[cfg(feature = "ws")]
pub use sonar_core::testing::{FrameBuilder, RFC_KEY};
