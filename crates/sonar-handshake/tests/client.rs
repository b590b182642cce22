//! Client side: exact request bytes, response corpus (good and bad), T18 leftover bytes at every
//! split offset (keepalive-spec C-24, B6), sticky errors.

use sonar_handshake::{
    ClientError, ClientHandshake, ClientRequest, ExtensionParams, Limits, RequestError,
};

/// `dGhlIHNhbXBsZSBub25jZQ==` decoded: the RFC 6455 §1.3 sample nonce.
const NONCE: [u8; 16] = *b"the sample nonce";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn handshake(req: ClientRequest) -> ClientHandshake {
    ClientHandshake::new(req, NONCE)
}

fn response(extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn raw(status_line: &str, headers: &[&str]) -> Vec<u8> {
    let mut s = format!("{status_line}\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

#[test]
fn encodes_the_exact_request() {
    let req = ClientRequest::new("server.example.com", "/chat")
        .with_subprotocol("chat")
        .with_subprotocol("superchat")
        .with_extension(
            ExtensionParams::new("permessage-deflate").with_param("client_max_window_bits", None),
        )
        .with_header("Origin", "http://example.com")
        .with_header("Authorization", "Bearer abc")
        .with_header("Cookie", b"a=\xff".to_vec());
    assert_eq!(req.validate(), Ok(()));
    let hs = handshake(req);
    assert_eq!(hs.key(), "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(hs.expected_accept(), ACCEPT);
    let mut out = Vec::new();
    hs.encode_request(&mut out);
    let mut expected = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        Origin: http://example.com\r\nAuthorization: Bearer abc\r\nCookie: a="
        .to_vec();
    expected.extend_from_slice(b"\xff\r\n\r\n");
    assert_eq!(out, expected);
}

#[test]
fn host_header_ports_and_ipv6() {
    let cases = [
        ("ws://example.com/", "example.com", 80),
        ("ws://example.com:80/", "example.com", 80),
        ("ws://example.com:443/", "example.com:443", 443),
        ("wss://example.com:443/", "example.com", 443),
        ("wss://example.com/", "example.com", 443),
        ("wss://example.com:80/", "example.com:80", 80),
        ("ws://127.0.0.1:9001/chat?x=1", "127.0.0.1:9001", 9001),
        ("ws://[::1]:9001/", "[::1]:9001", 9001),
        ("wss://[2001:db8::1]/", "[2001:db8::1]", 443),
    ];
    for (url, host, port) in cases {
        let req = ClientRequest::from_url(url).unwrap();
        assert_eq!(req.host_header(), host, "{url}");
        assert_eq!(req.port(), port, "{url}");
        let mut out = Vec::new();
        handshake(req).encode_request(&mut out);
        let line = format!("\r\nHost: {host}\r\n");
        assert!(
            out.windows(line.len()).any(|w| w == line.as_bytes()),
            "{url}"
        );
    }
    let req = ClientRequest::new("example.com", "/")
        .with_port(8080)
        .secure(true);
    assert_eq!(
        (req.host_header().as_str(), req.is_secure()),
        ("example.com:8080", true)
    );
    assert_eq!(ClientRequest::new("::1", "/").host_header(), "[::1]");
}

#[test]
fn unsafe_request_values_are_never_written_raw() {
    let req = ClientRequest::new("evil\r\nX: 1", "/a b\r\nX: 2#")
        .with_subprotocol("bad proto")
        .with_subprotocol("ok")
        .with_subprotocol("ok")
        .with_extension(ExtensionParams::new("bad ext"))
        .with_header("X-Inject", "v\r\nY: 1")
        .with_header("Sec-WebSocket-Key", "forged")
        .with_header("Bad Name", "v");
    assert_eq!(
        req.validate(),
        Err(RequestError::InvalidHost("evil\r\nX: 1".into()))
    );
    let mut out = Vec::new();
    handshake(req).encode_request(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /a%20b%0D%0AX:%202%23 HTTP/1.1\r\nHost: [evilX:1]\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ok\r\n\r\n"
    );
    let base = || ClientRequest::new("example.com", "/");
    assert_eq!(
        base().with_subprotocol("a b").validate(),
        Err(RequestError::InvalidSubprotocol("a b".into()))
    );
    assert_eq!(
        base()
            .with_subprotocol("a")
            .with_subprotocol("a")
            .validate(),
        Err(RequestError::InvalidSubprotocol("a".into()))
    );
    assert_eq!(
        base().with_header("Host", "x").validate(),
        Err(RequestError::InvalidHeader("Host".into()))
    );
    assert_eq!(
        ClientRequest::new("example.com", "/a b").validate(),
        Err(RequestError::InvalidPath("/a b".into()))
    );
    assert!(ClientHandshake::try_new(base().with_header("X", "\n"), NONCE).is_err());
    assert!(ClientHandshake::try_new(base(), NONCE).is_ok());
}

#[test]
fn accepts_good_responses() {
    let req = ClientRequest::new("h", "/")
        .with_subprotocol("chat")
        .with_subprotocol("superchat")
        .with_extension(ExtensionParams::new("permessage-deflate"));
    let cases: Vec<(Vec<u8>, Option<&str>, usize)> = vec![
        (response(""), None, 0),
        (
            response("Sec-WebSocket-Protocol: superchat\r\n"),
            Some("superchat"),
            0,
        ),
        (
            response("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n"),
            None,
            1,
        ),
        (
            raw(
                "HTTP/1.1 101 Whatever",
                &[
                    "upgrade: WebSocket",
                    "connection: keep-alive, upgrade",
                    &format!("sec-websocket-accept:  {ACCEPT} "),
                    "X-Extra: caf\u{e9}",
                ],
            ),
            None,
            0,
        ),
    ];
    for (buf, sub, n_ext) in cases {
        let mut hs = handshake(req.clone());
        let (acc, used) = hs
            .decode_response(&buf)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buf)))
            .unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(acc.subprotocol.as_deref(), sub);
        assert_eq!(acc.extensions.len(), n_ext);
        if n_ext == 1 {
            assert_eq!(
                acc.extensions[0].param("server_max_window_bits"),
                Some(Some("10"))
            );
        }
        assert_eq!(
            acc.header("UPGRADE").map(<[u8]>::to_ascii_lowercase),
            Some(b"websocket".to_vec())
        );
        // A second call after success is an error, not a second success.
        assert_eq!(hs.decode_response(&buf), Err(ClientError::AlreadyComplete));
    }
}

/// Every bad response: the exact error variant.
#[test]
fn bad_response_corpus() {
    let offering = || {
        ClientRequest::new("h", "/")
            .with_subprotocol("chat")
            .with_extension(ExtensionParams::new("permessage-deflate"))
    };
    let accept_line = format!("Sec-WebSocket-Accept: {ACCEPT}");
    let a = accept_line.as_str();
    let cases: Vec<(ClientRequest, Vec<u8>, ClientError)> = vec![
        (
            offering(),
            raw(
                "HTTP/1.0 101 Switching Protocols",
                &["Upgrade: websocket", "Connection: Upgrade", a],
            ),
            ClientError::HttpVersion,
        ),
        (
            offering(),
            raw("HTTP/1.1 101 OK", &["Connection: Upgrade", a]),
            ClientError::MissingUpgrade,
        ),
        (
            offering(),
            raw(
                "HTTP/1.1 101 OK",
                &["Upgrade: h2c", "Connection: Upgrade", a],
            ),
            ClientError::MissingUpgrade,
        ),
        (
            offering(),
            raw("HTTP/1.1 101 OK", &["Upgrade: websocket", a]),
            ClientError::MissingConnectionUpgrade,
        ),
        (
            offering(),
            raw(
                "HTTP/1.1 101 OK",
                &["Upgrade: websocket", "Connection: close", a],
            ),
            ClientError::MissingConnectionUpgrade,
        ),
        (
            offering(),
            raw(
                "HTTP/1.1 101 OK",
                &["Upgrade: websocket", "Connection: Upgrade"],
            ),
            ClientError::MissingAccept,
        ),
        (
            offering(),
            raw(
                "HTTP/1.1 101 OK",
                &[
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                ],
            ),
            ClientError::AcceptMismatch,
        ),
        (
            offering(),
            raw(
                "HTTP/1.1 101 OK",
                &[
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Accept: s3pplmbitxaq9kygzzhzrbk+xoo=",
                ],
            ),
            ClientError::AcceptMismatch,
        ),
        (
            offering(),
            raw(
                "HTTP/1.1 101 OK",
                &["Upgrade: websocket", "Connection: Upgrade", a, a],
            ),
            ClientError::DuplicateHeader("sec-websocket-accept"),
        ),
        (
            offering(),
            response("Sec-WebSocket-Protocol: superchat\r\n"),
            ClientError::UnexpectedSubprotocol("superchat".into()),
        ),
        (
            offering(),
            response("Sec-WebSocket-Protocol: Chat\r\n"),
            ClientError::UnexpectedSubprotocol("Chat".into()),
        ),
        (
            ClientRequest::new("h", "/"),
            response("Sec-WebSocket-Protocol: chat\r\n"),
            ClientError::UnexpectedSubprotocol("chat".into()),
        ),
        (
            offering(),
            response("Sec-WebSocket-Protocol: chat, superchat\r\n"),
            ClientError::InvalidSubprotocol,
        ),
        (
            offering(),
            response("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n"),
            ClientError::DuplicateHeader("sec-websocket-protocol"),
        ),
        (
            offering(),
            response("Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"),
            ClientError::UnexpectedExtension("x-webkit-deflate-frame".into()),
        ),
        (
            ClientRequest::new("h", "/"),
            response("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            ClientError::UnexpectedExtension("permessage-deflate".into()),
        ),
        (
            offering(),
            response("Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n"),
            ClientError::DuplicateExtension("permessage-deflate".into()),
        ),
        (
            offering(),
            response("Sec-WebSocket-Extensions: permessage-deflate;\r\n"),
            ClientError::InvalidExtensions,
        ),
        (
            offering(),
            // obs-fold.
            response("X-Folded: a\r\n b\r\n"),
            ClientError::Malformed("invalid header name"),
        ),
        (
            offering(),
            b"HTTP/1.1 10x OK\r\n\r\n".to_vec(),
            ClientError::Malformed("invalid status line"),
        ),
        (
            offering(),
            b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(),
            ClientError::Malformed("invalid http version"),
        ),
    ];
    for (req, buf, err) in cases {
        let mut hs = handshake(req);
        assert_eq!(
            hs.decode_response(&buf),
            Err(err.clone()),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        // Sticky.
        assert_eq!(hs.decode_response(&response("")), Err(err));
    }
    let mut buf = response("");
    buf.truncate(buf.len() - 2);
    buf.extend_from_slice(b"Sec-WebSocket-Protocol: ch\xe9t\r\n\r\n");
    assert_eq!(
        handshake(offering()).decode_response(&buf),
        Err(ClientError::NotAscii("sec-websocket-protocol"))
    );
}

#[test]
fn non_101_is_rejected_with_status_headers_and_body_prefix() {
    let body = "missing token\n";
    let buf = format!(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: {}\r\n\r\n{body}trailing junk",
        body.len()
    );
    let err = handshake(ClientRequest::new("h", "/"))
        .decode_response(buf.as_bytes())
        .unwrap_err();
    assert_eq!(
        err,
        ClientError::Rejected {
            status: 401,
            reason: "Unauthorized".into(),
            headers: vec![
                ("WWW-Authenticate".into(), b"Bearer".to_vec()),
                ("Content-Length".into(), b"14".to_vec()),
            ],
            body_prefix: body.as_bytes().to_vec(),
        }
    );
    assert_eq!(
        err.to_string(),
        "server rejected the upgrade with status 401 Unauthorized"
    );
    // 404 with the body still in flight, and a long body bounded by the limit.
    let big = format!("HTTP/1.1 404 Not Found\r\n\r\n{}", "x".repeat(5000));
    let mut hs = handshake(ClientRequest::new("h", "/"))
        .with_limits(Limits::default().with_max_body_prefix(16));
    match hs.decode_response(big.as_bytes()) {
        Err(ClientError::Rejected {
            status: 404,
            reason,
            body_prefix,
            ..
        }) => {
            assert_eq!(reason, "Not Found");
            assert_eq!(body_prefix, b"xxxxxxxxxxxxxxxx");
        }
        other => panic!("{other:?}"),
    }
    // A 200 is a rejection too; the head alone (no body yet) is enough.
    assert!(matches!(
        handshake(ClientRequest::new("h", "/")).decode_response(b"HTTP/1.1 200 OK\r\n\r\n"),
        Err(ClientError::Rejected { status: 200, ref body_prefix, .. }) if body_prefix.is_empty()
    ));
}

#[test]
fn response_limits() {
    let mut hs = handshake(ClientRequest::new("h", "/"));
    let mut huge = b"HTTP/1.1 101 Switching Protocols\r\nX: ".to_vec();
    huge.resize(20_000, b'a');
    assert_eq!(
        hs.decode_response(&huge),
        Err(ClientError::HeadTooLarge { limit: 8192 })
    );
    let extra: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        handshake(ClientRequest::new("h", "/")).decode_response(&response(&extra)),
        Err(ClientError::TooManyHeaders { limit: 64 })
    );
    // Just under the limit without a terminator: keep waiting.
    let head = response("");
    let mut hs = handshake(ClientRequest::new("h", "/"))
        .with_limits(Limits::default().with_max_head_bytes(head.len()));
    assert_eq!(hs.decode_response(&head[..head.len() - 1]), Ok(None));
    assert_eq!(hs.decode_response(&head).unwrap().unwrap().1, head.len());
}

/// keepalive-spec T18 (handshake half): the 101, a Ping "hi" and a Text "Hello" in one read;
/// split at every offset and fed incrementally, the head length and leftover bytes are exact.
#[test]
fn t18_leftover_bytes_at_every_split() {
    let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    let frames: &[u8] = &[
        0x89, 0x02, 0x68, 0x69, 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f,
    ];
    let mut all = head.to_vec();
    all.extend_from_slice(frames);

    // Single read.
    let mut hs = handshake(ClientRequest::new("h", "/"));
    let (_, used) = hs.decode_response(&all).unwrap().unwrap();
    assert_eq!(used, head.len());
    assert_eq!(&all[used..], frames);

    for split in 0..=all.len() {
        let mut hs = handshake(ClientRequest::new("h", "/"));
        let mut acc = Vec::new();
        let mut result = None;
        for chunk in [&all[..split], &all[split..]] {
            acc.extend_from_slice(chunk);
            if let Some(r) = hs.decode_response(&acc).unwrap() {
                result = Some(r);
                break;
            }
        }
        let (acc_ok, used) = result.unwrap_or_else(|| panic!("split {split}"));
        assert_eq!(acc_ok.subprotocol, None);
        assert_eq!(used, head.len(), "split {split}");
        // What the codec gets now, plus what arrives later, is exactly the frames.
        let mut codec_input = acc[used..].to_vec();
        if split >= head.len() {
            codec_input.extend_from_slice(&all[split..]);
        } else {
            assert!(codec_input.len() == all.len() - head.len());
        }
        assert_eq!(codec_input, frames, "split {split}");
    }

    // Three-way splits: every pair of offsets.
    for a in 0..=all.len() {
        for b in a..=all.len() {
            let mut hs = handshake(ClientRequest::new("h", "/"));
            let mut acc = Vec::new();
            let mut got = None;
            for chunk in [&all[..a], &all[a..b], &all[b..]] {
                acc.extend_from_slice(chunk);
                if got.is_none()
                    && let Some((_, used)) = hs.decode_response(&acc).unwrap()
                {
                    got = Some(used);
                    acc.drain(..used);
                }
            }
            assert_eq!(got, Some(head.len()), "{a} {b}");
            assert_eq!(acc, frames, "{a} {b}");
        }
    }

    // One byte at a time.
    let mut hs = handshake(ClientRequest::new("h", "/"));
    let mut acc = Vec::new();
    let mut done_at = None;
    for (i, &b) in all.iter().enumerate() {
        acc.push(b);
        if let Some((_, used)) = hs.decode_response(&acc).unwrap() {
            done_at = Some((i, used));
            break;
        }
    }
    assert_eq!(done_at, Some((head.len() - 1, head.len())));
}
