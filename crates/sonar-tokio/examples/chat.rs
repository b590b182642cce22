//! A broadcast chat server on tokio: every text message a client sends goes to every client.
//!
//! Each connection is [split](sonar_tokio::WebSocket::split): its task reads with the
//! [`WsReader`](sonar_tokio::WsReader), while clones of its cloneable
//! [`WsWriter`](sonar_tokio::WsWriter) sit in a shared table that every other connection
//! writes to.
//!
//! ```text
//! cargo run -p sonar-tokio --example chat                   # listens on 127.0.0.1:9002
//! sonar client ws://127.0.0.1:9002                          # in two or more shells
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sonar_tokio::{Config, Error, Message, WsWriter};

type Peers = Arc<Mutex<HashMap<u64, WsWriter>>>;

fn lock(peers: &Peers) -> MutexGuard<'_, HashMap<u64, WsWriter>> {
    peers
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends `line` to every connected client. The table lock is not held across `await`: the
/// writers are cloned out first. A client that stops reading slows down only the sends to
/// itself once its queue is full (each writer has its own bounded queue).
async fn broadcast(peers: &Peers, line: String) {
    let writers: Vec<WsWriter> = lock(peers).values().cloned().collect();
    for mut writer in writers {
        // A writer of a connection that just ended refuses the message: nothing to do.
        let _ = writer.send(Message::text(line.clone())).await;
    }
}

async fn client(incoming: sonar_tokio::Incoming, id: u64, peers: Peers) -> Result<(), Error> {
    let ws = incoming.upgrade().await?;
    let (mut reader, writer) = ws.split();
    lock(&peers).insert(id, writer);
    broadcast(&peers, format!("* user{id} joined")).await;
    let mut result = Ok(());
    while let Some(message) = reader.recv().await {
        match message {
            Ok(Message::Text(text)) => broadcast(&peers, format!("user{id}: {text}")).await,
            Ok(Message::Binary(_)) => {}
            Err(e) => result = Err(e),
        }
    }
    lock(&peers).remove(&id);
    broadcast(&peers, format!("* user{id} left")).await;
    result
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".to_owned())
        .parse()?;
    let listener = sonar_tokio::listen(addr, Config::default()).await?;
    println!("chat on ws://{}", listener.local_addr()?);
    let peers = Peers::default();
    let next_id = AtomicU64::new(1);
    loop {
        let (incoming, peer) = listener.accept().await?;
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let peers = peers.clone();
        tokio::spawn(async move {
            if let Err(e) = client(incoming, id, peers).await {
                eprintln!("{peer} (user{id}): {e}");
            }
        });
    }
}
