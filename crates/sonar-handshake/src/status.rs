//! HTTP status codes used by the handshake.

use core::fmt;

/// An HTTP status code (100..=999), an open newtype with constants for the codes the handshake uses.
///
/// ```
/// use sonar_handshake::StatusCode;
/// assert_eq!(StatusCode::UPGRADE_REQUIRED.as_u16(), 426);
/// assert_eq!(StatusCode::from_u16(404), Some(StatusCode::NOT_FOUND));
/// assert_eq!(StatusCode::NOT_FOUND.canonical_reason(), Some("Not Found"));
/// assert_eq!(StatusCode::from_u16(42), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCode(u16);

impl StatusCode {
    /// 101 Switching Protocols: the handshake succeeded.
    pub const SWITCHING_PROTOCOLS: Self = Self(101);
    /// 400 Bad Request: the upgrade request is malformed.
    pub const BAD_REQUEST: Self = Self(400);
    /// 401 Unauthorized (application-level rejection).
    pub const UNAUTHORIZED: Self = Self(401);
    /// 403 Forbidden (application-level rejection, e.g. a bad `Origin`).
    pub const FORBIDDEN: Self = Self(403);
    /// 404 Not Found (application-level rejection: no route for the path).
    pub const NOT_FOUND: Self = Self(404);
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Self = Self(405);
    /// 426 Upgrade Required: sent with `Sec-WebSocket-Version: 13` for an unsupported version.
    pub const UPGRADE_REQUIRED: Self = Self(426);
    /// 429 Too Many Requests.
    pub const TOO_MANY_REQUESTS: Self = Self(429);
    /// 431 Request Header Fields Too Large: head over the size or header-count limit.
    pub const REQUEST_HEADER_FIELDS_TOO_LARGE: Self = Self(431);
    /// 500 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Self = Self(500);
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Self = Self(503);

    /// A status code from its number, `None` outside 100..=999.
    pub const fn from_u16(code: u16) -> Option<Self> {
        if code >= 100 && code <= 999 {
            Some(Self(code))
        } else {
            None
        }
    }

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// The standard reason phrase, if this crate knows one.
    pub const fn canonical_reason(self) -> Option<&'static str> {
        Some(match self.0 {
            101 => "Switching Protocols",
            200 => "OK",
            301 => "Moved Permanently",
            302 => "Found",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            426 => "Upgrade Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => return None,
        })
    }
}

impl fmt::Debug for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatusCode({})", self.0)
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.canonical_reason() {
            Some(reason) => write!(f, "{} {}", self.0, reason),
            None => write!(f, "{}", self.0),
        }
    }
}

impl From<StatusCode> for u16 {
    fn from(code: StatusCode) -> u16 {
        code.0
    }
}
