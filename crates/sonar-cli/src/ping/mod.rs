//! `sonar ping`: ping(8) for WebSocket.
//!
//! This deliberately bypasses the high-level connection (which would fail on a broken pong):
//! the handshake is done with `sonar-handshake` over tokio TCP (and rustls for `wss://`), Ping
//! frames are written by hand, and the server's frames are inspected leniently by
//! [`frames::FrameReader`], with bounded buffers and a deadline on every wait.

mod frames;

use std::collections::VecDeque;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sonar_core::{FrameHeader, MAX_HEADER_LEN, OpCode, apply_mask};
use sonar_handshake::{ClientHandshake, ClientRequest};
use tokio::time::Instant;

use self::frames::{Frame, FrameReader, Item, MAX_KEPT, pong_problems};
use crate::Failure;
use crate::args::PingArgs;

/// The most bytes of a handshake response we read before giving up.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Payloads of earlier pings remembered to recognise late pongs.
const HISTORY: usize = 64;
/// How long the goodbye (our Close, the server's answer) may take.
const GOODBYE: Duration = Duration::from_secs(1);
/// Alphabet of ping payloads: printable, unambiguous.
const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// Runs `sonar ping`.
pub(crate) fn run(args: PingArgs) -> Result<ExitCode, Failure> {
    let request = ClientRequest::from_url(&args.url)
        .map_err(|e| Failure::usage(format!("invalid url `{}`: {e}", args.url)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the tokio runtime: {e}")))?;
    runtime.block_on(ping(args, request))
}

/// Writes one line to stdout now (ping output is read live).
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// A unique, printable payload: random characters ending in `seq` in base 62.
fn make_payload(seq: u64, size: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut payload: Vec<u8> = (0..size)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect();
    let mut n = seq;
    for b in payload.iter_mut().rev() {
        *b = ALPHABET[(n % 62) as usize];
        n /= 62;
        if n == 0 {
            break;
        }
    }
    payload
}

async fn open(
    request: &ClientRequest,
    insecure: bool,
    rng: &mut StdRng,
) -> Result<(Box<dyn Transport>, Vec<u8>), Failure> {
    let (host, port) = (request.host(), request.port());
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| Failure::new(format!("cannot connect to {host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let tcp = sonar_tokio::Compat::new(tcp);
    let mut io: Box<dyn Transport> = if request.is_secure() {
        let name = sonar_async::tls::rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| Failure::new(format!("`{host}` is not a valid tls server name")))?;
        let connector = sonar_async::tls::TlsConnector::from(crate::tls::client_config(insecure));
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| Failure::new(format!("tls handshake failed: {e}")))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let mut hs = ClientHandshake::new(request.clone(), rng.random());
    let mut out = Vec::new();
    hs.encode_request(&mut out);
    io.write_all(&out)
        .await
        .map_err(|e| Failure::new(format!("i/o error: {e}")))?;
    io.flush()
        .await
        .map_err(|e| Failure::new(format!("i/o error: {e}")))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = io
            .read(&mut chunk)
            .await
            .map_err(|e| Failure::new(format!("i/o error: {e}")))?;
        if n == 0 {
            return Err(Failure::new(
                "connection closed during the opening handshake",
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        match hs.decode_response(&buf) {
            Ok(Some((_accepted, used))) => {
                let leftover = buf.get(used..).unwrap_or(&[]).to_vec();
                return Ok((io, leftover));
            }
            Ok(None) if buf.len() > MAX_RESPONSE_HEAD => {
                return Err(Failure::new("handshake response head too large"));
            }
            Ok(None) => {}
            Err(e) => {
                return Err(Failure::new(crate::client::describe(
                    &sonar_async::Error::Handshake(e),
                )));
            }
        }
    }
}

struct Outstanding {
    seq: u64,
    payload: Vec<u8>,
    sent_at: Instant,
}

/// What a wait ended with.
enum Waited {
    /// The outstanding ping got its pong.
    Pong { rtt: Duration, conforming: bool },
    /// The deadline passed.
    Deadline,
    /// The connection is over (Close, EOF, error, unreadable stream).
    Ended,
}

struct Session {
    io: Box<dyn Transport>,
    reader: FrameReader,
    pending: VecDeque<Item>,
    rng: StdRng,
    host: String,
    outstanding: Option<Outstanding>,
    history: VecDeque<(u64, Vec<u8>)>,
    write_limit: Duration,
    ended: bool,
    close_sent: bool,
    /// Frames that broke the protocol outside pongs (reserved opcodes, malformed headers).
    violations: u64,
}

impl Session {
    async fn write_frame(&mut self, opcode: OpCode, payload: &[u8]) -> bool {
        let key: [u8; 4] = self.rng.random();
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some(key),
            len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        let mut frame = head.get(..n).unwrap_or(&[]).to_vec();
        let start = frame.len();
        frame.extend_from_slice(payload);
        if let Some(body) = frame.get_mut(start..) {
            apply_mask(body, key, 0);
        }
        let write = async {
            self.io.write_all(&frame).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(self.write_limit, write).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                say(format_args!("connection failed: {e}"));
                self.ended = true;
                false
            }
            Err(_) => {
                say(format_args!(
                    "server stopped reading: write timed out after {:.3} s",
                    self.write_limit.as_secs_f64()
                ));
                self.ended = true;
                false
            }
        }
    }

    async fn send_ping(&mut self, seq: u64, payload: Vec<u8>) -> bool {
        if !self.write_frame(OpCode::PING, &payload).await {
            return false;
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((seq, payload.clone()));
        self.outstanding = Some(Outstanding {
            seq,
            payload,
            sent_at: Instant::now(),
        });
        true
    }

    /// Reads and handles the server's frames until the outstanding ping is answered, the
    /// deadline passes, or the connection ends.
    async fn wait(&mut self, deadline: Instant) -> Waited {
        let mut buf = [0u8; 8192];
        let mut items = Vec::new();
        loop {
            while let Some(item) = self.pending.pop_front() {
                if let Some(done) = self.handle(item).await {
                    return done;
                }
            }
            if self.ended {
                return Waited::Ended;
            }
            match tokio::time::timeout_at(deadline, self.io.read(&mut buf)).await {
                Err(_) => return Waited::Deadline,
                Ok(Ok(0)) => {
                    say(format_args!(
                        "connection closed by the server (no close frame)"
                    ));
                    self.ended = true;
                }
                Ok(Ok(n)) => {
                    self.reader.push(buf.get(..n).unwrap_or(&[]), &mut items);
                    self.pending.extend(items.drain(..));
                }
                Ok(Err(e)) => {
                    say(format_args!("connection failed: {e}"));
                    self.ended = true;
                }
            }
        }
    }

    async fn handle(&mut self, item: Item) -> Option<Waited> {
        let frame = match item {
            Item::Frame(frame) => frame,
            Item::Malformed => {
                say(format_args!(
                    "warning: malformed frame header from the server (64-bit length with its \
                     top bit set); giving up on the connection"
                ));
                self.violations += 1;
                self.ended = true;
                return Some(Waited::Ended);
            }
        };
        match frame.header.opcode {
            OpCode::PONG => self.on_pong(&frame),
            OpCode::PING => {
                if frame.header.len <= MAX_KEPT as u64 {
                    self.write_frame(OpCode::PONG, &frame.payload).await;
                } else {
                    say(format_args!(
                        "warning: ping of {} bytes from the server (control frames carry at \
                         most 125); not answered",
                        frame.header.len
                    ));
                    self.violations += 1;
                }
                None
            }
            OpCode::CLOSE => {
                let (code, reason) = match frame.payload.split_first_chunk::<2>() {
                    Some((code, reason)) => (
                        Some(u16::from_be_bytes(*code)),
                        String::from_utf8_lossy(reason).into_owned(),
                    ),
                    None => (None, String::new()),
                };
                // The answer to our own Close is the normal end: no line for it.
                match code {
                    _ if self.close_sent => {}
                    Some(code) => say(format_args!(
                        "server closed the connection: {code} {reason}"
                    )),
                    None => say(format_args!("server closed the connection")),
                }
                if !self.close_sent {
                    self.close_sent = true;
                    let echo = code.map(u16::to_be_bytes);
                    let body: &[u8] = echo.as_ref().map_or(&[], |c| c.as_slice());
                    self.write_frame(OpCode::CLOSE, body).await;
                }
                self.ended = true;
                Some(Waited::Ended)
            }
            OpCode::TEXT | OpCode::BINARY | OpCode::CONTINUATION => None,
            other => {
                say(format_args!(
                    "warning: frame with reserved opcode 0x{:x} from the server",
                    other.as_u8()
                ));
                self.violations += 1;
                None
            }
        }
    }

    fn on_pong(&mut self, frame: &Frame) -> Option<Waited> {
        let echoes = |sent: &[u8]| frame.header.len == sent.len() as u64 && frame.payload == sent;
        let answers_outstanding = self
            .outstanding
            .as_ref()
            .is_some_and(|o| echoes(&o.payload));
        if !answers_outstanding {
            // A late answer to an earlier ping, or an unsolicited pong (a heartbeat).
            let earlier = self
                .history
                .iter()
                .find(|(_, sent)| echoes(sent))
                .map(|(seq, _)| *seq);
            match (earlier, self.outstanding.is_some()) {
                (Some(seq), _) => {
                    say(format_args!(
                        "late pong for seq={seq} (already counted lost)"
                    ));
                    return None;
                }
                (None, false) => {
                    say(format_args!(
                        "unsolicited pong ({} bytes) ignored",
                        frame.header.len
                    ));
                    return None;
                }
                // A broken answer to the outstanding ping: it counts, with warnings.
                (None, true) => {}
            }
        }
        let out = self.outstanding.take()?;
        let rtt = out.sent_at.elapsed();
        let problems = pong_problems(frame, &out.payload);
        for p in &problems {
            say(format_args!("warning: seq={}: {p}", out.seq));
        }
        let conforming = problems.is_empty();
        say(format_args!(
            "{} bytes from {}: seq={} rtt={:.3} ms{}",
            frame.header.len,
            self.host,
            out.seq,
            rtt.as_secs_f64() * 1000.0,
            if conforming { "" } else { " (non-conforming)" }
        ));
        Some(Waited::Pong { rtt, conforming })
    }
}

#[derive(Default)]
struct Summary {
    sent: u64,
    received: u64,
    conforming: u64,
    rtts: Vec<Duration>,
}

impl Summary {
    fn print(&self, url: &str) {
        say(format_args!("--- {url} websocket ping statistics ---"));
        let lost = self.sent.saturating_sub(self.received);
        let loss = if self.sent == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / self.sent as f64
        };
        let broken = self.received.saturating_sub(self.conforming);
        let extra = if broken > 0 {
            format!(", {broken} non-conforming")
        } else {
            String::new()
        };
        say(format_args!(
            "{} pings sent, {} pongs received, {}% loss{extra}",
            self.sent,
            self.received,
            format_percent(loss)
        ));
        if let (Some(min), Some(max)) = (self.rtts.iter().min(), self.rtts.iter().max()) {
            let total: Duration = self.rtts.iter().sum();
            let avg = total.as_secs_f64() / self.rtts.len() as f64;
            say(format_args!(
                "rtt min/avg/max = {:.3}/{:.3}/{:.3} ms",
                min.as_secs_f64() * 1000.0,
                avg * 1000.0,
                max.as_secs_f64() * 1000.0
            ));
        }
    }
}

/// `0`, `100`, or one decimal (`33.3`).
fn format_percent(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}

async fn ping(args: PingArgs, request: ClientRequest) -> Result<ExitCode, Failure> {
    let mut rng = StdRng::from_os_rng();
    let open_limit = args.timeout.max(Duration::from_secs(5));
    let (io, leftover) = tokio::time::timeout(open_limit, open(&request, args.insecure, &mut rng))
        .await
        .map_err(|_| {
            Failure::new(format!(
                "connection and handshake did not complete within {:.3} s",
                open_limit.as_secs_f64()
            ))
        })??;
    let mut session = Session {
        io,
        reader: FrameReader::default(),
        pending: VecDeque::new(),
        rng,
        host: request.host().to_owned(),
        outstanding: None,
        history: VecDeque::new(),
        write_limit: args.timeout,
        ended: false,
        close_sent: false,
        violations: 0,
    };
    let mut first = Vec::new();
    session.reader.push(&leftover, &mut first);
    session.pending.extend(first);

    say(format_args!(
        "PING {} ({}:{}): {} bytes of payload",
        args.url,
        request.host(),
        request.port(),
        args.size
    ));
    let mut interrupt = Box::pin(tokio::signal::ctrl_c());
    let mut summary = Summary::default();
    let mut seq: u64 = 0;
    let mut interrupted = false;
    while args.count.is_none_or(|c| seq < c) && !session.ended && !interrupted {
        seq += 1;
        let payload = make_payload(seq, usize::from(args.size), &mut session.rng);
        if !session.send_ping(seq, payload).await {
            break;
        }
        summary.sent += 1;
        let sent_at = Instant::now();
        let waited = tokio::select! {
            w = session.wait(sent_at + args.timeout) => w,
            _ = interrupt.as_mut() => { interrupted = true; Waited::Deadline }
        };
        match waited {
            Waited::Pong { rtt, conforming } => {
                summary.received += 1;
                summary.conforming += u64::from(conforming);
                summary.rtts.push(rtt);
            }
            Waited::Deadline if !interrupted => {
                session.outstanding = None;
                say(format_args!(
                    "no pong for seq={seq} within {:.3} s",
                    args.timeout.as_secs_f64()
                ));
            }
            Waited::Deadline | Waited::Ended => session.outstanding = None,
        }
        let more = args.count.is_none_or(|c| seq < c);
        if more && !session.ended && !interrupted {
            // Keep reading (late pongs, server pings) until the next ping is due.
            tokio::select! {
                _ = session.wait(sent_at + args.interval) => {}
                _ = interrupt.as_mut() => interrupted = true,
            }
        }
    }
    if !session.ended && !session.close_sent {
        session.close_sent = true;
        if session
            .write_frame(OpCode::CLOSE, &1000u16.to_be_bytes())
            .await
        {
            let _ = session.wait(Instant::now() + GOODBYE).await;
        }
    }
    summary.print(&args.url);
    let perfect = summary.sent > 0 && summary.conforming == summary.sent && session.violations == 0;
    Ok(if perfect {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn payloads_are_printable_unique_and_sized() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for seq in 1..=5000 {
            let p = make_payload(seq, 8, &mut rng);
            assert_eq!(p.len(), 8);
            assert!(p.iter().all(|b| b.is_ascii_alphanumeric()));
            assert!(seen.insert(p));
        }
        assert!(make_payload(1, 0, &mut rng).is_empty());
        assert_eq!(make_payload(u64::MAX, 125, &mut rng).len(), 125);
    }

    #[test]
    fn percentages_read_like_ping() {
        assert_eq!(format_percent(0.0), "0");
        assert_eq!(format_percent(100.0), "100");
        assert_eq!(format_percent(100.0 / 3.0), "33.3");
    }
}
