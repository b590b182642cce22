//! A blocking WebSocket client over `std::net::TcpStream` using only `sonar-core` and
//! `sonar-handshake`: no async runtime, no I/O inside the protocol crates. The program does
//! all reading, writing and timekeeping itself, which is what an embedded or RTOS port does.
//!
//! ```text
//! cargo run -p sonar-cli -- serve                            # an echo server on 127.0.0.1:9001
//! cargo run -p sonar-core --example blocking_client [127.0.0.1:9001]
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use sonar_core::{CloseCode, CloseFrame, Config, Connection, Event, Message};
use sonar_handshake::{ClientHandshake, ClientRequest};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Randomness from std's hasher keys. Masks and handshake keys must be unpredictable;
/// a real client should take them from the OS (e.g. the `getrandom` crate).
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// Writes everything the connection has queued.
fn flush_out(conn: &mut Connection, tcp: &mut TcpStream) -> Result<()> {
    let mut out = conn.outbound();
    while out.has_remaining() {
        let n = tcp.write(out.chunk())?;
        if n == 0 {
            return Err("connection closed while writing".into());
        }
        out.advance(n);
    }
    tcp.flush()?;
    Ok(())
}

/// Reads until `want` messages arrived or the connection must be shut down; returns the
/// messages.
fn read_events(
    conn: &mut Connection,
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    start: Instant,
    want: usize,
) -> Result<(Vec<Message>, bool)> {
    let mut messages = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        conn.handle_read(buf)?;
        conn.handle_timeout(start.elapsed());
        let mut closed = false;
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(m) => messages.push(m),
                Event::CloseReceived(frame) => println!("server sent close: {frame:?}"),
                Event::CloseTransport => closed = true,
                _ => {}
            }
        }
        // Pongs for the server's pings, our Close reply: written as soon as queued.
        flush_out(conn, tcp)?;
        if closed || messages.len() >= want {
            return Ok((messages, closed));
        }
        match tcp.read(&mut chunk) {
            Ok(0) => {
                conn.handle_eof();
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // The read timeout: time passes for the close timeout.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn main() -> Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let start = Instant::now();
    let mut tcp = TcpStream::connect(&addr)?;
    tcp.set_read_timeout(Some(Duration::from_millis(500)))?;
    tcp.set_nodelay(true)?;

    // 1. The opening handshake: bytes out, bytes in, leftover kept for the codec.
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&random_u64().to_le_bytes());
    key[8..].copy_from_slice(&random_u64().to_le_bytes());
    let request = ClientRequest::from_url(&format!("ws://{addr}/"))?;
    let mut handshake = ClientHandshake::new(request, key);
    let mut head = Vec::new();
    handshake.encode_request(&mut head);
    tcp.write_all(&head)?;
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tcp.read(&mut chunk)?;
        if n == 0 {
            return Err("server closed during the handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((_accepted, used)) = handshake.decode_response(&buf)? {
            let _head = buf.split_to(used);
            break;
        }
        if buf.len() > 64 * 1024 {
            return Err("handshake response too large".into());
        }
    }
    println!("connected to ws://{addr}/");

    // 2. Messages: queue, write, read the echoes.
    let masks = || {
        let [a, b, c, d, ..] = random_u64().to_le_bytes();
        [a, b, c, d]
    };
    let mut conn = Connection::client(Config::default(), Box::new(masks));
    conn.send(Message::text("hello from a blocking client"))?;
    conn.send(Message::binary(vec![0u8, 1, 2, 3]))?;
    flush_out(&mut conn, &mut tcp)?;
    let (echoes, _) = read_events(&mut conn, &mut tcp, &mut buf, start, 2)?;
    for m in echoes {
        match m {
            Message::Text(t) => println!("text: {t}"),
            Message::Binary(b) => println!("binary: {b:?}"),
        }
    }

    // 3. The closing handshake: our Close, the server's reply, then the server closes TCP.
    conn.close(Some(CloseFrame::with_reason(CloseCode::NORMAL, "bye")))?;
    flush_out(&mut conn, &mut tcp)?;
    let (_, closed) = read_events(&mut conn, &mut tcp, &mut buf, start, usize::MAX)?;
    println!("closed: {closed}, code {:?}", conn.close_code());
    Ok(())
}
