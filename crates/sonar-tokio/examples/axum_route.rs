//! A sonar WebSocket behind an axum route, with nothing but axum, hyper and sonar: axum
//! routes `GET /ws`, sonar validates the upgrade request and writes the `101`, and once hyper
//! hands over the connection, [`sonar_tokio::from_upgraded`] makes it a WebSocket with
//! keepalive running. Other routes stay plain HTTP.
//!
//! ```text
//! cargo run -p sonar-tokio --example axum_route             # listens on 127.0.0.1:9006
//! sonar client ws://127.0.0.1:9006/ws
//! ```

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::get;
use sonar_handshake::ServerHandshake;
use sonar_tokio::{Config, Role, UpgradeRequest};

async fn ws(mut req: Request) -> Response {
    // The same checks and HTTP errors (400, 426 + `Sec-WebSocket-Version: 13`) as sonar's
    // own server handshake.
    let upgrade = match UpgradeRequest::try_from(&req) {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.to_http_response().map(Body::from),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let mut ws = sonar_tokio::from_upgraded(io, Role::Server, Config::default());
        while let Some(Ok(message)) = ws.recv().await {
            if ws.send(message).await.is_err() {
                break;
            }
        }
    });
    ServerHandshake::new().accept_response(&upgrade, None)
}

/// The application: `/ws` is the WebSocket, `/` plain HTTP.
pub fn app() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { "hello over http; the websocket is at /ws\n" }),
        )
        .route("/ws", get(ws))
}

#[allow(dead_code)] // The test includes this file and serves `app` itself.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9006").await?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(listener, app()).await?;
    Ok(())
}
