//! The extractor over HTTP/2 extended CONNECT (RFC 8441): hyper's HTTP/2 client against a
//! real axum server on loopback, cleartext (`axum::serve`, prior knowledge) and TLS with
//! ALPN `h2`; sonar's client on the upgraded stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::any;
use http_body_util::{BodyExt, Empty};
use sonar_axum::{HttpVersion, WebSocketUpgrade};
use sonar_tokio::{CloseCode, Config};
use support::*;
use tokio::time::timeout;
use tower::ServiceExt;

async fn echo_over(mut sender: H2Sender, authority: &str, scheme: &str) {
    let (mut ws, head) = h2_websocket(&mut sender, authority, scheme, Config::default()).await;
    assert_eq!(head.headers["sec-websocket-protocol"], PROTOCOL);
    for name in ["sec-websocket-accept", "upgrade", "connection"] {
        assert!(!head.headers.contains_key(name), "no {name} over HTTP/2");
    }
    check_echo(&mut ws).await;
    ws.close(CloseCode::NORMAL, "bye").await.unwrap();
    let status = ws.close_status().expect("closed");
    assert!(status.is_normal(), "{status:?}");
}

#[tokio::test]
async fn sonar_client_echoes_through_the_extractor_over_cleartext_h2() {
    let (app, mut events) = echo_app(Config::default());
    let addr = serve_plain(app).await;
    let authority = addr.to_string();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let sender = h2_client(tcp, &authority).await;
    echo_over(sender, &authority, "http").await;
    let Event::Upgraded(info) = next_event(&mut events).await else {
        panic!("upgraded first");
    };
    assert_eq!(info.version, HttpVersion::Http2);
    assert_eq!(info.protocol.as_deref(), Some(PROTOCOL));
    assert!(matches!(next_event(&mut events).await, Event::Ended(None)));
}

#[tokio::test]
async fn sonar_client_echoes_through_the_extractor_over_h2_with_tls() {
    let cert = cert();
    let (app, mut events) = echo_app(Config::default());
    let addr = serve_tls(app, &cert).await;
    let authority = format!("localhost:{}", addr.port());
    let tls = tls_connect(addr, &cert).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let sender = h2_client(tls, &authority).await;
    echo_over(sender, &authority, "https").await;
    let Event::Upgraded(info) = next_event(&mut events).await else {
        panic!("upgraded first");
    };
    assert_eq!(info.version, HttpVersion::Http2);
}

#[tokio::test]
async fn several_websockets_share_one_h2_connection() {
    let (app, mut events) = echo_app(Config::default());
    let addr = serve_plain(app).await;
    let authority = addr.to_string();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut sender = h2_client(tcp, &authority).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(
            h2_websocket(&mut sender, &authority, "http", Config::default())
                .await
                .0,
        );
    }
    // Interleave: each stream carries its own messages.
    for round in 0..5 {
        for (i, ws) in sockets.iter_mut().enumerate() {
            ws.send(format!("{i}:{round}")).await.unwrap();
        }
        for (i, ws) in sockets.iter_mut().enumerate() {
            let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
            assert_eq!(echoed.as_text(), Some(format!("{i}:{round}").as_str()));
        }
    }
    for _ in 0..3 {
        let Event::Upgraded(info) = next_event(&mut events).await else {
            panic!("three upgrades");
        };
        assert_eq!(info.version, HttpVersion::Http2);
    }
}

#[tokio::test]
async fn invalid_h2_websocket_requests_get_typed_rejections() {
    let (app, _events) = echo_app(Config::default());
    let addr = serve_plain(app).await;
    let authority = addr.to_string();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut sender = h2_client(tcp, &authority).await;
    let connect = || h2_request(&authority, "/echo", "http");
    let cases = [
        (
            "no version",
            http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(format!("http://{authority}/echo"))
                .extension(hyper::ext::Protocol::from_static("websocket")),
            426,
        ),
        (
            "version 8",
            http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(format!("http://{authority}/echo"))
                .extension(hyper::ext::Protocol::from_static("websocket"))
                .header("sec-websocket-version", "8"),
            426,
        ),
        (
            "two versions",
            connect().header("sec-websocket-version", "13"),
            400,
        ),
        (
            "other protocol",
            http::Request::builder()
                .method(http::Method::CONNECT)
                .uri(format!("http://{authority}/echo"))
                .extension(hyper::ext::Protocol::from_static("webtransport"))
                .header("sec-websocket-version", "13"),
            400,
        ),
        (
            "bad subprotocols",
            connect().header("sec-websocket-protocol", "a b"),
            400,
        ),
        (
            "bad extensions",
            connect().header("sec-websocket-extensions", ";;"),
            400,
        ),
    ];
    for (name, builder, expected) in cases {
        let response = sender
            .send_request(builder.body(Empty::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{name}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/plain", "{name}");
        assert!(!headers.contains_key("connection"), "{name}");
        if expected == 426 {
            assert_eq!(headers["sec-websocket-version"], "13", "{name}");
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.ends_with(b"\n") && body.len() > 1, "{name}: {body:?}");
    }
    // The connection is still good for WebSockets after the refusals.
    let (mut ws, _) = h2_websocket(&mut sender, &authority, "http", Config::default()).await;
    ws.send("after").await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.as_text(), Some("after"));
}

#[tokio::test]
async fn an_h2_request_that_is_not_connect_is_refused_with_400() {
    let app = Router::new().route(
        "/ws",
        any(|ws: WebSocketUpgrade| async move { ws.on_upgrade(|_socket| async {}) }),
    );
    let mut request = http::Request::get("https://localhost/ws")
        .version(http::Version::HTTP_2)
        .header("sec-websocket-version", "13")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 400);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert!(body.starts_with(b"http/2 websocket requests must use the connect method"));
}

/// Short keepalive on the server: ping after 100 ms of silence, 1 s for the pong (room for
/// a loaded machine: a silent peer is declared dead after about 1.1 s).
fn short_keepalive() -> Config {
    Config::default()
        .with_ping_interval(Some(Duration::from_millis(100)))
        .with_pong_timeout(Some(Duration::from_secs(1)))
}

#[tokio::test]
async fn keepalive_detects_an_h2_peer_that_stops_answering_pings() {
    let (app, mut events) = echo_app(short_keepalive());
    let addr = serve_plain(app).await;
    let authority = addr.to_string();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut sender = h2_client(tcp, &authority).await;
    let request = h2_request(&authority, "/echo", "http")
        .body(Empty::new())
        .unwrap();
    // A peer that holds its stream open and never reads or answers anything.
    let (_head, _silent_stream) = h2_upgrade(&mut sender, request).await;
    let Event::Upgraded(info) = next_event(&mut events).await else {
        panic!("upgraded first");
    };
    assert_eq!(info.version, HttpVersion::Http2);
    let Event::Ended(Some(error)) = next_event(&mut events).await else {
        panic!("the handler's stream ends with an error");
    };
    assert!(
        matches!(error, sonar_tokio::Error::Keepalive(_)) && error.is_timeout(),
        "keepalive declared the peer dead, got {error:?}"
    );
}

#[tokio::test]
async fn keepalive_keeps_an_h2_peer_that_answers_pings() {
    let (app, mut events) = echo_app(short_keepalive());
    let addr = serve_plain(app).await;
    let authority = addr.to_string();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut sender = h2_client(tcp, &authority).await;
    // sonar's client answers pings by itself; its own keepalive is off.
    let client = Config::default().with_ping_interval(None);
    let (mut ws, _) = h2_websocket(&mut sender, &authority, "http", client).await;
    let _upgraded = next_event(&mut events).await;
    // Idle for longer than a silent peer survives: pings come and are answered, nothing ends.
    let idle = timeout(Duration::from_millis(1_600), ws.recv()).await;
    assert!(idle.is_err(), "no message and no end while idle: {idle:?}");
    assert!(ws.stats().pings_received >= 3, "{:?}", ws.stats());
    assert!(
        events.try_recv().is_err(),
        "the server handler is still running"
    );
    ws.send("still here").await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.as_text(), Some("still here"));
}

/// The server's `Sec-WebSocket-Extensions` answer as extension parameters (test-only parse:
/// `name; key=value; flag`).
fn parse_answer(value: &str) -> sonar_handshake::ExtensionParams {
    let mut parts = value.split(';').map(str::trim);
    let mut ext = sonar_handshake::ExtensionParams::new(parts.next().unwrap());
    for param in parts {
        ext = match param.split_once('=') {
            Some((k, v)) => ext.with_param(k.trim(), Some(v.trim().trim_matches('"'))),
            None => ext.with_param(param, None),
        };
    }
    ext
}

#[tokio::test]
async fn permessage_deflate_is_negotiated_and_compresses_the_echo_over_h2() {
    let (app, mut events) = echo_app(Config::default());
    let addr = serve_plain(app).await;
    let authority = addr.to_string();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut sender = h2_client(tcp, &authority).await;
    let offer = sonar_tokio::DeflateConfig::default();
    let request = h2_request(&authority, "/echo", "http")
        .header("sec-websocket-extensions", offer.offer().to_string())
        .body(Empty::new())
        .unwrap();
    let (head, io) = h2_upgrade(&mut sender, request).await;
    let answer = head.headers["sec-websocket-extensions"].to_str().unwrap();
    let params = offer.accept_response(&parse_answer(answer)).unwrap();
    let Event::Upgraded(info) = next_event(&mut events).await else {
        panic!("upgraded first");
    };
    assert_eq!(info.version, HttpVersion::Http2);
    assert_eq!(info.deflate, Some(params));
    let mut ws = sonar_tokio::from_upgraded_deflate(
        hyper_util::rt::TokioIo::new(io),
        sonar_tokio::Role::Client,
        params,
        Config::default(),
    );
    let text = "the quick brown fox jumps over the lazy dog. ".repeat((1 << 20) / 45);
    ws.send(text.clone()).await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.as_text(), Some(text.as_str()));
    let wire = ws.stats().bytes_in;
    assert!(wire < 64 * 1024, "1 MiB echoed in {wire} bytes on the wire");
}
