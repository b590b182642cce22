//! Client side: encode the upgrade request, decode and validate the 101.

use alloc::string::String;
use alloc::vec::Vec;

use crate::deflate::{DeflateConfig, DeflateError, DeflateParams, PERMESSAGE_DEFLATE};
use crate::extensions::{self, ExtensionOffer, ExtensionParams};
use crate::key::{Limits, accept_key, encode_key};
use crate::url::{self, UrlError, is_path_char, is_valid_ipv6, is_valid_path, is_valid_reg_name};
use crate::util::{self, HeaderList, is_token, is_writable_extra_header, push_header};

/// What the client asks for: target, subprotocols, extensions and extra headers.
///
/// ```
/// use sonar_handshake::ClientRequest;
/// let req = ClientRequest::from_url("wss://[::1]:8443/chat?room=1")?
///     .with_subprotocol("chat")
///     .with_header("Origin", "https://example.com");
/// assert_eq!((req.host(), req.port(), req.is_secure()), ("::1", 8443, true));
/// assert_eq!(req.host_header(), "[::1]:8443");
/// assert_eq!(req.path_and_query(), "/chat?room=1");
/// # Ok::<(), sonar_handshake::UrlError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    host: String,
    port: Option<u16>,
    secure: bool,
    path_and_query: String,
    subprotocols: Vec<String>,
    extensions: Vec<ExtensionOffer>,
    deflate: Option<DeflateConfig>,
    headers: HeaderList,
}

/// Why a [`ClientRequest`] cannot be written as given (see [`ClientRequest::validate`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The host is not a DNS name, IPv4 address or IPv6 literal.
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    /// The path or query has characters not allowed in a request target.
    #[error("invalid path or query {0:?}")]
    InvalidPath(String),
    /// A subprotocol is not a token, or repeats.
    #[error("invalid subprotocol {0:?}")]
    InvalidSubprotocol(String),
    /// An extension name or parameter is not writable.
    #[error("invalid extension {0:?}")]
    InvalidExtension(String),
    /// An extra header has a bad name or value, or names a header the handshake writes itself.
    #[error("invalid or reserved extra header {0:?}")]
    InvalidHeader(String),
}

impl ClientRequest {
    /// A plain `ws://` request for `host` (without brackets for IPv6) and a path with optional query.
    pub fn new(host: impl Into<String>, path_and_query: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: None,
            secure: false,
            path_and_query: path_and_query.into(),
            subprotocols: Vec::new(),
            extensions: Vec::new(),
            deflate: None,
            headers: Vec::new(),
        }
    }

    /// Parses a `ws://` or `wss://` URL: no userinfo, no fragment, IPv6 literals in brackets,
    /// default ports 80 and 443.
    pub fn from_url(url: &str) -> Result<Self, UrlError> {
        let p = url::parse(url)?;
        let mut req = Self::new(p.host, p.path_and_query).secure(p.secure);
        req.port = p.port;
        Ok(req)
    }

    /// Sets an explicit port (written in `Host` only when it is not the scheme's default).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// `wss` (`true`, default port 443) or `ws` (`false`, default port 80).
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Offers a subprotocol (`Sec-WebSocket-Protocol`), in preference order.
    pub fn with_subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Offers an extension (`Sec-WebSocket-Extensions`).
    pub fn with_extension(mut self, extension: ExtensionOffer) -> Self {
        self.extensions.push(extension);
        self
    }

    /// Offers permessage-deflate (RFC 7692) as `config` says ([`DeflateConfig::offer`]), after
    /// the other extensions; the server's answer is then checked and the agreement comes out
    /// as [`Accepted::deflate`]. A disabled config offers nothing.
    ///
    /// ```
    /// use sonar_handshake::{ClientHandshake, ClientRequest, DeflateConfig};
    /// let req = ClientRequest::new("example.com", "/").with_deflate(DeflateConfig::default());
    /// let mut head = Vec::new();
    /// ClientHandshake::new(req, [0; 16]).encode_request(&mut head);
    /// let head = String::from_utf8(head).unwrap();
    /// assert!(head.contains(
    ///     "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=12\r\n"
    /// ));
    /// ```
    pub fn with_deflate(mut self, config: DeflateConfig) -> Self {
        self.deflate = config.enabled.then_some(config);
        self
    }

    /// The permessage-deflate config offered, if any.
    pub fn deflate(&self) -> Option<&DeflateConfig> {
        self.deflate.as_ref()
    }

    /// Every extension offer written: [`extensions`](Self::extensions), then
    /// permessage-deflate if configured.
    fn all_offers(&self) -> Vec<ExtensionParams> {
        let mut all = self.extensions.clone();
        if let Some(d) = &self.deflate {
            all.push(d.offer());
        }
        all
    }

    /// Adds an extra header such as `Origin`, `Authorization` or `Cookie`.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The host, without IPv6 brackets (what a resolver and TLS SNI want).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to: the explicit one or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.secure { 443 } else { 80 })
    }

    /// The explicit port, if one was set.
    pub fn explicit_port(&self) -> Option<u16> {
        self.port
    }

    /// Whether this is `wss`.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The request target as given.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// Offered subprotocols.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }

    /// Offered extensions.
    pub fn extensions(&self) -> &[ExtensionOffer] {
        &self.extensions
    }

    /// Extra headers.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The `Host` header value: brackets around IPv6, port only when non-default.
    pub fn host_header(&self) -> String {
        let mut s = String::new();
        let host: String = self.host.chars().filter(|&c| is_host_char(c)).collect();
        if host.contains(':') && !host.starts_with('[') {
            s.push('[');
            s.push_str(&host);
            s.push(']');
        } else {
            s.push_str(&host);
        }
        let default = if self.secure { 443 } else { 80 };
        if let Some(port) = self.port
            && port != default
        {
            s.push(':');
            let mut digits = Vec::new();
            util::push_decimal(&mut digits, usize::from(port));
            s.extend(digits.iter().map(|&b| char::from(b)));
        }
        s
    }

    /// Checks that everything will be written as given. [`ClientHandshake::encode_request`]
    /// never writes CR/LF from these values: it percent-encodes bad path bytes and skips
    /// invalid subprotocols, extensions and headers; this method reports them instead.
    pub fn validate(&self) -> Result<(), RequestError> {
        let host_ok = is_valid_reg_name(&self.host)
            || is_valid_ipv6(&self.host)
            || self
                .host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(is_valid_ipv6);
        if !host_ok {
            return Err(RequestError::InvalidHost(self.host.clone()));
        }
        if !is_valid_path(&self.path_and_query) {
            return Err(RequestError::InvalidPath(self.path_and_query.clone()));
        }
        for (i, p) in self.subprotocols.iter().enumerate() {
            let repeated = self.subprotocols.iter().take(i).any(|q| q == p);
            if !is_token(p.as_bytes()) || repeated {
                return Err(RequestError::InvalidSubprotocol(p.clone()));
            }
        }
        if let Some(e) = self.extensions.iter().find(|e| !e.is_valid()) {
            return Err(RequestError::InvalidExtension(String::from(e.name())));
        }
        if let Some((n, _)) = self
            .headers
            .iter()
            .find(|(n, v)| !is_writable_extra_header(n, v))
        {
            return Err(RequestError::InvalidHeader(n.clone()));
        }
        Ok(())
    }

    fn write_target(&self, out: &mut Vec<u8>) {
        let pq = self.path_and_query.as_bytes();
        if !pq.starts_with(b"/") {
            out.push(b'/');
        }
        for &b in pq {
            if is_path_char(b) {
                out.push(b);
            } else {
                out.push(b'%');
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
}

const HEX: [u8; 16] = *b"0123456789ABCDEF";

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | ':' | '[' | ']')
}

/// The server's accepted answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// The subprotocol the server chose (one we offered), if any.
    pub subprotocol: Option<String>,
    /// The extensions the server accepted, with its parameters (each one we offered).
    pub extensions: Vec<ExtensionParams>,
    /// Every header of the 101, original-case names, raw values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The permessage-deflate agreement, when the request offered it with
    /// [`ClientRequest::with_deflate`] and the server accepted (already checked against the
    /// offer, RFC 7692 §5.1). Hand it to the frame codec.
    pub deflate: Option<DeflateParams>,
}

impl Accepted {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        util::first(&self.headers, name)
    }
}

/// Why the client refused the server's response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with a status other than 101.
    #[error("server rejected the upgrade with status {status} {reason}")]
    Rejected {
        /// The HTTP status (401, 404, 503...).
        status: u16,
        /// The reason phrase as sent (empty if it was not ASCII).
        reason: String,
        /// Every header of the response.
        headers: Vec<(String, Vec<u8>)>,
        /// The body bytes that followed the head in the buffer, bounded by
        /// `Content-Length` and [`Limits::max_body_prefix`].
        body_prefix: Vec<u8>,
    },
    /// The response head is not valid HTTP/1.1.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// The head did not end within [`Limits::max_head_bytes`].
    #[error("response head larger than {limit} bytes")]
    HeadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// More header fields than [`Limits::max_headers`].
    #[error("response has more than {limit} headers")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A 101 over something other than HTTP/1.1.
    #[error("101 response is not http/1.1")]
    HttpVersion,
    /// A header we interpret has a non-ASCII value.
    #[error("non-ascii value in {0} header")]
    NotAscii(&'static str),
    /// A header that must appear once appears more often.
    #[error("duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// `Upgrade` lacks the `websocket` token.
    #[error("upgrade header does not contain websocket")]
    MissingUpgrade,
    /// `Connection` lacks the `upgrade` token.
    #[error("connection header does not contain upgrade")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Accept`.
    #[error("missing sec-websocket-accept header")]
    MissingAccept,
    /// `Sec-WebSocket-Accept` does not match our key.
    #[error("sec-websocket-accept does not match the key")]
    AcceptMismatch,
    /// `Sec-WebSocket-Protocol` is not a single token.
    #[error("invalid sec-websocket-protocol header")]
    InvalidSubprotocol,
    /// The server chose a subprotocol we did not offer (or we offered none).
    #[error("server chose subprotocol {0:?} that was not offered")]
    UnexpectedSubprotocol(String),
    /// `Sec-WebSocket-Extensions` does not parse.
    #[error("invalid sec-websocket-extensions header")]
    InvalidExtensions,
    /// The server accepted an extension we did not offer.
    #[error("server accepted extension {0:?} that was not offered")]
    UnexpectedExtension(String),
    /// The server accepted the same extension twice.
    #[error("server accepted extension {0:?} twice")]
    DuplicateExtension(String),
    /// The server's permessage-deflate answer is not one our offer allows (RFC 7692 §5.1:
    /// the client must fail the connection).
    #[error("invalid permessage-deflate answer: {0}")]
    Deflate(#[from] DeflateError),
    /// `decode_response` was called after it had already returned an answer.
    #[error("handshake already completed")]
    AlreadyComplete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Done,
    Failed(ClientError),
}

/// The client side of the opening handshake.
///
/// Write the request with [`encode_request`](Self::encode_request), then feed the bytes read
/// so far (accumulated) to [`decode_response`](Self::decode_response) until it returns
/// `Some`; the bytes after the head belong to the frame codec.
///
/// ```
/// use sonar_handshake::{ClientHandshake, ClientRequest};
/// let mut hs = ClientHandshake::new(ClientRequest::new("example.com", "/chat"), *b"the sample nonce");
/// let mut out = Vec::new();
/// hs.encode_request(&mut out);
/// assert!(out.starts_with(b"GET /chat HTTP/1.1\r\nHost: example.com\r\n"));
///
/// let read = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///     Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x89\x02hi";
/// let (accepted, used) = hs.decode_response(read)?.expect("complete head");
/// assert_eq!(accepted.subprotocol, None);
/// assert_eq!(&read[used..], b"\x89\x02hi"); // the first frame, for the codec
/// # Ok::<(), sonar_handshake::ClientError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    request: ClientRequest,
    key: String,
    expected_accept: String,
    limits: Limits,
    state: State,
}

impl ClientHandshake {
    /// A handshake for `request`; `key` is 16 bytes of caller randomness (RFC 6455 §4.1 wants
    /// them freshly random per connection), sent base64-encoded as `Sec-WebSocket-Key`.
    pub fn new(request: ClientRequest, key: [u8; 16]) -> Self {
        let key = encode_key(&key);
        let expected_accept = accept_key(key.as_bytes());
        Self {
            request,
            key,
            expected_accept,
            limits: Limits::default(),
            state: State::Waiting,
        }
    }

    /// Like [`new`](Self::new), but refuses a request that [`ClientRequest::validate`] rejects.
    pub fn try_new(request: ClientRequest, key: [u8; 16]) -> Result<Self, RequestError> {
        request.validate()?;
        Ok(Self::new(request, key))
    }

    /// Replaces the response limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The request being made.
    pub fn request(&self) -> &ClientRequest {
        &self.request
    }

    /// The `Sec-WebSocket-Key` value sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Sec-WebSocket-Accept` value the server must answer.
    pub fn expected_accept(&self) -> &str {
        &self.expected_accept
    }

    /// Appends the upgrade request head to `out`.
    pub fn encode_request(&self, out: &mut Vec<u8>) {
        let r = &self.request;
        out.extend_from_slice(b"GET ");
        r.write_target(out);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        push_header(out, "Host", r.host_header().as_bytes());
        push_header(out, "Upgrade", b"websocket");
        push_header(out, "Connection", b"Upgrade");
        push_header(out, "Sec-WebSocket-Key", self.key.as_bytes());
        push_header(out, "Sec-WebSocket-Version", b"13");
        let mut protocols = String::new();
        for (i, p) in r.subprotocols.iter().enumerate() {
            if is_token(p.as_bytes()) && !r.subprotocols.iter().take(i).any(|q| q == p) {
                if !protocols.is_empty() {
                    protocols.push_str(", ");
                }
                protocols.push_str(p);
            }
        }
        if !protocols.is_empty() {
            push_header(out, "Sec-WebSocket-Protocol", protocols.as_bytes());
        }
        let exts = extensions::write_list(&r.all_offers());
        if !exts.is_empty() {
            push_header(out, "Sec-WebSocket-Extensions", exts.as_bytes());
        }
        for (name, value) in &r.headers {
            if is_writable_extra_header(name, value) {
                push_header(out, name, value);
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Decodes the response from the bytes read so far.
    ///
    /// `Ok(None)`: the head is not complete yet; call again with more bytes appended.
    /// `Ok(Some((accepted, used)))`: the handshake succeeded and the head took `buf[..used]`;
    /// `buf[used..]` are frames for the codec. Errors are sticky: later calls return the same one.
    pub fn decode_response(
        &mut self,
        buf: &[u8],
    ) -> Result<Option<(Accepted, usize)>, ClientError> {
        match &self.state {
            State::Waiting => {}
            State::Done => return Err(ClientError::AlreadyComplete),
            State::Failed(e) => return Err(e.clone()),
        }
        let result = self.decode(buf);
        match &result {
            Ok(None) => {}
            Ok(Some(_)) => self.state = State::Done,
            Err(e) => self.state = State::Failed(e.clone()),
        }
        result
    }

    fn decode(&self, buf: &[u8]) -> Result<Option<(Accepted, usize)>, ClientError> {
        let limits = self.limits;
        let window = buf.get(..limits.max_head_bytes).unwrap_or(buf);
        util::with_slots(limits.header_slots(), |slots| {
            let mut resp = httparse::Response::new(slots);
            match resp.parse(window) {
                Ok(httparse::Status::Complete(used)) => {
                    let headers = util::own_headers(resp.headers);
                    let status = resp.code.unwrap_or(0);
                    let reason = String::from(resp.reason.unwrap_or(""));
                    let version = resp.version;
                    self.check(buf, used, status, reason, version, headers)
                        .map(|a| Some((a, used)))
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() >= limits.max_head_bytes {
                        Err(ClientError::HeadTooLarge {
                            limit: limits.max_head_bytes,
                        })
                    } else {
                        Ok(None)
                    }
                }
                Err(httparse::Error::TooManyHeaders) => Err(ClientError::TooManyHeaders {
                    limit: limits.header_slots(),
                }),
                Err(e) => Err(ClientError::Malformed(util::describe(e))),
            }
        })
    }

    fn check(
        &self,
        buf: &[u8],
        used: usize,
        status: u16,
        reason: String,
        version: Option<u8>,
        headers: HeaderList,
    ) -> Result<Accepted, ClientError> {
        if status != 101 {
            let rest = buf.get(used..).unwrap_or(&[]);
            let mut keep = rest.len().min(self.limits.max_body_prefix);
            if let Some(len) = util::first(&headers, "content-length")
                .and_then(|v| core::str::from_utf8(util::trim_ows(v)).ok())
                .and_then(|v| v.parse::<usize>().ok())
            {
                keep = keep.min(len);
            }
            let body_prefix = rest.get(..keep).unwrap_or(&[]).to_vec();
            return Err(ClientError::Rejected {
                status,
                reason,
                headers,
                body_prefix,
            });
        }
        if version != Some(1) {
            return Err(ClientError::HttpVersion);
        }
        for name in [
            "upgrade",
            "connection",
            "sec-websocket-accept",
            "sec-websocket-protocol",
            "sec-websocket-extensions",
        ] {
            if !util::all_ascii(&headers, name) {
                return Err(ClientError::NotAscii(name));
            }
        }
        if !util::list_contains(&headers, "upgrade", "websocket") {
            return Err(ClientError::MissingUpgrade);
        }
        if !util::list_contains(&headers, "connection", "upgrade") {
            return Err(ClientError::MissingConnectionUpgrade);
        }
        let accept = util::single(&headers, "sec-websocket-accept")
            .map_err(|()| ClientError::DuplicateHeader("sec-websocket-accept"))?
            .ok_or(ClientError::MissingAccept)?;
        if util::trim_ows(accept) != self.expected_accept.as_bytes() {
            return Err(ClientError::AcceptMismatch);
        }
        let subprotocol = match util::single(&headers, "sec-websocket-protocol")
            .map_err(|()| ClientError::DuplicateHeader("sec-websocket-protocol"))?
        {
            None => None,
            Some(v) => {
                let v = util::trim_ows(v);
                if !is_token(v) {
                    return Err(ClientError::InvalidSubprotocol);
                }
                let chosen = String::from_utf8_lossy(v).into_owned();
                if !self.request.subprotocols.contains(&chosen) {
                    return Err(ClientError::UnexpectedSubprotocol(chosen));
                }
                Some(chosen)
            }
        };
        let extensions =
            extensions::parse_values(util::values(&headers, "sec-websocket-extensions"))
                .map_err(|()| ClientError::InvalidExtensions)?;
        let offered = self.request.all_offers();
        let mut deflate = None;
        for (i, e) in extensions.iter().enumerate() {
            if !offered.iter().any(|o| o.name() == e.name()) {
                return Err(ClientError::UnexpectedExtension(String::from(e.name())));
            }
            if extensions.iter().take(i).any(|p| p.name() == e.name()) {
                return Err(ClientError::DuplicateExtension(String::from(e.name())));
            }
            if let Some(config) = &self.request.deflate
                && e.name() == PERMESSAGE_DEFLATE
            {
                deflate = Some(config.accept_response(e)?);
            }
        }
        Ok(Accepted {
            subprotocol,
            extensions,
            headers,
            deflate,
        })
    }
}
