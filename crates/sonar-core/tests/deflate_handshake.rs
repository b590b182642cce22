//! RFC 7692 end to end without I/O: the opening handshake negotiates permessage-deflate
//! (sonar-handshake), both ends hand the agreement to their codec the way the async driver
//! does (`codec_deflate` below), and messages cross the in-memory pair.
#![cfg(feature = "deflate")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sonar_core::testing::Pair;
use sonar_core::{Config, Deflate, Event, Message};
use sonar_handshake::{
    AcceptOptions, ClientHandshake, ClientRequest, DeflateConfig, DeflateParams, ServerHandshake,
};

/// The mapping the driver uses: the agreement plus this end's codec settings.
fn codec_deflate(p: DeflateParams, c: &DeflateConfig) -> Deflate {
    Deflate::new()
        .with_server_no_context_takeover(p.server_no_context_takeover)
        .with_client_no_context_takeover(p.client_no_context_takeover)
        .with_server_max_window_bits(p.server_max_window_bits)
        .with_client_max_window_bits(p.client_max_window_bits)
        .with_level(c.level)
        .with_memory_level(c.memory_level)
        .with_min_message_size(c.min_message_size)
}

/// Runs both handshakes; returns the client's and the server's agreement.
fn negotiate(
    client: DeflateConfig,
    server: DeflateConfig,
) -> (Option<DeflateParams>, Option<DeflateParams>) {
    let req = ClientRequest::new("example.com", "/").with_deflate(client);
    let mut ch = ClientHandshake::new(req, *b"the sample nonce");
    let mut head = Vec::new();
    ch.encode_request(&mut head);
    let sh = ServerHandshake::new();
    let (req, _) = sh.decode_request(&head).unwrap().unwrap();
    let answer = req.negotiate_deflate(&server);
    let mut opts = AcceptOptions::new();
    if let Some(a) = &answer {
        opts = opts.with_deflate(a);
    }
    let mut resp = Vec::new();
    sh.encode_accept_with(&req, &opts, &mut resp);
    let (accepted, _) = ch.decode_response(&resp).unwrap().unwrap();
    (accepted.deflate, answer.map(|a| a.params))
}

fn sample(len: usize) -> String {
    (0..len)
        .map(|i| ["alpha ", "beta ", "gamma ", "delta "][(i * 7 + i / 13) % 4])
        .collect::<String>()
        .chars()
        .take(len)
        .collect()
}

#[test]
fn rfc7692_5_negotiated_parameters_drive_both_codecs() {
    let configs = [
        DeflateConfig::default(),
        DeflateConfig::default().with_max_window_bits(15),
        DeflateConfig::default().with_max_window_bits(8),
        DeflateConfig::default()
            .with_no_context_takeover(true)
            .with_peer_no_context_takeover(true),
        DeflateConfig::default()
            .with_peer_max_window_bits(Some(9))
            .with_level(9)
            .with_memory_level(9),
        DeflateConfig::default()
            .with_min_message_size(0)
            .with_level(0),
        DeflateConfig::disabled(),
    ];
    for c in &configs {
        for s in &configs {
            let (cp, sp) = negotiate(*c, *s);
            assert_eq!(cp, sp, "both ends agree: client {c:?} server {s:?}");
            let client_cfg = Config::default().with_deflate(cp.map(|p| codec_deflate(p, c)));
            let server_cfg = Config::default().with_deflate(sp.map(|p| codec_deflate(p, s)));
            assert_eq!(cp.is_some(), c.enabled && s.enabled);
            let mut pair = Pair::with_configs(client_cfg.clone(), server_cfg.clone());
            // Every message both ways, twice (context takeover or not).
            let msgs = [sample(10), sample(2000), sample(70_000), String::new()];
            for _ in 0..2 {
                for m in &msgs {
                    pair.client.conn.send(Message::text(m.clone())).unwrap();
                    pair.server.conn.send(Message::text(m.clone())).unwrap();
                }
            }
            pair.pump();
            let expect: Vec<Event> = msgs
                .iter()
                .chain(msgs.iter())
                .map(|m| Event::Message(Message::text(m.clone())))
                .collect();
            assert_eq!(pair.server.take_events(), expect, "{c:?} / {s:?}");
            assert_eq!(pair.client.take_events(), expect, "{c:?} / {s:?}");
            // What the agreement says about resetting is what the codec frees.
            if let Some(p) = sp {
                let (sc, sd) = pair.server.conn.deflate_state().unwrap();
                let (cc, cd) = pair.client.conn.deflate_state().unwrap();
                assert!(!(p.server_no_context_takeover && (sc || cd)));
                assert!(!(p.client_no_context_takeover && (cc || sd)));
            }
        }
    }
}
