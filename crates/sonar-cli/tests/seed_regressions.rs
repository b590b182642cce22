//! The seed regressions of keepalive-spec.md (bug catalogue B1, B2, B6) against the real
//! `sonar` binary over raw loopback TCP, on every runtime. Every wait is bounded.
//!
//! - B1 (Hyperion `0A 00`): a pong has FIN set (first byte exactly `0x8a`) and echoes the
//!   ping's payload byte for byte: a 4-byte ping `0d 90 0f 00`, a zero-byte ping, a 125-byte one.
//! - B2 (python-websockets #1566, a 3-byte pong for `0d 90 0f 00`): a server that answers
//!   every ping with a truncated pong neither crashes nor wedges `sonar client`.
//! - B6 (Zephyr #89193): frames in the same TCP write as the 101 response (client) or as the
//!   request head (server) are processed and answered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const SONAR: &str = env!("CARGO_BIN_EXE_sonar");
/// Upper bound for any one wait (a process, a line, a frame).
const LIMIT: Duration = Duration::from_secs(20);
const RUNTIMES: &[&str] = &["tokio", "smol", "async-std"];
/// The 4-byte ping of B2 (python-websockets #1566).
const PING_0D900F00: [u8; 4] = [0x0d, 0x90, 0x0f, 0x00];
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sonar did not exit within {LIMIT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn lines_of<R: Read + Send + 'static>(r: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `sonar serve` on a free loopback port; returns the process and its address.
fn serve(runtime: &str) -> (Proc, SocketAddr) {
    let mut child = Command::new(SONAR)
        .args(["serve", "--addr", "127.0.0.1:0", "--runtime", runtime])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let proc = Proc(child);
    let line = lines.recv_timeout(LIMIT).expect("serve prints its address");
    // Keep draining stdout so the server never writes into a closed pipe.
    thread::spawn(move || lines.iter().for_each(drop));
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (proc, addr)
}

/// `sonar client URL` with piped stdin and stdout lines.
fn client(runtime: &str, url: &str, extra: &[&str]) -> (Proc, ChildStdin, mpsc::Receiver<String>) {
    let mut child = Command::new(SONAR)
        .args(["client", "--runtime", runtime])
        .args(extra)
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    (Proc(child), stdin, lines)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, LIMIT).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// An HTTP head, read byte by byte so nothing after `\r\n\r\n` is consumed.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 16 * 1024, "head too large");
        assert_eq!(s.read(&mut byte).unwrap(), 1, "EOF inside a head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

const REQUEST: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// Reads a client's request head and returns the 101 that accepts it.
fn accept(s: &mut TcpStream) -> String {
    let head = read_head(s);
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .expect("a websocket key");
    let accept = sonar_handshake::accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

/// A frame with a payload under 126 bytes, masked with `MASK` if `masked`.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut v = vec![first, payload.len() as u8 | if masked { 0x80 } else { 0 }];
    if masked {
        v.extend_from_slice(&MASK);
        v.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    } else {
        v.extend_from_slice(payload);
    }
    v
}

/// One frame as it came off the wire: (first byte, second byte, unmasked payload).
fn read_frame(s: &mut TcpStream) -> (u8, u8, Vec<u8>) {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            usize::from(u16::from_be_bytes(l))
        }
        127 => panic!("unexpected 64-bit length"),
        n => usize::from(n),
    };
    let mask = if head[1] & 0x80 != 0 {
        let mut m = [0u8; 4];
        s.read_exact(&mut m).unwrap();
        Some(m)
    } else {
        None
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    if let Some(m) = mask {
        payload
            .iter_mut()
            .zip(m.iter().cycle())
            .for_each(|(b, k)| *b ^= k);
    }
    (head[0], head[1], payload)
}

// ----- B1: pong FIN and payload echo (sonar serve) ----------------------------------------

fn serve_answers_ping_exactly(payload: &[u8]) {
    for rt in RUNTIMES {
        let (_server, addr) = serve(rt);
        let mut s = connect(addr);
        s.write_all(REQUEST.as_bytes()).unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{rt}: {head}");
        s.write_all(&frame(0x89, payload, true)).unwrap();
        let (b0, b1, got) = read_frame(&mut s);
        assert_eq!(b0, 0x8a, "{rt}: pong first byte (FIN + opcode 0xA, no RSV)");
        assert_eq!(b1, payload.len() as u8, "{rt}: unmasked, length echoed");
        assert_eq!(got, payload, "{rt}: pong payload byte for byte");
        s.write_all(&frame(0x88, &[0x03, 0xe8], true)).unwrap();
        let (b0, _, close) = read_frame(&mut s);
        assert_eq!((b0, close.as_slice()), (0x88, &[0x03, 0xe8][..]), "{rt}");
    }
}

#[test]
fn b1_serve_pong_for_4_byte_ping_0d900f00() {
    serve_answers_ping_exactly(&PING_0D900F00);
}

#[test]
fn b1_serve_pong_for_zero_byte_ping() {
    serve_answers_ping_exactly(&[]);
}

#[test]
fn b1_serve_pong_for_125_byte_ping() {
    let payload: Vec<u8> = (0..125u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    serve_answers_ping_exactly(&payload);
}

// ----- B2: truncated pongs (sonar client) --------------------------------------------------

/// One raw server connection on a thread; `behave` gets the accepted stream.
fn raw_server<T: Send + 'static>(
    behave: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (SocketAddr, mpsc::Receiver<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let _ = tx.send(behave(stream));
    });
    (addr, rx)
}

#[test]
fn b2_client_survives_truncated_pongs() {
    for rt in RUNTIMES {
        // Answers every ping with its payload cut short by one byte (a 3-byte pong for
        // `0d 90 0f 00`, as in #1566), echoes text, completes the close; counts the pings.
        let (addr, done) = raw_server(|mut s| {
            let response = accept(&mut s);
            s.write_all(response.as_bytes()).unwrap();
            let mut pings = 0usize;
            loop {
                let (b0, _, payload) = read_frame(&mut s);
                match b0 & 0x0f {
                    0x9 => {
                        pings += 1;
                        let cut = payload.len().saturating_sub(1);
                        s.write_all(&frame(0x8a, &payload[..cut], false)).unwrap();
                    }
                    0x1 => s.write_all(&frame(0x81, &payload, false)).unwrap(),
                    0x8 => {
                        s.write_all(&frame(0x88, &payload, false)).unwrap();
                        return (pings, payload);
                    }
                    op => panic!("unexpected opcode {op:#x}"),
                }
            }
        });
        let url = format!("ws://{addr}/");
        let args = ["--ping-interval", "0.05", "--ping-timeout", "2"];
        let (mut proc, mut stdin, lines) = client(rt, &url, &args);
        for line in ["one", "two", "three"] {
            stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
            let got = lines.recv_timeout(LIMIT).expect("the client keeps echoing");
            assert_eq!(got, line, "{rt}");
            // Idle long enough for several keepalive pings and truncated pongs.
            thread::sleep(Duration::from_millis(300));
        }
        drop(stdin);
        let status = proc.wait();
        assert!(status.success(), "{rt}: exit {status}");
        let (pings, close) = done.recv_timeout(LIMIT).unwrap();
        assert!(
            pings >= 3,
            "{rt}: only {pings} pings were answered truncated"
        );
        assert_eq!(close, [0x03, 0xe8], "{rt}: close 1000 on EOF");
    }
}

// ----- B6: frames coalesced with the handshake ---------------------------------------------

#[test]
fn b6_client_reads_ping_and_text_in_the_same_write_as_the_101() {
    for rt in RUNTIMES {
        let (addr, done) = raw_server(|mut s| {
            let mut all = accept(&mut s).into_bytes();
            all.extend(frame(0x89, b"hi", false));
            all.extend(frame(0x81, b"Hello", false));
            s.write_all(&all).unwrap();
            let pong = read_frame(&mut s);
            s.write_all(&frame(0x88, &[0x03, 0xe8], false)).unwrap();
            let close = read_frame(&mut s);
            (pong, close)
        });
        let url = format!("ws://{addr}/");
        let (mut proc, stdin, lines) = client(rt, &url, &["--ping-interval", "0"]);
        let got = lines
            .recv_timeout(LIMIT)
            .expect("the coalesced text is printed");
        assert_eq!(got, "Hello", "{rt}");
        let ((b0, b1, pong), (c0, _, close)) = done.recv_timeout(LIMIT).unwrap();
        assert_eq!(
            b0, 0x8a,
            "{rt}: the coalesced ping is answered first, FIN set"
        );
        assert_eq!(b1, 0x82, "{rt}: masked, 2 bytes");
        assert_eq!(pong, b"hi", "{rt}");
        assert_eq!((c0, close.as_slice()), (0x88, &[0x03, 0xe8][..]), "{rt}");
        let status = proc.wait();
        assert!(status.success(), "{rt}: exit {status}");
        drop(stdin);
    }
}

#[test]
fn b6_serve_reads_frames_in_the_same_write_as_the_request_head() {
    for rt in RUNTIMES {
        let (_server, addr) = serve(rt);
        let mut s = connect(addr);
        let mut all = REQUEST.as_bytes().to_vec();
        all.extend(frame(0x89, b"hi", true));
        all.extend(frame(0x81, b"Hello", true));
        s.write_all(&all).unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{rt}: {head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{rt}: {head}"
        );
        assert_eq!(
            read_frame(&mut s),
            (0x8a, 0x02, b"hi".to_vec()),
            "{rt}: pong"
        );
        assert_eq!(
            read_frame(&mut s),
            (0x81, 0x05, b"Hello".to_vec()),
            "{rt}: echo"
        );
        s.write_all(&frame(0x88, &[0x03, 0xe8], true)).unwrap();
        assert_eq!(read_frame(&mut s), (0x88, 0x02, vec![0x03, 0xe8]), "{rt}");
    }
}
