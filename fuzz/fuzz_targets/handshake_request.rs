#![no_main]
//! Fuzzes the server's request decoder, whole and in input-chosen chunks: it must never panic,
//! the outcome must not depend on chunking, and the head length must stay within the buffer.
//! The offered extensions go through permessage-deflate negotiation (RFC 7692): the answer
//! must be one the RFC allows for some valid offer, and a client that made that offer must
//! accept it.
use libfuzzer_sys::fuzz_target;
use sonar_handshake::{
    AcceptOptions, DeflateConfig, Limits, PERMESSAGE_DEFLATE, ServerHandshake, check_deflate_offer,
};

/// `head` followed by one `Sec-WebSocket-Extensions` line per line of `lines`, and the blank line.
fn splice(head: &[u8], lines: &[u8]) -> Vec<u8> {
    let mut s = head.to_vec();
    for line in lines.split(|&b| b == b'\n') {
        s.extend_from_slice(b"Sec-WebSocket-Extensions: ");
        s.extend(line.iter().copied().filter(|&b| b != b'\r'));
        s.extend_from_slice(b"\r\n");
    }
    s.extend_from_slice(b"\r\n");
    s
}

/// A server config from one byte.
fn deflate_config(b: u8) -> DeflateConfig {
    DeflateConfig::default()
        .with_enabled(b & 0x80 == 0)
        .with_max_window_bits(8 + (b & 7))
        .with_peer_max_window_bits((b & 8 != 0).then_some(8 + ((b >> 4) & 7)))
        .with_no_context_takeover(b & 0x10 != 0)
        .with_peer_no_context_takeover(b & 0x40 != 0)
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limits, the next 4 bytes pick chunk sizes.
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    let Some((sizes, input)) = rest.split_at_checked(4) else {
        return;
    };
    // Half of the inputs are extension headers: spliced into a valid request as
    // `Sec-WebSocket-Extensions` lines (one per input line), so negotiation gets exercised.
    let spliced;
    let input = if sizes[0] & 0x80 != 0 {
        spliced = splice(
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            input,
        );
        &spliced[..]
    } else {
        input
    };
    let hs = if cfg & 1 == 0 {
        ServerHandshake::new()
    } else {
        ServerHandshake::new().with_limits(
            Limits::default()
                .with_max_head_bytes(usize::from(cfg) * 4)
                .with_max_headers(usize::from(cfg >> 4)),
        )
    };
    let whole = hs.decode_request(input);
    if let Ok(Some((req, used))) = &whole {
        assert!(*used <= input.len());
        assert!(*used <= hs.limits().max_head_bytes);
        let mut out = Vec::new();
        hs.encode_accept(
            req,
            req.subprotocols().first().map(String::as_str),
            &mut out,
        );
        assert!(out.ends_with(b"\r\n\r\n"));

        let config = deflate_config(sizes[0] ^ cfg);
        if let Some(answer) = req.negotiate_deflate(&config) {
            assert!(config.enabled);
            let p = answer.params;
            assert!((8..=15).contains(&p.server_max_window_bits));
            assert!((8..=15).contains(&p.client_max_window_bits));
            assert!(p.server_max_window_bits <= config.max_window_bits);
            assert!(answer.response.is_valid());
            assert_eq!(check_deflate_offer(&answer.response), Ok(()));
            // It answers the first valid permessage-deflate offer.
            let offer = req
                .extensions()
                .iter()
                .filter(|e| e.name() == PERMESSAGE_DEFLATE)
                .find(|e| check_deflate_offer(e).is_ok())
                .expect("a valid offer");
            if let Some(Some(v)) = offer.param("server_max_window_bits") {
                let asked: u8 = v.parse().expect("checked");
                assert!(p.server_max_window_bits <= asked);
                assert!(answer.response.param("server_max_window_bits").is_some());
            }
            if offer.param("server_no_context_takeover").is_some() {
                assert!(p.server_no_context_takeover);
            }
            if offer.param("client_max_window_bits").is_none() {
                assert!(answer.response.param("client_max_window_bits").is_none());
            }
            let mut out = Vec::new();
            hs.encode_accept_with(req, &AcceptOptions::new().with_deflate(&answer), &mut out);
            assert!(out.ends_with(b"\r\n\r\n"));
            // What was agreed is what the 101 says.
            let line = format!("\r\nSec-WebSocket-Extensions: {}\r\n", answer.response);
            assert!(
                out.windows(line.len()).any(|w| w == line.as_bytes()),
                "answer not written"
            );
        } else if config.enabled {
            assert!(
                req.extensions()
                    .iter()
                    .filter(|e| e.name() == PERMESSAGE_DEFLATE)
                    .all(|e| check_deflate_offer(e).is_err())
            );
        }
    }
    if let Err(r) = &whole {
        let mut out = Vec::new();
        ServerHandshake::encode_reject(r, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 "));
    }

    // Accumulate in chunks; the first non-`None` answer must equal the whole-buffer answer
    // whenever the whole buffer reached an answer.
    let mut end = 0;
    let mut i = 0;
    let chunked = loop {
        let step = usize::from(sizes[i % 4]) + 1;
        i += 1;
        end = (end + step).min(input.len());
        let r = hs.decode_request(&input[..end]);
        if !matches!(r, Ok(None)) || end == input.len() {
            break r;
        }
    };
    match (&whole, &chunked) {
        (Ok(None), _) => assert_eq!(chunked, Ok(None)),
        (Ok(Some(_)), _) => assert_eq!(whole, chunked),
        // An error may be seen earlier from a prefix (e.g. too many headers), but it is an error.
        (Err(_), _) => assert!(chunked.is_err()),
    }
});
