//! The server side of the fan-out benchmark: one publisher sending the same message to every
//! connected subscriber, as fast as its pattern allows, in each crate's best documented
//! fan-out shape. Each server runs in a child process (this executable as `serve-fanout NAME
//! PAYLOAD COMPRESSED`) on a current-thread tokio runtime.
//!
//! The child protocol (lines): the child prints `addr ADDR`; the parent connects every
//! subscriber and sends `go N`; the child waits until N subscribers have completed their
//! handshake (at most 20 s), prints `going N` and publishes until `stop` (or stdin closes,
//! or 10 minutes); then prints `done published=P max_buffered=B delivered=D skipped=S
//! rss=R` (`max_buffered`: the largest [`sonar_tokio::WsWriter::buffered_amount`] among the
//! subscribers, sonar only; `delivered`/`skipped`: the `Topics` counters, sonar-topics only;
//! -1 where a server has no such figure) and exits when stdin closes.
//!
//! The message is `PAYLOAD` bytes: binary, or with compression (`COMPRESSED` = 1)
//! `sonar_benches::json_payload` text, the same for every publish.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::servers::current_thread_runtime;

/// `Topics` backpressure limit of `sonar-topics`: unsent bytes per subscriber (frame headers
/// included) above which a publish skips that subscriber.
pub const TOPICS_LIMIT: usize = 1 << 20;
/// `tokio::sync::broadcast` capacity of `tokio-tungstenite-broadcast` (messages a receiver
/// may lag before it skips, `RecvError::Lagged`).
pub const BROADCAST_CAPACITY: usize = 1024;
/// The longest a publisher runs (a bound in case the parent never says `stop`).
const MAX_PUBLISH: Duration = Duration::from_secs(600);

/// One fan-out server.
pub struct FanoutKind {
    /// The name in the table and on the command line.
    pub name: &'static str,
    /// A peer: the `vs best peer` column compares with the best of these in each round
    /// (uncompressed runs).
    pub peer: bool,
    /// The reference of compressed runs (the per-connection-compress loop).
    pub compressed_reference: bool,
    /// Negotiates permessage-deflate (runs with `--deflate-no-context-takeover`).
    pub deflate: bool,
    serve: fn(Setup) -> Outcome,
}

/// Every fan-out server, in interleaving order.
pub const FANOUT_SERVERS: &[FanoutKind] = &[
    FanoutKind {
        name: "sonar-topics",
        peer: false,
        compressed_reference: false,
        deflate: true,
        serve: serve_sonar_topics,
    },
    FanoutKind {
        name: "sonar-per-connection",
        peer: false,
        compressed_reference: true,
        deflate: true,
        serve: serve_sonar_per_connection,
    },
    FanoutKind {
        name: "tokio-tungstenite-broadcast",
        peer: true,
        compressed_reference: false,
        deflate: false,
        serve: serve_tungstenite_broadcast,
    },
    FanoutKind {
        name: "fastwebsockets-loop",
        peer: true,
        compressed_reference: false,
        deflate: false,
        serve: serve_fastwebsockets_loop,
    },
];

/// The fan-out server called `name`.
pub fn fanout_kind(name: &str) -> Option<&'static FanoutKind> {
    FANOUT_SERVERS.iter().find(|k| k.name == name)
}

/// What a server is given: its message, the handshake counter, and the parent's commands.
struct Setup {
    payload: usize,
    compressed: bool,
    control: Control,
}

/// What the parent says, as seen by the server's publisher.
struct Control {
    /// `go N` (N subscribers expected); `None` when stdin closed first.
    go: mpsc::UnboundedReceiver<usize>,
    /// Set by `stop` or when stdin closes.
    stop: Arc<AtomicBool>,
}

impl Control {
    /// Waits for `go N`, then (up to 20 s) for `ready()` to reach N; prints `going COUNT`.
    /// False if the parent left first.
    async fn start(&mut self, mut ready: impl FnMut() -> usize) -> bool {
        let Some(expected) = self.go.recv().await else {
            return false;
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ready() < expected && Instant::now() < deadline && !self.stopped() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("going {}", ready());
        let _ = std::io::stdout().flush();
        true
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// What a server reports when told to stop.
#[derive(Default)]
struct Outcome {
    published: u64,
    /// The largest unsent byte count of one subscriber (sonar only).
    max_buffered: Option<usize>,
    /// `Topics` counters (sonar-topics only).
    delivered: Option<u64>,
    skipped: Option<u64>,
}

/// The message every publish sends: binary bytes, or compressible JSON text.
fn payload_bytes(payload: usize, compressed: bool) -> Bytes {
    if compressed {
        Bytes::from(sonar_benches::json_payload(payload))
    } else {
        Bytes::from((0..payload).map(|i| i as u8).collect::<Vec<u8>>())
    }
}

fn sonar_message(payload: usize, compressed: bool) -> sonar_tokio::Message {
    let bytes = payload_bytes(payload, compressed);
    if compressed {
        let text = String::from_utf8(bytes.to_vec()).expect("JSON payload is ASCII");
        sonar_tokio::Message::text(text)
    } else {
        sonar_tokio::Message::binary(bytes)
    }
}

/// The child side: `serve-fanout NAME PAYLOAD COMPRESSED`.
pub fn serve_fanout_child(args: &[String]) {
    let arg = |i: usize| args.get(i).map_or("", String::as_str);
    let kind = fanout_kind(arg(0)).unwrap_or_else(|| panic!("unknown fan-out server {}", arg(0)));
    let payload: usize = arg(1)
        .parse()
        .expect("serve-fanout NAME PAYLOAD COMPRESSED");
    let compressed = arg(2) == "1";
    let (go_tx, go_rx) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    // stdin: `go N`, `stop`; EOF stops too. A plain thread: the runtime stays one thread.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if let Some(n) = line.strip_prefix("go ") {
                let _ = go_tx.send(n.parse().unwrap_or(0));
            } else if line == "stop" {
                stop_flag.store(true, Ordering::Relaxed);
            }
        }
        stop_flag.store(true, Ordering::Relaxed);
    });
    let outcome = (kind.serve)(Setup {
        payload,
        compressed,
        control: Control { go: go_rx, stop },
    });
    let figure = |v: Option<u64>| v.map_or(-1, |v| v as i64);
    println!(
        "done published={} max_buffered={} delivered={} skipped={} rss={}",
        outcome.published,
        figure(outcome.max_buffered.map(|b| b as u64)),
        figure(outcome.delivered),
        figure(outcome.skipped),
        crate::process::vm_rss("/proc/self/status"),
    );
    let _ = std::io::stdout().flush();
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn print_addr(addr: SocketAddr) {
    println!("addr {addr}");
    let _ = std::io::stdout().flush();
}

/// A plain TCP listener on loopback for the peers' servers, its address printed for the
/// harness.
async fn tcp_listener() -> tokio::net::TcpListener {
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("bind");
    print_addr(listener.local_addr().expect("addr"));
    listener
}

/// The next connection accepted on `listener`, with `TCP_NODELAY`; a failed accept (out of
/// descriptors) is retried after 1 ms.
async fn next_tcp(listener: &tokio::net::TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                return tcp;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// The publisher loop of every server: `publish_one` (returns false to end) then
/// `yield_now`, until `stop` or [`MAX_PUBLISH`]; the number of publishes.
async fn publish_until_stopped(
    control: &Control,
    mut publish_one: impl AsyncFnMut() -> bool,
) -> u64 {
    let until = Instant::now() + MAX_PUBLISH;
    let mut published = 0u64;
    while !control.stopped() && Instant::now() < until {
        if !publish_one().await {
            break;
        }
        published += 1;
        // Let the connections' tasks (keepers, receivers) run.
        tokio::task::yield_now().await;
    }
    published
}

// ---------------------------------------------------------------------------------------------
// sonar
// ---------------------------------------------------------------------------------------------

/// sonar-tokio's server config: the default (permessage-deflate accepted), and with
/// compression the server compressor without context takeover, so a prepared message is
/// compressed once per compressor settings.
fn sonar_config(compressed: bool) -> sonar_tokio::Config {
    let config = sonar_tokio::Config::default();
    if compressed {
        let mut deflate = sonar_tokio::DeflateConfig::default();
        deflate.no_context_takeover = true;
        config.with_deflate(deflate)
    } else {
        config
    }
}

/// Accepts sonar connections until the runtime ends: each connection's task upgrades,
/// calls `on_open` with its writer, and reads until the peer leaves (sonar's documented
/// split: the reader in the connection's task, the writer with the publisher).
async fn sonar_accept(
    listener: sonar_tokio::Listener,
    on_open: impl Fn(&sonar_tokio::WsWriter) + Clone + Send + 'static,
    on_close: impl Fn(&sonar_tokio::WsWriter) + Clone + Send + 'static,
) {
    loop {
        match listener.accept().await {
            Ok((incoming, _)) => {
                let (on_open, on_close) = (on_open.clone(), on_close.clone());
                tokio::spawn(async move {
                    if let Ok(ws) = incoming.upgrade().await {
                        let (mut reader, writer) = ws.into_split();
                        on_open(&writer);
                        while let Some(Ok(_)) = reader.recv().await {}
                        on_close(&writer);
                    }
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// `sonar-topics`: every connection subscribed to one [`sonar_tokio::Topics`] topic
/// ([`OnBackpressure::Skip`](sonar_tokio::OnBackpressure::Skip), limit [`TOPICS_LIMIT`]);
/// the publisher calls `topics.publish("t", &PreparedMessage::new(message.clone()))` and
/// yields (the connections' keepers write what a socket did not take at once). With
/// compression the message is compressed once per publish.
fn serve_sonar_topics(setup: Setup) -> Outcome {
    let Setup {
        payload,
        compressed,
        mut control,
    } = setup;
    current_thread_runtime().block_on(async move {
        let listener = sonar_tokio::listen(loopback(), sonar_config(compressed))
            .await
            .expect("bind");
        print_addr(listener.local_addr().expect("addr"));
        let topics = sonar_tokio::Topics::new(TOPICS_LIMIT, sonar_tokio::OnBackpressure::Skip);
        // The writers, to read their `buffered_amount` at the end.
        let writers: Arc<std::sync::Mutex<Vec<sonar_tokio::WsWriter>>> = Arc::default();
        let (t, w) = (topics.clone(), writers.clone());
        let t2 = topics.clone();
        let accept = tokio::spawn(sonar_accept(
            listener,
            move |writer| {
                t.subscribe("t", writer);
                w.lock().unwrap().push(writer.clone());
            },
            move |writer| {
                t2.unsubscribe_all(writer);
            },
        ));
        let message = sonar_message(payload, compressed);
        let mut outcome = Outcome::default();
        if control.start(|| topics.subscribers("t")).await {
            outcome.published = publish_until_stopped(&control, async || {
                let prepared = sonar_tokio::PreparedMessage::new(message.clone());
                topics.publish("t", &prepared);
                true
            })
            .await;
        }
        let stats = topics.stats();
        outcome.delivered = Some(stats.delivered);
        outcome.skipped = Some(stats.skipped);
        outcome.max_buffered = writers
            .lock()
            .unwrap()
            .iter()
            .map(sonar_tokio::WsWriter::buffered_amount)
            .max();
        accept.abort();
        outcome
    })
}

/// `sonar-per-connection`: the same sonar connections, no `Topics`: the publisher loops over
/// every writer with `writer.try_send(message.clone())` (a full queue skips that
/// subscriber), so each connection encodes (and with compression compresses) the message
/// itself; then yields.
fn serve_sonar_per_connection(setup: Setup) -> Outcome {
    let Setup {
        payload,
        compressed,
        mut control,
    } = setup;
    current_thread_runtime().block_on(async move {
        let listener = sonar_tokio::listen(loopback(), sonar_config(compressed))
            .await
            .expect("bind");
        print_addr(listener.local_addr().expect("addr"));
        let writers: Arc<std::sync::Mutex<Vec<sonar_tokio::WsWriter>>> = Arc::default();
        let w = writers.clone();
        let accept = tokio::spawn(sonar_accept(
            listener,
            move |writer| w.lock().unwrap().push(writer.clone()),
            |_| {},
        ));
        let message = sonar_message(payload, compressed);
        let mut outcome = Outcome::default();
        if control.start(|| writers.lock().unwrap().len()).await {
            // The publisher owns the writers from here on (a closed one is dropped).
            let mut mine = std::mem::take(&mut *writers.lock().unwrap());
            outcome.published = publish_until_stopped(&control, async || {
                mine.retain_mut(|writer| {
                    !matches!(
                        writer.try_send(message.clone()),
                        Err(sonar_tokio::TrySendError::Closed(..))
                    )
                });
                true
            })
            .await;
            outcome.max_buffered = mine
                .iter()
                .map(sonar_tokio::WsWriter::buffered_amount)
                .max();
        }
        accept.abort();
        outcome
    })
}

// ---------------------------------------------------------------------------------------------
// The peers
// ---------------------------------------------------------------------------------------------

/// `tokio-tungstenite-broadcast`: tokio-tungstenite 0.30 with a `tokio::sync::broadcast`
/// channel (capacity [`BROADCAST_CAPACITY`]), the common pattern: one task per connection
/// receives from the channel and sends on the connection's sink half (`StreamExt::split`);
/// it `feed`s each message and flushes only when the channel has nothing more ready (as
/// `StreamExt::forward` does), and carries on after `Lagged` (those messages are skipped);
/// the stream half is read in a task of its own (as in tokio-tungstenite's broadcast
/// example, where reading and forwarding are separate futures). The
/// publisher: `tx.send(message.clone())` and yield. No compression (tokio-tungstenite has
/// none).
fn serve_tungstenite_broadcast(setup: Setup) -> Outcome {
    use tokio::sync::broadcast::error::RecvError;
    use tokio_tungstenite::tungstenite::Message;
    let Setup {
        payload,
        compressed,
        mut control,
    } = setup;
    assert!(!compressed, "tokio-tungstenite has no permessage-deflate");
    current_thread_runtime().block_on(async move {
        let listener = tcp_listener().await;
        let (tx, _) = tokio::sync::broadcast::channel::<Message>(BROADCAST_CAPACITY);
        let ready = Arc::new(AtomicUsize::new(0));
        let (tx2, ready2) = (tx.clone(), ready.clone());
        let accept = tokio::spawn(async move {
            loop {
                let tcp = next_tcp(&listener).await;
                let mut rx = tx2.subscribe();
                let ready = ready2.clone();
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    ready.fetch_add(1, Ordering::Relaxed);
                    let (mut sink, mut stream) = ws.split();
                    // The reading half in its own task, polled only when the peer sends:
                    // tungstenite zeroes its read buffer on every read attempt, so polling it
                    // after each message (one task with `select!`) would cost the peer more.
                    let reader = tokio::spawn(async move {
                        while let Some(Ok(m)) = stream.next().await {
                            if m.is_close() {
                                break;
                            }
                        }
                    });
                    loop {
                        match rx.recv().await {
                            Ok(m) => {
                                if sink.feed(m).await.is_err()
                                    || (rx.is_empty() && sink.flush().await.is_err())
                                {
                                    break;
                                }
                            }
                            Err(RecvError::Lagged(_)) => {}
                            Err(RecvError::Closed) => break,
                        }
                        if reader.is_finished() {
                            break;
                        }
                    }
                });
            }
        });
        let message = Message::Binary(payload_bytes(payload, false));
        let mut outcome = Outcome::default();
        if control.start(|| ready.load(Ordering::Relaxed)).await {
            outcome.published = publish_until_stopped(&control, async || {
                let _ = tx.send(message.clone());
                true
            })
            .await;
        }
        accept.abort();
        outcome
    })
}

/// `fastwebsockets-loop`: fastwebsockets 0.10 (upgrade by `sonar_handshake`, as in the echo
/// table; its defaults otherwise), the way its users fan out: the publisher loops over every
/// connection's `WebSocket` and awaits `write_frame(Frame::binary(..))` on each (one task for
/// all; the subscribers send nothing, so nothing is read). No compression.
fn serve_fastwebsockets_loop(setup: Setup) -> Outcome {
    use fastwebsockets::{Frame, Payload, Role, WebSocket};
    let Setup {
        payload,
        compressed,
        mut control,
    } = setup;
    assert!(!compressed, "fastwebsockets has no permessage-deflate");
    current_thread_runtime().block_on(async move {
        let listener = tcp_listener().await;
        let (tx, mut rx) = mpsc::unbounded_channel::<TcpStream>();
        let accept = tokio::spawn(async move {
            loop {
                let tcp = next_tcp(&listener).await;
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(tcp) = crate::servers::accept_handshake(tcp).await {
                        let _ = tx.send(tcp);
                    }
                });
            }
        });
        let mut conns: Vec<WebSocket<TcpStream>> = Vec::new();
        let started = control
            .start(|| {
                while let Ok(tcp) = rx.try_recv() {
                    conns.push(WebSocket::after_handshake(tcp, Role::Server));
                }
                conns.len()
            })
            .await;
        let bytes = payload_bytes(payload, false);
        let mut outcome = Outcome::default();
        if started {
            outcome.published = publish_until_stopped(&control, async || {
                let mut i = 0;
                while i < conns.len() {
                    let frame = Frame::binary(Payload::Borrowed(&bytes));
                    if conns[i].write_frame(frame).await.is_err() {
                        conns.swap_remove(i);
                    } else {
                        i += 1;
                    }
                }
                true
            })
            .await;
        }
        accept.abort();
        outcome
    })
}
