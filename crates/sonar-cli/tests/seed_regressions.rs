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

use std::io::Write;
use std::net::SocketAddr;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use sonar_testkit::{
    ChildGuard, FrameBuilder, LineReader, Peer, RFC_KEY, accept_response, upgrade_request,
};

const SONAR: &str = env!("CARGO_BIN_EXE_sonar");
/// Upper bound for any one wait (a process, a line, a frame).
const LIMIT: Duration = Duration::from_secs(20);
const RUNTIMES: &[&str] = &["tokio", "smol", "async-std"];
/// The 4-byte ping of B2 (python-websockets #1566).
const PING_0D900F00: [u8; 4] = [0x0d, 0x90, 0x0f, 0x00];

/// `sonar serve` on a free loopback port; returns the process and its address.
fn serve(runtime: &str) -> (ChildGuard, SocketAddr) {
    let mut proc = ChildGuard::spawn(
        Command::new(SONAR)
            .args(["serve", "--addr", "127.0.0.1:0", "--runtime", runtime])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let lines = LineReader::spawn(proc.stdout.take().unwrap());
    let line = lines.next_line(LIMIT).expect("serve prints its address");
    // Keep draining stdout so the server never writes into a closed pipe.
    lines.drain();
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (proc, addr)
}

/// `sonar client URL` with piped stdin and stdout lines.
fn client(runtime: &str, url: &str, extra: &[&str]) -> (ChildGuard, ChildStdin, LineReader) {
    let mut child = ChildGuard::spawn(
        Command::new(SONAR)
            .args(["client", "--runtime", runtime])
            .args(extra)
            .arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .unwrap();
    let stdin = child.stdin.take().unwrap();
    let lines = LineReader::spawn(child.stdout.take().unwrap());
    (child, stdin, lines)
}

/// A raw client of `sonar serve` (masking with the RFC 6455 example key), before the handshake.
fn connect(addr: SocketAddr) -> Peer {
    Peer::tcp_client(addr, LIMIT).unwrap()
}

/// The upgrade request of a raw client, with the RFC 6455 sample key.
fn request() -> String {
    upgrade_request("127.0.0.1", "/", sonar_testkit::SAMPLE_KEY)
}

/// One frame as it came off the wire: (first byte, second byte, unmasked payload).
fn read_frame(s: &mut Peer) -> (u8, u8, Vec<u8>) {
    let f = s.recv().expect("a frame");
    (f.first(), f.second(), f.payload)
}

// ----- B1: pong FIN and payload echo (sonar serve) ----------------------------------------

fn serve_answers_ping_exactly(payload: &[u8]) {
    for rt in RUNTIMES {
        let (_server, addr) = serve(rt);
        let mut s = connect(addr);
        s.write_all(request().as_bytes()).unwrap();
        let head = s.read_head().unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{rt}: {head}");
        s.send(FrameBuilder::ping(payload)).unwrap();
        let (b0, b1, got) = read_frame(&mut s);
        assert_eq!(b0, 0x8a, "{rt}: pong first byte (FIN + opcode 0xA, no RSV)");
        assert_eq!(b1, payload.len() as u8, "{rt}: unmasked, length echoed");
        assert_eq!(got, payload, "{rt}: pong payload byte for byte");
        s.send(FrameBuilder::close(1000, b"")).unwrap();
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

/// One raw server connection on a thread; `behave` gets its server side.
fn raw_server<T: Send + 'static>(
    behave: impl FnOnce(Peer) -> T + Send + 'static,
) -> (SocketAddr, mpsc::Receiver<T>) {
    Peer::serve_one(LIMIT, behave).unwrap()
}

#[test]
fn b2_client_survives_truncated_pongs() {
    for rt in RUNTIMES {
        // Answers every ping with its payload cut short by one byte (a 3-byte pong for
        // `0d 90 0f 00`, as in #1566), echoes text, completes the close; counts the pings.
        let (addr, done) = raw_server(|mut s| {
            s.accept().unwrap();
            let mut pings = 0usize;
            loop {
                let (b0, _, payload) = read_frame(&mut s);
                match b0 & 0x0f {
                    0x9 => {
                        pings += 1;
                        let cut = payload.len().saturating_sub(1);
                        s.send(FrameBuilder::pong(&payload[..cut])).unwrap();
                    }
                    0x1 => s.send(FrameBuilder::text(&payload)).unwrap(),
                    0x8 => {
                        s.send(FrameBuilder::new(0x8, &payload)).unwrap();
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
            let got = lines.next_line(LIMIT).expect("the client keeps echoing");
            assert_eq!(got, line, "{rt}");
            // Idle long enough for several keepalive pings and truncated pongs.
            thread::sleep(Duration::from_millis(300));
        }
        drop(stdin);
        let status = proc.expect_exit(LIMIT, "sonar");
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
            let request = s.read_head().unwrap();
            let mut all = accept_response(&request, None).unwrap().into_bytes();
            all.extend(FrameBuilder::ping(b"hi").build());
            all.extend(FrameBuilder::text(b"Hello").build());
            s.write_all(&all).unwrap();
            let pong = read_frame(&mut s);
            s.send(FrameBuilder::close(1000, b"")).unwrap();
            let close = read_frame(&mut s);
            (pong, close)
        });
        let url = format!("ws://{addr}/");
        let (mut proc, stdin, lines) = client(rt, &url, &["--ping-interval", "0"]);
        let got = lines
            .next_line(LIMIT)
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
        let status = proc.expect_exit(LIMIT, "sonar");
        assert!(status.success(), "{rt}: exit {status}");
        drop(stdin);
    }
}

#[test]
fn b6_serve_reads_frames_in_the_same_write_as_the_request_head() {
    for rt in RUNTIMES {
        let (_server, addr) = serve(rt);
        let mut s = connect(addr);
        let mut all = request().into_bytes();
        all.extend(FrameBuilder::ping(b"hi").mask(RFC_KEY).build());
        all.extend(FrameBuilder::text(b"Hello").mask(RFC_KEY).build());
        s.write_all(&all).unwrap();
        let head = s.read_head().unwrap();
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
        s.send(FrameBuilder::close(1000, b"")).unwrap();
        assert_eq!(read_frame(&mut s), (0x88, 0x02, vec![0x03, 0xe8]), "{rt}");
    }
}
