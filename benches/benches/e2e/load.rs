//! The load generator: one client for every server, so the client costs the same whatever the
//! server. Each connection writes one pre-masked frame per write (no batching), keeps
//! `inflight` messages outstanding and counts echoes with a minimal frame parser that never
//! copies a payload.
//!
//! Uncompressed scenarios send a binary frame. Compressed ones offer permessage-deflate as a
//! browser does and send JSON text compressed once up front (each message compressed on its own, which
//! is valid with or without context takeover).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HANDSHAKE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Reads an HTTP head (bounded) byte-exactly, with sonar-testkit's reader: nothing after
/// `\r\n\r\n` is consumed.
pub async fn read_head(tcp: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    sonar_testkit::read_head_exact_async(&mut sonar_tokio::Compat::new(tcp))
        .await
        .map_err(std::io::Error::other)
}

/// Whether the load generator negotiates permessage-deflate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// No extension offered; binary frames.
    Off,
    /// `permessage-deflate; client_max_window_bits` offered (what browsers send), with
    /// `server_no_context_takeover; client_no_context_takeover` added when `context_takeover`
    /// is false; compressed JSON text frames.
    Deflate { context_takeover: bool },
}

impl Compression {
    /// The `Sec-WebSocket-Extensions` request header line, if any.
    pub fn offer(self) -> &'static str {
        match self {
            Compression::Off => "",
            Compression::Deflate {
                context_takeover: true,
            } => "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            Compression::Deflate {
                context_takeover: false,
            } => {
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; \
                 server_no_context_takeover; client_no_context_takeover\r\n"
            }
        }
    }
}

/// One scenario: payload size, connections, messages in flight per connection, compression.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub payload: usize,
    pub conns: usize,
    pub inflight: usize,
    pub compression: Compression,
}

impl Scenario {
    pub fn parse(text: &str) -> Option<Scenario> {
        let mut parts = text.split(':').map(|p| p.parse::<usize>().ok());
        Some(Scenario {
            payload: parts.next()??,
            conns: parts.next()??,
            inflight: parts.next()??,
            compression: Compression::Off,
        })
    }

    pub fn label(&self) -> String {
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
        let kind = match self.compression {
            Compression::Off => "",
            Compression::Deflate {
                context_takeover: true,
            } => " text, deflate,",
            Compression::Deflate {
                context_takeover: false,
            } => " text, deflate no context takeover,",
        };
        format!("{size}{kind} x {} conn, {mode}", self.conns)
    }
}

/// One measured run of one server.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub msgs_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub bad_frames: u64,
    pub fragments: u64,
}

/// The frame a client sends for one message of `payload` bytes, masked: binary, or JSON text
/// compressed on its own (RSV1) when compression is negotiated.
pub fn masked_frame(payload: usize, compression: Compression) -> Vec<u8> {
    let frame = match compression {
        Compression::Off => {
            let bytes: Vec<u8> = (0..payload).map(|i| i as u8).collect();
            sonar_core::testing::FrameBuilder::binary(&bytes)
        }
        Compression::Deflate { .. } => {
            sonar_core::testing::FrameBuilder::text(&sonar_benches::json_payload(payload))
                .compressed()
        }
    };
    frame.mask([0x12, 0x34, 0x56, 0x78]).build()
}

/// Counts frames in a byte stream without copying payloads (handles masked frames too, so the
/// raw-TCP echo's verbatim echoes parse).
#[derive(Default)]
pub struct FrameCounter {
    header: [u8; 14],
    header_len: usize,
    skip: u64,
    opcode: u8,
    len: u64,
}

impl FrameCounter {
    /// Feeds bytes; calls `on_frame(first_byte, payload_len)` for every complete frame
    /// (`first_byte` holds FIN and the opcode).
    pub fn feed(&mut self, mut data: &[u8], mut on_frame: impl FnMut(u8, u64)) {
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

/// Connects and (unless raw) does the client handshake.
pub async fn open(
    addr: SocketAddr,
    websocket: bool,
    compression: Compression,
) -> std::io::Result<TcpStream> {
    open_with(addr, websocket, compression, None).await
}

/// [`open`], with the socket's receive buffer set to `recv_buffer` bytes before connecting
/// (`SO_RCVBUF`; `None`: the kernel's default and autotuning).
pub async fn open_with(
    addr: SocketAddr,
    websocket: bool,
    compression: Compression,
    recv_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    let mut tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    if !websocket {
        return Ok(tcp);
    }
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {HANDSHAKE_KEY}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
        compression.offer()
    );
    tcp.write_all(request.as_bytes()).await?;
    let head = read_head(&mut tcp).await?;
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other("handshake refused"));
    }
    let agreed = String::from_utf8_lossy(&head)
        .to_ascii_lowercase()
        .contains("permessage-deflate");
    if agreed != (compression != Compression::Off) {
        return Err(std::io::Error::other(
            "permessage-deflate not agreed as asked",
        ));
    }
    Ok(tcp)
}

/// Opens `count` connections, at most 256 handshakes at a time.
pub async fn open_many(
    addr: SocketAddr,
    websocket: bool,
    compression: Compression,
    count: usize,
) -> Vec<TcpStream> {
    futures_util::stream::iter(0..count)
        .map(|_| async move {
            tokio::time::timeout(Duration::from_secs(20), open(addr, websocket, compression)).await
        })
        .buffer_unordered(256)
        .filter_map(|r| async move { r.ok().and_then(Result::ok) })
        .collect()
        .await
}

/// Sends one message on every connection and waits (up to 20 s in all) for its echo, so that
/// what a first message makes a server allocate (a compressor, buffers) is counted. Returns how
/// many connections got their echo.
pub async fn echo_once(conns: &mut [TcpStream], frame: &[u8]) -> usize {
    let all = futures_util::future::join_all(conns.iter_mut().map(|tcp| echo_one(tcp, frame)));
    match tokio::time::timeout(Duration::from_secs(20), all).await {
        Ok(results) => results.iter().filter(|r| r.is_some()).count(),
        Err(_) => 0,
    }
}

async fn echo_one(tcp: &mut TcpStream, frame: &[u8]) -> Option<()> {
    tcp.write_all(frame).await.ok()?;
    let mut parser = FrameCounter::default();
    let mut buf = vec![0u8; 16 << 10];
    let mut done = false;
    while !done {
        let n = tcp.read(&mut buf).await.ok().filter(|&n| n > 0)?;
        parser.feed(&buf[..n], |first, _| {
            done |= first & 0x80 != 0 && first & 0x0f <= 2;
        });
    }
    Some(())
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
    let (mut rd, mut wr) = tcp.split();
    let mut buf = vec![0u8; 256 << 10];
    let mut parser = FrameCounter::default();
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(sc.inflight);
    let mut in_flight = 0usize;
    let mut message_len = 0u64;
    let mut compressed = false;
    let mut fragmented = 0u64;
    // Bytes of the frame being written (`None`: no frame under way). One frame per write call:
    // a large frame may take several writes, but two frames never share one.
    let mut writing_from: Option<usize> = None;
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
        if writing_from.is_none() && in_flight < sc.inflight {
            writing_from = Some(0);
            in_flight += 1;
            sent_at.push_back(now);
        }
        let offset = writing_from.unwrap_or(frame_len);
        tokio::select! {
            biased;
            r = rd.read(&mut buf) => {
                let n = match r { Ok(0) | Err(_) => break, Ok(n) => n };
                let now = Instant::now();
                parser.feed(&buf[..n], |first, len| {
                    if first & 0x0f > 2 {
                        return; // keepalive pings and other control frames
                    }
                    if first & 0x0f != 0 {
                        // The first frame of a message: RSV1 says it is compressed, and a
                        // compressed echo's length is not the message's.
                        compressed = first & 0x40 != 0;
                    }
                    // A server may fragment a message: count it when its FIN frame arrives.
                    message_len += len;
                    if first & 0x80 == 0 {
                        fragmented += 1;
                        return;
                    }
                    let length = std::mem::take(&mut message_len);
                    if !compressed && length != sc.payload as u64 {
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
            w = wr.write(&frame[offset..]), if writing_from.is_some() => {
                match w {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        writing_from = Some(offset + n).filter(|&o| o < frame_len);
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
pub async fn run_once(addr: SocketAddr, websocket: bool, sc: Scenario, secs: f64) -> Sample {
    let conns = open_many(addr, websocket, sc.compression, sc.conns).await;
    if conns.len() != sc.conns {
        eprintln!("  only {} of {} connections opened", conns.len(), sc.conns);
    }
    let frame = std::sync::Arc::new(masked_frame(sc.payload, sc.compression));
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
