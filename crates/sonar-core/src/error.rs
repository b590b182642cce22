//! Error types: [`ProtocolError`] for the peer's mistakes, [`SendError`] for API misuse.

use crate::close::CloseCode;
use crate::frame::OpCode;

/// The peer broke the protocol; the connection is failed (RFC 6455 §7.1.7).
///
/// Errors are sticky: once [`Connection::handle_read`](crate::Connection::handle_read) has
/// returned one, every later call returns the same error and no more input is processed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A reserved opcode (0x3-0x7, 0xB-0xF).
    #[error("reserved opcode {0:?}")]
    ReservedOpcode(OpCode),
    /// RSV bits set that no negotiated extension defines (or on a control/continuation frame).
    #[error("reserved bits {0:#04x} set")]
    ReservedBits(u8),
    /// A control frame with FIN=0.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame whose length field is not the 7-bit form <= 125.
    #[error("control frame payload too long")]
    ControlTooLong,
    /// A server received an unmasked frame.
    #[error("unmasked frame from client")]
    UnmaskedFrame,
    /// A client received a masked frame.
    #[error("masked frame from server")]
    MaskedFrame,
    /// A 64-bit length with the most significant bit set.
    #[error("frame length has the most significant bit set")]
    LengthMsbSet,
    /// A data frame larger than `max_frame_size`.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Declared payload length.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message larger than `max_message_size` (across all its fragments).
    #[error("message of at least {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Message size including the frame that crossed the limit.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A continuation frame with no message in progress.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is in progress.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A text message (or a Close reason) that is not valid UTF-8.
    #[error("invalid utf-8 in text payload")]
    InvalidUtf8,
    /// A Close frame with a 1-byte body.
    #[error("close frame body of 1 byte")]
    CloseBodyTooShort,
    /// A Close frame with a code that may not be sent.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// The negotiated extension rejected a message.
    #[error("extension error: {0}")]
    Extension(#[from] ExtensionError),
    /// A compressed (permessage-deflate) message is not a valid deflate stream, or has data
    /// after a final block. Fails with 1007: the frames are well formed, it is the payload
    /// that is inconsistent with the message (as invalid UTF-8 in a text message is), so
    /// "invalid frame payload data" (RFC 6455 §7.4.1) is the precise code; 1002 is for
    /// breaking the framing rules.
    #[error("invalid compressed data")]
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code to fail the connection with: 1002, 1007, 1009 or the extension's code.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::TOO_BIG
            }
            ProtocolError::Extension(e) => e.code,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// An extension failed to transform a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (close code {code})")]
pub struct ExtensionError {
    /// Close code to fail the connection with (e.g. 1007 for corrupt data, 1009 for a bomb).
    pub code: CloseCode,
    /// A short lowercase description.
    pub reason: &'static str,
}

/// An application call was refused; nothing was queued.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A Close has been sent (or the connection failed): no more data frames.
    #[error("connection is closing")]
    Closing,
    /// The connection is closed.
    #[error("connection is closed")]
    Closed,
    /// A ping/pong payload over 125 bytes.
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// A close code that may not be sent.
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A close reason over 123 bytes.
    #[error("close reason over 123 bytes")]
    ReasonTooLong,
    /// `send` while a streamed (`send_fragment`) message is unfinished.
    #[error("a fragmented message is in progress")]
    FragmentInProgress,
    /// `send_fragment` with a kind other than the message in progress.
    #[error("fragment kind does not match the message in progress")]
    FragmentKindMismatch,
    /// Streamed text fragments that are not valid UTF-8.
    #[error("text fragments are not valid utf-8")]
    InvalidUtf8,
    /// Too many pings/pongs queued and not yet written.
    #[error("control frame queue is full")]
    QueueFull,
    /// The negotiated extension could not encode the message.
    #[error("extension error: {0}")]
    Extension(#[from] ExtensionError),
    /// The permessage-deflate compressor failed (an internal zlib error; nothing was queued).
    #[error("compression failed")]
    CompressionFailed,
}
