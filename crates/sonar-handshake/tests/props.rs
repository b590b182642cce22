//! Property tests: arbitrary bytes never panic; chunking never changes the outcome; a client and
//! a server built from arbitrary valid inputs always agree.

use proptest::prelude::*;
use sonar_handshake::{
    AcceptOptions, ClientHandshake, ClientRequest, ExtensionParams, Limits, ServerHandshake,
};

/// Feeds `data` to the server in chunks cut at `cuts`, accumulating, until the decoder answers.
fn server_chunked(
    hs: &ServerHandshake,
    data: &[u8],
    cuts: &[usize],
) -> Option<Result<Option<(sonar_handshake::Request, usize)>, sonar_handshake::Rejection>> {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    ends.push(data.len());
    ends.sort_unstable();
    let mut last = None;
    for end in ends {
        let r = hs.decode_request(&data[..end]);
        match &r {
            Ok(None) => last = Some(r),
            _ => return Some(r),
        }
    }
    last
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,12}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let server = ServerHandshake::new();
        let _ = server.decode_request(&data);
        let small = ServerHandshake::new()
            .with_limits(Limits::default().with_max_head_bytes(64).with_max_headers(2));
        let _ = small.decode_request(&data);
        let mut client = ClientHandshake::new(ClientRequest::new("h", "/"), [7; 16]);
        let _ = client.decode_response(&data);
    }

    #[test]
    fn http_like_bytes_never_panic(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("GET / HTTP/1.1".to_string()),
                Just("HTTP/1.1 101 Switching Protocols".to_string()),
                Just("Upgrade: websocket".to_string()),
                Just("Connection: Upgrade".to_string()),
                Just("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_string()),
                Just("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string()),
                Just("Sec-WebSocket-Version: 13".to_string()),
                Just("Host: h".to_string()),
                "Sec-WebSocket-(Protocol|Extensions): [ -~]{0,30}",
                "[ -~]{0,40}",
            ],
            0..12,
        ),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut data = lines.join("\r\n").into_bytes();
        data.extend_from_slice(b"\r\n\r\n");
        data.extend_from_slice(&tail);
        let whole = ServerHandshake::new().decode_request(&data);
        if let Ok(Some((_, used))) = &whole {
            prop_assert!(*used <= data.len());
        }
        let mut client = ClientHandshake::new(ClientRequest::new("h", "/"), *b"the sample nonce");
        if let Ok(Some((_, used))) = client.decode_response(&data) {
            prop_assert!(used <= data.len());
        }
    }

    #[test]
    fn client_and_server_agree(
        path in "/[a-zA-Z0-9/._~-]{0,20}(\\?[a-z0-9=&]{0,10})?",
        protocols in proptest::collection::vec(token(), 0..4),
        server_protocols in proptest::collection::vec(token(), 0..4),
        headers in proptest::collection::vec(("X-[A-Za-z0-9-]{1,10}", "[ -~]{0,20}"), 0..4),
        offer_deflate in any::<bool>(),
        key in any::<[u8; 16]>(),
        tail in proptest::collection::vec(any::<u8>(), 0..24),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let mut req = ClientRequest::new("example.com", path.clone()).with_port(9001);
        for p in &protocols {
            req = req.with_subprotocol(p.clone());
        }
        for (n, v) in &headers {
            req = req.with_header(n.clone(), v.clone().into_bytes());
        }
        if offer_deflate {
            req = req.with_extension(
                ExtensionParams::new("permessage-deflate").with_param("client_max_window_bits", None),
            );
        }
        let mut client = ClientHandshake::new(req, key);
        let mut wire = Vec::new();
        client.encode_request(&mut wire);
        let head_len = wire.len();
        wire.extend_from_slice(&tail);

        let server = ServerHandshake::new().with_subprotocols(server_protocols.clone());
        let whole = server.decode_request(&wire);
        let (sreq, used) = whole.clone().unwrap().unwrap();
        prop_assert_eq!(used, head_len);
        prop_assert_eq!(server_chunked(&server, &wire, &cuts), Some(whole));
        prop_assert_eq!(sreq.target(), path.as_str());
        prop_assert_eq!(sreq.host(), "example.com:9001");
        prop_assert_eq!(sreq.extensions().len(), usize::from(offer_deflate));
        for (n, v) in &headers {
            prop_assert!(sreq.header_all(n).any(|x| x == v.trim_matches([' ', '\t']).as_bytes()));
        }

        let chosen = server.select_subprotocol(&sreq).map(String::from);
        let mut opts = AcceptOptions::new();
        if let Some(c) = &chosen {
            opts = opts.with_subprotocol(c.clone());
        }
        if offer_deflate {
            opts = opts.with_extension(ExtensionParams::new("permessage-deflate"));
        }
        let mut answer = Vec::new();
        server.encode_accept_with(&sreq, &opts, &mut answer);
        let answer_len = answer.len();
        answer.extend_from_slice(&tail);
        let (accepted, used) = client.decode_response(&answer).unwrap().unwrap();
        prop_assert_eq!(used, answer_len);
        prop_assert_eq!(accepted.subprotocol, chosen);
        prop_assert_eq!(accepted.extensions.len(), usize::from(offer_deflate));
    }
}
