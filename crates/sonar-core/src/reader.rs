//! The inbound side: frame header checks, incremental unmasking and UTF-8 validation, and
//! message assembly. Payloads stay in the caller's buffer until their frame is complete, so a
//! single-frame message reaches the application without a copy.

use bytes::{Buf, Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame};
use crate::config::{Extension, Role};
#[cfg(feature = "deflate")]
use crate::deflate::{InflateFailed, Inflater};
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode, RSV1, RSV2, RSV3};
use crate::mask::apply_mask;
use crate::message::{DataKind, Message};
use crate::utf8::{Utf8Bytes, Utf8Validator};

/// One complete inbound item.
#[derive(Debug)]
pub(crate) enum Inbound {
    Message(Message),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<CloseFrame>),
    /// A Ping frame starts at the front of the buffer and none of it has been consumed: the
    /// connection may stop here (see `Connection::has_pending_input`). Polling
    /// again parses the Ping.
    PingAhead,
}

/// What [`Reader::start_frame`] found at the front of the buffer.
enum Start {
    /// A header was parsed and consumed.
    Started,
    /// The header is not complete yet.
    NeedMore,
    /// A Ping header (first two bytes checked) that has not been announced yet.
    PingAhead,
}

#[derive(Debug)]
struct InFrame {
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    len: usize,
    /// Payload bytes at the front of the buffer already unmasked (and validated).
    done: usize,
    /// Validate this frame's payload as UTF-8 as it arrives.
    validate: bool,
    /// A frame of a compressed (permessage-deflate) message: its payload is inflated as it
    /// arrives and the inflated bytes are validated instead.
    compressed: bool,
}

#[derive(Debug)]
struct InMessage {
    kind: DataKind,
    rsv: u8,
    parts: BytesMut,
    /// Payload bytes received so far on the wire (compressed ones for a compressed message).
    wire: usize,
    /// RSV1 with permessage-deflate negotiated: `parts` stays empty, the inflated bytes
    /// collect in the reader's inflater.
    compressed: bool,
}

#[derive(Debug)]
pub(crate) struct Reader {
    role: Role,
    max_frame: usize,
    max_message: usize,
    ext_rsv: u8,
    frame: Option<InFrame>,
    msg: Option<InMessage>,
    utf8: Utf8Validator,
    /// `PingAhead` was reported for the Ping at the front of the buffer: parse it on.
    ping_announced: bool,
    /// The receiving half of permessage-deflate (it holds the message being inflated); boxed,
    /// so a connection without it does not carry its room.
    #[cfg(feature = "deflate")]
    inflate: Option<alloc::boxed::Box<Inflater>>,
}

impl Reader {
    pub(crate) fn new(role: Role, max_frame: usize, max_message: usize, ext_rsv: u8) -> Self {
        Reader {
            role,
            max_frame,
            max_message,
            ext_rsv: ext_rsv & (RSV1 | RSV2 | RSV3),
            frame: None,
            msg: None,
            utf8: Utf8Validator::default(),
            ping_announced: false,
            #[cfg(feature = "deflate")]
            inflate: None,
        }
    }

    /// Bytes still to come for the frame in progress (see `Connection::frame_remaining`).
    pub(crate) fn frame_remaining(&self, buffered: usize) -> Option<usize> {
        self.frame.as_ref().map(|f| f.len.saturating_sub(buffered))
    }

    /// Enables permessage-deflate: RSV1 on the first frame of a data message marks it
    /// compressed.
    #[cfg(feature = "deflate")]
    pub(crate) fn with_inflater(mut self, inflater: Inflater) -> Self {
        self.ext_rsv |= RSV1;
        self.inflate = Some(alloc::boxed::Box::new(inflater));
        self
    }

    /// Whether the decompressor holds zlib state now.
    #[cfg(feature = "deflate")]
    pub(crate) fn inflater_allocated(&self) -> bool {
        self.inflate.as_deref().is_some_and(Inflater::is_allocated)
    }

    /// The receiving half of the permessage-deflate counts.
    #[cfg(feature = "deflate")]
    pub(crate) fn inflate_stats(&self) -> Option<crate::deflate::DeflateStats> {
        self.inflate.as_ref().map(|i| i.stats)
    }

    /// Whether RSV1 on a first frame means "compressed" here.
    fn deflate_on(&self) -> bool {
        #[cfg(feature = "deflate")]
        {
            self.inflate.is_some()
        }
        #[cfg(not(feature = "deflate"))]
        {
            false
        }
    }

    /// Checks everything the first two bytes decide, so that a bad
    /// frame fails before its payload is read.
    fn check_start(&self, b0: u8, b1: u8) -> Result<(), ProtocolError> {
        let opcode = OpCode::from_bits(b0);
        let rsv = b0 & (RSV1 | RSV2 | RSV3);
        if opcode.is_reserved() {
            return Err(ProtocolError::ReservedOpcode(opcode));
        }
        if opcode.is_control() {
            if b0 & 0x80 == 0 {
                return Err(ProtocolError::FragmentedControl);
            }
            if b1 & 0x7F > 125 {
                return Err(ProtocolError::ControlTooLong);
            }
            if rsv != 0 {
                return Err(ProtocolError::ReservedBits(rsv));
            }
        } else if opcode == OpCode::CONTINUATION {
            if self.msg.is_none() {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            if rsv != 0 {
                return Err(ProtocolError::ReservedBits(rsv));
            }
        } else {
            if self.msg.is_some() {
                return Err(ProtocolError::ExpectedContinuation);
            }
            if rsv & !self.ext_rsv != 0 {
                return Err(ProtocolError::ReservedBits(rsv & !self.ext_rsv));
            }
        }
        match (self.role, b1 & 0x80 != 0) {
            (Role::Server, false) => Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => Err(ProtocolError::MaskedFrame),
            _ => Ok(()),
        }
    }

    /// Parses the next header if complete.
    fn start_frame(&mut self, buf: &mut BytesMut) -> Result<Start, ProtocolError> {
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
            return Ok(Start::NeedMore);
        };
        self.check_start(b0, b1)?;
        let opcode = OpCode::from_bits(b0);
        if opcode == OpCode::PING && !self.ping_announced {
            // One compare per header; the connection's gate runs for Pings only.
            self.ping_announced = true;
            return Ok(Start::PingAhead);
        }
        // Limits are checked as soon as the length is known, before the mask key arrives.
        let Some(len) = peek_len(buf)? else {
            return Ok(Start::NeedMore);
        };
        if !opcode.is_control() {
            let compressed = match &self.msg {
                Some(m) => m.compressed,
                None => b0 & RSV1 != 0 && self.deflate_on(),
            };
            self.check_limits(len, compressed)?;
        }
        let (header, wire) = match FrameHeader::parse(buf) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Start::NeedMore),
            Err(_) => return Err(ProtocolError::LengthMsbSet),
        };
        let mut validate = false;
        let mut compressed = false;
        if !opcode.is_control() {
            validate = match &self.msg {
                Some(m) => m.kind == DataKind::Text && m.rsv == 0,
                None => opcode == OpCode::TEXT && header.rsv == 0,
            };
            compressed = match &self.msg {
                Some(m) => m.compressed,
                None => header.rsv & RSV1 != 0 && self.deflate_on(),
            };
            if opcode != OpCode::CONTINUATION {
                self.utf8.reset();
                // A compressed message is assembled in the inflater even when it is one frame.
                if !header.fin || compressed {
                    let kind = if opcode == OpCode::TEXT {
                        DataKind::Text
                    } else {
                        DataKind::Binary
                    };
                    self.msg = Some(InMessage {
                        kind,
                        rsv: header.rsv,
                        parts: BytesMut::new(),
                        wire: 0,
                        compressed,
                    });
                }
            }
        }
        buf.advance(wire);
        self.ping_announced = false;
        self.frame = Some(InFrame {
            fin: header.fin,
            rsv: header.rsv,
            opcode,
            mask: header.mask,
            // Bounded above by max_frame_size (data) or 125 (control).
            len: header.len as usize,
            done: 0,
            validate,
            compressed,
        });
        Ok(Start::Started)
    }

    /// `max_message` bounds a message's payload on the wire; a compressed message's inflated
    /// size is bounded by the inflater, and its wire size gets an eighth more (deflate can
    /// expand incompressible data by up to 12.5% with fixed codes), so that a message under
    /// the limit once inflated is never refused for its compressed size.
    fn check_limits(&self, len: u64, compressed: bool) -> Result<(), ProtocolError> {
        if len > self.max_frame as u64 {
            return Err(ProtocolError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        let before = self.msg.as_ref().map_or(0, |m| m.wire) as u64;
        let total = before.saturating_add(len);
        let max = self.max_message as u64;
        let max = if compressed {
            max.saturating_add(max / 8).saturating_add(64)
        } else {
            max
        };
        if total > max {
            return Err(ProtocolError::MessageTooLarge {
                len: total,
                max: self.max_message,
            });
        }
        Ok(())
    }

    /// Re-announces the Ping at the front of the buffer on the next poll (the connection
    /// stopped in front of it).
    pub(crate) fn rewind_ping(&mut self) {
        self.ping_announced = false;
    }

    /// Consumes bytes from `buf` until one item is complete (or more input is needed).
    /// Before a Ping frame's header is consumed, returns `Inbound::PingAhead` once.
    pub(crate) fn poll(
        &mut self,
        buf: &mut BytesMut,
        ext: Option<&mut (dyn Extension + 'static)>,
    ) -> Result<Option<Inbound>, ProtocolError> {
        loop {
            if self.frame.is_none() {
                match self.start_frame(buf)? {
                    Start::Started => {}
                    Start::NeedMore => return Ok(None),
                    Start::PingAhead => return Ok(Some(Inbound::PingAhead)),
                }
            }
            let Some(frame) = self.frame.as_mut() else {
                return Ok(None);
            };
            let avail = buf.len().min(frame.len);
            if frame.done < avail {
                if let Some(fresh) = buf.get_mut(frame.done..avail) {
                    if let Some(key) = frame.mask {
                        apply_mask(fresh, key, frame.done);
                    }
                    if frame.compressed {
                        #[cfg(feature = "deflate")]
                        if let (Some(inf), Some(msg)) = (self.inflate.as_mut(), self.msg.as_ref()) {
                            let utf8 = (msg.kind == DataKind::Text).then_some(&mut self.utf8);
                            inf.feed(fresh, self.max_message, utf8)
                                .map_err(|e| inflate_error(e, self.max_message))?;
                        }
                    } else if frame.validate {
                        self.utf8
                            .feed(fresh)
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                }
                frame.done = avail;
            }
            if avail < frame.len {
                return Ok(None);
            }
            let Some(frame) = self.frame.take() else {
                return Ok(None);
            };
            let payload = buf.split_to(frame.len);
            match frame.opcode {
                OpCode::PING => return Ok(Some(Inbound::Ping(payload.freeze()))),
                OpCode::PONG => return Ok(Some(Inbound::Pong(payload.freeze()))),
                OpCode::CLOSE => {
                    // A Close ends reading: any partial message is discarded (C-19).
                    self.msg = None;
                    #[cfg(feature = "deflate")]
                    if let Some(inf) = self.inflate.as_mut() {
                        inf.abort();
                    }
                    return parse_close(payload.freeze()).map(|c| Some(Inbound::Close(c)));
                }
                _ => {}
            }
            if frame.compressed {
                // The payload was inflated as it arrived; the compressed bytes go.
                drop(payload);
                if let Some(msg) = self.msg.as_mut() {
                    msg.wire = msg.wire.saturating_add(frame.len);
                }
                if !frame.fin {
                    continue;
                }
                if let Some(msg) = self.msg.take() {
                    return self.finish_compressed(msg.kind).map(Some);
                }
                continue;
            }
            if let Some(msg) = self.msg.as_mut() {
                msg.wire = msg.wire.saturating_add(frame.len);
                if msg.parts.is_empty() {
                    msg.parts = payload;
                } else {
                    msg.parts.extend_from_slice(&payload);
                }
                if !frame.fin {
                    continue;
                }
                if let Some(msg) = self.msg.take() {
                    return self
                        .finish(msg.kind, msg.rsv, msg.parts.freeze(), ext)
                        .map(Some);
                }
            } else {
                let kind = if frame.opcode == OpCode::TEXT {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                // Single-frame message: the RSV bits were checked at the header.
                return self
                    .finish(kind, frame.rsv, payload.freeze(), ext)
                    .map(Some);
            }
        }
    }

    /// Ends a compressed message: inflates the tail, checks the text is complete.
    #[cfg(feature = "deflate")]
    fn finish_compressed(&mut self, kind: DataKind) -> Result<Inbound, ProtocolError> {
        let max = self.max_message;
        let Some(inf) = self.inflate.as_mut() else {
            return Err(ProtocolError::ReservedBits(RSV1));
        };
        let utf8 = (kind == DataKind::Text).then_some(&mut self.utf8);
        let payload = inf.finish(max, utf8).map_err(|e| inflate_error(e, max))?;
        if kind == DataKind::Text && !self.utf8.is_complete() {
            return Err(ProtocolError::InvalidUtf8);
        }
        self.utf8.reset();
        Ok(Inbound::Message(match kind {
            DataKind::Text => Message::Text(Utf8Bytes::from_validated(payload)),
            DataKind::Binary => Message::Binary(payload),
        }))
    }

    /// Without the `deflate` feature no frame is ever marked compressed.
    #[cfg(not(feature = "deflate"))]
    fn finish_compressed(&mut self, _kind: DataKind) -> Result<Inbound, ProtocolError> {
        Err(ProtocolError::ReservedBits(RSV1))
    }

    fn finish(
        &mut self,
        kind: DataKind,
        rsv: u8,
        payload: Bytes,
        ext: Option<&mut (dyn Extension + 'static)>,
    ) -> Result<Inbound, ProtocolError> {
        let payload = match (rsv, ext) {
            (0, _) => {
                if kind == DataKind::Text && !self.utf8.is_complete() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                payload
            }
            (rsv, Some(ext)) => {
                let out = ext.decode(rsv, payload, self.max_message)?;
                if kind == DataKind::Text && simdutf8::basic::from_utf8(&out).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                out
            }
            (rsv, None) => return Err(ProtocolError::ReservedBits(rsv)),
        };
        self.utf8.reset();
        Ok(Inbound::Message(match kind {
            DataKind::Text => Message::Text(Utf8Bytes::from_validated(payload)),
            DataKind::Binary => Message::Binary(payload),
        }))
    }
}

/// Maps an inflate failure to the error that fails the connection (1009 or 1007).
#[cfg(feature = "deflate")]
fn inflate_error(e: InflateFailed, max: usize) -> ProtocolError {
    match e {
        InflateFailed::TooLarge(len) => ProtocolError::MessageTooLarge {
            len: len as u64,
            max,
        },
        InflateFailed::Invalid => ProtocolError::InvalidCompressedData,
        InflateFailed::Utf8 => ProtocolError::InvalidUtf8,
    }
}

/// The payload length, once the length bytes (not necessarily the mask key) are buffered.
fn peek_len(buf: &[u8]) -> Result<Option<u64>, ProtocolError> {
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let rest = buf.get(2..).unwrap_or(&[]);
    Ok(match (b1 & 0x7F, rest) {
        (126, [a, b, ..]) => Some(u64::from(u16::from_be_bytes([*a, *b]))),
        (127, [a, b, c, d, e, f, g, h, ..]) => {
            let len = u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
            if len >> 63 != 0 {
                return Err(ProtocolError::LengthMsbSet);
            }
            Some(len)
        }
        (126 | 127, _) => None,
        (n, _) => Some(u64::from(n)),
    })
}

/// Parses a complete Close body.
fn parse_close(payload: Bytes) -> Result<Option<CloseFrame>, ProtocolError> {
    let (code, reason) = match payload.as_ref() {
        [] => return Ok(None),
        [_] => return Err(ProtocolError::CloseBodyTooShort),
        [a, b, ..] => (u16::from_be_bytes([*a, *b]), payload.slice(2..)),
    };
    let code = CloseCode::new(code)
        .filter(|c| c.is_valid_received())
        .ok_or(ProtocolError::InvalidCloseCode(code))?;
    let reason = Utf8Bytes::try_from(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
    Ok(Some(CloseFrame { code, reason }))
}
