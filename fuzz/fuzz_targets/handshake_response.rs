#![no_main]
//! Fuzzes the client's response decoder, whole and in input-chosen chunks: it must never panic,
//! the outcome must not depend on chunking, and the head length must stay within the buffer.
use libfuzzer_sys::fuzz_target;
use sonar_handshake::{ClientHandshake, ClientRequest, DeflateConfig, ExtensionParams, Limits};

/// The client's permessage-deflate config for a given setup byte (`None`: not offered).
fn deflate_config(cfg: u8) -> Option<DeflateConfig> {
    (cfg & 8 != 0).then(|| {
        DeflateConfig::default()
            .with_max_window_bits(8 + ((cfg >> 4) & 7))
            .with_peer_max_window_bits((cfg & 0x80 != 0).then_some(8 + ((cfg >> 5) & 7)))
            .with_peer_no_context_takeover(cfg & 0x40 != 0)
            .with_no_context_takeover(cfg & 0x20 != 0)
    })
}

fn client(cfg: u8) -> ClientHandshake {
    let mut req = ClientRequest::new("example.com", "/");
    if cfg & 2 != 0 {
        req = req.with_subprotocol("chat").with_subprotocol("superchat");
    }
    if cfg & 4 != 0 {
        req = req.with_extension(ExtensionParams::new("x-other"));
    }
    if let Some(d) = deflate_config(cfg) {
        req = req.with_deflate(d);
    }
    // The RFC 6455 sample nonce, so corpus inputs can carry the matching accept key.
    let hs = ClientHandshake::new(req, *b"the sample nonce");
    if cfg & 1 == 0 {
        hs
    } else {
        hs.with_limits(
            Limits::default()
                .with_max_head_bytes(usize::from(cfg) * 4)
                .with_max_headers(usize::from(cfg >> 4))
                .with_max_body_prefix(usize::from(cfg >> 3)),
        )
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    let Some((sizes, input)) = rest.split_at_checked(4) else {
        return;
    };
    // Half of the inputs are extension headers: spliced into a valid 101 (the accept key of
    // the sample nonce) as `Sec-WebSocket-Extensions` lines, so the answer check gets exercised.
    let spliced;
    let input = if sizes[0] & 0x80 != 0 {
        let mut s =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                .to_vec();
        for line in input.split(|&b| b == b'\n') {
            s.extend_from_slice(b"Sec-WebSocket-Extensions: ");
            s.extend(line.iter().copied().filter(|&b| b != b'\r'));
            s.extend_from_slice(b"\r\n");
        }
        s.extend_from_slice(b"\r\n");
        spliced = s;
        &spliced[..]
    } else {
        input
    };
    let mut hs = client(cfg);
    let whole = hs.decode_response(input);
    if let Ok(Some((accepted, used))) = &whole {
        assert!(*used <= input.len());
        // An accepted permessage-deflate answer stays within what the offer allowed.
        match (accepted.deflate, deflate_config(cfg)) {
            (Some(p), Some(d)) => {
                assert!((8..=15).contains(&p.server_max_window_bits));
                assert!(p.client_max_window_bits <= d.max_window_bits);
                if let Some(asked) = d.peer_max_window_bits {
                    assert!(p.server_max_window_bits <= asked);
                }
                if d.peer_no_context_takeover {
                    assert!(p.server_no_context_takeover);
                }
                if d.no_context_takeover {
                    assert!(p.client_no_context_takeover);
                }
            }
            (Some(_), None) => panic!("deflate agreed without an offer"),
            (None, _) => {}
        }
    }
    // Sticky / complete: a second call never succeeds again.
    if !matches!(whole, Ok(None)) {
        assert!(hs.decode_response(input).is_err());
    }

    let mut hs = client(cfg);
    let mut end = 0;
    let mut i = 0;
    let chunked = loop {
        let step = usize::from(sizes[i % 4]) + 1;
        i += 1;
        end = (end + step).min(input.len());
        let r = hs.decode_response(&input[..end]);
        if !matches!(r, Ok(None)) || end == input.len() {
            break r;
        }
    };
    match (&whole, &chunked) {
        (Ok(None), _) => assert_eq!(chunked, Ok(None)),
        (Ok(Some(_)), _) => assert_eq!(whole, chunked),
        // A non-101 seen early carries a shorter body prefix; any error stays an error.
        (Err(_), _) => assert!(chunked.is_err()),
    }
});
