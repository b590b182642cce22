//! The examples, run as a user would run them, each against the behaviour it promises: a
//! chat that a client who stops reading cannot hold up, a ticker whose subscribers all get
//! the same ticks in order, a server that authenticates and picks
//! a subprotocol, a graceful shutdown, an axum route, and the error a user sees for each way
//! a connection can fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../examples/chat.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod chat;

#[path = "../examples/broadcast.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod broadcast;

#[path = "../examples/auth_server.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod auth_server;

#[path = "../examples/graceful_shutdown.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod graceful_shutdown;

#[path = "../examples/axum_route.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod axum_route;

use std::time::Duration;

use sonar_tokio::{ClientError, ClientRequest, CloseCode, Config, Error, Message};
use tokio::time::timeout;

/// A listener on a free loopback port and its `ws://` URL.
async fn listen(config: Config) -> (sonar_tokio::Listener, String) {
    let listener = sonar_tokio::listen("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    (listener, url)
}

const LIMIT: Duration = Duration::from_secs(60);
const MESSAGES: usize = 2_000;

/// Message `i`: 16 KiB of pseudo-random letters, so that compression (negotiated by default)
/// cannot make the backlog small.
fn line(i: usize) -> String {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let noise: String = (0..16 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    format!("{i:05} {noise}")
}

/// Messages the sender may have on the way before the broadcast of the first has come
/// back: it keeps its own backlog (about 512 KiB) under the server's limit.
const WINDOW: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_hold_up_the_others() {
    let (listener, url) = listen(chat::config()).await;
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
    assert_eq!(
        slow.close_status().map(|s| s.code),
        Some(CloseCode::POLICY),
        "the slow client is told why: 1008"
    );
}

/// The `seq` of a tick of the broadcast example.
fn seq_of(text: &str) -> u64 {
    let rest = text.strip_prefix("{\"seq\":").expect("a tick");
    rest.split(',').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broadcast_subscriber_gets_the_same_ticks_in_order() {
    let (listener, url) = listen(broadcast::config()).await;
    let topics = sonar_tokio::Topics::new(
        broadcast::MAX_BACKPRESSURE,
        sonar_tokio::OnBackpressure::Skip,
    );
    tokio::spawn(broadcast::serve(listener, topics.clone()));
    tokio::spawn(broadcast::ticker(topics.clone(), Duration::from_millis(5)));
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        subscribers.push(sonar_tokio::connect(&format!("{url}/ticks")).await.unwrap());
    }
    let _elsewhere = sonar_tokio::connect(&format!("{url}/other")).await.unwrap();
    let subscribed = async {
        while topics.subscribers(broadcast::TICKS) < 3 || topics.subscribers("other") < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    timeout(LIMIT, subscribed).await.expect("all subscribed");

    // Every subscriber sees consecutive ticks; from the first tick all three have, the ticks
    // are the same text.
    let mut seen: Vec<Vec<String>> = Vec::new();
    for ws in &mut subscribers {
        let mut ticks = Vec::new();
        for _ in 0..40 {
            let message = timeout(LIMIT, ws.recv())
                .await
                .expect("a tick")
                .unwrap()
                .unwrap();
            ticks.push(message.as_text().unwrap().to_owned());
        }
        let seqs: Vec<u64> = ticks.iter().map(|t| seq_of(t)).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        seen.push(ticks);
    }
    let common = seen.iter().map(|t| seq_of(&t[0])).max().unwrap();
    let at = |ticks: &Vec<String>| ticks.iter().find(|t| seq_of(t) == common).cloned();
    let first = at(&seen[0]);
    assert!(first.is_some(), "tick {common} reached every subscriber");
    assert!(seen.iter().all(|t| at(t) == first));
    for mut ws in subscribers {
        ws.close(CloseCode::NORMAL, "").await.unwrap();
    }
}

fn rejected_status(e: &Error) -> Option<u16> {
    match e {
        Error::Handshake(ClientError::Rejected { status, .. }) => Some(*status),
        _ => None,
    }
}

#[tokio::test]
async fn the_auth_server_refuses_without_the_token_and_picks_the_offered_subprotocol() {
    let (listener, url) = listen(Config::default()).await;
    tokio::spawn(auth_server::serve(listener));
    let connect = |path: &str, token: Option<&str>| {
        let mut request = ClientRequest::from_url(&format!("{url}{path}"))
            .unwrap()
            .with_subprotocol(auth_server::SUBPROTOCOL);
        if let Some(token) = token {
            request = request.with_header("Authorization", format!("Bearer {token}"));
        }
        sonar_tokio::connect_with(request, Config::default())
    };
    let e = connect("/chat", None).await.unwrap_err();
    assert_eq!(rejected_status(&e), Some(401), "{e:?}");
    let e = connect("/chat", Some("wrong")).await.unwrap_err();
    assert_eq!(rejected_status(&e), Some(401), "{e:?}");
    let e = connect("/elsewhere", Some(auth_server::TOKEN))
        .await
        .unwrap_err();
    assert_eq!(rejected_status(&e), Some(404), "{e:?}");

    let (mut ws, accepted) = connect("/chat", Some(auth_server::TOKEN)).await.unwrap();
    assert_eq!(
        accepted.subprotocol.as_deref(),
        Some(auth_server::SUBPROTOCOL)
    );
    let welcome = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(welcome.as_text(), Some("welcome to /chat"));
    ws.send("hi").await.unwrap();
    let echo = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(echo.as_text(), Some("hi"));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_closes_every_client_with_going_away_then_returns() {
    let (listener, url) = listen(Config::default()).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(graceful_shutdown::serve(listener, async {
        let _ = stop_rx.await;
    }));
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut ws = sonar_tokio::connect(&url).await.unwrap();
        ws.send(format!("client {i}")).await.unwrap();
        let echo = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(echo.as_text(), Some(format!("client {i}").as_str()));
        clients.push(ws);
    }
    stop_tx.send(()).unwrap();
    for mut ws in clients {
        assert!(
            timeout(LIMIT, ws.recv()).await.unwrap().is_none(),
            "a clean close"
        );
        let status = ws.close_status().unwrap();
        assert_eq!(status.code, CloseCode::GOING_AWAY);
        assert!(status.by_peer && status.is_normal());
    }
    timeout(LIMIT, server).await.unwrap().unwrap();
    assert!(
        sonar_tokio::connect(&url).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn an_axum_route_serves_a_sonar_websocket_and_plain_http() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum_route::app()).await });
    let mut ws = sonar_tokio::connect(&format!("ws://{addr}/ws"))
        .await
        .unwrap();
    for i in 0..100 {
        ws.send(format!("message {i}")).await.unwrap();
        let echo = timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(echo.as_text(), Some(format!("message {i}").as_str()));
    }
    assert!(ws.ping().await.unwrap() > Duration::ZERO);
    ws.close(CloseCode::NORMAL, "").await.unwrap();

    // A plain GET to the WebSocket route is refused as sonar's own handshake would.
    let e = sonar_tokio::connect(&format!("ws://{addr}/"))
        .await
        .unwrap_err();
    assert!(rejected_status(&e).is_some(), "{e:?}");
}

#[tokio::test]
async fn each_way_a_connection_fails_is_told_apart() {
    // Nobody listening: an I/O error, not a disconnect of an open connection.
    let closed_port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let e = sonar_tokio::connect(&format!("ws://{closed_port}/"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e:?}");
    assert!(!e.is_disconnect() && !e.is_timeout());

    // A URL that is not ws:// or wss://.
    let e = sonar_tokio::connect("http://127.0.0.1/").await.unwrap_err();
    assert!(matches!(e, Error::Url(_)), "{e:?}");

    // The peer goes away without a Close: a disconnect.
    let (url, peer) = raw_server().await;
    let mut ws = sonar_tokio::connect(&url).await.unwrap();
    drop(peer.await.unwrap());
    let e = timeout(LIMIT, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(e.is_disconnect() && !e.is_timeout(), "{e:?}");
    assert_eq!(ws.close_status().map(|s| s.code), Some(CloseCode::ABNORMAL));

    // The peer stays connected but never answers a ping: keepalive declares it dead.
    let (url, peer) = raw_server().await;
    let config = Config::default()
        .with_ping_interval(Some(Duration::from_millis(50)))
        .with_pong_timeout(Some(Duration::from_millis(100)));
    let request = ClientRequest::from_url(&url).unwrap();
    let (mut ws, _) = sonar_tokio::connect_with(request, config).await.unwrap();
    let _silent = peer.await.unwrap();
    let e = timeout(LIMIT, ws.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, Error::Keepalive(_)) && e.is_timeout(), "{e:?}");
    assert_eq!(e.close_code(), Some(CloseCode::INTERNAL));

    // A clean close is no error at all: the stream ends and the status says how.
    let (listener, url) = listen(Config::default()).await;
    tokio::spawn(async move {
        let (incoming, _) = listener.accept().await.unwrap();
        let mut ws = incoming.upgrade().await.unwrap();
        ws.close(CloseCode::GOING_AWAY, "bye").await.unwrap();
    });
    let mut ws = sonar_tokio::connect(&url).await.unwrap();
    assert!(timeout(LIMIT, ws.recv()).await.unwrap().is_none());
    let status = ws.close_status().unwrap();
    assert!(status.is_normal() && status.by_peer && status.reason == "bye");
}

/// A server that answers the opening handshake and then does nothing: the returned task
/// hands over its socket (drop it to disconnect, keep it to stay silent).
async fn raw_server() -> (String, tokio::task::JoinHandle<tokio::net::TcpStream>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let head = sonar_testkit::read_head_exact_async(&mut sonar_tokio::Compat::new(&mut tcp))
            .await
            .unwrap();
        let request = sonar_handshake::ServerHandshake::new()
            .decode_request(&head)
            .unwrap()
            .unwrap()
            .0;
        let mut out = Vec::new();
        sonar_handshake::ServerHandshake::new().encode_accept(&request, None, &mut out);
        tcp.write_all(&out).await.unwrap();
        tcp
    });
    (url, task)
}
