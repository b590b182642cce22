//! sonar WebSockets in axum: a [`WebSocketUpgrade`] extractor with the shape of axum's own
//! `axum::extract::ws::WebSocketUpgrade`, whose handler gets a sonar [`WebSocket`]: keepalive
//! with RTT and dead-peer detection on by default, strict limits, the same close handshake
//! as every other sonar connection.
//!
//! Both HTTP/1.1 upgrades and HTTP/2 extended `CONNECT` (RFC 8441) are accepted; the handler
//! can tell which ([`WebSocketUpgrade::http_version`], [`UpgradeInfo`]). Route with
//! [`any`](axum::routing::any), since an HTTP/2 WebSocket request uses `CONNECT`.
//!
//! ```no_run
//! use axum::{Router, routing::any};
//! use sonar_axum::WebSocketUpgrade;
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let echo = |ws: WebSocketUpgrade| async move {
//!         ws.on_upgrade(|mut socket| async move {
//!             while let Some(Ok(message)) = socket.recv().await {
//!                 if socket.send(message).await.is_err() { break; }
//!             }
//!         })
//!     };
//!     let app = Router::new().route("/ws", any(echo));
//!     axum::serve(tokio::net::TcpListener::bind("127.0.0.1:9001").await?, app).await
//! }
//! ```
//!
//! (The README's example, compiled here.) The extractor answers `101 Switching Protocols`
//! over HTTP/1.1 and `200 OK` over HTTP/2; a request that is not a valid upgrade gets a
//! [`WebSocketUpgradeRejection`] with the statuses of sonar's own server handshake (400, 426
//! with `Sec-WebSocket-Version: 13`). `Option<WebSocketUpgrade>` serves a page and a
//! WebSocket on one route. permessage-deflate is accepted when the client offers it, over
//! either HTTP version, as by sonar's own server (`Config::deflate`).
//!
//! This crate only validates the request and bridges hyper's upgraded stream to
//! [`sonar_tokio::from_upgraded`]; the protocol lives in `sonar-async`.
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod rejection;
mod request;
mod upgrade;

pub use rejection::{RejectionReason, WebSocketUpgradeRejection};
pub use request::HttpVersion;
pub use upgrade::{
    DefaultOnFailedUpgrade, OnFailedUpgrade, UpgradeError, UpgradeInfo, WebSocketUpgrade,
};

pub use sonar_tokio::{
    CloseCode, CloseFrame, CloseStatus, Config, DeflateConfig, DeflateParams, Error,
    KeepaliveConfig, Message, WebSocket, WsReader, WsWriter,
};
