//! The chat example (`examples/chat.rs`) under a client that stops reading: the others get
//! every message, and the slow one is cut off instead of holding them up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../examples/chat.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod chat;

use std::time::Duration;

use sonar_tokio::Message;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);
const MESSAGES: usize = 2_000;

fn line(i: usize) -> String {
    format!("{i:05} {}", "x".repeat(16 * 1024))
}

/// Messages the sender may have on the way before the broadcast of the first has come
/// back: it keeps its own backlog (about 512 KiB) under the server's limit.
const WINDOW: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_hold_up_the_others() {
    let listener = sonar_tokio::listen("127.0.0.1:0".parse().unwrap(), chat::config())
        .await
        .unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(chat::serve(listener));

    // user1 never reads: its connection stops reading once its queue is full, then TCP
    // buffers fill, then the server's queue for it.
    let mut slow = sonar_tokio::connect(&url).await.unwrap();
    // user2 sends, paced by what it has read back of its own broadcasts.
    let (mut rx, mut tx) = sonar_tokio::connect(&url).await.unwrap().into_split();
    let (read_tx, mut read_rx) = tokio::sync::watch::channel(0usize);
    let send_all = tokio::spawn(async move {
        for i in 0..MESSAGES {
            read_rx.wait_for(|read| i < read + WINDOW).await.unwrap();
            tx.send(line(i)).await.unwrap();
        }
        tx
    });
    let mut next = 0;
    while next < MESSAGES {
        let message = timeout(LIMIT, rx.recv())
            .await
            .expect("the reading client is not held up")
            .expect("the reading client stays connected")
            .unwrap();
        let Some(text) = message.as_text().and_then(|t| t.strip_prefix("user2: ")) else {
            continue; // join notices
        };
        assert_eq!(text, line(next), "in order, none lost");
        next += 1;
        read_tx.send_replace(next);
    }
    let _tx = send_all.await.unwrap();

    // The slow client was cut off: it reads what had been queued for it, then its stream ends.
    let mut seen = 0;
    while let Some(message) = timeout(LIMIT, slow.recv()).await.expect("slow client ends") {
        match message {
            Ok(Message::Text(t)) if t.starts_with("user2: ") => seen += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(
        seen < MESSAGES,
        "the slow client was closed, not waited for"
    );
}
