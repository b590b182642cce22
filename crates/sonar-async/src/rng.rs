//! Randomness for the sans-I/O layers: mask keys, handshake keys, ping payload salt.

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sonar_core::MaskSource;

/// Client mask keys from a CSPRNG (ChaCha, seeded from the operating system), as RFC 6455
/// §5.3 requires: a fresh, unpredictable key for every frame.
pub(crate) struct OsMask(StdRng);

impl OsMask {
    pub(crate) fn new() -> Self {
        OsMask(StdRng::from_os_rng())
    }
}

impl MaskSource for OsMask {
    fn next_mask(&mut self) -> [u8; 4] {
        self.0.next_u32().to_ne_bytes()
    }
}

/// Sixteen random bytes for `Sec-WebSocket-Key`.
pub(crate) fn handshake_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    StdRng::from_os_rng().fill_bytes(&mut key);
    key
}

/// The per-connection salt of keepalive's generated ping payloads.
pub(crate) fn salt() -> u32 {
    StdRng::from_os_rng().next_u32()
}
