#![no_main]
//! Fuzzes the client's response decoder, whole and in input-chosen chunks: it must never panic,
//! the outcome must not depend on chunking, and the head length must stay within the buffer.
use libfuzzer_sys::fuzz_target;
use sonar_handshake::{ClientHandshake, ClientRequest, ExtensionParams, Limits};

fn client(cfg: u8) -> ClientHandshake {
    let mut req = ClientRequest::new("example.com", "/");
    if cfg & 2 != 0 {
        req = req.with_subprotocol("chat").with_subprotocol("superchat");
    }
    if cfg & 4 != 0 {
        req = req.with_extension(ExtensionParams::new("permessage-deflate"));
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
    let mut hs = client(cfg);
    let whole = hs.decode_response(input);
    if let Ok(Some((_, used))) = &whole {
        assert!(*used <= input.len());
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
