//! An echo server in axum with sonar's extractor: text and binary messages come back
//! unchanged, over HTTP/1.1 upgrades and over HTTP/2 extended CONNECT (cleartext prior
//! knowledge here; behind TLS with ALPN `h2` the same handler serves browsers' HTTP/2
//! WebSockets). Keepalive runs in every connection.
//!
//! ```text
//! cargo run -p sonar-axum --example axum_echo -- --addr 127.0.0.1:9001
//! sonar client ws://127.0.0.1:9001/
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::response::Response;
use axum::routing::any;
use sonar_axum::WebSocketUpgrade;

async fn echo(ws: WebSocketUpgrade) -> Response {
    let version = ws.http_version();
    ws.on_upgrade(move |mut socket| async move {
        while let Some(message) = socket.recv().await {
            let result = match message {
                Ok(message) => socket.send(message).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                if !e.is_disconnect() {
                    eprintln!("{version} websocket: {e}");
                }
                break;
            }
        }
    })
}

/// The application: every path is the echo WebSocket (`any`: HTTP/2 uses `CONNECT`).
pub fn app() -> Router {
    Router::new()
        .route("/", any(echo))
        .route("/{*path}", any(echo))
}

/// `--addr HOST:PORT` from the command line, 127.0.0.1:9001 by default.
fn addr() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:9001".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: axum_echo [--addr HOST:PORT]"
                ));
            }
        }
    }
    addr.parse().map_err(|e| format!("--addr {addr}: {e}"))
}

#[allow(dead_code)] // The test includes this file and serves `app` itself.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(addr()?).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app()).await?;
    Ok(())
}
