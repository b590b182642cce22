//! The extractor over HTTP/1.1: a real axum server on loopback, sonar's client, raw peers,
//! and `oneshot` requests for what no real client can send.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::any;
use sonar_axum::{HttpVersion, RejectionReason, UpgradeError, WebSocketUpgrade};
use sonar_handshake::ServerHandshake;
use sonar_tokio::{ClientRequest, CloseCode, Config, Message};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tower::ServiceExt;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

#[tokio::test]
async fn sonar_client_echoes_through_the_extractor_over_http1() {
    let (app, mut events) = echo_app(Config::default());
    let addr = serve_plain(app).await;
    let request = ClientRequest::from_url(&format!("ws://{addr}/echo"))
        .unwrap()
        .with_subprotocol(PROTOCOL);
    let (mut ws, accepted) = sonar_tokio::connect_with(request, Config::default())
        .await
        .unwrap();
    assert_eq!(accepted.subprotocol.as_deref(), Some(PROTOCOL));
    let Event::Upgraded(info) = next_event(&mut events).await else {
        panic!("upgraded first");
    };
    assert_eq!(info.version, HttpVersion::Http11);
    assert_eq!(info.protocol.as_deref(), Some(PROTOCOL));

    check_echo(&mut ws).await;

    ws.close(CloseCode::NORMAL, "bye").await.unwrap();
    let status = ws.close_status().expect("closed");
    assert!(status.is_normal(), "{status:?}");
    assert!(matches!(next_event(&mut events).await, Event::Ended(None)));
}

#[tokio::test]
async fn frames_sent_with_the_request_head_in_one_segment_reach_the_handler() {
    let (app, _events) = echo_app(Config::default());
    let addr = serve_plain(app).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut bytes = format!(
        "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    for (i, text) in ["first", "second", "third"].iter().enumerate() {
        bytes.extend(client_frame(0x1, text.as_bytes(), [1, 2, 3, i as u8]));
    }
    // One write: head and frames leave in the same segment.
    tcp.write_all(&bytes).await.unwrap();

    let (status, headers) = timeout(LIMIT, read_response_head(&mut tcp)).await.unwrap();
    assert_eq!(status, 101);
    assert_eq!(
        header(&headers, "sec-websocket-accept"),
        Some(sonar_handshake::accept_key(KEY.as_bytes()).as_str())
    );
    for text in ["first", "second", "third"] {
        let (b0, payload) = timeout(LIMIT, read_server_frame(&mut tcp)).await.unwrap();
        assert_eq!((b0, payload.as_slice()), (0x81, text.as_bytes()));
    }
}

/// A raw request to `/echo` with `lines` as its headers after `Host`.
fn raw_request(first_line: &str, lines: &[&str]) -> String {
    let mut head = format!("{first_line}\r\nHost: localhost\r\n");
    for line in lines {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

#[tokio::test]
async fn invalid_upgrades_get_the_statuses_of_sonars_own_server_handshake() {
    let (app, _events) = echo_app(Config::default());
    let addr = serve_plain(app).await;
    let upgrade = "Upgrade: websocket";
    let connection = "Connection: Upgrade";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
    let version = "Sec-WebSocket-Version: 13";
    let get = "GET /echo HTTP/1.1";
    let cases: Vec<(&str, String)> = vec![
        ("no version", raw_request(get, &[upgrade, connection, key])),
        (
            "version 8",
            raw_request(get, &[upgrade, connection, key, "Sec-WebSocket-Version: 8"]),
        ),
        ("no key", raw_request(get, &[upgrade, connection, version])),
        (
            "short key",
            raw_request(
                get,
                &[upgrade, connection, "Sec-WebSocket-Key: c2hvcnQ=", version],
            ),
        ),
        ("no upgrade", raw_request(get, &[connection, key, version])),
        (
            "no connection upgrade",
            raw_request(get, &[upgrade, "Connection: keep-alive", key, version]),
        ),
        (
            "post",
            raw_request(
                "POST /echo HTTP/1.1",
                &[upgrade, connection, key, version, "Content-Length: 0"],
            ),
        ),
        (
            "bad subprotocol list",
            raw_request(
                get,
                &[
                    upgrade,
                    connection,
                    key,
                    version,
                    "Sec-WebSocket-Protocol: a b",
                ],
            ),
        ),
        (
            "bad extensions",
            raw_request(
                get,
                &[
                    upgrade,
                    connection,
                    key,
                    version,
                    "Sec-WebSocket-Extensions: ;;",
                ],
            ),
        ),
    ];
    for (name, request) in cases {
        let expected = ServerHandshake::new()
            .decode_request(request.as_bytes())
            .expect_err(name);
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let (status, headers) = timeout(LIMIT, read_response_head(&mut tcp)).await.unwrap();
        assert_eq!(status, expected.status.as_u16(), "{name}: {expected:?}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/plain"),
            "{name}"
        );
        if status == 426 {
            assert_eq!(
                header(&headers, "sec-websocket-version"),
                Some("13"),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn the_client_gets_no_subprotocol_it_did_not_offer() {
    let (app, mut events) = echo_app(Config::default());
    let addr = serve_plain(app).await;
    let request = ClientRequest::from_url(&format!("ws://{addr}/echo"))
        .unwrap()
        .with_subprotocol("unknown.v1");
    let (mut ws, accepted) = sonar_tokio::connect_with(request, Config::default())
        .await
        .unwrap();
    assert_eq!(accepted.subprotocol, None);
    let Event::Upgraded(info) = next_event(&mut events).await else {
        panic!("upgraded first");
    };
    assert_eq!(info.protocol, None);
    ws.send("still works").await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.as_text(), Some("still works"));
}

#[tokio::test]
async fn the_config_reaches_the_connection_a_message_over_its_limit_fails_with_1009() {
    let (app, mut events) = echo_app(Config::default().with_max_message_size(1024));
    let addr = serve_plain(app).await;
    let mut ws = sonar_tokio::connect(&format!("ws://{addr}/echo"))
        .await
        .unwrap();
    ws.send(Message::binary(vec![7u8; 1024])).await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.payload().len(), 1024);
    ws.send(Message::binary(vec![7u8; 1025])).await.unwrap();
    // The server fails the connection with 1009; the client sees the Close.
    while let Some(result) = timeout(LIMIT, ws.recv()).await.expect("closed in time") {
        if result.is_err() {
            break;
        }
    }
    let status = ws.close_status().expect("closed");
    assert_eq!(status.code, CloseCode::TOO_BIG, "{status:?}");
    let _upgraded = next_event(&mut events).await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Ended(Some(_))
    ));
}

/// An upgrade request as hyper would hand it to axum; `upgradable` adds hyper's upgrade
/// handle (one that never gets a connection, as if the client had left).
fn request(upgradable: bool, protocols: Option<&str>) -> http::Request<Body> {
    let mut builder = http::Request::get("/ws")
        .header("host", "localhost")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header("sec-websocket-key", KEY)
        .header("sec-websocket-version", "13");
    if let Some(p) = protocols {
        builder = builder.header("sec-websocket-protocol", p);
    }
    let mut req = builder.body(Body::empty()).unwrap();
    if upgradable {
        let none = hyper::upgrade::on(http::Request::new(()));
        req.extensions_mut().insert(none);
    }
    req
}

#[tokio::test]
async fn on_failed_upgrade_hears_when_the_server_never_hands_over_the_connection() {
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new().route(
        "/ws",
        any(move |ws: WebSocketUpgrade| async move {
            let failed_tx = failed_tx.clone();
            ws.on_failed_upgrade(move |e: UpgradeError| {
                let _ = failed_tx.send(e);
            })
            .on_upgrade(|_socket| async { panic!("no connection to upgrade") })
        }),
    );
    let response = app.oneshot(request(true, None)).await.unwrap();
    assert_eq!(response.status(), 101);
    let error = timeout(LIMIT, failed_rx.recv()).await.unwrap().unwrap();
    assert!(matches!(error, UpgradeError::Upgrade(_)), "{error:?}");
}

#[tokio::test]
async fn a_request_without_hyper_upgrade_support_is_refused_with_500() {
    let app = Router::new().route(
        "/ws",
        any(|ws: WebSocketUpgrade| async move { ws.on_upgrade(|_socket| async {}) }),
    );
    let response = app.oneshot(request(false, None)).await.unwrap();
    assert_eq!(response.status(), 500);
    let rejection = sonar_axum::WebSocketUpgradeRejection::from(RejectionReason::NotUpgradable);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(body, rejection.body().as_bytes());
}

#[tokio::test]
async fn protocols_picks_the_servers_first_choice_among_those_offered() {
    async fn handler(mut ws: WebSocketUpgrade) -> Response {
        let offered: Vec<String> = ws.requested_protocols().map(String::from).collect();
        assert_eq!(offered, ["b", "c", "a"]);
        assert!(!ws.set_selected_protocol("z"), "not offered");
        assert_eq!(ws.selected_protocol(), None);
        assert!(ws.set_selected_protocol("c"));
        assert_eq!(ws.selected_protocol(), Some("c"));
        let ws = ws.protocols(["x", "a", "b"]);
        assert_eq!(ws.selected_protocol(), Some("a"));
        assert_eq!(ws.http_version(), HttpVersion::Http11);
        ws.on_upgrade(|_socket| async {})
    }
    let app = Router::new().route("/ws", any(handler));
    let response = app.oneshot(request(true, Some("b, c,a"))).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["sec-websocket-protocol"], "a");
    assert_eq!(response.headers()["upgrade"], "websocket");
    assert_eq!(
        response.headers()["sec-websocket-accept"],
        sonar_handshake::accept_key(KEY.as_bytes()).as_str()
    );
}

#[tokio::test]
async fn an_optional_extractor_serves_plain_requests_and_websockets_on_one_route() {
    async fn page_or_echo(ws: Option<WebSocketUpgrade>) -> Response {
        match ws {
            Some(ws) => ws.on_upgrade(|socket| async move {
                let _ = echo_loop(socket).await;
            }),
            None => axum::response::IntoResponse::into_response("a page"),
        }
    }
    let app = Router::new().route("/", any(page_or_echo));
    let addr = serve_plain(app).await;

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = timeout(LIMIT, read_response_head(&mut tcp)).await.unwrap();
    assert_eq!(status, 200, "a plain GET gets the page");

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let bad = raw_request(
        "GET / HTTP/1.1",
        &["Upgrade: websocket", "Connection: Upgrade"],
    );
    tcp.write_all(bad.as_bytes()).await.unwrap();
    let (status, headers) = timeout(LIMIT, read_response_head(&mut tcp)).await.unwrap();
    assert_eq!(status, 426, "a websocket attempt is validated in full");
    assert_eq!(header(&headers, "sec-websocket-version"), Some("13"));

    let mut ws = sonar_tokio::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send("hi").await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.as_text(), Some("hi"));
}

/// A message that compresses well: 1 MiB of a repeated sentence.
fn compressible() -> String {
    "the quick brown fox jumps over the lazy dog. ".repeat((1 << 20) / 45)
}

#[tokio::test]
async fn permessage_deflate_is_negotiated_and_compresses_the_echo_over_http1() {
    let (app, mut events) = echo_app(Config::default());
    let addr = serve_plain(app).await;
    let (mut ws, accepted) = sonar_tokio::connect_with(
        ClientRequest::from_url(&format!("ws://{addr}/echo")).unwrap(),
        Config::default(),
    )
    .await
    .unwrap();
    assert!(accepted.deflate.is_some(), "{accepted:?}");
    let Event::Upgraded(info) = next_event(&mut events).await else {
        panic!("upgraded first");
    };
    assert_eq!(info.deflate, accepted.deflate);
    let text = compressible();
    ws.send(text.clone()).await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.as_text(), Some(text.as_str()));
    let wire = ws.stats().bytes_in;
    assert!(wire < 64 * 1024, "1 MiB echoed in {wire} bytes on the wire");
}

#[tokio::test]
async fn a_server_config_without_deflate_accepts_no_compression() {
    let config = Config::default().with_deflate(sonar_tokio::DeflateConfig::disabled());
    let (app, mut events) = echo_app(config);
    let addr = serve_plain(app).await;
    let (mut ws, accepted) = sonar_tokio::connect_with(
        ClientRequest::from_url(&format!("ws://{addr}/echo")).unwrap(),
        Config::default(),
    )
    .await
    .unwrap();
    assert_eq!(accepted.deflate, None);
    let Event::Upgraded(info) = next_event(&mut events).await else {
        panic!("upgraded first");
    };
    assert_eq!(info.deflate, None);
    let text = compressible();
    ws.send(text.clone()).await.unwrap();
    let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.as_text(), Some(text.as_str()));
    assert!(ws.stats().bytes_in >= text.len() as u64);
}
