//! Application calls: data messages, streamed fragments, pings, pongs and Close.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Connection, Timer};
use crate::close::{CloseCode, CloseFrame};
use crate::error::SendError;
use crate::frame::{FrameHeader, OpCode};
use crate::mask::apply_mask;
use crate::message::{DataKind, Message};
use crate::outbound::{FrameKind, OutFrame};
use crate::prepared::{PreparedMessage, data_opcode};
use crate::utf8::Utf8Validator;

/// Largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

impl Connection {
    fn check_data_allowed(&self) -> Result<(), SendError> {
        if self.closed {
            Err(SendError::Closed)
        } else if self.close_sent
            || (self.error.is_some() && !self.fail_pending)
            || self.close_received.is_some()
        {
            Err(SendError::Closing)
        } else {
            Ok(())
        }
    }

    /// Queues a whole message, split into fragments of `auto_fragment_size` if larger.
    ///
    /// Fails with [`SendError::Closing`] once a Close was sent or received (nothing queued).
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        self.check_data_allowed()?;
        if self.out_fragment.is_some() {
            return Err(SendError::FragmentInProgress);
        }
        let kind = msg.kind();
        let payload = msg.into_payload();
        #[cfg(feature = "deflate")]
        if let Some(c) = self.compressor.as_mut() {
            let (rsv, payload) = match c.compress(&payload) {
                Ok(Some(compressed)) => (crate::frame::RSV1, compressed),
                Ok(None) => (0, payload),
                Err(_) => return Err(SendError::CompressionFailed),
            };
            self.queue_data(data_opcode(kind), rsv, payload, true);
            return Ok(());
        }
        let (rsv, payload) = match self.ext.as_mut() {
            Some(ext) => ext.encode(kind, payload)?,
            None => (0, payload),
        };
        let opcode = data_opcode(kind);
        self.queue_data(opcode, rsv, payload, true);
        Ok(())
    }

    /// Queues a [`PreparedMessage`]: the same frame as [`send`](Self::send) would queue for
    /// its message, without encoding it again. In the server role the frame built once by
    /// the prepared message is queued as it is (shared, not copied); a compressor without
    /// context takeover uses the prepared message's compressed frame for its settings (made
    /// by the first connection with those settings). Masking (client role), compression with
    /// context takeover, a custom [`Extension`](crate::Extension) and auto-fragmentation
    /// are done here, per connection, as for `send`.
    ///
    /// Fails as [`send`](Self::send) does.
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), SendError> {
        self.check_data_allowed()?;
        if self.out_fragment.is_some() {
            return Err(SendError::FragmentInProgress);
        }
        if self.ext.is_some() {
            return self.send(prepared.message().clone());
        }
        #[cfg(feature = "deflate")]
        if let Some(c) = self.compressor.as_mut() {
            let Some(settings) = c.shared_settings() else {
                // Context takeover: this connection's output depends on its own history.
                return self.send(prepared.message().clone());
            };
            let frame = prepared
                .compressed_frame(settings)
                .map_err(|_| SendError::CompressionFailed)?;
            if let Some(frame) = frame {
                c.record(prepared.len(), frame.payload_len());
                self.queue_prepared(prepared, frame, crate::frame::RSV1);
                return Ok(());
            }
        }
        self.queue_prepared(prepared, prepared.plain_frame().clone(), 0);
        Ok(())
    }

    /// Queues a prepared frame as it is when this connection would send it unchanged (server
    /// role, no fragmentation); otherwise frames its payload as `send` does.
    fn queue_prepared(&mut self, prepared: &PreparedMessage, frame: OutFrame, rsv: u8) {
        let size = self.config.auto_fragment_size.unwrap_or(usize::MAX).max(1);
        if self.masks.is_none() && frame.payload_len() <= size {
            self.out.push_data(frame);
        } else {
            let opcode = data_opcode(prepared.kind());
            self.queue_data(opcode, rsv, frame.into_payload(), true);
        }
    }

    /// Queues one fragment of a streamed message: the first call's `kind` starts the message,
    /// later calls must repeat it, `fin = true` ends it. Text fragments are checked to form
    /// valid UTF-8 across calls. Fragments pass the extension untransformed (with
    /// permessage-deflate, a streamed message is sent uncompressed).
    pub fn send_fragment(
        &mut self,
        kind: DataKind,
        payload: Bytes,
        fin: bool,
    ) -> Result<(), SendError> {
        self.check_data_allowed()?;
        let opcode = match self.out_fragment {
            Some(k) if k != kind => return Err(SendError::FragmentKindMismatch),
            Some(_) => OpCode::CONTINUATION,
            None => data_opcode(kind),
        };
        if kind == DataKind::Text {
            let mut v = if self.out_fragment.is_some() {
                self.out_utf8.clone()
            } else {
                Utf8Validator::default()
            };
            if v.feed(&payload).is_err() || (fin && !v.is_complete()) {
                return Err(SendError::InvalidUtf8);
            }
            self.out_utf8 = v;
        }
        self.out_fragment = if fin { None } else { Some(kind) };
        self.queue_data(opcode, 0, payload, fin);
        Ok(())
    }

    fn check_control_allowed(&self, payload: &Bytes) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        if self.error.is_some() || self.close_received.is_some() {
            return Err(SendError::Closing);
        }
        if payload.len() > MAX_CONTROL {
            return Err(SendError::ControlTooLong);
        }
        if self.out.control_len() >= self.config.max_queued_control {
            return Err(SendError::QueueFull);
        }
        Ok(())
    }

    /// Queues a Ping. It goes out at the next frame boundary, after an owed auto-pong and
    /// ahead of queued data. Allowed while open and after we sent Close;
    /// [`Event::PingSent`](crate::Event::PingSent) reports when its last byte was written.
    pub fn ping(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.check_control_allowed(&payload)?;
        let frame = self.encode(
            true,
            0,
            OpCode::PING,
            payload.clone(),
            FrameKind::Ping(payload),
        );
        self.out.push_control(frame);
        Ok(())
    }

    /// Queues an unsolicited (or manual, with `auto_pong` off) Pong. It never displaces an
    /// owed auto-pong.
    pub fn pong(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.check_control_allowed(&payload)?;
        let frame = self.encode(true, 0, OpCode::PONG, payload, FrameKind::Pong);
        self.out.push_control(frame);
        Ok(())
    }

    /// Starts the closing handshake: queues a Close after the data already queued.
    /// `None` sends an empty Close. The code must be sendable and the reason at
    /// most 123 bytes; otherwise nothing is queued and the state is unchanged.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        if self.fail_pending {
            // A protocol error decided the code already (see `defer_fail_close`).
            self.commit_failure();
            return Ok(());
        }
        if self.close_sent || self.error.is_some() {
            return Err(SendError::Closing);
        }
        if let Some(f) = &frame {
            if !f.code.is_sendable() {
                return Err(SendError::InvalidCloseCode(f.code.as_u16()));
            }
            if f.reason.len() > CloseFrame::MAX_REASON_LEN {
                return Err(SendError::ReasonTooLong);
            }
        }
        let payload = match &frame {
            None => Bytes::new(),
            Some(f) => {
                let mut b = BytesMut::with_capacity(2 + f.reason.len());
                b.put_u16(f.code.as_u16());
                b.put_slice(f.reason.as_bytes());
                b.freeze()
            }
        };
        self.queue_close_payload(payload);
        Ok(())
    }

    pub(super) fn queue_close(&mut self, code: Option<CloseCode>) {
        let payload = match code {
            None => Bytes::new(),
            Some(c) => Bytes::copy_from_slice(&c.as_u16().to_be_bytes()),
        };
        self.queue_close_payload(payload);
    }

    fn queue_close_payload(&mut self, payload: Bytes) {
        let frame = self.encode(true, 0, OpCode::CLOSE, payload, FrameKind::Close);
        self.out.push_data(frame);
        self.close_sent = true;
        if self.timer == Timer::Idle {
            self.timer = Timer::NeedsArm;
        }
    }

    fn queue_data(&mut self, opcode: OpCode, rsv: u8, payload: Bytes, fin: bool) {
        let size = self.config.auto_fragment_size.unwrap_or(usize::MAX).max(1);
        let mut rest = payload;
        let mut opcode = opcode;
        let mut rsv = rsv;
        loop {
            let last = rest.len() <= size;
            let part = if last {
                core::mem::take(&mut rest)
            } else {
                rest.split_to(size)
            };
            let frame = self.encode(fin && last, rsv, opcode, part, FrameKind::Data);
            self.out.push_data(frame);
            if last {
                return;
            }
            opcode = OpCode::CONTINUATION;
            rsv = 0;
        }
    }

    /// Builds a frame; in the client role the payload is copied into a masked buffer.
    pub(super) fn encode(
        &mut self,
        fin: bool,
        rsv: u8,
        opcode: OpCode,
        payload: Bytes,
        kind: FrameKind,
    ) -> OutFrame {
        let len = payload.len() as u64;
        match self.masks.as_mut() {
            Some(masks) => {
                let key = masks.next_mask();
                let mut masked = BytesMut::from(payload.as_ref());
                apply_mask(&mut masked, key, 0);
                let header = FrameHeader {
                    fin,
                    rsv,
                    opcode,
                    mask: Some(key),
                    len,
                };
                OutFrame::new(&header, masked.freeze(), kind)
            }
            None => {
                let header = FrameHeader {
                    fin,
                    rsv,
                    opcode,
                    mask: None,
                    len,
                };
                OutFrame::new(&header, payload, kind)
            }
        }
    }
}
