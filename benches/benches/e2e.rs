//! End-to-end echo benchmark: sonar (tokio, smol, async-std) against tokio-tungstenite,
//! fastwebsockets, tokio-websockets and a raw-TCP echo (the ceiling), side by side.
//!
//! Every server runs on its own thread (tokio servers on a current-thread runtime, the smol and
//! async-std servers on their own executors). One shared load generator (a current-thread tokio
//! runtime on the main thread) sends raw, pre-masked binary frames over plain TCP and counts the
//! echoes with a minimal frame parser, so the client costs the same for every server. Runs are
//! interleaved (A B C D .. A B C D ..) and the medians are reported.
//!
//! Usage (normally through `cargo xtask bench`):
//! - `cargo bench -p sonar-benches --bench e2e -- --scenario 16:64:16 [--runs 5] [--secs 1]`:
//!   one scenario (payload bytes : connections : messages in flight per connection), printed as
//!   Markdown table rows on stdout.
//! - `cargo bench -p sonar-benches --bench e2e -- --mem 10000`: idle resident memory per
//!   connection, each server in a child process (`serve NAME`), above the empty-server baseline.
//! - `cargo bench -p sonar-benches -- --test`: smoke run (every server echoes a few messages).
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::pin::pin;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use futures_util::future::select;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every server in the table, in interleaving order.
const SERVERS: &[&str] = &[
    "sonar-tokio",
    "sonar-smol",
    "sonar-async-std",
    "tokio-tungstenite",
    "fastwebsockets",
    "tokio-websockets",
    "raw-tcp",
];
/// The peers sonar is compared with.
const PEERS: &[&str] = &["tokio-tungstenite", "fastwebsockets", "tokio-websockets"];

const HANDSHAKE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// A running echo server: its address, a stop signal and its thread.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(name: &'static str) -> Server {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("server-{name}"))
            .spawn(move || match name {
                "sonar-tokio" => serve_sonar_tokio(ready_tx, stop_rx),
                "sonar-smol" => serve_sonar_smol(ready_tx, stop_rx),
                "sonar-async-std" => serve_sonar_async_std(ready_tx, stop_rx),
                "tokio-tungstenite" | "fastwebsockets" | "tokio-websockets" | "raw-tcp" => {
                    serve_tokio_peer(name, ready_tx, stop_rx)
                }
                other => panic!("unknown server {other}"),
            })
            .expect("spawn server thread");
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        Server {
            name,
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops the accept loop and the runtime (connection tasks are dropped with it).
    fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn sonar_echo(mut ws: sonar_tokio::WebSocket) {
    while let Some(Ok(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
}

fn serve_sonar_tokio(ready: mpsc::Sender<SocketAddr>, stop: oneshot::Receiver<()>) {
    current_thread_runtime().block_on(async move {
        let listener = sonar_tokio::listen(loopback(), sonar_tokio::Config::default())
            .await
            .expect("bind");
        ready.send(listener.local_addr().expect("addr")).unwrap();
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((incoming, _)) => {
                        tokio::spawn(async move {
                            if let Ok(ws) = incoming.upgrade().await {
                                sonar_echo(ws).await;
                            }
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        };
        let _ = select(pin!(accept), stop).await;
    });
}

fn serve_sonar_smol(ready: mpsc::Sender<SocketAddr>, stop: oneshot::Receiver<()>) {
    // One thread, like the current-thread tokio runtimes: connection tasks run on a local
    // executor inside `block_on`, which also drives the reactor.
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = sonar_smol::listen(loopback(), sonar_smol::Config::default())
            .await
            .expect("bind");
        ready.send(listener.local_addr().expect("addr")).unwrap();
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((incoming, _)) => ex
                        .spawn(async move {
                            if let Ok(ws) = incoming.upgrade().await {
                                sonar_echo(ws).await;
                            }
                        })
                        .detach(),
                    Err(_) => {
                        smol::Timer::after(Duration::from_millis(1)).await;
                    }
                }
            }
        };
        let _ = select(pin!(accept), stop).await;
    }));
}

fn serve_sonar_async_std(ready: mpsc::Sender<SocketAddr>, stop: oneshot::Receiver<()>) {
    async_std::task::block_on(async move {
        let listener = sonar_async_std::listen(loopback(), sonar_async_std::Config::default())
            .await
            .expect("bind");
        ready.send(listener.local_addr().expect("addr")).unwrap();
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((incoming, _)) => {
                        async_std::task::spawn(async move {
                            if let Ok(ws) = incoming.upgrade().await {
                                sonar_echo(ws).await;
                            }
                        });
                    }
                    Err(_) => async_std::task::sleep(Duration::from_millis(1)).await,
                }
            }
        };
        let _ = select(pin!(accept), stop).await;
    });
}

fn serve_tokio_peer(
    name: &'static str,
    ready: mpsc::Sender<SocketAddr>,
    stop: oneshot::Receiver<()>,
) {
    current_thread_runtime().block_on(async move {
        let listener = tokio::net::TcpListener::bind(loopback())
            .await
            .expect("bind");
        ready.send(listener.local_addr().expect("addr")).unwrap();
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        match name {
                            "tokio-tungstenite" => tokio::spawn(tungstenite_echo(tcp)),
                            "fastwebsockets" => tokio::spawn(fastwebsockets_echo(tcp)),
                            "tokio-websockets" => tokio::spawn(tokio_websockets_echo(tcp)),
                            _ => tokio::spawn(raw_echo(tcp)),
                        };
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        };
        let _ = select(pin!(accept), stop).await;
    });
}

async fn tungstenite_echo(tcp: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if message.is_text() || message.is_binary() {
            if ws.send(message).await.is_err() {
                break;
            }
        } else if message.is_close() {
            break;
        }
    }
}

async fn fastwebsockets_echo(tcp: TcpStream) {
    let Ok(tcp) = accept_handshake(tcp).await else {
        return;
    };
    let mut ws = fastwebsockets::WebSocket::after_handshake(tcp, fastwebsockets::Role::Server);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = fastwebsockets::FragmentCollector::new(ws);
    while let Ok(frame) = ws.read_frame().await {
        let echo = matches!(
            frame.opcode,
            fastwebsockets::OpCode::Text | fastwebsockets::OpCode::Binary
        );
        if frame.opcode == fastwebsockets::OpCode::Close
            || (echo && ws.write_frame(frame).await.is_err())
        {
            break;
        }
    }
}

async fn tokio_websockets_echo(tcp: TcpStream) {
    let Ok((_, mut ws)) = tokio_websockets::ServerBuilder::new().accept(tcp).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if message.is_text() || message.is_binary() {
            if ws.send(message).await.is_err() {
                break;
            }
        } else if message.is_close() {
            break;
        }
    }
}

async fn raw_echo(mut tcp: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tcp.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// A minimal server handshake for fastwebsockets (which leaves the HTTP upgrade to hyper).
async fn accept_handshake(mut tcp: TcpStream) -> std::io::Result<TcpStream> {
    use base64::Engine as _;
    use sha1::Digest as _;
    let head = read_head(&mut tcp).await?;
    let text = String::from_utf8_lossy(&head);
    let key = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .ok_or_else(|| std::io::Error::other("no key"))?;
    let mut sha = sha1::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(response.as_bytes()).await?;
    Ok(tcp)
}

/// Reads an HTTP head (up to 8 KiB) byte-exactly: nothing after `\r\n\r\n` is consumed.
async fn read_head(tcp: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || tcp.read(&mut byte).await? == 0 {
            return Err(std::io::Error::other("bad head"));
        }
        head.push(byte[0]);
    }
    Ok(head)
}

// ---------------------------------------------------------------------------------------------
// Load generator
// ---------------------------------------------------------------------------------------------

/// One scenario: payload size, connections, messages in flight per connection.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    payload: usize,
    conns: usize,
    inflight: usize,
}

impl Scenario {
    fn parse(text: &str) -> Option<Scenario> {
        let mut parts = text.split(':').map(|p| p.parse::<usize>().ok());
        Some(Scenario {
            payload: parts.next()??,
            conns: parts.next()??,
            inflight: parts.next()??,
        })
    }

    fn label(&self) -> String {
        let size = match self.payload {
            p if p >= 1 << 20 && p % (1 << 20) == 0 => format!("{} MiB", p >> 20),
            p if p >= 1 << 10 && p % (1 << 10) == 0 => format!("{} KiB", p >> 10),
            p => format!("{p} B"),
        };
        let mode = if self.inflight == 1 {
            "closed".to_owned()
        } else {
            format!("{} in flight", self.inflight)
        };
        format!("{size} x {} conn, {mode}", self.conns)
    }
}

/// One measured run of one server.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    msgs_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    bad_frames: u64,
    fragments: u64,
}

/// A masked binary frame (FIN, opcode 2) of `payload` bytes, as a client sends it.
fn masked_frame(payload: usize) -> Vec<u8> {
    let bytes: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    sonar_core::testing::FrameBuilder::binary(&bytes)
        .mask([0x12, 0x34, 0x56, 0x78])
        .build()
}

/// Counts frames in a byte stream without copying payloads (handles masked frames too, so the
/// raw-TCP echo's verbatim echoes parse).
#[derive(Default)]
struct FrameCounter {
    header: [u8; 14],
    header_len: usize,
    skip: u64,
    opcode: u8,
    len: u64,
}

impl FrameCounter {
    /// Feeds bytes; calls `on_frame(first_byte, payload_len)` for every complete frame
    /// (`first_byte` holds FIN and the opcode).
    fn feed(&mut self, mut data: &[u8], mut on_frame: impl FnMut(u8, u64)) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                data = &data[n..];
                self.skip -= n as u64;
                if self.skip == 0 {
                    on_frame(self.opcode, self.len);
                }
                continue;
            }
            self.header[self.header_len] = data[0];
            self.header_len += 1;
            data = &data[1..];
            if self.header_len < 2 {
                continue;
            }
            let b1 = self.header[1];
            let ext = match b1 & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let need = 2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 };
            if self.header_len < need {
                continue;
            }
            let len = match ext {
                2 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                8 => u64::from_be_bytes(self.header[2..10].try_into().unwrap()),
                _ => u64::from(b1 & 0x7f),
            };
            self.opcode = self.header[0];
            self.len = len;
            self.header_len = 0;
            self.skip = len;
            if len == 0 {
                on_frame(self.opcode, 0);
            }
        }
    }
}

/// Connects and (unless raw) does the client handshake; returns bytes read past the head.
async fn open(addr: SocketAddr, websocket: bool) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    if !websocket {
        return Ok((tcp, Vec::new()));
    }
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {HANDSHAKE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let head = read_head(&mut tcp).await?;
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other("handshake refused"));
    }
    Ok((tcp, Vec::new()))
}

/// Opens `count` connections, at most 256 handshakes at a time.
async fn open_many(addr: SocketAddr, websocket: bool, count: usize) -> Vec<TcpStream> {
    futures_util::stream::iter(0..count)
        .map(|_| async move {
            tokio::time::timeout(Duration::from_secs(20), open(addr, websocket)).await
        })
        .buffer_unordered(256)
        .filter_map(|r| async move { r.ok().and_then(Result::ok).map(|(tcp, _)| tcp) })
        .collect()
        .await
}

/// Per-connection result: echoes counted in the window and their round-trip times (µs).
struct ConnResult {
    count: u64,
    latencies: Vec<u32>,
    bad: u64,
    /// Non-final frames of data messages the server sent (it fragmented its echoes).
    fragments: u64,
}

/// Drives one connection: keeps `inflight` frames outstanding until `end`; counts echoes whose
/// send started after `warm`.
async fn drive_conn(
    mut tcp: TcpStream,
    frame: std::sync::Arc<Vec<u8>>,
    sc: Scenario,
    warm: Instant,
    end: Instant,
) -> ConnResult {
    let frame_len = frame.len();
    // Small frames go out in batches of up to `inflight` per write (the batch buffer holds them).
    let batch_max = if frame_len <= 4096 { sc.inflight } else { 1 };
    let batch: Vec<u8> = frame.repeat(batch_max);
    let (mut rd, mut wr) = tcp.split();
    let mut buf = vec![0u8; 256 << 10];
    let mut parser = FrameCounter::default();
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(sc.inflight);
    let mut in_flight = 0usize;
    let mut message_len = 0u64;
    let mut fragmented = 0u64;
    let mut chunk_len = 0usize; // bytes of the chunk being written (0: none)
    let mut chunk_off = 0usize;
    let mut result = ConnResult {
        count: 0,
        latencies: Vec::new(),
        bad: 0,
        fragments: 0,
    };
    let deadline = tokio::time::Instant::from_std(end);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if chunk_len == 0 && in_flight < sc.inflight {
            let k = (sc.inflight - in_flight).min(batch_max);
            chunk_len = k * frame_len;
            chunk_off = 0;
            in_flight += k;
            sent_at.extend(std::iter::repeat_n(now, k));
        }
        let writing = chunk_len > 0;
        tokio::select! {
            biased;
            r = rd.read(&mut buf) => {
                let n = match r { Ok(0) | Err(_) => break, Ok(n) => n };
                let now = Instant::now();
                parser.feed(&buf[..n], |first, len| {
                    if first & 0x0f > 2 {
                        return; // keepalive pings and other control frames
                    }
                    // A server may fragment a message: count it when its FIN frame arrives.
                    message_len += len;
                    if first & 0x80 == 0 {
                        fragmented += 1;
                        return;
                    }
                    if std::mem::take(&mut message_len) != sc.payload as u64 {
                        result.bad += 1;
                    }
                    in_flight = in_flight.saturating_sub(1);
                    if let Some(t0) = sent_at.pop_front()
                        && t0 >= warm
                        && now < end
                    {
                        result.count += 1;
                        let us = now.duration_since(t0).as_micros();
                        result.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                });
            }
            w = wr.write(batch.get(chunk_off..chunk_len).unwrap_or(&[])), if writing => {
                match w {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        chunk_off += n;
                        if chunk_off == chunk_len {
                            chunk_len = 0;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    result.fragments = fragmented;
    result
}

/// One run of one scenario against one server.
async fn run_once(addr: SocketAddr, websocket: bool, sc: Scenario, secs: f64) -> Sample {
    let conns = open_many(addr, websocket, sc.conns).await;
    if conns.len() != sc.conns {
        eprintln!("  only {} of {} connections opened", conns.len(), sc.conns);
    }
    let frame = std::sync::Arc::new(masked_frame(sc.payload));
    let start = Instant::now();
    let warm = start + Duration::from_secs_f64(secs * 0.2);
    let end = warm + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|tcp| tokio::spawn(drive_conn(tcp, frame.clone(), sc, warm, end)))
        .collect();
    let mut count = 0u64;
    let mut bad = 0u64;
    let mut fragments = 0u64;
    let mut latencies = Vec::new();
    for task in tasks {
        if let Ok(r) = task.await {
            count += r.count;
            bad += r.bad;
            fragments += r.fragments;
            latencies.extend(r.latencies);
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() - 1) as f64 * p).round() as usize;
        f64::from(latencies[i])
    };
    Sample {
        msgs_per_sec: count as f64 / secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        bad_frames: bad,
        fragments,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn fmt_rate(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_us(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

/// Runs one scenario, interleaved over `servers`, and prints Markdown rows.
fn run_scenario(servers: &[&'static str], sc: Scenario, runs: usize, secs: f64) -> bool {
    let running: Vec<Server> = servers.iter().map(|name| Server::start(name)).collect();
    let rt = current_thread_runtime();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); running.len()];
    for run in 0..runs {
        for (i, server) in running.iter().enumerate() {
            let websocket = server.name != "raw-tcp";
            let sample = rt.block_on(run_once(server.addr, websocket, sc, secs));
            eprintln!(
                "  [{}] run {}/{runs} {:<18} {:>10} msg/s p50 {} p99 {}",
                sc.label(),
                run + 1,
                server.name,
                fmt_rate(sample.msgs_per_sec),
                fmt_us(sample.p50_us),
                fmt_us(sample.p99_us)
            );
            samples[i].push(sample);
        }
    }
    drop(rt);
    let names: Vec<&str> = running.iter().map(|s| s.name).collect();
    for server in running {
        server.stop();
    }
    let med: Vec<Sample> = samples
        .iter()
        .map(|s| Sample {
            msgs_per_sec: median(s.iter().map(|x| x.msgs_per_sec).collect()),
            p50_us: median(s.iter().map(|x| x.p50_us).collect()),
            p99_us: median(s.iter().map(|x| x.p99_us).collect()),
            bad_frames: s.iter().map(|x| x.bad_frames).sum(),
            fragments: s.iter().map(|x| x.fragments).sum(),
        })
        .collect();
    let best_peer = names
        .iter()
        .zip(&med)
        .filter(|(n, _)| PEERS.contains(n))
        .map(|(_, s)| s.msgs_per_sec)
        .filter(|v| !v.is_nan())
        .fold(f64::NAN, f64::max);
    let best_p99 = names
        .iter()
        .zip(&med)
        .filter(|(n, _)| PEERS.contains(n))
        .map(|(_, s)| s.p99_us)
        .filter(|v| !v.is_nan())
        .fold(f64::NAN, f64::min);
    let mut ok = true;
    for (name, s) in names.iter().zip(&med) {
        let ratio = s.msgs_per_sec / best_peer;
        let ratio = if ratio.is_nan() {
            "-".to_owned()
        } else {
            format!("{ratio:.2}x")
        };
        let p99_ratio = s.p99_us / best_p99;
        let p99_ratio = if p99_ratio.is_nan() {
            "-".to_owned()
        } else {
            format!("{p99_ratio:.2}x")
        };
        if s.bad_frames > 0 || s.msgs_per_sec.is_nan() || s.msgs_per_sec <= 0.0 {
            ok = false;
        }
        let mut bad = if s.bad_frames > 0 {
            format!(" ({} wrong-length echoes)", s.bad_frames)
        } else {
            String::new()
        };
        if s.fragments > 0 {
            bad.push_str(" (fragments its echoes)");
        }
        println!(
            "| {} | {name}{bad} | {} | {ratio} | {} | {} | {p99_ratio} |",
            sc.label(),
            fmt_rate(s.msgs_per_sec),
            fmt_us(s.p50_us),
            fmt_us(s.p99_us),
        );
    }
    let _ = std::io::stdout().flush();
    ok
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Child mode: runs one server, prints `addr ADDR`, answers `rss` lines with VmRSS in bytes,
/// stops on stdin EOF.
fn serve_child(name: &str) {
    let name = SERVERS
        .iter()
        .copied()
        .find(|s| *s == name)
        .expect("unknown server");
    let server = Server::start(name);
    println!("addr {}", server.addr);
    let _ = std::io::stdout().flush();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "rss" {
            println!("rss {}", vm_rss());
            let _ = std::io::stdout().flush();
        } else {
            break;
        }
    }
    server.stop();
}

/// Idle memory per connection for every server, each in a child process.
fn run_memory(servers: &[&'static str], conns: usize) {
    let exe = std::env::current_exe().expect("current exe");
    let rt = current_thread_runtime();
    for name in servers {
        let mut child = Command::new(&exe)
            .args(["serve", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn server child");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("child address line");
        let addr: SocketAddr = first
            .trim()
            .strip_prefix("addr ")
            .and_then(|a| a.parse().ok())
            .expect("child address");
        let mut line = String::new();
        let mut ask = |stdin: &mut std::process::ChildStdin, line: &mut String| -> u64 {
            writeln!(stdin, "rss").expect("ask rss");
            stdin.flush().expect("flush");
            line.clear();
            stdout.read_line(line).expect("rss line");
            line.trim()
                .strip_prefix("rss ")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        std::thread::sleep(Duration::from_millis(300));
        let base = ask(&mut stdin, &mut line);
        let websocket = *name != "raw-tcp";
        let open = rt.block_on(open_many(addr, websocket, conns));
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(1000)).await });
        let loaded = ask(&mut stdin, &mut line);
        let per = loaded.saturating_sub(base) as f64 / open.len().max(1) as f64;
        println!(
            "| {name} | {} | {:.1} MiB | {:.1} MiB | {:.1} KB |",
            open.len(),
            base as f64 / (1 << 20) as f64,
            loaded as f64 / (1 << 20) as f64,
            per / 1000.0
        );
        let _ = std::io::stdout().flush();
        drop(open);
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        serve_child(args.get(1).map_or("", String::as_str));
        return;
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let servers: Vec<&'static str> = match value("--servers") {
        Some(list) => SERVERS
            .iter()
            .copied()
            .filter(|s| list.split(',').any(|x| x == *s))
            .collect(),
        None => SERVERS.to_vec(),
    };
    if args.iter().any(|a| a == "--test") {
        // Smoke: every server echoes small and large frames correctly (no timing asserted).
        let mut ok = true;
        for sc in ["16:1:1", "65536:2:4"] {
            let sc = Scenario::parse(sc).unwrap();
            ok &= run_scenario(&servers, sc, 1, 0.05);
        }
        assert!(ok, "a server failed to echo");
        return;
    }
    if let Some(conns) = value("--mem") {
        let conns = conns.parse().expect("--mem COUNT");
        run_memory(&servers, conns);
        return;
    }
    let runs: usize = value("--runs").and_then(|v| v.parse().ok()).unwrap_or(5);
    let secs: f64 = value("--secs").and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let scenarios: Vec<Scenario> = match value("--scenario") {
        Some(s) => s
            .split(',')
            .map(|s| Scenario::parse(s).expect("--scenario PAYLOAD:CONNS:INFLIGHT"))
            .collect(),
        None => vec![Scenario {
            payload: 16,
            conns: 64,
            inflight: 1,
        }],
    };
    for sc in scenarios {
        run_scenario(&servers, sc, runs, secs);
    }
}
