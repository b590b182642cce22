//! `Sec-WebSocket-Key` / `Sec-WebSocket-Accept` (RFC 6455 §1.3, §4.2.2) and the decoders' limits.

use alloc::string::String;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest as _, Sha1};

/// The GUID appended to the key before hashing (RFC 6455 §1.3).
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only WebSocket version this crate speaks (RFC 6455).
pub const WEBSOCKET_VERSION: u8 = 13;

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` value (the key as sent, base64 text).
///
/// ```
/// assert_eq!(
///     sonar_handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// The `Sec-WebSocket-Key` text for 16 random bytes chosen by the caller.
pub(crate) fn encode_key(key: &[u8; 16]) -> String {
    STANDARD.encode(key)
}

/// Whether a received key base64-decodes (canonical, padded) to exactly 16 bytes.
pub(crate) fn is_valid_key(key: &[u8]) -> bool {
    // 16 bytes encode to exactly 24 characters; checking the length first bounds the work.
    let mut buf = [0u8; 18];
    key.len() == 24 && matches!(STANDARD.decode_slice(key, &mut buf), Ok(16))
}

/// Size limits for a handshake head; they bound every buffer a peer can grow.
///
/// ```
/// use sonar_handshake::Limits;
/// let l = Limits::default().with_max_head_bytes(4096).with_max_headers(32);
/// assert_eq!((l.max_head_bytes, l.max_headers, l.max_body_prefix), (4096, 32, 1024));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest head accepted, request or status line through the final `\r\n\r\n` (default 8 KiB).
    pub max_head_bytes: usize,
    /// Most header fields accepted (default 64, at most [`Limits::MAX_HEADERS_CAP`]).
    pub max_headers: usize,
    /// Client only: at most this many body bytes are kept in
    /// [`ClientError::Rejected`](crate::ClientError::Rejected) (default 1 KiB).
    pub max_body_prefix: usize,
}

impl Limits {
    /// Upper bound for [`Limits::max_headers`].
    pub const MAX_HEADERS_CAP: usize = 1024;

    /// Sets the head size limit.
    pub const fn with_max_head_bytes(mut self, n: usize) -> Self {
        self.max_head_bytes = n;
        self
    }

    /// Sets the header count limit (capped at [`Limits::MAX_HEADERS_CAP`]).
    pub const fn with_max_headers(mut self, n: usize) -> Self {
        self.max_headers = if n > Self::MAX_HEADERS_CAP {
            Self::MAX_HEADERS_CAP
        } else {
            n
        };
        self
    }

    /// Sets how many body bytes of a non-101 response are kept.
    pub const fn with_max_body_prefix(mut self, n: usize) -> Self {
        self.max_body_prefix = n;
        self
    }

    pub(crate) fn header_slots(&self) -> usize {
        self.max_headers.min(Self::MAX_HEADERS_CAP)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 8 * 1024,
            max_headers: 64,
            max_body_prefix: 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_vector() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(encode_key(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn key_validation() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        // 15 bytes.
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25j"));
        // 17 bytes.
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZUFB"));
        // Non-canonical trailing bits.
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!is_valid_key(b"!!!!!!!!!!!!!!!!!!!!!!=="));
    }
}
