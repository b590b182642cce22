//! The examples as a user runs them: `axum_echo` as a program (it prints `listening on ADDR`
//! and echoes), `axum_chat` as an app (a client that stops reading does not hold up the
//! others).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../examples/axum_chat.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod axum_chat;

#[path = "../examples/axum_echo.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod axum_echo;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use sonar_testkit::{ChildGuard, LineReader};
use sonar_tokio::{CloseCode, Message};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

/// The example binary cargo built next to this test (`target/<profile>/examples/NAME`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(name)
}

#[tokio::test]
async fn axum_echo_prints_listening_on_its_address_and_echoes() {
    let binary = example("axum_echo");
    // `cargo test -p sonar-axum` builds the examples; `--test examples` alone does not.
    let (addr, _child) = if binary.is_file() {
        // Killed when dropped.
        let mut child = ChildGuard::spawn(
            Command::new(&binary)
                .args(["--addr", "127.0.0.1:0"])
                .stdout(Stdio::piped())
                .stdin(Stdio::null()),
        )
        .unwrap();
        let stdout = LineReader::spawn(child.stdout.take().unwrap());
        // Blocks this test's thread: nothing else runs before the example listens.
        let line = stdout.next_line(LIMIT).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line {line:?}"))
            .to_owned();
        (addr, Some(child))
    } else {
        eprintln!(
            "note: {} not built (run all of `cargo test -p sonar-axum`); serving its app in-process",
            binary.display()
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, axum_echo::app()).await });
        (addr, None)
    };
    let mut ws = sonar_tokio::connect(&format!("ws://{addr}/any/path"))
        .await
        .unwrap();
    for message in [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
    ] {
        ws.send(message.clone()).await.unwrap();
        let echoed = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed, message);
    }
    ws.close(CloseCode::NORMAL, "bye").await.unwrap();
    assert!(ws.close_status().unwrap().is_normal());
}

const MESSAGES: usize = 2_000;

/// Message `i`: 16 KiB of pseudo-random letters, which permessage-deflate (agreed by default)
/// cannot shrink much, so the slow client's backlog really grows.
fn line(i: usize) -> String {
    let mut state = (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    let noise: String = (0..16 * 1024)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'a' + ((state >> 33) % 26) as u8)
        })
        .collect();
    format!("{i:05} {noise}")
}

/// Messages the sender may have on the way before the broadcast of the first has come
/// back: it keeps its own backlog (about 512 KiB) under the server's limit.
const WINDOW: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_chat_does_not_let_a_client_that_stops_reading_hold_up_the_others() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/chat", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, axum_chat::app()).await });

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
    assert_eq!(
        slow.close_status().map(|s| s.code),
        Some(CloseCode::POLICY),
        "the slow client is told why: 1008"
    );
}
