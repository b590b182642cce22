//! Lenient, bounded inspection of the frames a server sends to `sonar ping`.
//!
//! Unlike the codec, this reader does not fail on protocol violations: it reports every frame
//! with its raw header so that the caller can warn about it. Only the first
//! [`MAX_KEPT`] payload bytes of a non-data frame are kept (unmasked); data payloads are
//! skipped without being buffered, so whatever the server sends, memory stays bounded.

use std::fmt;

use sonar_core::{FrameHeader, MAX_HEADER_LEN, OpCode, apply_mask};

/// Payload bytes kept per control frame (the RFC 6455 control frame limit).
pub(crate) const MAX_KEPT: usize = 125;

/// One frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The header exactly as sent.
    pub(crate) header: FrameHeader,
    /// The first [`MAX_KEPT`] payload bytes, unmasked, for non-data opcodes; empty for data.
    pub(crate) payload: Vec<u8>,
}

/// What the reader found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A complete frame.
    Frame(Frame),
    /// A header that cannot be parsed (64-bit length with its top bit set): the stream
    /// cannot be followed any further.
    Malformed,
}

#[derive(Debug)]
enum State {
    Header,
    Payload {
        header: FrameHeader,
        remaining: u64,
        offset: u64,
        kept: Vec<u8>,
    },
    Failed,
}

/// The incremental reader: feed it bytes as they arrive.
#[derive(Debug)]
pub(crate) struct FrameReader {
    head: Vec<u8>,
    state: State,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            head: Vec::with_capacity(MAX_HEADER_LEN),
            state: State::Header,
        }
    }
}

fn is_data(opcode: OpCode) -> bool {
    matches!(opcode, OpCode::TEXT | OpCode::BINARY | OpCode::CONTINUATION)
}

impl FrameReader {
    /// Consumes `input`, appending every frame completed by it to `out`. After
    /// [`Item::Malformed`] all further input is ignored.
    pub(crate) fn push(&mut self, mut input: &[u8], out: &mut Vec<Item>) {
        while !input.is_empty() {
            match &mut self.state {
                State::Failed => return,
                State::Header => {
                    let need = self.head.get(1).map_or(2, |&b1| FrameHeader::wire_len(b1));
                    let want = need.saturating_sub(self.head.len());
                    let (take, rest) = input.split_at(want.min(input.len()));
                    self.head.extend_from_slice(take);
                    input = rest;
                    // Once the second byte is in, it tells the header's full length.
                    let full = self.head.get(1).map(|&b1| FrameHeader::wire_len(b1));
                    if full.is_none_or(|full| self.head.len() < full) {
                        continue;
                    }
                    match FrameHeader::parse(&self.head) {
                        Ok(Some((header, _))) => {
                            self.head.clear();
                            self.state = State::Payload {
                                header,
                                remaining: header.len,
                                offset: 0,
                                kept: Vec::new(),
                            };
                            self.finish_if_complete(out);
                        }
                        Ok(None) => {}
                        Err(_) => {
                            self.head.clear();
                            self.state = State::Failed;
                            out.push(Item::Malformed);
                            return;
                        }
                    }
                }
                State::Payload {
                    header,
                    remaining,
                    offset,
                    kept,
                } => {
                    let n = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let (chunk, rest) = input.split_at(n);
                    input = rest;
                    if !is_data(header.opcode) && kept.len() < MAX_KEPT {
                        let room = MAX_KEPT - kept.len();
                        let keep = chunk.get(..room.min(chunk.len())).unwrap_or(&[]);
                        let start = kept.len();
                        kept.extend_from_slice(keep);
                        if let (Some(key), Some(tail)) = (header.mask, kept.get_mut(start..)) {
                            apply_mask(tail, key, (*offset % 4) as usize);
                        }
                    }
                    *remaining -= n as u64;
                    *offset += n as u64;
                    self.finish_if_complete(out);
                }
            }
        }
    }

    fn finish_if_complete(&mut self, out: &mut Vec<Item>) {
        if let State::Payload {
            remaining: 0,
            header,
            kept,
            ..
        } = &mut self.state
        {
            out.push(Item::Frame(Frame {
                header: *header,
                payload: std::mem::take(kept),
            }));
            self.state = State::Header;
        }
    }

    /// Bytes held for an incomplete header or control payload (always small).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        match &self.state {
            State::Payload { kept, .. } => self.head.len() + kept.len(),
            _ => self.head.len(),
        }
    }
}

/// Why a pong does not conform to RFC 6455.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// FIN unset: control frames must not be fragmented.
    NoFin,
    /// RSV bits set without a negotiated extension.
    Rsv(u8),
    /// The server masked its frame.
    Masked,
    /// Longer than the 125 bytes a control frame may carry.
    Oversized(u64),
    /// A prefix of our payload only.
    Truncated {
        /// Bytes received.
        got: u64,
        /// Bytes sent.
        sent: usize,
    },
    /// The payload is not the one of our ping.
    NotEchoed,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoFin => f.write_str("pong without FIN (control frames cannot be fragmented)"),
            Problem::Rsv(bits) => write!(f, "pong with RSV bits set (0x{bits:02x})"),
            Problem::Masked => f.write_str("pong masked by the server (servers must not mask)"),
            Problem::Oversized(len) => {
                write!(f, "pong of {len} bytes (control frames carry at most 125)")
            }
            Problem::Truncated { got, sent } => {
                write!(f, "pong payload truncated ({got} of {sent} bytes echoed)")
            }
            Problem::NotEchoed => f.write_str("pong payload does not echo the ping's"),
        }
    }
}

/// `pong` carries exactly `sent`: the same declared length and the same bytes.
pub(crate) fn echoes(pong: &Frame, sent: &[u8]) -> bool {
    pong.header.len == sent.len() as u64 && pong.payload == sent
}

/// Everything wrong with `pong` as the answer to a ping that carried `sent`.
pub(crate) fn pong_problems(pong: &Frame, sent: &[u8]) -> Vec<Problem> {
    let h = &pong.header;
    let mut problems = Vec::new();
    if !h.fin {
        problems.push(Problem::NoFin);
    }
    if h.rsv != 0 {
        problems.push(Problem::Rsv(h.rsv));
    }
    if h.mask.is_some() {
        problems.push(Problem::Masked);
    }
    if h.len > MAX_KEPT as u64 {
        problems.push(Problem::Oversized(h.len));
    }
    if !echoes(pong, sent) {
        if h.len < sent.len() as u64 && sent.starts_with(&pong.payload) {
            problems.push(Problem::Truncated {
                got: h.len,
                sent: sent.len(),
            });
        } else {
            problems.push(Problem::NotEchoed);
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    fn frame_bytes(first: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let h = FrameHeader::parse(&[first, 0]).unwrap().unwrap().0;
        let h = FrameHeader {
            mask,
            len: payload.len() as u64,
            ..h
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut head);
        let mut v = head[..n].to_vec();
        let mut p = payload.to_vec();
        if let Some(key) = mask {
            apply_mask(&mut p, key, 0);
        }
        v.extend_from_slice(&p);
        v
    }

    fn read_all(bytes: &[u8], chunk: usize) -> Vec<Item> {
        let mut r = FrameReader::default();
        let mut out = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            r.push(c, &mut out);
            assert!(r.buffered() <= MAX_HEADER_LEN + MAX_KEPT);
        }
        out
    }

    fn only_frame(items: &[Item]) -> &Frame {
        match items {
            [Item::Frame(f)] => f,
            other => panic!("expected one frame, got {other:?}"),
        }
    }

    #[test]
    fn conforming_pong_has_no_problems() {
        let bytes = frame_bytes(0x8a, None, b"abcdefgh");
        for chunk in 1..=bytes.len() {
            let items = read_all(&bytes, chunk);
            let f = only_frame(&items);
            assert_eq!(f.payload, b"abcdefgh");
            assert_eq!(pong_problems(f, b"abcdefgh"), vec![]);
        }
    }

    #[test]
    fn pong_without_fin_is_reported() {
        // 0x0a: FIN unset, opcode pong.
        let bytes = frame_bytes(0x0a, None, b"abcdefgh");
        let items = read_all(&bytes, 3);
        assert_eq!(
            pong_problems(only_frame(&items), b"abcdefgh"),
            vec![Problem::NoFin]
        );
    }

    #[test]
    fn truncated_and_foreign_payloads_are_reported() {
        let items = read_all(&frame_bytes(0x8a, None, b"abcd"), 64);
        assert_eq!(
            pong_problems(only_frame(&items), b"abcdefgh"),
            vec![Problem::Truncated { got: 4, sent: 8 }]
        );
        let items = read_all(&frame_bytes(0x8a, None, b"zzzzzzzz"), 64);
        assert_eq!(
            pong_problems(only_frame(&items), b"abcdefgh"),
            vec![Problem::NotEchoed]
        );
        let items = read_all(&frame_bytes(0x8a, None, b"abcdefghi"), 64);
        assert_eq!(
            pong_problems(only_frame(&items), b"abcdefgh"),
            vec![Problem::NotEchoed]
        );
    }

    #[test]
    fn masked_pong_with_rsv_is_unmasked_and_reported() {
        let bytes = frame_bytes(0x8a | 0x40, Some([1, 2, 3, 4]), b"abcdefgh");
        for chunk in 1..=bytes.len() {
            let items = read_all(&bytes, chunk);
            let f = only_frame(&items);
            assert_eq!(f.payload, b"abcdefgh", "chunk {chunk}");
            assert_eq!(
                pong_problems(f, b"abcdefgh"),
                vec![Problem::Rsv(0x40), Problem::Masked]
            );
        }
    }

    #[test]
    fn oversized_pong_keeps_only_125_bytes() {
        let payload = vec![b'x'; 70_000];
        let bytes = frame_bytes(0x8a, None, &payload);
        let items = read_all(&bytes, 4096);
        let f = only_frame(&items);
        assert_eq!(f.header.len, 70_000);
        assert_eq!(f.payload.len(), MAX_KEPT);
        assert_eq!(
            pong_problems(f, b"xxxxxxxx"),
            vec![Problem::Oversized(70_000), Problem::NotEchoed]
        );
    }

    #[test]
    fn data_frames_are_skipped_without_buffering() {
        let mut bytes = frame_bytes(0x82, None, &vec![7u8; 100_000]);
        bytes.extend(frame_bytes(0x8a, None, b"p"));
        let items = read_all(&bytes, 1000);
        assert_eq!(items.len(), 2);
        match &items[0] {
            Item::Frame(f) => {
                assert_eq!(f.header.opcode, OpCode::BINARY);
                assert!(f.payload.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match &items[1] {
            Item::Frame(f) => assert_eq!(f.payload, b"p"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn msb_length_is_malformed_and_stops_reading() {
        let mut bytes = vec![0x8a, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend(frame_bytes(0x8a, None, b"later"));
        assert_eq!(read_all(&bytes, 1), vec![Item::Malformed]);
        assert_eq!(read_all(&bytes, 100), vec![Item::Malformed]);
    }

    #[test]
    fn huge_declared_length_never_allocates_it() {
        // A pong claiming 2^62 bytes: the reader keeps 125 and waits for the rest forever,
        // which the per-ping timeout bounds.
        let mut bytes = vec![0x8a, 127, 0x40, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend(vec![b'a'; 10_000]);
        let mut r = FrameReader::default();
        let mut out = Vec::new();
        r.push(&bytes, &mut out);
        assert!(out.is_empty());
        assert!(r.buffered() <= MAX_HEADER_LEN + MAX_KEPT);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Hostile bytes in any chunking: no panic, bounded buffer, and the same items as
        /// when the bytes arrive at once.
        #[test]
        fn hostile_bytes_any_chunking(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            chunk in 1usize..64,
        ) {
            let whole = read_all(&bytes, bytes.len().max(1));
            let chunked = read_all(&bytes, chunk);
            prop_assert_eq!(&whole, &chunked);
            for item in &whole {
                if let Item::Frame(f) = item {
                    prop_assert!(f.payload.len() <= MAX_KEPT);
                    let _ = pong_problems(f, b"abcdefgh");
                }
            }
        }

        /// Valid control frames with any header bits round-trip their payload.
        #[test]
        fn control_frames_round_trip(
            first in prop_oneof![Just(0x8au8), Just(0x0a), Just(0x89), Just(0xca), Just(0x8b)],
            mask in proptest::option::of(any::<[u8; 4]>()),
            payload in proptest::collection::vec(any::<u8>(), 0..=125),
            chunk in 1usize..20,
        ) {
            let bytes = frame_bytes(first, mask, &payload);
            let items = read_all(&bytes, chunk);
            let f = only_frame(&items);
            prop_assert_eq!(&f.payload, &payload);
            prop_assert_eq!(f.header.fin, first & 0x80 != 0);
            prop_assert_eq!(f.header.mask, mask);
        }
    }
}
