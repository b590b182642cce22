//! Sans-I/O RFC 6455 WebSocket frame codec and protocol state machine.
//!
//! [`Connection`] is the whole protocol after the opening handshake: frame decoding with
//! header-time limit checks, incremental unmasking and fail-fast UTF-8 validation, message
//! assembly, auto-pong in one latest-wins slot, the close handshake with its timeout, and a
//! zero-copy outbound queue with auto-fragmentation. It performs no I/O and reads no clock:
//! bytes, time (`Duration` since an origin the driver picks) and masking keys are arguments.
//!
//! Without the default `std` feature the crate is `#![no_std]` + `alloc`. permessage-deflate
//! (RFC 7692, [`Deflate`]) is the default `deflate` feature, which needs `std`.
//!
//! ```
//! use bytes::{Buf, BytesMut};
//! use sonar_core::{Config, Connection, Event};
//!
//! let mut server = Connection::server(Config::default());
//! // A masked Ping "hi" from a client (mask key 00 00 00 00).
//! let mut input = BytesMut::from(&[0x89, 0x82, 0, 0, 0, 0, b'h', b'i'][..]);
//! server.handle_read(&mut input).unwrap();
//! assert_eq!(server.poll_event(), Some(Event::Ping("hi".into())));
//! // The pong is already queued: FIN set (0x8a), payload echoed, unmasked from a server.
//! let mut out = server.outbound();
//! assert_eq!(&out.copy_to_bytes(out.remaining())[..], &[0x8a, 0x02, b'h', b'i']);
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_code)]

extern crate alloc;

mod close;
mod config;
mod connection;
#[cfg(feature = "deflate")]
mod deflate;
mod error;
mod frame;
mod mask;
mod message;
mod outbound;
mod prepared;
mod reader;
mod utf8;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use close::{CloseCode, CloseFrame};
pub use config::{Config, Extension, MaskSource, Role};
pub use connection::Connection;
#[cfg(feature = "deflate")]
pub use deflate::{
    DEFAULT_LEVEL, DEFAULT_MEMORY_LEVEL, DEFAULT_MIN_MESSAGE_SIZE, Deflate, DeflateStats,
};
pub use error::{ExtensionError, ProtocolError, SendError};
pub use frame::{FrameHeader, LengthMsbSet, MAX_HEADER_LEN, OpCode, RSV1, RSV2, RSV3};
pub use mask::apply_mask;
#[doc(hidden)]
pub use mask::apply_mask_reference;
pub use message::{DataKind, Event, Message, State};
pub use outbound::{Outbound, RECLAIM_MIN};
pub use prepared::PreparedMessage;
pub use utf8::Utf8Bytes;
