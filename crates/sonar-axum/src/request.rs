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

/// True if `parts` asks for a WebSocket at all: HTTP/1.x with `websocket` in `Upgrade`, or
/// HTTP/2 with any `:protocol` of `websocket`. Such a request is then validated in full.
pub(crate) fn is_websocket_attempt(parts: &Parts) -> bool {
    if parts.version == Version::HTTP_2 {
        return parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    }
    parts
        .headers
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"websocket"))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// A small deterministic generator (xorshift64*), so failures replay.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }

        /// Bytes a header value may hold: tokens, separators, spaces, obs-text.
        fn value(&mut self) -> HeaderValue {
            const ALPHABET: &[u8] =
                b"websocket13 ,;=\"\tpermessage-deflate_client_max_window_bits\x80\xff";
            let len = (self.next() % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize])
                .collect();
            HeaderValue::from_bytes(&bytes).unwrap()
        }
    }

    fn parts(
        version: Version,
        method: Method,
        headers: http::HeaderMap,
        protocol: Option<&'static str>,
    ) -> Parts {
        let mut req = http::Request::new(());
        *req.version_mut() = version;
        *req.method_mut() = method;
        *req.uri_mut() = "https://example.com/ws".parse().unwrap();
        *req.headers_mut() = headers;
        if let Some(p) = protocol {
            req.extensions_mut()
                .insert(hyper::ext::Protocol::from_static(p));
        }
        req.into_parts().0
    }

    #[test]
    fn hostile_header_values_are_refused_with_handshake_statuses_never_a_panic() {
        let names = [
            "sec-websocket-version",
            "sec-websocket-protocol",
            "sec-websocket-extensions",
            "sec-websocket-key",
            "upgrade",
            "connection",
            "host",
            "content-length",
        ];
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for round in 0..5_000 {
            let mut headers = http::HeaderMap::new();
            if round % 2 == 0 {
                headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
            }
            for _ in 0..(g.next() % 6) {
                let name = http::HeaderName::from_static(g.pick(&names));
                headers.append(name, g.value());
            }
            let version = if round % 3 == 0 {
                Version::HTTP_11
            } else {
                Version::HTTP_2
            };
            let method = if g.next().is_multiple_of(4) {
                Method::GET
            } else {
                Method::CONNECT
            };
            let protocol = match g.next() % 3 {
                0 => None,
                1 => Some("websocket"),
                _ => Some("WebSocket"),
            };
            match check(&parts(version, method.clone(), headers.clone(), protocol)) {
                Ok((req, v)) => {
                    accepted += 1;
                    assert_eq!(v == HttpVersion::Http2, version == Version::HTTP_2);
                    assert_eq!(req.version(), 13);
                    let sent = headers.get_all("sec-websocket-version").iter().count();
                    assert_eq!(sent, 1, "exactly one version header: {headers:?}");
                    if v == HttpVersion::Http2 {
                        assert_eq!(method, Method::CONNECT);
                    }
                }
                Err(rejection) => {
                    let status = rejection.status().as_u16();
                    assert!(matches!(status, 400 | 426), "{rejection:?}");
                }
            }
        }
        assert!(
            accepted > 100,
            "the generator reaches acceptance ({accepted})"
        );
    }

    #[test]
    fn an_h2_websocket_needs_connect_the_websocket_protocol_and_version_13() {
        let mut headers = http::HeaderMap::new();
        headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
        headers.insert("sec-websocket-protocol", HeaderValue::from_static("a, b"));
        let ok = check(&parts(
            Version::HTTP_2,
            Method::CONNECT,
            headers.clone(),
            Some("websocket"),
        ));
        let (req, version) = ok.unwrap();
        assert_eq!(
            (version, req.subprotocols()),
            (HttpVersion::Http2, &["a".to_owned(), "b".to_owned()][..])
        );
        assert_eq!(req.host(), "example.com", "host from :authority");

        let reason = |p: Parts| check(&p).unwrap_err().reason().clone();
        assert_eq!(
            reason(parts(
                Version::HTTP_2,
                Method::GET,
                headers.clone(),
                Some("websocket")
            )),
            RejectionReason::MethodNotConnect
        );
        assert_eq!(
            reason(parts(
                Version::HTTP_2,
                Method::CONNECT,
                headers.clone(),
                None
            )),
            RejectionReason::ProtocolNotWebSocket
        );
        assert_eq!(
            reason(parts(
                Version::HTTP_2,
                Method::CONNECT,
                headers,
                Some("webtransport")
            )),
            RejectionReason::ProtocolNotWebSocket
        );
        assert_eq!(
            reason(parts(
                Version::HTTP_2,
                Method::CONNECT,
                http::HeaderMap::new(),
                Some("websocket")
            )),
            RejectionReason::Handshake(RejectReason::UnsupportedVersion)
        );
    }

    #[test]
    fn http_1_0_and_http_3_are_refused_like_sonars_handshake_does() {
        for version in [Version::HTTP_10, Version::HTTP_3] {
            let rejection =
                check(&parts(version, Method::GET, http::HeaderMap::new(), None)).unwrap_err();
            assert_eq!(
                rejection.reason(),
                &RejectionReason::Handshake(RejectReason::HttpVersion)
            );
            assert_eq!(rejection.status().as_u16(), 400);
        }
    }
}
