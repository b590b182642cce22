//! Reading one frame as a test peer sees it: header parsed by `sonar_core`, payload unmasked.

use std::io::{self, Read};

use futures_io::AsyncRead;
use futures_util::AsyncReadExt as _;
use sonar_core::{FrameHeader, MAX_HEADER_LEN, apply_mask};

use crate::blocking::{Blocking, run};

/// The largest payload the readers accept (16 MiB): a longer length is a bad header, not a
/// reason to allocate.
pub const MAX_PAYLOAD: u64 = 16 << 20;

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream ended cleanly before the first byte of a frame.
    #[error("eof before a frame")]
    Eof,
    /// A 64-bit length with the most significant bit set.
    #[error("frame length has its most significant bit set")]
    LengthMsbSet,
    /// A payload longer than [`MAX_PAYLOAD`].
    #[error("frame payload of {0} bytes is longer than {MAX_PAYLOAD}")]
    TooLarge(u64),
    /// Reading failed, or the stream ended inside a frame (`UnexpectedEof`).
    #[error("reading a frame: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// Whether the stream simply ended (before a frame, or inside one).
    pub fn is_eof(&self) -> bool {
        match self {
            FrameError::Eof => true,
            FrameError::Io(e) => e.kind() == io::ErrorKind::UnexpectedEof,
            _ => false,
        }
    }
}

/// One frame off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The parsed header (`mask` is the key the payload was masked with, if any).
    pub header: FrameHeader,
    /// The first two header bytes as sent: FIN, RSV and opcode; MASK and the 7-bit length.
    pub raw: [u8; 2],
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The first byte: FIN, RSV bits and opcode (`0x89`: a final ping).
    pub fn first(&self) -> u8 {
        self.raw[0]
    }
    /// The second byte: the MASK bit and the 7-bit length (`0x82`: masked, 2 bytes).
    pub fn second(&self) -> u8 {
        self.raw[1]
    }
    /// The 4-bit opcode.
    pub fn opcode(&self) -> u8 {
        self.raw[0] & 0x0f
    }
    /// (first byte, payload): the shape most assertions compare.
    pub fn into_pair(self) -> (u8, Vec<u8>) {
        (self.raw[0], self.payload)
    }
}

/// Reads one frame from a blocking reader, consuming exactly its bytes.
pub fn read_frame<R: Read>(r: &mut R) -> Result<Frame, FrameError> {
    run(read_frame_async(&mut Blocking(r)))
}

/// [`read_frame`] over a futures-io reader.
pub async fn read_frame_async<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, FrameError> {
    let mut head = [0u8; MAX_HEADER_LEN];
    // A clean end is only one before the first byte.
    let first = loop {
        match r.read(&mut head[..1]).await {
            Ok(0) => return Err(FrameError::Eof),
            Ok(_) => break head[0],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    };
    r.read_exact(&mut head[1..2]).await?;
    let wire = FrameHeader::wire_len(head[1]);
    r.read_exact(&mut head[2..wire]).await?;
    let (header, _) = FrameHeader::parse(&head[..wire])
        .map_err(|_| FrameError::LengthMsbSet)?
        .ok_or_else(|| io::Error::other("frame header incomplete after its wire length"))?;
    if header.len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(header.len));
    }
    let mut payload = vec![0u8; header.len as usize];
    r.read_exact(&mut payload).await?;
    if let Some(key) = header.mask {
        apply_mask(&mut payload, key, 0);
    }
    Ok(Frame {
        header,
        raw: [first, head[1]],
        payload,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sonar_core::testing::FrameBuilder;

    #[test]
    fn every_length_form_round_trips_masked_and_not() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut b = FrameBuilder::binary(&payload);
                if let Some(k) = mask {
                    b = b.mask(k);
                }
                let wire = b.build();
                let mut r = &wire[..];
                let f = read_frame(&mut r).unwrap();
                assert!(r.is_empty(), "exactly one frame consumed");
                assert_eq!((f.first(), f.opcode()), (0x82, 0x2));
                assert_eq!(f.header.mask, mask);
                assert_eq!(f.payload, payload, "len {len}");
            }
        }
    }

    #[test]
    fn raw_bytes_are_kept_as_sent() {
        let wire = FrameBuilder::pong(b"x")
            .fin(false)
            .rsv(0x40)
            .mask([0; 4])
            .build();
        let f = read_frame(&mut &wire[..]).unwrap();
        assert_eq!(f.raw, [0x4a, 0x81]);
        assert_eq!(f.clone().into_pair(), (0x4a, b"x".to_vec()));
        assert!(!f.header.fin);
    }

    #[test]
    fn eof_truncation_and_bad_lengths_are_errors() {
        assert!(matches!(read_frame(&mut &[][..]), Err(FrameError::Eof)));
        let cut = read_frame(&mut &[0x81, 0x05, b'a'][..]).unwrap_err();
        assert!(cut.is_eof() && !matches!(cut, FrameError::Eof), "{cut}");
        let msb = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut &msb[..]),
            Err(FrameError::LengthMsbSet)
        ));
        let huge = [0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
    }
}
