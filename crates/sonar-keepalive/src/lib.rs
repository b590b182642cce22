//! Sans-I/O WebSocket ping/pong keepalive.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_code)]

extern crate alloc;
