//! UTF-8 checked bytes and the incremental, fail-fast validator.

use alloc::string::String;
use core::fmt;
use core::ops::Deref;

use bytes::Bytes;

/// Bytes that are known to be valid UTF-8: checked once, dereferences to `str`, never copied.
///
/// ```
/// use sonar_core::Utf8Bytes;
/// let text = Utf8Bytes::from_static("héllo");
/// assert_eq!(&*text, "héllo");
/// assert!(Utf8Bytes::try_from(bytes::Bytes::from_static(b"\xff")).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps a static string without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor of `Utf8Bytes` either starts from a `str`/`String` or has
        // validated the bytes as UTF-8 (`try_from`, or the codec's validator before calling
        // `from_validated`), and `Bytes` is immutable, so the bytes are still valid UTF-8.
        #[allow(unsafe_code)]
        unsafe {
            core::str::from_utf8_unchecked(&self.0)
        }
    }

    /// The underlying bytes (no copy).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the underlying bytes (no copy).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Only for bytes the caller has already validated as UTF-8.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(core::str::from_utf8(&bytes).is_ok());
        Utf8Bytes(bytes)
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<&'static str> for Utf8Bytes {
    fn from(s: &'static str) -> Self {
        Utf8Bytes::from_static(s)
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = core::str::Utf8Error;
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        core::str::from_utf8(&bytes)?;
        Ok(Utf8Bytes(bytes))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Bytes {
        s.0
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The input can never become valid UTF-8, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

/// Incremental UTF-8 validator: feed chunks in order; fails at the first byte that cannot
/// start or continue a valid sequence, and keeps at most 3 bytes of an incomplete tail.
#[derive(Debug, Clone, Default)]
pub(crate) struct Utf8Validator {
    tail: [u8; 4],
    tail_len: u8,
}

/// Total length of the sequence a valid lead byte starts.
fn seq_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// Resets to the start of a new message.
    pub(crate) fn reset(&mut self) {
        self.tail_len = 0;
    }

    /// Whether the input so far ends on a code point boundary.
    pub(crate) fn is_complete(&self) -> bool {
        self.tail_len == 0
    }

    /// Validates the next chunk of the stream.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.tail_len > 0 {
            let mut len = usize::from(self.tail_len);
            let need = seq_len(self.tail[0]);
            while len < need {
                let Some((&b, rest)) = data.split_first() else {
                    break;
                };
                if let Some(slot) = self.tail.get_mut(len) {
                    *slot = b;
                }
                len += 1;
                data = rest;
            }
            let seq = self.tail.get(..len).unwrap_or(&[]);
            match core::str::from_utf8(seq) {
                Ok(_) => self.tail_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete: `data` is exhausted.
                    self.tail_len = len as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let rest = data.get(e.valid_up_to()..).unwrap_or(&[]);
                let n = rest.len().min(3);
                if let (Some(dst), Some(src)) = (self.tail.get_mut(..n), rest.get(..n)) {
                    dst.copy_from_slice(src);
                }
                self.tail_len = n as u8;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Result<bool, usize> {
        let mut v = Utf8Validator::default();
        for (i, c) in chunks.iter().enumerate() {
            v.feed(c).map_err(|_| i)?;
        }
        Ok(v.is_complete())
    }

    #[test]
    fn split_code_points_are_valid() {
        let s = "κόσμε € 𝄞".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(run(&[&s[..i], &s[i..j], &s[j..]]), Ok(true), "{i} {j}");
            }
        }
    }

    #[test]
    fn fails_at_first_impossible_byte() {
        assert_eq!(run(&[b"ok", b"\xf4", b"\x90", b"\x80\x80"]), Err(2));
        assert_eq!(run(&[b"\xed", b"\xa0\x80"]), Err(1));
        assert_eq!(run(&[b"\xc0"]), Err(0));
        assert_eq!(run(&[b"\xe2\x82"]), Ok(false));
        assert_eq!(run(&[b"\xe2\x82", b"\xac"]), Ok(true));
        assert_eq!(run(&[b"\xe2", b"\x82", b"a"]), Err(2));
    }

    #[test]
    fn matches_std_on_all_short_sequences() {
        // Every 1..=3 byte sequence from an interesting alphabet, split at every point.
        let alphabet = [
            0x00, 0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5,
            0xff, 0xa0, 0x90, 0x8f,
        ];
        for &a in &alphabet {
            for &b in &alphabet {
                for &c in &alphabet {
                    let s = [a, b, c];
                    let expect = core::str::from_utf8(&s);
                    for i in 0..=3 {
                        let got = run(&[&s[..i], &s[i..]]);
                        match expect {
                            Ok(_) => assert_eq!(got, Ok(true)),
                            Err(e) if e.error_len().is_none() => assert_eq!(got, Ok(false)),
                            Err(_) => assert!(got.is_err(), "{s:x?} split {i}"),
                        }
                    }
                }
            }
        }
    }
}
