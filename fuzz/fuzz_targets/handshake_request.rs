#![no_main]
//! Fuzzes the server's request decoder, whole and in input-chosen chunks: it must never panic,
//! the outcome must not depend on chunking, and the head length must stay within the buffer.
use libfuzzer_sys::fuzz_target;
use sonar_handshake::{Limits, ServerHandshake};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limits, the next 4 bytes pick chunk sizes.
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    let Some((sizes, input)) = rest.split_at_checked(4) else {
        return;
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
