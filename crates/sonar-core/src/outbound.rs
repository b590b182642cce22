//! The outbound queue: header bytes plus `Bytes` payloads, written through [`bytes::Buf`].
//!
//! Order at every frame boundary: the auto-pong slot, then the control queue
//! (user pings and pongs, FIFO), then the data queue (data frames and our Close, FIFO).
//! A frame whose first byte has been advanced over is finished before anything else.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use bytes::{Buf, Bytes, BytesMut};

use crate::connection::Connection;
use crate::frame::{FrameHeader, MAX_HEADER_LEN};

/// What a queued frame is, for the bookkeeping done when its last byte is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FrameKind {
    Data,
    /// Carries the unmasked payload for [`Event::PingSent`](crate::Event::PingSent).
    Ping(Bytes),
    Pong,
    Close,
}

#[derive(Clone, Debug)]
pub(crate) struct OutFrame {
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    /// Already masked in the client role.
    payload: Bytes,
    pub(crate) kind: FrameKind,
}

impl OutFrame {
    pub(crate) fn new(header: &FrameHeader, payload: Bytes, kind: FrameKind) -> Self {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut buf);
        OutFrame {
            header: buf,
            header_len: n as u8,
            payload,
            kind,
        }
    }

    pub(crate) fn payload_len(&self) -> usize {
        self.payload.len()
    }

    pub(crate) fn into_payload(self) -> Bytes {
        self.payload
    }

    fn into_parts(self) -> (FrameKind, Bytes) {
        (self.kind, self.payload)
    }

    fn header(&self) -> &[u8] {
        self.header
            .get(..usize::from(self.header_len))
            .unwrap_or(&[])
    }

    fn len(&self) -> usize {
        usize::from(self.header_len) + self.payload.len()
    }

    /// The unwritten bytes from `pos`, as up to two slices.
    fn parts(&self, pos: usize) -> [&[u8]; 2] {
        let h = self.header();
        match h.get(pos..) {
            Some(rest) => [rest, &self.payload],
            None => [self.payload.get(pos - h.len()..).unwrap_or(&[]), &[]],
        }
    }
}

/// The smallest payload whose memory a written data frame hands back (see
/// [`Connection::take_written_buffer`]): below it the allocator's own free lists do well.
pub const RECLAIM_MIN: usize = 8 * 1024;

/// Written payloads kept for [`Connection::take_written_buffer`] between two calls; a write
/// that finishes more frames than this drops the rest.
const MAX_RECLAIMED: usize = 4;

/// The frames to write. The partly written frame and the owed auto-pong are boxed: a
/// connection holds them only now and then (a write the transport took in part, a ping to
/// answer), and inline they would be 184 of the queue's 256 bytes on every idle connection.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    /// The frame whose first bytes have been written, and how many.
    current: Option<Box<(OutFrame, usize)>>,
    pub(crate) pong_slot: Option<Box<OutFrame>>,
    control: VecDeque<OutFrame>,
    data: VecDeque<OutFrame>,
    remaining: usize,
    /// With reclaiming on (`Some`): emptied buffers of large data frames written in full that
    /// nothing else referenced.
    pub(crate) written: Option<Vec<BytesMut>>,
}

impl OutQueue {
    pub(crate) fn remaining(&self) -> usize {
        self.remaining
    }

    pub(crate) fn control_len(&self) -> usize {
        self.control.len()
    }

    /// Replaces the auto-pong slot (latest wins).
    pub(crate) fn set_pong(&mut self, frame: OutFrame) {
        self.remaining += frame.len();
        match &mut self.pong_slot {
            Some(slot) => {
                self.remaining -= slot.len();
                **slot = frame;
            }
            None => self.pong_slot = Some(Box::new(frame)),
        }
    }

    /// Drops an owed auto-pong that has not started to leave.
    pub(crate) fn clear_pong(&mut self) {
        if let Some(old) = self.pong_slot.take() {
            self.remaining -= old.len();
        }
    }

    pub(crate) fn push_control(&mut self, frame: OutFrame) {
        self.remaining += frame.len();
        self.control.push_back(frame);
    }

    pub(crate) fn push_data(&mut self, frame: OutFrame) {
        self.remaining += frame.len();
        self.data.push_back(frame);
    }

    /// The room the control and data queues hold (for tests of `shrink_to_fit`).
    #[cfg(test)]
    pub(crate) fn queue_capacity(&self) -> usize {
        self.control.capacity() + self.data.capacity()
    }

    /// Frees the memory of the queues that are empty, and of written payloads not taken.
    pub(crate) fn shrink_to_fit(&mut self) {
        if let Some(written) = &mut self.written {
            *written = Vec::new();
        }
        if self.control.is_empty() {
            self.control.shrink_to_fit();
        }
        if self.data.is_empty() {
            self.data.shrink_to_fit();
        }
    }

    /// Drops everything that has not started to leave; the partly written frame stays.
    pub(crate) fn truncate_to_current(&mut self) {
        self.pong_slot = None;
        self.control.clear();
        self.data.clear();
        self.remaining = self.current.as_deref().map_or(0, |(f, pos)| f.len() - pos);
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.truncate_to_current();
        self.current = None;
        self.remaining = 0;
    }

    fn next_ref(&self) -> Option<&OutFrame> {
        self.pong_slot
            .as_deref()
            .or_else(|| self.control.front())
            .or_else(|| self.data.front())
    }

    fn pop_next(&mut self) -> Option<OutFrame> {
        self.pong_slot
            .take()
            .map(|slot| *slot)
            .or_else(|| self.control.pop_front())
            .or_else(|| self.data.pop_front())
    }

    pub(crate) fn chunk(&self) -> &[u8] {
        let (frame, pos) = match self.current.as_deref() {
            Some((f, pos)) => (f, *pos),
            None => match self.next_ref() {
                Some(f) => (f, 0),
                None => return &[],
            },
        };
        let [a, b] = frame.parts(pos);
        if a.is_empty() { b } else { a }
    }

    /// Advances over `cnt` bytes, calling `done` for each frame whose last byte was written.
    pub(crate) fn advance(&mut self, mut cnt: usize, mut done: impl FnMut(FrameKind)) {
        while cnt > 0 {
            if let Some(cur) = self.current.as_deref_mut() {
                let (frame, pos) = cur;
                let take = cnt.min(frame.len() - *pos);
                cnt -= take;
                self.remaining -= take;
                *pos += take;
                if *pos == frame.len()
                    && let Some(cur) = self.current.take()
                {
                    done(self.finished(cur.0));
                }
                continue;
            }
            let Some(frame) = self.pop_next() else {
                return;
            };
            let take = cnt.min(frame.len());
            cnt -= take;
            self.remaining -= take;
            if take == frame.len() {
                done(self.finished(frame));
            } else {
                self.current = Some(Box::new((frame, take)));
            }
        }
    }

    /// A frame's last byte was written: keeps its payload's memory when asked to and nothing
    /// else holds it, and returns its kind for the connection's bookkeeping.
    fn finished(&mut self, frame: OutFrame) -> FrameKind {
        let (kind, payload) = frame.into_parts();
        if let Some(written) = &mut self.written
            && kind == FrameKind::Data
            && payload.len() >= RECLAIM_MIN
            && written.len() < MAX_RECLAIMED
            && let Ok(mut buf) = payload.try_into_mut()
        {
            buf.clear();
            written.push(buf);
        }
        kind
    }

    #[cfg(feature = "std")]
    pub(crate) fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let cur = self.current.as_deref().map(|(f, pos)| (f, *pos));
        let rest = self
            .pong_slot
            .as_deref()
            .into_iter()
            .chain(self.control.iter())
            .chain(self.data.iter())
            .map(|f| (f, 0));
        let mut n = 0;
        for (frame, pos) in cur.into_iter().chain(rest) {
            for part in frame.parts(pos) {
                if part.is_empty() {
                    continue;
                }
                let Some(slot) = dst.get_mut(n) else { return n };
                *slot = std::io::IoSlice::new(part);
                n += 1;
            }
        }
        n
    }
}

/// The bytes to write to the transport, as a [`bytes::Buf`].
///
/// `chunk`/`chunks_vectored` expose header bytes and payload `Bytes` without copying them;
/// `advance` records what the transport accepted. Write until `remaining()` is 0 or the
/// transport blocks, then drop it; frames that have not started to leave may be overtaken by
/// more urgent control frames queued in between.
pub struct Outbound<'a> {
    pub(crate) conn: &'a mut Connection,
}

impl core::fmt::Debug for Outbound<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Outbound")
            .field("remaining", &self.remaining())
            .finish()
    }
}

impl Buf for Outbound<'_> {
    fn remaining(&self) -> usize {
        self.conn.out.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.conn.out.chunk()
    }

    fn advance(&mut self, cnt: usize) {
        self.conn.advance_out(cnt);
    }

    #[cfg(feature = "std")]
    fn chunks_vectored<'b>(&'b self, dst: &mut [std::io::IoSlice<'b>]) -> usize {
        self.conn.out.chunks_vectored(dst)
    }
}
