//! A broadcast chat in axum with sonar's extractor: every text message a client sends goes to
//! every connected client.
//!
//! Each connection is [split](sonar_tokio::WebSocket::into_split): its handler reads with the
//! [`WsReader`](sonar_tokio::WsReader), and its [`WsWriter`](sonar_tokio::WsWriter) is
//! subscribed to the room's [`Topics`](sonar_tokio::Topics) topic. A broadcast never waits:
//! each line is framed once and queued on every writer, and a client that has fallen more
//! than [`MAX_BEHIND`] bytes behind is closed with 1008 instead of holding up the others.
//!
//! ```text
//! cargo run -p sonar-axum --example axum_chat -- --addr 127.0.0.1:9002
//! sonar client ws://127.0.0.1:9002/chat                     # in two or more shells
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use sonar_axum::WebSocketUpgrade;
use sonar_tokio::{Config, Message, OnBackpressure, PreparedMessage, Topics, WebSocket};

/// How far behind (bytes queued and not yet written) a client may fall before it is closed.
pub const MAX_BEHIND: usize = 1 << 20;

/// The one topic every client is subscribed to.
const ROOM: &str = "room";

/// The chat room (every client's writer, subscribed to [`ROOM`]) and the next client id.
#[derive(Clone)]
pub struct Peers {
    room: Topics,
    next_id: Arc<AtomicU64>,
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            room: Topics::new(MAX_BEHIND, OnBackpressure::Close),
            next_id: Arc::default(),
        }
    }
}

impl Peers {
    /// Queues `line` for every client without waiting on any of them; the message is framed
    /// once for all. A client too far behind is closed with 1008 and leaves the room.
    pub fn broadcast(&self, line: String) {
        let delivery = self.room.publish(ROOM, &PreparedMessage::new(line));
        if delivery.closed > 0 {
            eprintln!(
                "{} client(s) more than {MAX_BEHIND} bytes behind: closed",
                delivery.closed
            );
        }
    }
}

/// The configuration of every connection: a write queue that holds [`MAX_BEHIND`] bytes, so
/// that only the room's limit decides when a client is too far behind.
pub fn config() -> Config {
    Config::default()
        .with_write_buffer(MAX_BEHIND)
        .with_write_queue(usize::MAX)
}

async fn client(socket: WebSocket, id: u64, peers: Peers) {
    let (mut reader, writer) = socket.into_split();
    peers.room.subscribe(ROOM, &writer);
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
    peers.room.unsubscribe_all(&writer);
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
