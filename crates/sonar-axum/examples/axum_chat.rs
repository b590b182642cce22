//! A broadcast chat in axum with sonar's extractor: every text message a client sends goes to
//! every connected client.
//!
//! Each connection is [split](sonar_tokio::WebSocket::into_split): its handler reads with the
//! [`WsReader`](sonar_tokio::WsReader) while a clone of its
//! [`WsWriter`](sonar_tokio::WsWriter) sits in the shared table. A broadcast never waits: it
//! queues the message on every writer with [`try_send`](sonar_tokio::WsWriter::try_send), and
//! a client that has fallen more than [`MAX_BEHIND`] bytes behind is closed with 1008 instead
//! of holding up the others.
//!
//! ```text
//! cargo run -p sonar-axum --example axum_chat -- --addr 127.0.0.1:9002
//! sonar client ws://127.0.0.1:9002/chat                     # in two or more shells
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use sonar_axum::WebSocketUpgrade;
use sonar_tokio::{CloseCode, Config, Message, TrySendError, WebSocket, WsWriter};

/// How far behind (bytes queued and not yet written) a client may fall before it is closed.
pub const MAX_BEHIND: usize = 1 << 20;

/// The connected clients' writers by id, and the next id.
#[derive(Clone, Default)]
pub struct Peers {
    writers: Arc<Mutex<HashMap<u64, WsWriter>>>,
    next_id: Arc<AtomicU64>,
}

impl Peers {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, WsWriter>> {
        self.writers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `line` for every client without waiting on any of them. The message is built
    /// once; each client's copy shares its bytes.
    pub fn broadcast(&self, line: String) {
        let message = Message::from(line);
        let mut peers = self.lock();
        let mut too_slow = Vec::new();
        for (id, writer) in peers.iter_mut() {
            match writer.try_send(message.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => too_slow.push(*id),
                // Its connection is ending; its own handler removes it.
                Err(TrySendError::Closed(..)) => {}
            }
        }
        for id in too_slow {
            if let Some(mut writer) = peers.remove(&id) {
                eprintln!(
                    "user{id} is {} bytes behind: closing it",
                    writer.buffered_amount()
                );
                tokio::spawn(async move {
                    // The Close waits behind what is queued, bounded by the close timeout.
                    let _ = writer.close(CloseCode::POLICY, "too slow").await;
                });
            }
        }
    }
}

/// The configuration of every connection: a write queue that holds [`MAX_BEHIND`] bytes, so
/// that `try_send` reports a full queue only for a client that far behind.
pub fn config() -> Config {
    Config::default()
        .with_write_buffer(MAX_BEHIND)
        .with_write_queue(usize::MAX)
}

async fn client(socket: WebSocket, id: u64, peers: Peers) {
    let (mut reader, writer) = socket.into_split();
    peers.lock().insert(id, writer);
    peers.broadcast(format!("* user{id} joined"));
    while let Some(message) = reader.recv().await {
        match message {
            Ok(Message::Text(text)) => peers.broadcast(format!("user{id}: {text}")),
            Ok(Message::Binary(_)) => {}
            Err(e) => {
                if !e.is_disconnect() {
                    eprintln!("user{id}: {e}");
                }
            }
        }
    }
    peers.lock().remove(&id);
    peers.broadcast(format!("* user{id} left"));
}

async fn chat(State(peers): State<Peers>, ws: WebSocketUpgrade) -> Response {
    let id = peers.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    ws.config(config())
        .on_upgrade(move |socket| client(socket, id, peers))
}

/// The application: `/chat` is the chat room (`any`: HTTP/2 uses `CONNECT`).
pub fn app() -> Router {
    Router::new()
        .route("/chat", any(chat))
        .with_state(Peers::default())
}

fn addr() -> Result<SocketAddr, String> {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:9002".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: axum_chat [--addr HOST:PORT]"
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
    println!("chat listening on {} (ws://…/chat)", listener.local_addr()?);
    axum::serve(listener, app()).await?;
    Ok(())
}
