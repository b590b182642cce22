//! Server side: decode and validate the upgrade request, encode the 101 or a rejection.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::deflate::{DeflateAnswer, DeflateConfig};
use crate::extensions::{self, ExtensionParams};
use crate::key::{Limits, WEBSOCKET_VERSION, accept_key, is_valid_key};
use crate::status::StatusCode;
use crate::util::{self, HeaderList, is_token, is_writable_extra_header, push_header};

/// A validated upgrade request: route on [`path`](Self::path), authorize on
/// [`header`](Self::header), then accept or reject it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    method: String,
    target: String,
    headers: HeaderList,
    host: String,
    key: String,
    version: u8,
    subprotocols: Vec<String>,
    extensions: Vec<ExtensionParams>,
}

impl Request {
    /// The method (always `GET` once validated).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: path and query.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path: the target up to `?`.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p)
    }

    /// The query after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The first value of a header, by case-insensitive name; values are raw bytes
    /// (they need not be UTF-8).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        util::first(&self.headers, name)
    }

    /// The first value of a header as text, if it is valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
            .and_then(|v| core::str::from_utf8(util::trim_ows(v)).ok())
    }

    /// Every value of a header, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        util::values(&self.headers, name)
    }

    /// All headers in order: original-case names, raw values.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The `Host` header value.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `Origin` header, if sent (browsers always send it; check it against CSRF).
    pub fn origin(&self) -> Option<&str> {
        self.header_str("origin")
    }

    /// The `Sec-WebSocket-Key` value (validated: base64 of 16 bytes).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Sec-WebSocket-Version` (always 13 once validated).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The subprotocols the client offered, in its order.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }

    /// The extensions the client offered, with their parameters.
    pub fn extensions(&self) -> &[ExtensionParams] {
        &self.extensions
    }

    /// Negotiates permessage-deflate (RFC 7692): the answer to the first acceptable offer,
    /// declining offers with unknown, repeated or invalid parameters (see
    /// [`DeflateConfig::negotiate`]). Pass it to [`AcceptOptions::with_deflate`] and hand
    /// its [`params`](DeflateAnswer::params) to the frame codec.
    pub fn negotiate_deflate(&self, config: &DeflateConfig) -> Option<DeflateAnswer> {
        config.negotiate(&self.extensions)
    }

    /// The first of `supported` (server preference order) that the client offered.
    pub fn select_subprotocol<'s>(&self, supported: &[&'s str]) -> Option<&'s str> {
        supported
            .iter()
            .copied()
            .find(|s| self.subprotocols.iter().any(|o| o == s))
    }

    /// The `Sec-WebSocket-Accept` value for this request.
    pub fn accept_key(&self) -> String {
        accept_key(self.key.as_bytes())
    }
}

/// Why an upgrade request is refused; each reason has a default HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The head is not valid HTTP/1.1 (including obs-fold continuation lines). 400.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The head did not end within [`Limits::max_head_bytes`]. 431.
    #[error("request head too large")]
    HeadTooLarge,
    /// More header fields than [`Limits::max_headers`]. 431.
    #[error("too many request headers")]
    TooManyHeaders,
    /// Not HTTP/1.1. 400.
    #[error("http/1.1 required")]
    HttpVersion,
    /// Not `GET`. 400.
    #[error("method must be GET")]
    Method,
    /// No `Host` header. 400.
    #[error("missing host header")]
    MissingHost,
    /// A header that must appear once appears more often. 400.
    #[error("duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// A header we interpret has a non-ASCII value. 400.
    #[error("non-ascii value in {0} header")]
    NotAscii(&'static str),
    /// `Upgrade` lacks the `websocket` token. 400.
    #[error("upgrade header does not contain websocket")]
    MissingUpgrade,
    /// `Connection` lacks the `upgrade` token. 400.
    #[error("connection header does not contain upgrade")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key`. 400.
    #[error("missing sec-websocket-key header")]
    MissingKey,
    /// `Sec-WebSocket-Key` does not base64-decode to exactly 16 bytes. 400.
    #[error("sec-websocket-key must be base64 of 16 bytes")]
    InvalidKey,
    /// `Sec-WebSocket-Version` missing or not 13. 426 with `Sec-WebSocket-Version: 13`.
    #[error("unsupported websocket version, 13 required")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Protocol` is not a list of tokens. 400.
    #[error("invalid sec-websocket-protocol header")]
    InvalidSubprotocols,
    /// `Sec-WebSocket-Extensions` does not parse. 400.
    #[error("invalid sec-websocket-extensions header")]
    InvalidExtensions,
    /// The request announces a body (`Transfer-Encoding`, `Content-Length` other than 0). 400.
    #[error("upgrade request must not have a body")]
    UnexpectedBody,
    /// Application: authentication required. 401.
    #[error("unauthorized")]
    Unauthorized,
    /// Application: refused, e.g. a bad `Origin`. 403.
    #[error("forbidden")]
    Forbidden,
    /// Application: no route for this path. 404.
    #[error("not found")]
    NotFound,
    /// Application: any other reason, sent as the body. 400 unless given another status.
    #[error("{0}")]
    Other(String),
}

impl RejectReason {
    /// The status sent for this reason by default.
    pub fn default_status(&self) -> StatusCode {
        match self {
            Self::HeadTooLarge | Self::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A refused handshake: the status to answer with, the typed reason and extra headers.
///
/// ```
/// use sonar_handshake::{Rejection, RejectReason, ServerHandshake, StatusCode};
/// let r = Rejection::new(StatusCode::NOT_FOUND, RejectReason::NotFound);
/// let mut out = Vec::new();
/// ServerHandshake::encode_reject(&r, &mut out);
/// assert_eq!(
///     out,
///     b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\
///       Connection: close\r\n\r\nnot found\n"
/// );
/// ```
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("handshake rejected with {status}: {reason}")]
pub struct Rejection {
    /// The HTTP status to answer with.
    pub status: StatusCode,
    /// Why.
    pub reason: RejectReason,
    headers: HeaderList,
}

impl Rejection {
    /// A rejection with an explicit status (for application-level 401/403/404...).
    pub fn new(status: StatusCode, reason: RejectReason) -> Self {
        Self {
            status,
            reason,
            headers: Vec::new(),
        }
    }

    /// 400 Bad Request, with `reason` as the body.
    ///
    /// ```
    /// use sonar_handshake::{Rejection, StatusCode};
    /// let r = Rejection::bad_request("missing room parameter");
    /// assert_eq!((r.status, r.body().as_str()), (StatusCode::BAD_REQUEST, "missing room parameter\n"));
    /// ```
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, RejectReason::Other(reason.into()))
    }

    /// 401 Unauthorized (add a `WWW-Authenticate` header with
    /// [`with_header`](Self::with_header) when the client can authenticate).
    pub fn unauthorized() -> Self {
        RejectReason::Unauthorized.into()
    }

    /// 403 Forbidden.
    pub fn forbidden() -> Self {
        RejectReason::Forbidden.into()
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        RejectReason::NotFound.into()
    }

    /// Adds a header to the response (e.g. `WWW-Authenticate` on a 401). Headers with a bad
    /// name or value, or that the rejection writes itself, are not written.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Extra headers.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The plain-text body: the reason and a newline.
    pub fn body(&self) -> String {
        let mut b = self.reason.to_string();
        b.push('\n');
        b
    }
}

/// Headers and body as text, not byte arrays.
///
/// ```
/// use sonar_handshake::Rejection;
/// let r = Rejection::unauthorized().with_header("WWW-Authenticate", "Bearer");
/// let debug = format!("{r:?}");
/// assert!(debug.contains(r#"{"WWW-Authenticate": "Bearer"}"#), "{debug}");
/// assert!(debug.contains(r#"body: "unauthorized\n""#), "{debug}");
/// ```
impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Headers<'a>(&'a [(String, Vec<u8>)]);
        impl fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
                    .finish()
            }
        }
        f.debug_struct("Rejection")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &Headers(&self.headers))
            .field("body", &self.body())
            .finish()
    }
}

impl From<RejectReason> for Rejection {
    fn from(reason: RejectReason) -> Self {
        Self::new(reason.default_status(), reason)
    }
}

/// What to put in the 101 besides the accept key.
///
/// ```
/// use sonar_handshake::AcceptOptions;
/// let opts = AcceptOptions::new().with_subprotocol("chat").with_header("Set-Cookie", "a=b");
/// assert_eq!(opts.subprotocol(), Some("chat"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceptOptions {
    subprotocol: Option<String>,
    extensions: Vec<ExtensionParams>,
    headers: HeaderList,
}

impl AcceptOptions {
    /// No subprotocol, no extensions, no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The chosen subprotocol (must be one the client offered, else it is not written).
    pub fn with_subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocol = Some(protocol.into());
        self
    }

    /// An accepted extension with its parameters (written only if the client offered its name).
    pub fn with_extension(mut self, extension: ExtensionParams) -> Self {
        self.extensions.push(extension);
        self
    }

    /// Accepts permessage-deflate with the answer of [`Request::negotiate_deflate`].
    ///
    /// ```
    /// use sonar_handshake::{AcceptOptions, DeflateConfig, ServerHandshake};
    /// let read = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    ///     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
    ///     Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    /// let hs = ServerHandshake::new();
    /// let (req, _) = hs.decode_request(read).unwrap().unwrap();
    /// let answer = req.negotiate_deflate(&DeflateConfig::default()).unwrap();
    /// let mut out = Vec::new();
    /// hs.encode_accept_with(&req, &AcceptOptions::new().with_deflate(&answer), &mut out);
    /// assert!(out.ends_with(b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n\r\n"));
    /// ```
    pub fn with_deflate(self, answer: &DeflateAnswer) -> Self {
        self.with_extension(answer.response.clone())
    }

    /// An extra header (e.g. `Set-Cookie`); bad or reserved ones are not written.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The chosen subprotocol.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }
}

/// The server side of the opening handshake: limits and subprotocol policy.
///
/// Feed the bytes read so far (accumulated) to [`decode_request`](Self::decode_request) until
/// it returns `Some` or a [`Rejection`]; inspect the [`Request`]; then write
/// [`encode_accept`](Self::encode_accept) or [`encode_reject`](Self::encode_reject). Bytes after
/// the head belong to the frame codec.
///
/// ```
/// use sonar_handshake::ServerHandshake;
/// let hs = ServerHandshake::new().with_subprotocols(["chat.v2", "chat"]);
/// let read = b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
///     Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\n\x81\x80";
/// assert!(hs.decode_request(&read[..20]).unwrap().is_none()); // incomplete
/// let (req, used) = hs.decode_request(read).unwrap().unwrap();
/// assert_eq!((req.path(), req.query()), ("/chat", Some("room=1")));
/// assert_eq!(&read[used..], b"\x81\x80");
/// let mut out = Vec::new();
/// hs.encode_accept(&req, hs.select_subprotocol(&req), &mut out);
/// assert!(out.ends_with(b"Sec-WebSocket-Protocol: chat\r\n\r\n"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ServerHandshake {
    limits: Limits,
    subprotocols: Vec<String>,
}

impl ServerHandshake {
    /// Default limits (8 KiB head, 64 headers), no subprotocols.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The subprotocols this server speaks, in preference order.
    pub fn with_subprotocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The first supported subprotocol (server preference order) that the client offered.
    pub fn select_subprotocol(&self, req: &Request) -> Option<&str> {
        self.subprotocols
            .iter()
            .find(|s| req.subprotocols.iter().any(|o| o == *s))
            .map(String::as_str)
    }

    /// Decodes and validates the request from the bytes read so far.
    ///
    /// `Ok(None)`: the head is incomplete (and still under the size limit); call again with more
    /// bytes appended. `Ok(Some((request, used)))`: the head took `buf[..used]`; `buf[used..]`
    /// are frames. `Err(rejection)`: answer with [`encode_reject`](Self::encode_reject) and close.
    pub fn decode_request(&self, buf: &[u8]) -> Result<Option<(Request, usize)>, Rejection> {
        let limits = self.limits;
        let window = buf.get(..limits.max_head_bytes).unwrap_or(buf);
        util::with_slots(limits.header_slots(), |slots| {
            let mut req = httparse::Request::new(slots);
            match req.parse(window) {
                Ok(httparse::Status::Complete(used)) => validate(
                    req.method.unwrap_or(""),
                    req.version == Some(1),
                    req.path.unwrap_or(""),
                    util::own_headers(req.headers),
                )
                .map(|r| Some((r, used))),
                Ok(httparse::Status::Partial) => {
                    if buf.len() >= limits.max_head_bytes {
                        Err(RejectReason::HeadTooLarge.into())
                    } else {
                        Ok(None)
                    }
                }
                Err(httparse::Error::TooManyHeaders) => Err(RejectReason::TooManyHeaders.into()),
                Err(e) => Err(RejectReason::Malformed(util::describe(e)).into()),
            }
        })
    }

    /// Appends the 101 for `req` with an optional subprotocol (written only if the client
    /// offered it) and no extensions.
    pub fn encode_accept(&self, req: &Request, subprotocol: Option<&str>, out: &mut Vec<u8>) {
        let mut opts = AcceptOptions::new();
        opts.subprotocol = subprotocol.map(String::from);
        self.encode_accept_with(req, &opts, out);
    }

    /// Appends the 101 for `req` with a subprotocol, accepted extensions and extra headers.
    /// A subprotocol or extension the client did not offer, and bad or reserved extra headers,
    /// are not written.
    pub fn encode_accept_with(&self, req: &Request, opts: &AcceptOptions, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
        accept_headers(req, opts, |name, value| push_header(out, name, value));
        out.extend_from_slice(b"\r\n");
    }

    /// Appends the rejection response: status line, `Sec-WebSocket-Version: 13` on a 426, extra
    /// headers, `Content-Type: text/plain`, `Content-Length`, `Connection: close`, and the body.
    pub fn encode_reject(rejection: &Rejection, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        util::push_decimal(out, usize::from(rejection.status.as_u16()));
        out.push(b' ');
        out.extend_from_slice(
            rejection
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .as_bytes(),
        );
        out.extend_from_slice(b"\r\n");
        for (name, value) in rejection.response_headers() {
            push_header(out, &name, &value);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(rejection.body().as_bytes());
    }
}

/// Calls `push` with each header of the 101, in order (shared by the byte encoder and the
/// `http` conversion).
pub(crate) fn accept_headers(
    req: &Request,
    opts: &AcceptOptions,
    mut push: impl FnMut(&str, &[u8]),
) {
    push("Upgrade", b"websocket");
    push("Connection", b"Upgrade");
    push("Sec-WebSocket-Accept", req.accept_key().as_bytes());
    if let Some(p) = &opts.subprotocol
        && is_token(p.as_bytes())
        && req.subprotocols.iter().any(|o| o == p)
    {
        push("Sec-WebSocket-Protocol", p.as_bytes());
    }
    if !opts.extensions.is_empty() {
        let offered: Vec<ExtensionParams> = opts
            .extensions
            .iter()
            .filter(|e| req.extensions.iter().any(|o| o.name() == e.name()))
            .cloned()
            .collect();
        let exts = extensions::write_list(&offered);
        if !exts.is_empty() {
            push("Sec-WebSocket-Extensions", exts.as_bytes());
        }
    }
    for (name, value) in &opts.headers {
        if is_writable_extra_header(name, value) {
            push(name, value);
        }
    }
}

impl Rejection {
    /// The headers of the rejection response, in order (shared with the `http` conversion).
    pub(crate) fn response_headers(&self) -> HeaderList {
        let mut h: HeaderList = Vec::new();
        if self.status == StatusCode::UPGRADE_REQUIRED {
            h.push((String::from("Sec-WebSocket-Version"), b"13".to_vec()));
        }
        for (name, value) in &self.headers {
            if is_writable_extra_header(name, value) && !name.eq_ignore_ascii_case("connection") {
                h.push((name.clone(), value.clone()));
            }
        }
        h.push((String::from("Content-Type"), b"text/plain".to_vec()));
        let mut len = Vec::new();
        util::push_decimal(&mut len, self.body().len());
        h.push((String::from("Content-Length"), len));
        h.push((String::from("Connection"), b"close".to_vec()));
        h
    }
}

/// Validates a parsed request head (shared by the byte decoder and the `http` conversion).
pub(crate) fn validate(
    method: &str,
    http11: bool,
    target: &str,
    headers: HeaderList,
) -> Result<Request, Rejection> {
    if !http11 {
        return Err(RejectReason::HttpVersion.into());
    }
    if method != "GET" {
        return Err(RejectReason::Method.into());
    }
    for name in ["host", "sec-websocket-key", "sec-websocket-version"] {
        if util::count(&headers, name) > 1 {
            return Err(RejectReason::DuplicateHeader(name).into());
        }
    }
    for name in [
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
    ] {
        if !util::all_ascii(&headers, name) {
            return Err(RejectReason::NotAscii(name).into());
        }
    }
    let host = match util::first(&headers, "host") {
        Some(h) => String::from_utf8_lossy(util::trim_ows(h)).into_owned(),
        None => return Err(RejectReason::MissingHost.into()),
    };
    if util::count(&headers, "transfer-encoding") > 0
        || util::values(&headers, "content-length").any(|v| util::trim_ows(v) != b"0")
    {
        return Err(RejectReason::UnexpectedBody.into());
    }
    if !util::list_contains(&headers, "upgrade", "websocket") {
        return Err(RejectReason::MissingUpgrade.into());
    }
    if !util::list_contains(&headers, "connection", "upgrade") {
        return Err(RejectReason::MissingConnectionUpgrade.into());
    }
    match util::first(&headers, "sec-websocket-version") {
        Some(v) if util::trim_ows(v) == b"13" => {}
        _ => return Err(RejectReason::UnsupportedVersion.into()),
    }
    let key = match util::first(&headers, "sec-websocket-key") {
        None => return Err(RejectReason::MissingKey.into()),
        Some(k) => util::trim_ows(k),
    };
    if !is_valid_key(key) {
        return Err(RejectReason::InvalidKey.into());
    }
    let key = String::from_utf8_lossy(key).into_owned();
    let mut subprotocols: Vec<String> = Vec::new();
    for p in util::values(&headers, "sec-websocket-protocol").flat_map(util::list_elements) {
        if !is_token(p) {
            return Err(RejectReason::InvalidSubprotocols.into());
        }
        subprotocols.push(String::from_utf8_lossy(p).into_owned());
    }
    let extensions = extensions::parse_values(util::values(&headers, "sec-websocket-extensions"))
        .map_err(|()| Rejection::from(RejectReason::InvalidExtensions))?;
    Ok(Request {
        method: String::from(method),
        target: String::from(target),
        headers,
        host,
        key,
        version: WEBSOCKET_VERSION,
        subprotocols,
        extensions,
    })
}
