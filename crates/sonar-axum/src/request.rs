//! Validation of the upgrade request, HTTP/1.1 (RFC 6455 §4.2.1) and HTTP/2 extended
//! CONNECT (RFC 8441 §4-5). Both end in one sonar [`UpgradeRequest`], so subprotocol and
//! extension negotiation are the same code for both versions.

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Version};
use sonar_tokio::{RejectReason, UpgradeRequest};

use crate::rejection::{RejectionReason, WebSocketUpgradeRejection};

/// The HTTP version a WebSocket arrived over.
///
/// ```
/// use sonar_axum::HttpVersion;
/// assert_eq!(HttpVersion::Http2.to_string(), "HTTP/2");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpVersion {
    /// An HTTP/1.1 `GET` with `Upgrade: websocket`, answered with `101 Switching Protocols`;
    /// the WebSocket has the TCP (or TLS) connection to itself.
    Http11,
    /// An HTTP/2 extended `CONNECT` with `:protocol` = `websocket` (RFC 8441), answered with
    /// `200 OK`; the WebSocket is one stream of a shared HTTP/2 connection.
    Http2,
}

impl std::fmt::Display for HttpVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http11 => "HTTP/1.1",
            Self::Http2 => "HTTP/2",
        })
    }
}

/// A key that satisfies the HTTP/1.1 checks in the HTTP/2 view of a request; RFC 8441 has
/// no key, and its accept value is never sent.
const H2_PLACEHOLDER_KEY: HeaderValue = HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA==");

/// Validates `parts` as a WebSocket upgrade request of its HTTP version.
pub(crate) fn check(
    parts: &Parts,
) -> Result<(UpgradeRequest, HttpVersion), WebSocketUpgradeRejection> {
    if parts.version == Version::HTTP_2 {
        check_http2(parts).map(|req| (req, HttpVersion::Http2))
    } else {
        // HTTP/1.0 and HTTP/3 fail here with sonar's `HttpVersion` reason (400).
        let view = http_request(
            parts,
            parts.method.clone(),
            parts.version,
            parts.headers.clone(),
        );
        let req = UpgradeRequest::try_from(&view)?;
        Ok((req, HttpVersion::Http11))
    }
}

/// RFC 8441 §4-5: `CONNECT` with `:protocol` = `websocket` and `Sec-WebSocket-Version: 13`;
/// no `Upgrade`, `Connection` or key. The rest (version 13, subprotocol tokens, extension
/// syntax, a host from `:authority`, no body) is checked by sonar's HTTP/1.1 validator on a
/// view of the request with the HTTP/1.1-only fields filled in.
fn check_http2(parts: &Parts) -> Result<UpgradeRequest, WebSocketUpgradeRejection> {
    if parts.method != Method::CONNECT {
        return Err(RejectionReason::MethodNotConnect.into());
    }
    let is_websocket = parts
        .extensions
        .get::<hyper::ext::Protocol>()
        .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    if !is_websocket {
        return Err(RejectionReason::ProtocolNotWebSocket.into());
    }
    let mut headers = parts.headers.clone();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_KEY, H2_PLACEHOLDER_KEY);
    let view = http_request(parts, Method::GET, Version::HTTP_11, headers);
    UpgradeRequest::try_from(&view).map_err(|rejection| {
        // The view always has the fields filled in above; anything else is the client's.
        debug_assert!(!matches!(
            rejection.reason,
            RejectReason::MissingUpgrade | RejectReason::MissingKey | RejectReason::HttpVersion
        ));
        rejection.into()
    })
}

fn http_request(
    parts: &Parts,
    method: Method,
    version: Version,
    headers: http::HeaderMap,
) -> http::Request<()> {
    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    req
}
