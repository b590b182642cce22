//! Close codes and Close frame bodies (RFC 6455 §5.5.1, §7.4).

use core::fmt;
use core::num::NonZeroU16;

use crate::utf8::Utf8Bytes;

/// A WebSocket close status code (RFC 6455 §7.4).
///
/// An open newtype: peers may send codes this crate has never heard of, so any non-zero
/// `u16` can be represented. Use [`CloseCode::is_sendable`] and [`CloseCode::is_valid_received`]
/// for the wire rules.
///
/// ```
/// use sonar_core::CloseCode;
/// assert_eq!(CloseCode::NORMAL.as_u16(), 1000);
/// assert!(CloseCode::new(4000).unwrap().is_sendable());
/// assert!(!CloseCode::NO_STATUS_RECEIVED.is_sendable());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(NonZeroU16);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $v:literal;)*) => {
        impl CloseCode {
            $(
                $(#[$doc])*
                pub const $name: CloseCode = match NonZeroU16::new($v) {
                    Some(v) => CloseCode(v),
                    None => CloseCode(NonZeroU16::MIN),
                };
            )*
        }
    };
}

codes! {
    /// 1000: normal closure.
    NORMAL = 1000;
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    GOING_AWAY = 1001;
    /// 1002: protocol error.
    PROTOCOL_ERROR = 1002;
    /// 1003: a data type the endpoint cannot accept.
    UNSUPPORTED = 1003;
    /// 1005: no status code was present (reporting only, never on the wire).
    NO_STATUS_RECEIVED = 1005;
    /// 1006: closed without a Close frame (reporting only, never on the wire).
    ABNORMAL = 1006;
    /// 1007: payload data inconsistent with the message type (e.g. invalid UTF-8).
    INVALID_PAYLOAD = 1007;
    /// 1008: policy violation.
    POLICY = 1008;
    /// 1009: a message too big to process.
    TOO_BIG = 1009;
    /// 1010: the client expected an extension the server did not negotiate.
    MANDATORY_EXT = 1010;
    /// 1011: an unexpected condition (internal error).
    INTERNAL = 1011;
    /// 1012: service restart (IANA registry; accepted).
    SERVICE_RESTART = 1012;
    /// 1013: try again later (IANA registry; accepted).
    TRY_AGAIN_LATER = 1013;
    /// 1014: bad gateway (IANA registry; accepted).
    BAD_GATEWAY = 1014;
}

impl CloseCode {
    /// Wraps a raw code; `None` for 0.
    pub const fn new(code: u16) -> Option<Self> {
        match NonZeroU16::new(code) {
            Some(v) => Some(CloseCode(v)),
            None => None,
        }
    }

    /// The numeric value.
    pub const fn as_u16(self) -> u16 {
        self.0.get()
    }

    /// Whether this code may appear in a Close frame on the wire:
    /// 1000-1003, 1007-1014 and 3000-4999.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0.get(), 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether a received Close with this code is acceptable. Same set as
    /// [`CloseCode::is_sendable`]; anything else is answered with 1002.
    pub const fn is_valid_received(self) -> bool {
        self.is_sendable()
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.as_u16()
    }
}

/// The body of a Close frame that carries a status code.
///
/// An empty Close frame (no code) is represented as `None` wherever a `CloseFrame` is optional.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason (at most 123 bytes when sent).
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// Maximum length of a reason in bytes (125 minus the 2-byte code).
    pub const MAX_REASON_LEN: usize = 123;

    /// A Close frame with a code and an empty reason.
    pub const fn new(code: CloseCode) -> Self {
        CloseFrame {
            code,
            reason: Utf8Bytes::from_static(""),
        }
    }

    /// A Close frame with a code and a reason.
    pub fn with_reason(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Self {
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }
}
