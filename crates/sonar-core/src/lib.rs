//! Sans-I/O RFC 6455 WebSocket frame codec and protocol state machine.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]
#![deny(unsafe_code)]

extern crate alloc;
