//! Prepared messages: a data message framed once and sent to many connections.

#[cfg(feature = "deflate")]
use alloc::vec::Vec;

use bytes::Bytes;

use crate::frame::{FrameHeader, OpCode};
use crate::message::{DataKind, Message};
use crate::outbound::{FrameKind, OutFrame};

/// A data message framed once, for fan-out: the same event to many connections.
///
/// The server-role frame (header and payload) is built here once; each
/// [`Connection::send_prepared`](crate::Connection::send_prepared) queues a reference-counted
/// copy of it, so nothing of the message is copied or encoded per connection. With
/// permessage-deflate negotiated without context takeover on the sending side (a server
/// answering `server_no_context_takeover`), the message is compressed once per distinct set
/// of compressor parameters, the first time a connection with those parameters sends it, and
/// every such connection sends the same compressed frame.
///
/// What is still done per connection, because the protocol requires it:
/// - the client role masks every frame with a fresh key (RFC 6455 §5.3), so a client copies
///   the payload as for [`Connection::send`](crate::Connection::send);
/// - a connection that compresses with context takeover compresses the message itself (its
///   output depends on what it sent before);
/// - a connection whose `auto_fragment_size` is smaller than the message splits it into
///   fragments (headers per fragment; the payload is still shared).
///
/// `PreparedMessage` is `Send + Sync`: share it in an `Arc` between threads.
///
/// ```
/// use bytes::Buf;
/// use sonar_core::{Config, Connection, PreparedMessage};
///
/// let tick = PreparedMessage::new("tick 42");
/// let mut a = Connection::server(Config::default());
/// let mut b = Connection::server(Config::default());
/// a.send_prepared(&tick).unwrap();
/// b.send_prepared(&tick).unwrap();
/// let wire = |c: &mut Connection| {
///     let mut out = c.outbound();
///     out.copy_to_bytes(out.remaining())
/// };
/// let frame = wire(&mut a);
/// assert_eq!(frame, wire(&mut b));
/// assert_eq!(&frame[..2], &[0x81, 7]); // FIN + text, 7 bytes, unmasked
/// ```
pub struct PreparedMessage {
    message: Message,
    /// The whole message as one unmasked, uncompressed frame.
    plain: OutFrame,
    /// One entry per compressor settings seen: the RSV1 frame, or `None` if that compressor
    /// sends this message plain (too short, or no gain).
    #[cfg(feature = "deflate")]
    compressed: std::sync::Mutex<Vec<(crate::deflate::Settings, Option<OutFrame>)>>,
}

impl core::fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("PreparedMessage");
        d.field("kind", &self.message.kind())
            .field("len", &self.message.payload().len());
        #[cfg(feature = "deflate")]
        d.field("compressions", &self.compressions());
        d.finish()
    }
}

impl PreparedMessage {
    /// Frames `message` (a text or binary message).
    pub fn new(message: impl Into<Message>) -> Self {
        let message = message.into();
        let plain = frame(message.kind(), 0, message.payload().clone());
        PreparedMessage {
            message,
            plain,
            #[cfg(feature = "deflate")]
            compressed: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.message.payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times the message was compressed so far: once per distinct set of compressor
    /// parameters among the connections it was sent to without context takeover (a message
    /// shorter than a compressor's minimum size is not compressed for it, and not counted).
    #[cfg(feature = "deflate")]
    pub fn compressions(&self) -> usize {
        self.cache().len()
    }

    pub(crate) fn kind(&self) -> DataKind {
        self.message.kind()
    }

    /// The unmasked, uncompressed frame of the whole message.
    pub(crate) fn plain_frame(&self) -> &OutFrame {
        &self.plain
    }

    #[cfg(feature = "deflate")]
    fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, Vec<(crate::deflate::Settings, Option<OutFrame>)>> {
        // Nothing panics while the lock is held but zlib-rs itself; the entries are complete
        // either way, so a poisoned cache is still a valid one.
        self.compressed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The RSV1 frame of the message compressed with `settings` (no context takeover),
    /// compressed now if no earlier connection had these settings; `Ok(None)`: send it plain.
    #[cfg(feature = "deflate")]
    pub(crate) fn compressed_frame(
        &self,
        settings: crate::deflate::Settings,
    ) -> Result<Option<OutFrame>, crate::deflate::CompressFailed> {
        let payload = self.message.payload();
        if settings.sends_plain(payload) {
            return Ok(None);
        }
        let mut cache = self.cache();
        if let Some((_, frame)) = cache.iter().find(|(s, _)| *s == settings) {
            return Ok(frame.clone());
        }
        let frame = crate::deflate::compress_once(settings, payload)?
            .map(|payload| frame(self.kind(), crate::frame::RSV1, payload));
        cache.push((settings, frame.clone()));
        Ok(frame)
    }
}

/// The unmasked server-role frame of a whole message.
fn frame(kind: DataKind, rsv: u8, payload: Bytes) -> OutFrame {
    let header = FrameHeader {
        fin: true,
        rsv,
        opcode: data_opcode(kind),
        mask: None,
        len: payload.len() as u64,
    };
    OutFrame::new(&header, payload, FrameKind::Data)
}

pub(crate) fn data_opcode(kind: DataKind) -> OpCode {
    match kind {
        DataKind::Text => OpCode::TEXT,
        DataKind::Binary => OpCode::BINARY,
    }
}
