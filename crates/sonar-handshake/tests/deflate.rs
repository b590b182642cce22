//! permessage-deflate negotiation (RFC 7692 §5, §7.1), named after the sections they check:
//! the server's answer to every kind of offer (several offers, several header lines, quoted
//! values, declined offers falling back to the next), the client's offer from its config and
//! its check of the server's answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sonar_handshake::{
    AcceptOptions, ClientError, ClientHandshake, ClientRequest, DeflateConfig, DeflateError,
    DeflateParam, DeflateParams, ExtensionParams, Request, ServerHandshake,
};

const NONCE: [u8; 16] = *b"the sample nonce";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A request with the given `Sec-WebSocket-Extensions` lines (one header line each).
fn request(ext_lines: &[&str]) -> Request {
    let mut s = format!(
        "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for l in ext_lines {
        s.push_str(&format!("Sec-WebSocket-Extensions: {l}\r\n"));
    }
    s.push_str("\r\n");
    let (req, used) = ServerHandshake::new()
        .decode_request(s.as_bytes())
        .expect("valid request")
        .expect("complete");
    assert_eq!(used, s.len());
    req
}

/// The server's answer (as written in the 101) and the agreement, or `None` if declined.
fn answer(config: DeflateConfig, ext_lines: &[&str]) -> Option<(String, DeflateParams)> {
    let req = request(ext_lines);
    let a = req.negotiate_deflate(&config)?;
    let mut out = Vec::new();
    ServerHandshake::new().encode_accept_with(
        &req,
        &AcceptOptions::new().with_deflate(&a),
        &mut out,
    );
    let head = String::from_utf8(out).expect("ascii");
    let line = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .expect("an extensions header")
        .to_string();
    assert_eq!(line, a.response.to_string());
    Some((line, a.params))
}

/// Our plain server: context takeover both ways, 15-bit window (nothing announced).
fn plain() -> DeflateConfig {
    DeflateConfig::default().with_max_window_bits(15)
}

fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
    // DeflateParams is non_exhaustive: build it through a negotiation and compare fields.
    let mut p = answer(plain(), &["permessage-deflate"])
        .expect("accepted")
        .1;
    p.server_no_context_takeover = snct;
    p.client_no_context_takeover = cnct;
    p.server_max_window_bits = sbits;
    p.client_max_window_bits = cbits;
    p
}

// ----- server: answering offers ----------------------------------------------------------

#[test]
fn rfc7692_7_server_accepts_a_bare_offer_with_a_bare_answer() {
    let (line, p) = answer(plain(), &["permessage-deflate"]).unwrap();
    assert_eq!(line, "permessage-deflate");
    assert_eq!(p, params(false, false, 15, 15));
}

#[test]
fn rfc7692_5_server_declines_when_disabled_or_not_offered() {
    assert!(answer(DeflateConfig::disabled(), &["permessage-deflate"]).is_none());
    assert!(answer(plain(), &["x-webkit-deflate-frame"]).is_none());
    assert!(answer(plain(), &[]).is_none());
}

#[test]
fn rfc7692_7_server_declines_an_offer_with_an_unknown_parameter_and_takes_the_next() {
    let (line, p) = answer(
        plain(),
        &["permessage-deflate; x_unknown, permessage-deflate; client_max_window_bits=10"],
    )
    .unwrap();
    assert_eq!(line, "permessage-deflate; client_max_window_bits=10");
    assert_eq!(p, params(false, false, 15, 10));
}

#[test]
fn rfc7692_7_server_declines_an_offer_with_a_duplicated_parameter() {
    for bad in [
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
    ] {
        assert!(answer(plain(), &[bad]).is_none(), "{bad}");
    }
}

#[test]
fn rfc7692_7_1_2_server_declines_out_of_range_or_malformed_window_bits() {
    for bad in [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=\"16\"",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"x\"",
    ] {
        assert!(answer(plain(), &[bad]).is_none(), "{bad}");
    }
}

#[test]
fn rfc7692_5_server_falls_back_over_several_header_lines() {
    let (line, _) = answer(
        plain(),
        &[
            "x-foo, permessage-deflate; server_max_window_bits=99",
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate",
        ],
    )
    .unwrap();
    assert_eq!(line, "permessage-deflate; server_no_context_takeover");
}

#[test]
fn rfc7692_7_1_2_server_reads_quoted_values() {
    let (line, p) = answer(
        plain(),
        &["permessage-deflate; server_max_window_bits=\"10\"; client_max_window_bits=\"9\""],
    )
    .unwrap();
    assert_eq!(
        line,
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"
    );
    assert_eq!(p, params(false, false, 10, 9));
}

#[test]
fn rfc7692_7_1_1_1_server_accepts_a_requested_server_no_context_takeover() {
    let (line, p) = answer(plain(), &["permessage-deflate; server_no_context_takeover"]).unwrap();
    assert_eq!(line, "permessage-deflate; server_no_context_takeover");
    assert!(p.server_no_context_takeover);
}

#[test]
fn rfc7692_7_1_1_1_server_may_add_server_no_context_takeover_unasked() {
    let config = plain().with_no_context_takeover(true);
    let (line, p) = answer(config, &["permessage-deflate"]).unwrap();
    assert_eq!(line, "permessage-deflate; server_no_context_takeover");
    assert_eq!(p, params(true, false, 15, 15));
}

#[test]
fn rfc7692_7_1_1_2_server_echoes_or_adds_client_no_context_takeover() {
    let (line, p) = answer(plain(), &["permessage-deflate; client_no_context_takeover"]).unwrap();
    assert_eq!(line, "permessage-deflate; client_no_context_takeover");
    assert!(p.client_no_context_takeover);
    let asked = plain().with_peer_no_context_takeover(true);
    let (line, p) = answer(asked, &["permessage-deflate"]).unwrap();
    assert_eq!(line, "permessage-deflate; client_no_context_takeover");
    assert!(p.client_no_context_takeover);
}

#[test]
fn rfc7692_7_1_2_1_server_answers_requested_window_bits_with_the_same_or_smaller() {
    for (asked, own, expect) in [
        (10, 15, 10),
        (10, 9, 9),
        (15, 12, 12),
        (8, 15, 8),
        (9, 9, 9),
    ] {
        let config = plain().with_max_window_bits(own);
        let offer = format!("permessage-deflate; server_max_window_bits={asked}");
        let (line, p) = answer(config, &[offer.as_str()]).unwrap();
        assert_eq!(
            line,
            format!("permessage-deflate; server_max_window_bits={expect}")
        );
        assert_eq!(p.server_max_window_bits, expect);
    }
}

#[test]
fn rfc7692_7_1_2_1_server_may_announce_its_own_limit_unasked() {
    let (line, p) = answer(DeflateConfig::default(), &["permessage-deflate"]).unwrap();
    assert_eq!(line, "permessage-deflate; server_max_window_bits=12");
    assert_eq!(p.server_max_window_bits, 12);
}

#[test]
fn rfc7692_7_1_2_2_server_sends_client_max_window_bits_only_if_offered() {
    let limit = plain().with_peer_max_window_bits(Some(10));
    let (line, p) = answer(limit, &["permessage-deflate"]).unwrap();
    assert_eq!(line, "permessage-deflate");
    assert_eq!(p.client_max_window_bits, 15);
    let (line, p) = answer(limit, &["permessage-deflate; client_max_window_bits"]).unwrap();
    assert_eq!(line, "permessage-deflate; client_max_window_bits=10");
    assert_eq!(p.client_max_window_bits, 10);
    // Not above the client's own hint.
    let (line, _) = answer(limit, &["permessage-deflate; client_max_window_bits=9"]).unwrap();
    assert_eq!(line, "permessage-deflate; client_max_window_bits=9");
    // A bare offer and no limit of ours: nothing to say.
    let (line, _) = answer(plain(), &["permessage-deflate; client_max_window_bits"]).unwrap();
    assert_eq!(line, "permessage-deflate");
}

#[test]
fn rfc7692_7_1_2_server_accepts_window_bits_8_and_never_compresses() {
    // zlib cannot compress with an 8-bit window; the agreement says 8, and the codec then
    // sends every message uncompressed (sonar-core tests the codec side).
    let (line, p) = answer(plain(), &["permessage-deflate; server_max_window_bits=8"]).unwrap();
    assert_eq!(line, "permessage-deflate; server_max_window_bits=8");
    assert_eq!(p.server_max_window_bits, 8);
}

#[test]
fn rfc7692_7_every_valid_offer_gets_a_valid_answer() {
    // The server's answer to each offer passes a client check with a config that would
    // have made that offer (the two sides agree on the same parameters).
    for snct in [false, true] {
        for cnct in [false, true] {
            for sbits in [None, Some(8), Some(9), Some(12), Some(15)] {
                for cbits in [8u8, 9, 12, 15] {
                    for own in [8u8, 9, 12, 15] {
                        let client = DeflateConfig::default()
                            .with_peer_no_context_takeover(snct)
                            .with_no_context_takeover(cnct)
                            .with_peer_max_window_bits(sbits)
                            .with_max_window_bits(cbits);
                        let server = DeflateConfig::default().with_max_window_bits(own);
                        let offer = client.offer().to_string();
                        let (_, sp) = answer(server, &[offer.as_str()]).expect("accepted");
                        let resp = server
                            .negotiate(&[client.offer()])
                            .expect("accepted")
                            .response;
                        let cp = client.accept_response(&resp).expect("valid answer");
                        assert_eq!(sp, cp, "offer {offer} answer {resp}");
                        assert!(sp.server_max_window_bits <= own);
                        if let Some(b) = sbits {
                            assert!(sp.server_max_window_bits <= b);
                        }
                        assert!(sp.client_max_window_bits <= cbits);
                    }
                }
            }
        }
    }
}

// ----- client: offering and checking the answer ------------------------------------------

fn response(ext: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Extensions: {ext}\r\n\r\n"
    )
    .into_bytes()
}

fn client_result(config: DeflateConfig, ext: &str) -> Result<Option<DeflateParams>, ClientError> {
    let req = ClientRequest::new("example.com", "/").with_deflate(config);
    let mut hs = ClientHandshake::new(req, NONCE);
    hs.decode_response(&response(ext))
        .map(|r| r.expect("complete").0.deflate)
}

fn deflate_error(config: DeflateConfig, ext: &str) -> DeflateError {
    match client_result(config, ext) {
        Err(ClientError::Deflate(e)) => e,
        other => panic!("expected a deflate error for {ext:?}, got {other:?}"),
    }
}

#[test]
fn rfc7692_5_client_offers_from_its_config() {
    let cases = [
        (
            DeflateConfig::default(),
            "permessage-deflate; client_max_window_bits=12",
        ),
        (
            DeflateConfig::default().with_max_window_bits(15),
            "permessage-deflate; client_max_window_bits",
        ),
        (
            DeflateConfig::default()
                .with_peer_no_context_takeover(true)
                .with_no_context_takeover(true)
                .with_peer_max_window_bits(Some(10))
                .with_max_window_bits(9),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9",
        ),
    ];
    for (config, expect) in cases {
        let req = ClientRequest::new("example.com", "/")
            .with_extension(ExtensionParams::new("x-other"))
            .with_deflate(config);
        let mut out = Vec::new();
        ClientHandshake::new(req, NONCE).encode_request(&mut out);
        let head = String::from_utf8(out).unwrap();
        assert!(
            head.contains(&format!("Sec-WebSocket-Extensions: x-other, {expect}\r\n")),
            "{head}"
        );
    }
    let req = ClientRequest::new("example.com", "/").with_deflate(DeflateConfig::disabled());
    let mut out = Vec::new();
    ClientHandshake::new(req, NONCE).encode_request(&mut out);
    assert!(!String::from_utf8(out).unwrap().contains("Extensions"));
}

#[test]
fn rfc7692_5_client_without_deflate_in_the_answer_has_none() {
    let req = ClientRequest::new("example.com", "/").with_deflate(DeflateConfig::default());
    let mut hs = ClientHandshake::new(req, NONCE);
    let plain = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
    );
    let (accepted, _) = hs.decode_response(plain.as_bytes()).unwrap().unwrap();
    assert_eq!(accepted.deflate, None);
}

#[test]
fn rfc7692_5_client_takes_a_valid_answer() {
    let p = client_result(
        DeflateConfig::default(),
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=10; \
         server_max_window_bits=11",
    )
    .unwrap()
    .unwrap();
    assert_eq!(p, params(true, false, 11, 10));
}

#[test]
fn rfc7692_5_1_client_rejects_answer_with_unknown_parameter() {
    assert_eq!(
        deflate_error(DeflateConfig::default(), "permessage-deflate; x_foo"),
        DeflateError::UnknownParameter("x_foo".into())
    );
}

#[test]
fn rfc7692_5_1_client_rejects_answer_with_duplicated_parameter() {
    assert_eq!(
        deflate_error(
            DeflateConfig::default(),
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover"
        ),
        DeflateError::DuplicateParameter(DeflateParam::ClientNoContextTakeover)
    );
}

#[test]
fn rfc7692_5_1_client_rejects_answer_with_out_of_range_window_bits() {
    for (ext, param) in [
        (
            "permessage-deflate; server_max_window_bits=7",
            DeflateParam::ServerMaxWindowBits,
        ),
        (
            "permessage-deflate; server_max_window_bits=16",
            DeflateParam::ServerMaxWindowBits,
        ),
        (
            "permessage-deflate; client_max_window_bits=16",
            DeflateParam::ClientMaxWindowBits,
        ),
        (
            "permessage-deflate; client_max_window_bits=\"08\"",
            DeflateParam::ClientMaxWindowBits,
        ),
    ] {
        assert_eq!(
            deflate_error(DeflateConfig::default(), ext),
            DeflateError::InvalidWindowBits(param),
            "{ext}"
        );
    }
}

#[test]
fn rfc7692_7_1_2_2_client_rejects_bare_client_max_window_bits_in_an_answer() {
    assert_eq!(
        deflate_error(
            DeflateConfig::default(),
            "permessage-deflate; client_max_window_bits"
        ),
        DeflateError::MissingValue(DeflateParam::ClientMaxWindowBits)
    );
    assert_eq!(
        deflate_error(
            DeflateConfig::default(),
            "permessage-deflate; server_max_window_bits"
        ),
        DeflateError::MissingValue(DeflateParam::ServerMaxWindowBits)
    );
}

#[test]
fn rfc7692_7_1_1_client_rejects_a_value_on_no_context_takeover() {
    assert_eq!(
        deflate_error(
            DeflateConfig::default(),
            "permessage-deflate; server_no_context_takeover=1"
        ),
        DeflateError::UnexpectedValue(DeflateParam::ServerNoContextTakeover)
    );
}

#[test]
fn rfc7692_7_1_1_1_client_rejects_answer_dropping_requested_server_no_context_takeover() {
    let config = DeflateConfig::default().with_peer_no_context_takeover(true);
    assert_eq!(
        deflate_error(config, "permessage-deflate"),
        DeflateError::NotAccepted(DeflateParam::ServerNoContextTakeover)
    );
    assert!(client_result(config, "permessage-deflate; server_no_context_takeover").is_ok());
}

#[test]
fn rfc7692_7_1_2_1_client_rejects_server_window_above_its_request() {
    let config = DeflateConfig::default().with_peer_max_window_bits(Some(10));
    assert_eq!(
        deflate_error(config, "permessage-deflate; server_max_window_bits=11"),
        DeflateError::AboveOffer(DeflateParam::ServerMaxWindowBits)
    );
    assert_eq!(
        deflate_error(config, "permessage-deflate"),
        DeflateError::NotAccepted(DeflateParam::ServerMaxWindowBits)
    );
    let p = client_result(config, "permessage-deflate; server_max_window_bits=9")
        .unwrap()
        .unwrap();
    assert_eq!(p.server_max_window_bits, 9);
}

#[test]
fn rfc7692_7_1_2_1_client_accepts_an_unasked_server_window_limit() {
    let p = client_result(
        DeflateConfig::default(),
        "permessage-deflate; server_max_window_bits=8",
    )
    .unwrap()
    .unwrap();
    assert_eq!(p.server_max_window_bits, 8);
}

#[test]
fn rfc7692_7_1_2_2_client_compresses_with_the_smaller_of_its_window_and_the_answer() {
    // The server may ignore our hint (12) and answer more; we still use 12.
    let p = client_result(
        DeflateConfig::default(),
        "permessage-deflate; client_max_window_bits=15",
    )
    .unwrap()
    .unwrap();
    assert_eq!(p.client_max_window_bits, 12);
    let p = client_result(
        DeflateConfig::default(),
        "permessage-deflate; client_max_window_bits=8",
    )
    .unwrap()
    .unwrap();
    assert_eq!(p.client_max_window_bits, 8);
}

#[test]
fn rfc7692_7_1_1_2_client_honours_client_no_context_takeover_in_the_answer() {
    let p = client_result(
        DeflateConfig::default(),
        "permessage-deflate; client_no_context_takeover",
    )
    .unwrap()
    .unwrap();
    assert!(p.client_no_context_takeover);
    // Our own wish to reset stands even when the server does not repeat it.
    let p = client_result(
        DeflateConfig::default().with_no_context_takeover(true),
        "permessage-deflate",
    )
    .unwrap()
    .unwrap();
    assert!(p.client_no_context_takeover);
}

#[test]
fn rfc7692_5_1_client_error_is_sticky_and_typed() {
    let req = ClientRequest::new("example.com", "/").with_deflate(DeflateConfig::default());
    let mut hs = ClientHandshake::new(req, NONCE);
    let bad = response("permessage-deflate; x");
    let first = hs.decode_response(&bad).unwrap_err();
    assert!(matches!(
        first,
        ClientError::Deflate(DeflateError::UnknownParameter(_))
    ));
    assert_eq!(hs.decode_response(&bad).unwrap_err(), first);
}

#[test]
fn rfc7692_5_1_client_rejects_deflate_twice_and_unoffered() {
    assert!(matches!(
        client_result(
            DeflateConfig::default(),
            "permessage-deflate, permessage-deflate"
        ),
        Err(ClientError::DuplicateExtension(_))
    ));
    assert!(matches!(
        client_result(DeflateConfig::disabled(), "permessage-deflate"),
        Err(ClientError::UnexpectedExtension(_))
    ));
}

#[test]
fn rfc7692_7_server_matches_the_extension_name_exactly_as_the_answer_filter_does() {
    // The 101 only repeats extensions whose name the client offered exactly, so negotiation
    // must not accept a name the answer would then drop (the codec would expect RSV1 while
    // the client never agreed).
    assert!(answer(plain(), &["PERMESSAGE-DEFLATE"]).is_none());
    let req = request(&["Permessage-Deflate, permessage-deflate; client_max_window_bits"]);
    let a = req.negotiate_deflate(&plain()).unwrap();
    let mut out = Vec::new();
    ServerHandshake::new().encode_accept_with(
        &req,
        &AcceptOptions::new().with_deflate(&a),
        &mut out,
    );
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("Sec-WebSocket-Extensions: permessage-deflate")
    );
}
