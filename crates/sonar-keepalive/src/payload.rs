//! Ping payloads: at most 125 bytes, stored inline.

use core::fmt;
use core::hash::{Hash, Hasher};
use core::ops::Deref;

use crate::PingError;

/// The largest payload a control frame can carry (RFC 6455 §5.5).
pub const MAX_PAYLOAD_LEN: usize = 125;

/// The application data of a ping or pong: 0 to 125 bytes, stored inline (no allocation).
///
/// Generated payloads are 8 lowercase hex digits (printable ASCII, never NUL).
///
/// ```
/// use sonar_keepalive::Payload;
/// assert_eq!(Payload::generated(42, 0).as_bytes(), b"0000002a");
/// assert_eq!(Payload::new(b"hi").unwrap().as_bytes(), b"hi");
/// assert!(Payload::new(&[0u8; 126]).is_err());
/// ```
#[derive(Clone, Copy)]
pub struct Payload {
    len: u8,
    bytes: [u8; MAX_PAYLOAD_LEN],
}

impl Payload {
    /// The empty payload.
    pub const EMPTY: Payload = Payload {
        len: 0,
        bytes: [0; MAX_PAYLOAD_LEN],
    };

    /// Copies `bytes` into a payload, or fails with [`PingError::PayloadTooLong`] above 125 bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, PingError> {
        let mut out = Self::EMPTY;
        let dst = out
            .bytes
            .get_mut(..bytes.len())
            .ok_or(PingError::PayloadTooLong)?;
        dst.copy_from_slice(bytes);
        // `bytes.len() <= 125` here, so it fits in a u8.
        out.len = u8::try_from(bytes.len()).map_err(|_| PingError::PayloadTooLong)?;
        Ok(out)
    }

    /// The generated payload for `counter` on a connection with randomness `salt`: the 8
    /// lowercase hex digits of `counter ^ salt`. Distinct counters give distinct payloads.
    pub fn generated(counter: u32, salt: u32) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let value = counter ^ salt;
        let mut out = Self::EMPTY;
        for (i, b) in out.bytes.iter_mut().take(8).enumerate() {
            let shift = 28 - 4 * i as u32;
            let nibble = ((value >> shift) & 0xf) as usize;
            *b = HEX.get(nibble).copied().unwrap_or(b'0');
        }
        out.len = 8;
        out
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl Default for Payload {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Payload {}

impl PartialEq<[u8]> for Payload {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl PartialEq<&[u8]> for Payload {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_bytes() == *other
    }
}

impl Hash for Payload {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload(b\"{}\")", self.as_bytes().escape_ascii())
    }
}
