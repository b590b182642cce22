//! Server side: request corpus (good and bad), exact rejection bytes, limits, incremental decode,
//! leftover bytes at every split offset (keepalive-spec C-24).

use sonar_handshake::{
    AcceptOptions, ExtensionParams, Limits, RejectReason, Rejection, Request, ServerHandshake,
    StatusCode,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The RFC 6455 §1.2 request, with `extra` header lines inserted before the blank line.
fn request_with(extra: &str) -> Vec<u8> {
    format!(
        "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nOrigin: http://example.com\r\n\
         Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A request built from explicit header lines (after the request line).
fn raw(request_line: &str, headers: &[&str]) -> Vec<u8> {
    let mut s = format!("{request_line}\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

const BASE: [&str; 5] = [
    "Host: example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

/// `BASE` with header `skip` (by prefix) removed and `add` appended.
fn headers_except<'a>(skip: &str, add: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&'a str> = BASE
        .iter()
        .copied()
        .filter(|h| skip.is_empty() || !h.starts_with(skip))
        .collect();
    v.extend_from_slice(add);
    v
}

fn decode(buf: &[u8]) -> Result<Option<(Request, usize)>, Rejection> {
    ServerHandshake::new().decode_request(buf)
}

fn reject_bytes(r: &Rejection) -> Vec<u8> {
    let mut out = Vec::new();
    ServerHandshake::encode_reject(r, &mut out);
    out
}

fn expected_reject(status_line: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status_line}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn rfc_request_is_accepted_with_exact_101() {
    let buf = request_with("Sec-WebSocket-Protocol: chat, superchat\r\n");
    let (req, used) = decode(&buf).unwrap().unwrap();
    assert_eq!(used, buf.len());
    assert_eq!(req.method(), "GET");
    assert_eq!(req.path(), "/chat");
    assert_eq!(req.query(), Some("room=1"));
    assert_eq!(req.target(), "/chat?room=1");
    assert_eq!(req.host(), "server.example.com");
    assert_eq!(req.origin(), Some("http://example.com"));
    assert_eq!(req.key(), KEY);
    assert_eq!(req.version(), 13);
    assert_eq!(req.subprotocols(), ["chat", "superchat"]);
    assert_eq!(req.header("ORIGIN"), Some(&b"http://example.com"[..]));
    assert_eq!(req.header("x-missing"), None);
    assert_eq!(req.accept_key(), ACCEPT);

    let hs = ServerHandshake::new().with_subprotocols(["superchat", "chat"]);
    assert_eq!(hs.select_subprotocol(&req), Some("superchat"));
    assert_eq!(req.select_subprotocol(&["x", "chat"]), Some("chat"));
    let mut out = Vec::new();
    hs.encode_accept(&req, hs.select_subprotocol(&req), &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: superchat\r\n\r\n"
        )
    );
}

#[test]
fn accept_without_subprotocol_and_with_unoffered_one() {
    let buf = request_with("");
    let (req, _) = decode(&buf).unwrap().unwrap();
    let expected = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
    );
    let hs = ServerHandshake::new().with_subprotocols(["chat"]);
    assert_eq!(hs.select_subprotocol(&req), None);
    for sub in [None, Some("chat"), Some("bad\r\nX: y")] {
        let mut out = Vec::new();
        hs.encode_accept(&req, sub, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{sub:?}");
    }
}

#[test]
fn accept_with_extensions_and_headers() {
    let buf = request_with(
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-other\r\n",
    );
    let (req, _) = decode(&buf).unwrap().unwrap();
    assert_eq!(req.extensions().len(), 2);
    assert_eq!(req.extensions()[0].name(), "permessage-deflate");
    assert_eq!(
        req.extensions()[0].param("client_max_window_bits"),
        Some(None)
    );
    let opts = AcceptOptions::new()
        .with_extension(
            ExtensionParams::new("permessage-deflate")
                .with_param("server_no_context_takeover", None),
        )
        .with_extension(ExtensionParams::new("x-not-offered"))
        .with_header("Set-Cookie", "id=1")
        .with_header("Sec-WebSocket-Accept", "forged")
        .with_header("X-Bad", "a\r\nInjected: 1");
    let mut out = Vec::new();
    ServerHandshake::new().encode_accept_with(&req, &opts, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\
             Set-Cookie: id=1\r\n\r\n"
        )
    );
}

#[test]
fn good_variants() {
    let cases: Vec<Vec<u8>> = vec![
        // Connection as a token list, any case.
        raw(
            "GET / HTTP/1.1",
            &headers_except("Connection", &["Connection: keep-alive, Upgrade"]),
        ),
        raw(
            "GET / HTTP/1.1",
            &headers_except(
                "Connection",
                &["connection: keep-alive", "CONNECTION: UPGRADE"],
            ),
        ),
        raw(
            "GET / HTTP/1.1",
            &headers_except("Upgrade", &["upgrade: h2c, WebSocket"]),
        ),
        // Header names are case-insensitive, values trimmed.
        raw(
            "GET /a HTTP/1.1",
            &[
                "host: example.com",
                "UPGRADE: websocket",
                "connection:Upgrade",
                "sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  ",
                "SEC-WEBSOCKET-VERSION: 13",
            ],
        ),
        // Non-UTF-8 values of headers we do not interpret are kept as bytes.
        raw(
            "GET / HTTP/1.1",
            &headers_except("", &[])
                .into_iter()
                .chain(["Content-Length: 0"])
                .collect::<Vec<_>>(),
        ),
    ];
    for buf in &cases {
        let (req, used) = decode(buf)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(buf)))
            .unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(req.key(), KEY);
    }
    let mut buf = raw("GET / HTTP/1.1", &BASE);
    buf.truncate(buf.len() - 2);
    buf.extend_from_slice(b"X-Name: caf\xe9 \xff\r\n\r\n");
    let (req, _) = decode(&buf).unwrap().unwrap();
    assert_eq!(req.header("x-name"), Some(&b"caf\xe9 \xff"[..]));
    assert_eq!(req.header_str("x-name"), None);
}

/// Every bad request: the exact reason, status, and response bytes.
#[test]
fn bad_request_corpus() {
    let long_value = format!("X-Long: {}", "a".repeat(9000));
    let cases: Vec<(Vec<u8>, RejectReason)> = vec![
        (
            raw("GET / HTTP/1.1", &headers_except("Sec-WebSocket-Key", &[])),
            RejectReason::MissingKey,
        ),
        (
            // 15 bytes.
            raw(
                "GET / HTTP/1.1",
                &headers_except(
                    "Sec-WebSocket-Key",
                    &["Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2Rl"],
                ),
            ),
            RejectReason::InvalidKey,
        ),
        (
            raw(
                "GET / HTTP/1.1",
                &headers_except(
                    "Sec-WebSocket-Key",
                    &["Sec-WebSocket-Key: not base64 at all!!!"],
                ),
            ),
            RejectReason::InvalidKey,
        ),
        (raw("POST / HTTP/1.1", &BASE), RejectReason::Method),
        (raw("get / HTTP/1.1", &BASE), RejectReason::Method),
        (raw("GET / HTTP/1.0", &BASE), RejectReason::HttpVersion),
        (
            raw("GET / HTTP/1.1", &headers_except("Host", &[])),
            RejectReason::MissingHost,
        ),
        (
            raw(
                "GET / HTTP/1.1",
                &headers_except("", &["Host: other.example"]),
            ),
            RejectReason::DuplicateHeader("host"),
        ),
        (
            raw(
                "GET / HTTP/1.1",
                &headers_except("", &["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]),
            ),
            RejectReason::DuplicateHeader("sec-websocket-key"),
        ),
        (
            raw(
                "GET / HTTP/1.1",
                &headers_except("", &["sec-websocket-version: 13"]),
            ),
            RejectReason::DuplicateHeader("sec-websocket-version"),
        ),
        (
            raw("GET / HTTP/1.1", &headers_except("Upgrade", &[])),
            RejectReason::MissingUpgrade,
        ),
        (
            raw(
                "GET / HTTP/1.1",
                &headers_except("Upgrade", &["Upgrade: websocket2"]),
            ),
            RejectReason::MissingUpgrade,
        ),
        (
            raw("GET / HTTP/1.1", &headers_except("Connection", &[])),
            RejectReason::MissingConnectionUpgrade,
        ),
        (
            raw(
                "GET / HTTP/1.1",
                &headers_except("Connection", &["Connection: keep-alive"]),
            ),
            RejectReason::MissingConnectionUpgrade,
        ),
        (
            raw(
                "GET / HTTP/1.1",
                &headers_except("", &["Sec-WebSocket-Protocol: chat, bad token"]),
            ),
            RejectReason::InvalidSubprotocols,
        ),
        (
            raw(
                "GET / HTTP/1.1",
                &headers_except("", &["Sec-WebSocket-Extensions: a; =1"]),
            ),
            RejectReason::InvalidExtensions,
        ),
        (
            raw(
                "GET / HTTP/1.1",
                &headers_except("", &["Content-Length: 5"]),
            ),
            RejectReason::UnexpectedBody,
        ),
        (
            raw(
                "GET / HTTP/1.1",
                &headers_except("", &["Transfer-Encoding: chunked"]),
            ),
            RejectReason::UnexpectedBody,
        ),
        (
            // obs-fold: a continuation line.
            raw(
                "GET / HTTP/1.1",
                &headers_except("", &["X-Folded: a", " b"]),
            ),
            RejectReason::Malformed("invalid header name"),
        ),
        (
            raw("GET / HTTP/1.1", &headers_except("", &["Bad Name: x"])),
            RejectReason::Malformed("invalid header name"),
        ),
        (
            raw("GET / HTTP/2.0", &BASE),
            RejectReason::Malformed("invalid http version"),
        ),
        (
            raw(
                "GET / HTTP/1.1",
                &headers_except("", &[long_value.as_str()]),
            ),
            RejectReason::HeadTooLarge,
        ),
    ];
    for (buf, reason) in cases {
        let got = decode(&buf).expect_err(&String::from_utf8_lossy(&buf));
        assert_eq!(got.reason, reason, "{}", String::from_utf8_lossy(&buf));
        assert_eq!(got.status, reason.default_status());
        let expected_status = if reason == RejectReason::HeadTooLarge {
            "431 Request Header Fields Too Large"
        } else {
            "400 Bad Request"
        };
        assert_eq!(
            String::from_utf8(reject_bytes(&got)).unwrap(),
            String::from_utf8(expected_reject(expected_status, "", &format!("{reason}\n")))
                .unwrap()
        );
    }
}

#[test]
fn non_ascii_interpreted_header_is_400() {
    let mut buf = raw("GET / HTTP/1.1", &headers_except("Upgrade", &[]));
    buf.truncate(buf.len() - 2);
    buf.extend_from_slice(b"Upgrade: websocket\xff\r\n\r\n");
    let r = decode(&buf).unwrap_err();
    assert_eq!(r.reason, RejectReason::NotAscii("upgrade"));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[test]
fn wrong_or_missing_version_is_426_with_version_header() {
    for headers in [
        headers_except("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 8"]),
        headers_except("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 13, 8"]),
        headers_except("Sec-WebSocket-Version", &[]),
    ] {
        let r = decode(&raw("GET / HTTP/1.1", &headers)).unwrap_err();
        assert_eq!(r.reason, RejectReason::UnsupportedVersion);
        assert_eq!(r.status, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(
            reject_bytes(&r),
            b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\
              Content-Type: text/plain\r\nContent-Length: 43\r\nConnection: close\r\n\r\n\
              unsupported websocket version, 13 required\n"
        );
    }
}

#[test]
fn too_many_headers_is_431() {
    let extra: Vec<String> = (0..60).map(|i| format!("X-H{i}: v")).collect();
    let mut headers: Vec<&str> = BASE.to_vec();
    headers.extend(extra.iter().map(String::as_str));
    let buf = raw("GET / HTTP/1.1", &headers);
    let r = decode(&buf).unwrap_err();
    assert_eq!(r.reason, RejectReason::TooManyHeaders);
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(
        reject_bytes(&r),
        expected_reject(
            "431 Request Header Fields Too Large",
            "",
            "too many request headers\n"
        )
    );
    // Exactly at the limit is fine; one more header is not (also before the head is complete).
    let hs = ServerHandshake::new().with_limits(Limits::default().with_max_headers(5));
    assert!(
        hs.decode_request(&raw("GET / HTTP/1.1", &BASE))
            .unwrap()
            .is_some()
    );
    let six = raw("GET / HTTP/1.1", &headers_except("", &["X: 1"]));
    assert_eq!(
        hs.decode_request(&six).unwrap_err().reason,
        RejectReason::TooManyHeaders
    );
    assert_eq!(
        hs.decode_request(&six[..six.len() - 2]).unwrap_err().reason,
        RejectReason::TooManyHeaders
    );
}

#[test]
fn head_size_limit_is_exact_and_never_buffers_past_it() {
    let buf = raw("GET / HTTP/1.1", &BASE);
    let exact =
        ServerHandshake::new().with_limits(Limits::default().with_max_head_bytes(buf.len()));
    assert_eq!(exact.decode_request(&buf).unwrap().unwrap().1, buf.len());
    let short =
        ServerHandshake::new().with_limits(Limits::default().with_max_head_bytes(buf.len() - 1));
    assert_eq!(
        short.decode_request(&buf).unwrap_err().reason,
        RejectReason::HeadTooLarge
    );
    // Below the limit and incomplete: wait. At the limit without a terminator: reject.
    assert!(
        short
            .decode_request(&buf[..buf.len() - 2])
            .unwrap()
            .is_none()
    );
    assert_eq!(
        short
            .decode_request(&buf[..buf.len() - 1])
            .unwrap_err()
            .reason,
        RejectReason::HeadTooLarge
    );
    // A huge buffer with no terminator is rejected, not waited on.
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.resize(100_000, b'a');
    let r = decode(&huge).unwrap_err();
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(r.reason, RejectReason::HeadTooLarge);
}

#[test]
fn byte_by_byte_decode() {
    let buf = request_with("Sec-WebSocket-Protocol: chat\r\n");
    let hs = ServerHandshake::new();
    for n in 0..buf.len() {
        assert_eq!(hs.decode_request(&buf[..n]), Ok(None), "prefix {n}");
    }
    let (req, used) = hs.decode_request(&buf).unwrap().unwrap();
    assert_eq!(used, buf.len());
    assert_eq!(req.subprotocols(), ["chat"]);
}

/// The request head and the first frames in one buffer, fed in two chunks split at every
/// offset, and one byte at a time: the head length and the leftover bytes are exact.
#[test]
fn leftover_bytes_at_every_split() {
    let head = request_with("");
    // A masked Ping "hi" and a masked Text "Hello" from the client.
    let frames: &[u8] = &[
        0x89, 0x82, 0x37, 0xfa, 0x21, 0x3d, 0x5f, 0x93, 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f,
        0x9f, 0x4d, 0x51, 0x58,
    ];
    let mut all = head.clone();
    all.extend_from_slice(frames);
    let hs = ServerHandshake::new();
    for split in 0..=all.len() {
        let mut acc = Vec::new();
        let mut result = None;
        for chunk in [&all[..split], &all[split..]] {
            acc.extend_from_slice(chunk);
            if let Some(r) = hs.decode_request(&acc).unwrap() {
                result = Some(r);
                break;
            }
        }
        let (req, used) = result.unwrap_or_else(|| panic!("split {split}"));
        assert_eq!(used, head.len(), "split {split}");
        assert_eq!(req.key(), KEY);
        let mut leftover = acc[used..].to_vec();
        if split >= head.len() {
            assert_eq!(leftover, &all[head.len()..split]);
            leftover.extend_from_slice(&all[split..]);
        }
        assert_eq!(leftover, frames, "split {split}");
    }
    // One byte at a time: complete exactly at the last head byte, nothing consumed past it.
    let mut acc = Vec::new();
    let mut done = None;
    for (i, &b) in all.iter().enumerate() {
        acc.push(b);
        if let Some((_, used)) = hs.decode_request(&acc).unwrap() {
            done = Some((i, used));
            break;
        }
    }
    assert_eq!(done, Some((head.len() - 1, head.len())));
}

#[test]
fn application_rejections() {
    let cases = [
        (Rejection::forbidden(), "403 Forbidden", "forbidden\n"),
        (Rejection::not_found(), "404 Not Found", "not found\n"),
        (
            Rejection::new(
                StatusCode::FORBIDDEN,
                RejectReason::Other("bad origin".into()),
            ),
            "403 Forbidden",
            "bad origin\n",
        ),
        (
            Rejection::new(
                StatusCode::from_u16(499).unwrap(),
                RejectReason::Other("x".into()),
            ),
            "499 Error",
            "x\n",
        ),
    ];
    for (r, status, body) in cases {
        assert_eq!(reject_bytes(&r), expected_reject(status, "", body));
    }
    let r = Rejection::from(RejectReason::Unauthorized)
        .with_header("WWW-Authenticate", "Bearer")
        .with_header("Connection", "keep-alive")
        .with_header("Content-Length", "0")
        .with_header("X-Bad", "a\nb");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reject_bytes(&r),
        expected_reject(
            "401 Unauthorized",
            "WWW-Authenticate: Bearer\r\n",
            "unauthorized\n"
        )
    );
    assert_eq!(
        r.to_string(),
        "handshake rejected with 401 Unauthorized: unauthorized"
    );
}

#[test]
fn rejection_content_length_matches_body() {
    for r in [
        Rejection::from(RejectReason::UnsupportedVersion),
        Rejection::from(RejectReason::Other("é".into())),
    ] {
        let text = String::from_utf8(reject_bytes(&r)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, body.len());
    }
}
