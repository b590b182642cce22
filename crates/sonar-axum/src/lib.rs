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
//! use axum::{Router, response::Response, routing::any};
//! use sonar_axum::WebSocketUpgrade;
//!
//! async fn echo(ws: WebSocketUpgrade) -> Response {
//!     ws.on_upgrade(|mut socket| async move {
//!         while let Some(Ok(message)) = socket.recv().await {
//!             if socket.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn demo() -> std::io::Result<()> {
//! let app = Router::new().route("/ws", any(echo));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
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
    CloseCode, CloseFrame, CloseStatus, Config, Error, KeepaliveConfig, Message, WebSocket,
    WsReader, WsWriter,
};
