//! The `http` feature: hyper/axum-style requests validated with the same rules, and responses.
#![cfg(feature = "http")]

use sonar_handshake::{
    AcceptOptions, RejectReason, Rejection, Request, ServerHandshake, StatusCode,
};

fn upgrade() -> http::request::Builder {
    http::Request::builder()
        .method("GET")
        .uri("/chat?room=1")
        .version(http::Version::HTTP_11)
        .header("Host", "example.com")
        .header("Upgrade", "websocket")
        .header("Connection", "keep-alive, Upgrade")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Protocol", "chat")
}

#[test]
fn http_request_round_trip_and_response() {
    let hreq = upgrade().body("ignored body type").unwrap();
    let req = Request::try_from(&hreq).unwrap();
    assert_eq!(
        (req.path(), req.query(), req.host()),
        ("/chat", Some("room=1"), "example.com")
    );
    assert_eq!(req.subprotocols(), ["chat"]);

    let back = http::Request::<()>::try_from(&req).unwrap();
    assert_eq!(back.method(), http::Method::GET);
    assert_eq!(back.uri(), "/chat?room=1");
    assert_eq!(
        back.headers()["sec-websocket-key"],
        "dGhlIHNhbXBsZSBub25jZQ=="
    );
    assert_eq!(Request::try_from(&back).unwrap(), req);

    let hs = ServerHandshake::new().with_subprotocols(["chat"]);
    let resp: http::Response<()> = hs.accept_response(&req, hs.select_subprotocol(&req));
    assert_eq!(resp.status(), http::StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers();
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "Upgrade");
    assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(h["sec-websocket-protocol"], "chat");
    assert_eq!(h.len(), 4);
    let resp: http::Response<()> =
        hs.accept_response_with(&req, &AcceptOptions::new().with_header("X-A", "1"));
    assert_eq!(resp.headers()["x-a"], "1");
    assert!(resp.headers().get("sec-websocket-protocol").is_none());
}

#[test]
fn http_request_rejections() {
    let cases = [
        (upgrade().method("POST"), RejectReason::Method),
        (
            upgrade().version(http::Version::HTTP_10),
            RejectReason::HttpVersion,
        ),
        (
            upgrade().version(http::Version::HTTP_2),
            RejectReason::HttpVersion,
        ),
        (
            upgrade().header("Sec-WebSocket-Version", "8"),
            RejectReason::DuplicateHeader("sec-websocket-version"),
        ),
        (
            upgrade().header("Sec-WebSocket-Key", "x"),
            RejectReason::DuplicateHeader("sec-websocket-key"),
        ),
    ];
    for (b, reason) in cases {
        let r = Request::try_from(&b.body(()).unwrap()).unwrap_err();
        assert_eq!(r.reason, reason);
    }
    let mut no_version = upgrade().body(()).unwrap();
    no_version.headers_mut().remove("sec-websocket-version");
    let r = Request::try_from(&no_version).unwrap_err();
    assert_eq!(r.status, StatusCode::UPGRADE_REQUIRED);
    let resp = r.to_http_response();
    assert_eq!(resp.status(), http::StatusCode::UPGRADE_REQUIRED);
    assert_eq!(resp.headers()["sec-websocket-version"], "13");
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.headers()["connection"], "close");
    assert_eq!(
        resp.headers()["content-length"],
        resp.body().len().to_string().as_str()
    );
    assert_eq!(resp.body(), "unsupported websocket version, 13 required\n");

    let mut no_host = upgrade().uri("http://example.org/x").body(()).unwrap();
    no_host.headers_mut().remove("host");
    assert_eq!(Request::try_from(&no_host).unwrap().host(), "example.org");
    let mut no_host = upgrade().body(()).unwrap();
    no_host.headers_mut().remove("host");
    assert_eq!(
        Request::try_from(&no_host).unwrap_err().reason,
        RejectReason::MissingHost
    );

    let resp = Rejection::forbidden().to_http_response();
    assert_eq!(resp.status(), http::StatusCode::FORBIDDEN);
    assert!(resp.headers().get("sec-websocket-version").is_none());
}
