//! Frame headers (RFC 6455 §5.2): opcodes, lengths, RSV bits and masking keys.

use core::fmt;

/// A frame opcode (4 bits on the wire). An open newtype: reserved values can be represented
/// so that they can be reported.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpCode(u8);

impl OpCode {
    /// 0x0: continuation of a fragmented message.
    pub const CONTINUATION: OpCode = OpCode(0x0);
    /// 0x1: text data.
    pub const TEXT: OpCode = OpCode(0x1);
    /// 0x2: binary data.
    pub const BINARY: OpCode = OpCode(0x2);
    /// 0x8: connection close.
    pub const CLOSE: OpCode = OpCode(0x8);
    /// 0x9: ping.
    pub const PING: OpCode = OpCode(0x9);
    /// 0xA: pong.
    pub const PONG: OpCode = OpCode(0xA);

    /// The opcode from the low 4 bits of `v`.
    pub const fn from_bits(v: u8) -> Self {
        OpCode(v & 0x0F)
    }

    /// The 4-bit value.
    pub const fn as_u8(self) -> u8 {
        self.0
    }

    /// Control opcodes have the high bit of the nibble set (0x8-0xF).
    pub const fn is_control(self) -> bool {
        self.0 & 0x08 != 0
    }

    /// Reserved opcodes: 0x3-0x7 and 0xB-0xF.
    pub const fn is_reserved(self) -> bool {
        matches!(self.0, 0x3..=0x7 | 0xB..=0xF)
    }
}

impl fmt::Debug for OpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            0x0 => "CONTINUATION",
            0x1 => "TEXT",
            0x2 => "BINARY",
            0x8 => "CLOSE",
            0x9 => "PING",
            0xA => "PONG",
            _ => return write!(f, "OpCode({:#x})", self.0),
        };
        f.write_str(name)
    }
}

/// RSV1 bit in the first header byte (used by permessage-deflate).
pub const RSV1: u8 = 0x40;
/// RSV2 bit in the first header byte.
pub const RSV2: u8 = 0x20;
/// RSV3 bit in the first header byte.
pub const RSV3: u8 = 0x10;
/// The longest possible frame header: 2 + 8 (64-bit length) + 4 (mask key).
pub const MAX_HEADER_LEN: usize = 14;

/// A decoded or to-be-encoded frame header.
///
/// ```
/// use sonar_core::{FrameHeader, OpCode, MAX_HEADER_LEN};
/// let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::PONG, mask: None, len: 5 };
/// let mut out = [0u8; MAX_HEADER_LEN];
/// let n = h.encode(&mut out);
/// assert_eq!(&out[..n], &[0x8a, 0x05]);
/// assert_eq!(FrameHeader::parse(&out[..n]), Ok(Some((h, 2))));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN bit: last frame of a message.
    pub fin: bool,
    /// RSV bits as they sit in the first byte (a combination of [`RSV1`], [`RSV2`], [`RSV3`]).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
}

/// The header is malformed: a 64-bit length with the most significant bit set (RFC 6455 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthMsbSet;

impl FrameHeader {
    /// Length of the header on the wire given its first two bytes.
    pub const fn wire_len(b1: u8) -> usize {
        let ext = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
    }

    /// Parses a header from the front of `bytes`: `Ok(None)` if more bytes are needed,
    /// otherwise the header and its length on the wire. Only structural checks are made here
    /// (the 64-bit MSB rule); role, opcode and RSV rules belong to the connection.
    /// Non-minimal length encodings are accepted.
    pub fn parse(bytes: &[u8]) -> Result<Option<(FrameHeader, usize)>, LengthMsbSet> {
        let (Some(&b0), Some(&b1)) = (bytes.first(), bytes.get(1)) else {
            return Ok(None);
        };
        let wire = Self::wire_len(b1);
        let Some(head) = bytes.get(..wire) else {
            return Ok(None);
        };
        let (len, rest) = match (b1 & 0x7F, head.get(2..).unwrap_or(&[])) {
            (126, [a, b, rest @ ..]) => (u64::from(u16::from_be_bytes([*a, *b])), rest),
            (127, [a, b, c, d, e, f, g, h, rest @ ..]) => {
                let len = u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
                if len >> 63 != 0 {
                    return Err(LengthMsbSet);
                }
                (len, rest)
            }
            (n, rest) => (u64::from(n), rest),
        };
        let mask = match rest {
            [a, b, c, d] => Some([*a, *b, *c, *d]),
            _ => None,
        };
        Ok(Some((
            FrameHeader {
                fin: b0 & 0x80 != 0,
                rsv: b0 & (RSV1 | RSV2 | RSV3),
                opcode: OpCode::from_bits(b0),
                mask,
                len,
            },
            wire,
        )))
    }

    /// Encodes the header (minimal length form) into `out`, returning its length.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (if self.fin { 0x80 } else { 0 })
            | (self.rsv & (RSV1 | RSV2 | RSV3))
            | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = 2;
        if self.len < 126 {
            out[1] = mask_bit | self.len as u8;
        } else if let Ok(len) = u16::try_from(self.len) {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&len.to_be_bytes());
            n = 4;
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.len.to_be_bytes());
            n = 10;
        }
        if let Some(key) = self.mask {
            out[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        n
    }
}
