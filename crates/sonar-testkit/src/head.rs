//! HTTP heads: everything up to and including the blank line (`\r\n\r\n`), bounded.

use std::io::{self, Read};

use futures_io::AsyncRead;
use futures_util::AsyncReadExt as _;

use crate::blocking::{Blocking, run};

/// The largest head the readers accept, terminator included (16 KiB).
pub const MAX_HEAD: usize = 16 * 1024;

const TERMINATOR: &[u8] = b"\r\n\r\n";

/// Why no head could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// The stream ended (or was cut) before the blank line.
    #[error("eof after {read} bytes of a head")]
    Eof {
        /// Bytes of the head read before the end.
        read: usize,
    },
    /// No blank line within [`MAX_HEAD`] bytes.
    #[error("head longer than {MAX_HEAD} bytes")]
    TooLarge,
    /// The head is not UTF-8 (only from [`Head::text`]).
    #[error("head is not utf-8")]
    NotUtf8,
    /// Reading failed (a read timeout is `WouldBlock` or `TimedOut`).
    #[error("reading a head: {0}")]
    Io(#[from] io::Error),
}

/// A head and the bytes read past it (the first frames, if the peer sent them in the same
/// write; empty from the exact readers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// The head, `\r\n\r\n` included.
    pub head: Vec<u8>,
    /// Bytes read after the head.
    pub rest: Vec<u8>,
}

impl Head {
    /// The head as text.
    pub fn text(&self) -> Result<&str, HeadError> {
        std::str::from_utf8(&self.head).map_err(|_| HeadError::NotUtf8)
    }
}

/// Reads a head in chunks: the bytes read past the blank line are returned in [`Head::rest`].
pub fn read_head<R: Read>(r: &mut R) -> Result<Head, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Each round reads at least one byte (or stops), so MAX_HEAD rounds bound the loop.
    for _ in 0..=MAX_HEAD {
        // Only the last chunk and the three bytes before it can complete the terminator.
        let from = buf.len().saturating_sub(TERMINATOR.len() - 1);
        let n = match r.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Eof { read: buf.len() }),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        if let Some(at) = find_terminator(&buf, from) {
            if at > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            let rest = buf.split_off(at);
            return Ok(Head { head: buf, rest });
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
    Err(HeadError::TooLarge)
}

/// Reads a head one byte at a time, so that nothing after the blank line is consumed: the
/// caller goes on reading frames from the same stream.
pub fn read_head_exact<R: Read>(r: &mut R) -> Result<Vec<u8>, HeadError> {
    run(read_head_exact_async(&mut Blocking(r)))
}

/// [`read_head_exact`] over a futures-io reader.
pub async fn read_head_exact_async<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(TERMINATOR) {
        if head.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        match r.read(&mut byte).await {
            Ok(0) => return Err(HeadError::Eof { read: head.len() }),
            Ok(_) => head.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(head)
}

/// The end of the head (just past `\r\n\r\n`), searching from `from`.
fn find_terminator(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(TERMINATOR.len())
        .position(|w| w == TERMINATOR)
        .map(|i| from + i + TERMINATOR.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chunked_reader_keeps_what_follows_the_head() {
        let mut r: &[u8] = b"HTTP/1.1 101 OK\r\nA: b\r\n\r\n\x89\x00";
        let head = read_head(&mut r).unwrap();
        assert_eq!(head.text().unwrap(), "HTTP/1.1 101 OK\r\nA: b\r\n\r\n");
        assert_eq!(head.rest, [0x89, 0x00]);
    }

    #[test]
    fn terminator_split_over_reads_is_found() {
        // A reader that returns one byte per read.
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&b, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
        }
        let head = read_head(&mut OneByte(b"GET / HTTP/1.1\r\n\r\nx")).unwrap();
        assert_eq!((head.head.len(), head.rest.len()), (18, 0));
    }

    #[test]
    fn exact_reader_consumes_only_the_head() {
        let mut r: &[u8] = b"GET / HTTP/1.1\r\n\r\nrest";
        assert_eq!(read_head_exact(&mut r).unwrap(), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r, b"rest");
    }

    #[test]
    fn eof_and_oversized_heads_are_errors() {
        let mut r: &[u8] = b"GET / HTTP/1.1\r\n";
        assert!(matches!(
            read_head_exact(&mut r),
            Err(HeadError::Eof { read: 16 })
        ));
        let mut r: &[u8] = b"GET";
        assert!(matches!(read_head(&mut r), Err(HeadError::Eof { read: 3 })));
        let big = vec![b'x'; MAX_HEAD + 10];
        assert!(matches!(read_head(&mut &big[..]), Err(HeadError::TooLarge)));
        assert!(matches!(
            read_head_exact(&mut &big[..]),
            Err(HeadError::TooLarge)
        ));
    }
}
