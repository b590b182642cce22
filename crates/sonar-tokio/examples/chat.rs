//! A broadcast chat server on tokio: every text message a client sends goes to every client.
//!
//! Each connection is [split](sonar_tokio::WebSocket::into_split): its task reads with the
//! [`WsReader`](sonar_tokio::WsReader), while a clone of its
//! [`WsWriter`](sonar_tokio::WsWriter) sits in a shared table. A broadcast never waits: it
//! queues the message on every writer with [`try_send`](sonar_tokio::WsWriter::try_send), and
//! a client that has fallen more than [`MAX_BEHIND`] bytes behind (it stopped reading, or its
//! link is too slow) is closed with 1008 instead of holding up the others.
//!
//! ```text
//! cargo run -p sonar-tokio --example chat                   # listens on 127.0.0.1:9002
//! sonar client ws://127.0.0.1:9002                          # in two or more shells
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sonar_tokio::{CloseCode, Config, Error, Message, TrySendError, WsWriter};

/// How far behind (bytes queued and not yet written) a client may fall before it is closed.
pub const MAX_BEHIND: usize = 1 << 20;

/// The connected clients' writers, by client id.
#[derive(Clone, Default)]
pub struct Peers(Arc<Mutex<HashMap<u64, WsWriter>>>);

impl Peers {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, WsWriter>> {
        self.0
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
                // Its connection is ending; its own task removes it.
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

async fn client(incoming: sonar_tokio::Incoming, id: u64, peers: Peers) -> Result<(), Error> {
    let ws = incoming.upgrade().await?;
    let (mut reader, writer) = ws.into_split();
    peers.lock().insert(id, writer);
    peers.broadcast(format!("* user{id} joined"));
    let mut result = Ok(());
    while let Some(message) = reader.recv().await {
        match message {
            Ok(Message::Text(text)) => peers.broadcast(format!("user{id}: {text}")),
            Ok(Message::Binary(_)) => {}
            Err(e) => result = Err(e),
        }
    }
    peers.lock().remove(&id);
    peers.broadcast(format!("* user{id} left"));
    result
}

/// The configuration of every connection: a write queue that holds [`MAX_BEHIND`] bytes, so
/// that `try_send` reports a full queue only for a client that far behind.
pub fn config() -> Config {
    Config::default()
        .with_write_buffer(MAX_BEHIND)
        .with_write_queue(usize::MAX)
}

/// Accepts clients on `listener` until accepting fails.
pub async fn serve(listener: sonar_tokio::Listener) -> std::io::Result<()> {
    let peers = Peers::default();
    let next_id = AtomicU64::new(1);
    loop {
        let (incoming, peer) = listener.accept().await?;
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let peers = peers.clone();
        tokio::spawn(async move {
            if let Err(e) = client(incoming, id, peers).await
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
