//! Sans-I/O HTTP/1.1 WebSocket upgrade handshake, client and server.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_code)]

extern crate alloc;
