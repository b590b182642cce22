//! A hyper 1.x HTTP server that upgrades `GET /ws` to a WebSocket and echoes on it.
//!
//! hyper does the HTTP part; sonar-handshake computes `Sec-WebSocket-Accept`; once hyper
//! hands over the upgraded connection, [`sonar_tokio::from_upgraded`] wraps it.
//! hyper's upgraded I/O speaks hyper's own traits: `hyper_util::rt::TokioIo` turns it into a
//! tokio stream, which `from_upgraded` takes (and starts the connection's keepalive task).
//!
//! ```text
//! cargo run -p sonar-tokio --example hyper_upgrade         # listens on 127.0.0.1:9003
//! sonar client ws://127.0.0.1:9003/ws
//! curl http://127.0.0.1:9003/                               # plain HTTP still works
//! ```

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::{Request, Response, StatusCode};
use sonar_tokio::{Config, Role};

type Body = Full<Bytes>;

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}

fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    let has_token = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has_token(UPGRADE, "websocket") && has_token(CONNECTION, "upgrade")
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.uri().path() != "/ws" {
        return Ok(plain(StatusCode::OK, "hello over plain http; try /ws\n"));
    }
    let key = req.headers().get(SEC_WEBSOCKET_KEY).cloned();
    let version_ok = req
        .headers()
        .get("sec-websocket-version")
        .is_some_and(|v| v == "13");
    let Some(key) = key.filter(|_| is_websocket_upgrade(&req) && version_ok) else {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            "websocket upgrade expected\n",
        ));
    };
    let accept = sonar_handshake::accept_key(key.as_bytes());
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR, "bad accept key\n"));
    };

    // Once the 101 below is sent, hyper resolves this future with the raw connection.
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return eprintln!("upgrade failed: {e}"),
        };
        // hyper keeps any bytes it read past the request inside `Upgraded`, so none are lost.
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let mut ws = sonar_tokio::from_upgraded(io, Role::Server, Config::default());
        while let Some(Ok(message)) = ws.recv().await {
            if ws.send(message).await.is_err() {
                break;
            }
        }
    });

    let mut response = plain(StatusCode::SWITCHING_PROTOCOLS, "");
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9003".to_owned());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "http on http://{0}/, websocket on ws://{0}/ws",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handle);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                eprintln!("http connection error: {e}");
            }
        });
    }
}
