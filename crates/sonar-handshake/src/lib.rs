//! Sans-I/O HTTP/1.1 WebSocket upgrade handshake (RFC 6455 §4), client and server, that never
//! loses a byte.
//!
//! Bytes in, bytes out: no sockets, no clock, and the client's 16-byte key is caller randomness.
//! Both decoders take the bytes read so far, return `Ok(None)` until the head is complete, and
//! then report how many bytes the head used, so the bytes after `\r\n\r\n` (often the first
//! frames, a Ping right after the 101) reach the frame codec.
//!
//! - Client: [`ClientRequest`] → [`ClientHandshake::encode_request`], then
//!   [`ClientHandshake::decode_response`] → [`Accepted`] or [`ClientError`] (a non-101 is
//!   [`ClientError::Rejected`] with status, headers and body prefix).
//! - Server: [`ServerHandshake::decode_request`] → [`Request`] or [`Rejection`]; inspect the
//!   request (path, headers) and answer with [`ServerHandshake::encode_accept`] or
//!   [`ServerHandshake::encode_reject`].
//!
//! With the `std` feature off the crate is `#![no_std]` + `alloc`. The `http` feature adds
//! conversions from and to the `http` crate's `Request` / `Response`.
//!
//! ```
//! use sonar_handshake::{ClientHandshake, ClientRequest, ServerHandshake};
//!
//! let request = ClientRequest::new("example.com", "/chat");
//! let mut client = ClientHandshake::new(request, *b"the sample nonce");
//! let mut head = Vec::new();
//! client.encode_request(&mut head);
//!
//! let server = ServerHandshake::new();
//! let (req, used) = server.decode_request(&head).unwrap().expect("a complete head");
//! assert_eq!((req.path(), used), ("/chat", head.len()));
//! let mut response = Vec::new();
//! server.encode_accept(&req, None, &mut response);
//!
//! // A first frame (an empty Ping) arrives in the same read as the 101: it is left for the codec.
//! response.extend_from_slice(&[0x89, 0x00]);
//! let (accepted, used) = client.decode_response(&response).unwrap().expect("a complete head");
//! assert_eq!(&response[used..], &[0x89, 0x00]);
//! assert_eq!(accepted.subprotocol, None);
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_code)]

extern crate alloc;

mod client;
mod deflate;
mod extensions;
#[cfg(feature = "http")]
mod http;
mod key;
mod server;
mod status;
mod url;
mod util;

pub use client::{Accepted, ClientError, ClientHandshake, ClientRequest, RequestError};
pub use deflate::{
    DeflateAnswer, DeflateConfig, DeflateError, DeflateParam, DeflateParams, PERMESSAGE_DEFLATE,
    check_deflate_offer,
};
pub use extensions::{ExtensionOffer, ExtensionParam, ExtensionParams};
pub use key::{Limits, WEBSOCKET_GUID, WEBSOCKET_VERSION, accept_key};
pub use server::{AcceptOptions, RejectReason, Rejection, Request, ServerHandshake};
pub use status::StatusCode;
pub use url::UrlError;
