//! Payload masking (RFC 6455 §5.3): a safe word-at-a-time implementation, resumable at any
//! offset into the payload.

/// XORs `buf` with the masking `key`, where `buf` starts `offset` bytes into the payload.
///
/// Masking and unmasking are the same operation. Calling it on consecutive pieces of a
/// payload with their running offsets gives the same result as one call on the whole.
///
/// ```
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut whole = *b"Hello";
/// sonar_core::apply_mask(&mut whole, key, 0);
/// assert_eq!(whole, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// let mut parts = *b"Hello";
/// let (a, b) = parts.split_at_mut(3);
/// sonar_core::apply_mask(a, key, 0);
/// sonar_core::apply_mask(b, key, 3);
/// assert_eq!(parts, whole);
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    mask_aligned(buf, rotate_key(key, offset));
}

#[inline(always)]
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let r = offset & 3;
    [key[r], key[(r + 1) & 3], key[(r + 2) & 3], key[(r + 3) & 3]]
}

/// Masks `buf` with a key already rotated so that `key[0]` applies to `buf[0]`.
#[inline(always)]
fn mask_aligned(buf: &mut [u8], key: [u8; 4]) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let (words, rest) = buf.as_chunks_mut::<8>();
    for w in words {
        *w = (u64::from_ne_bytes(*w) ^ word).to_ne_bytes();
    }
    for (b, k) in rest.iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

/// The byte-at-a-time reference implementation (for tests and benchmarks).
#[doc(hidden)]
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}
