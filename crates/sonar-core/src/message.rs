//! Messages, events and connection states.

use bytes::Bytes;

use crate::close::CloseFrame;
use crate::utf8::Utf8Bytes;

/// A complete data message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// A text message (UTF-8 checked once, no copy).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Message::Text(text.into())
    }
    /// A binary message.
    pub fn binary(payload: impl Into<Bytes>) -> Self {
        Message::Binary(payload.into())
    }
    /// The kind of message.
    pub fn kind(&self) -> DataKind {
        match self {
            Message::Text(_) => DataKind::Text,
            Message::Binary(_) => DataKind::Binary,
        }
    }
    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }
    /// Unwraps the payload bytes.
    pub fn into_payload(self) -> Bytes {
        match self {
            Message::Text(t) => t.into_bytes(),
            Message::Binary(b) => b,
        }
    }
}

impl Message {
    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }
    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Message::Binary(_))
    }
    /// The text of a text message (`None` for a binary one).
    ///
    /// ```
    /// use sonar_core::Message;
    /// assert_eq!(Message::from("hi").as_text(), Some("hi"));
    /// assert_eq!(Message::from(vec![1u8, 2]).as_text(), None);
    /// ```
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t.as_str()),
            Message::Binary(_) => None,
        }
    }
    /// The text of a text message, without a copy (`None` for a binary one).
    pub fn into_text(self) -> Option<Utf8Bytes> {
        match self {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
        }
    }
    /// The payload bytes of either kind, without a copy (the same as
    /// [`into_payload`](Self::into_payload)).
    pub fn into_data(self) -> Bytes {
        self.into_payload()
    }
}

/// A text message: `ws.send("hello")`.
impl From<&'static str> for Message {
    fn from(s: &'static str) -> Self {
        Message::Text(Utf8Bytes::from_static(s))
    }
}

/// A text message: `ws.send(format!("user{id} joined"))`.
impl From<alloc::string::String> for Message {
    fn from(s: alloc::string::String) -> Self {
        Message::Text(Utf8Bytes::from(s))
    }
}

/// A text message from already-checked text.
impl From<Utf8Bytes> for Message {
    fn from(text: Utf8Bytes) -> Self {
        Message::Text(text)
    }
}

/// A binary message.
impl From<alloc::vec::Vec<u8>> for Message {
    fn from(data: alloc::vec::Vec<u8>) -> Self {
        Message::Binary(Bytes::from(data))
    }
}

/// A binary message (no copy).
impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Message::Binary(data)
    }
}

/// A binary message (no copy).
impl From<&'static [u8]> for Message {
    fn from(data: &'static [u8]) -> Self {
        Message::Binary(Bytes::from_static(data))
    }
}

/// The kind of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// Text (opcode 0x1).
    Text,
    /// Binary (opcode 0x2).
    Binary,
}

/// Something the driver or the application must learn about; see
/// [`Connection::poll_event`](crate::Connection::poll_event).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete data message.
    Message(Message),
    /// A received Ping (reported even when auto-pong answers it), in wire order.
    Ping(Bytes),
    /// A received Pong (solicited or not), in wire order; hand it to keepalive.
    Pong(Bytes),
    /// The last byte of a Ping frame we queued left through
    /// [`Outbound::advance`](crate::Outbound).
    PingSent(Bytes),
    /// The peer's Close (`None` = empty Close; the close code is then 1005).
    CloseReceived(Option<CloseFrame>),
    /// The driver must now shut the transport down and stop calling the connection.
    ///
    /// Server: right after its Close (reply) is fully written. Client: at the server's EOF
    /// or when the close timeout expires. Also after the close timeout in either role.
    CloseTransport,
}

/// The connection state (RFC 6455 §7.1.3 / §4.1 naming).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Data can flow both ways.
    Open,
    /// A Close was sent (queued) and/or received.
    Closing {
        /// We queued a Close (ours, our reply, or the Close of a failed connection).
        sent: bool,
        /// We received the peer's Close.
        received: bool,
    },
    /// [`Event::CloseTransport`] was emitted; nothing more happens.
    Closed,
}
