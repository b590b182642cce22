//! A broadcast chat server on tokio: every text message a client sends goes to every client.
//!
//! Each connection is [split](sonar_tokio::WebSocket::into_split): its task reads with the
//! [`WsReader`](sonar_tokio::WsReader), and its [`WsWriter`](sonar_tokio::WsWriter) is
//! subscribed to one [`Topics`](sonar_tokio::Topics) topic. A broadcast never waits: each
//! line is framed once and queued on every writer, and a client that has fallen more than
//! [`MAX_BEHIND`] bytes behind (it stopped reading, or its link is too slow) is closed with
//! 1008 instead of holding up the others.
//!
//! ```text
//! cargo run -p sonar-tokio --example chat                   # listens on 127.0.0.1:9002
//! sonar client ws://127.0.0.1:9002                          # in two or more shells
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use sonar_tokio::{Config, Error, Message, OnBackpressure, PreparedMessage, Topics};

/// How far behind (bytes queued and not yet written) a client may fall before it is closed.
pub const MAX_BEHIND: usize = 1 << 20;

/// The one topic every client is subscribed to.
const ROOM: &str = "room";

/// The chat room: every client's writer, subscribed to [`ROOM`].
#[derive(Clone)]
pub struct Room(Topics);

impl Default for Room {
    fn default() -> Self {
        Room(Topics::new(MAX_BEHIND, OnBackpressure::Close))
    }
}

impl Room {
    /// Queues `line` for every client without waiting on any of them; the message is framed
    /// once for all. A client too far behind is closed with 1008 and leaves the room.
    pub fn broadcast(&self, line: String) {
        let delivery = self.0.publish(ROOM, &PreparedMessage::new(line));
        if delivery.closed > 0 {
            eprintln!(
                "{} client(s) more than {MAX_BEHIND} bytes behind: closed",
                delivery.closed
            );
        }
    }
}

async fn client(incoming: sonar_tokio::Incoming, id: u64, room: Room) -> Result<(), Error> {
    let ws = incoming.upgrade().await?;
    let (mut reader, writer) = ws.into_split();
    room.0.subscribe(ROOM, &writer);
    room.broadcast(format!("* user{id} joined"));
    let mut result = Ok(());
    while let Some(message) = reader.recv().await {
        match message {
            Ok(Message::Text(text)) => room.broadcast(format!("user{id}: {text}")),
            Ok(Message::Binary(_)) => {}
            Err(e) => result = Err(e),
        }
    }
    room.0.unsubscribe_all(&writer);
    room.broadcast(format!("* user{id} left"));
    result
}

/// The configuration of every connection: a write queue that holds [`MAX_BEHIND`] bytes, so
/// that only the room's limit decides when a client is too far behind.
pub fn config() -> Config {
    Config::default()
        .with_write_buffer(MAX_BEHIND)
        .with_write_queue(usize::MAX)
}

/// Accepts clients on `listener` until accepting fails.
pub async fn serve(listener: sonar_tokio::Listener) -> std::io::Result<()> {
    let room = Room::default();
    let next_id = AtomicU64::new(1);
    loop {
        let (incoming, peer) = listener.accept().await?;
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let room = room.clone();
        tokio::spawn(async move {
            if let Err(e) = client(incoming, id, room).await
                && !e.is_disconnect()
            {
                eprintln!("{peer} (user{id}): {e}");
            }
        });
    }
}

#[allow(dead_code)] // The chat test includes this file and runs `serve` itself.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned())
        .parse()?;
    let listener = sonar_tokio::listen(addr, config()).await?;
    println!("chat on ws://{}", listener.local_addr()?);
    serve(listener).await?;
    Ok(())
}
