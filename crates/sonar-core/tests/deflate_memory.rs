//! RFC 7692 memory per connection, counted by a global allocator (peak_alloc: live heap
//! bytes): with `*_no_context_takeover` a side's zlib state is freed between messages (an
//! idle connection holds none), with context takeover the state is kept and its size follows
//! the window bits and the memory level.
//!
//! `cargo test --release -p sonar-core --test deflate_memory -- --ignored --nocapture` prints
//! the tables of `docs/compression.md` (memory per setting; ratio and throughput by level and
//! by window size).
#![cfg(feature = "deflate")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use sonar_core::testing::{FrameBuilder, PeerDeflate};
use sonar_core::{Config, Connection, Deflate, Message};

#[global_allocator]
static ALLOC: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// The allocator counts the whole process: one measurement at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const N: usize = 200;

fn sample(len: usize) -> String {
    let words = [
        "sonar ",
        "websocket ",
        "deflate ",
        "window ",
        "context ",
        "takeover ",
        "frame ",
        "message ",
        "ping ",
        "{\"id\":",
        "\"value\":[1,2,3]} ",
    ];
    let mut s = String::new();
    let mut x: u32 = 12345;
    while s.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        s.push_str(words[(x >> 16) as usize % words.len()]);
        if x.is_multiple_of(7) {
            s.push_str(&format!("{}", x % 100_000));
        }
    }
    s.truncate(len);
    s
}

fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Heap bytes per server connection: (idle after creation, after one message each way).
fn per_connection(deflate: Option<Deflate>) -> (usize, usize) {
    let config = Config::default().with_deflate(deflate);
    let text = sample(4096);
    let frame = match deflate {
        Some(_) => FrameBuilder::text(&PeerDeflate::new(15).message(text.as_bytes()))
            .rsv(sonar_core::RSV1)
            .mask([1, 2, 3, 4])
            .build(),
        None => FrameBuilder::text(text.as_bytes())
            .mask([1, 2, 3, 4])
            .build(),
    };
    let mut conns: Vec<Connection> = Vec::with_capacity(N);
    let base = ALLOC.current_usage();
    for _ in 0..N {
        conns.push(Connection::server(config.clone()));
    }
    let idle = ALLOC.current_usage().saturating_sub(base) / N;
    for c in &mut conns {
        let mut buf = BytesMut::from(&frame[..]);
        c.handle_read(&mut buf).unwrap();
        while c.poll_event().is_some() {}
        c.send(Message::text(text.clone())).unwrap();
        let mut out = c.outbound();
        let n = out.remaining();
        out.advance(n);
    }
    let after = ALLOC.current_usage().saturating_sub(base) / N;
    drop(conns);
    // Everything is given back: no zlib state outlives its connection.
    assert!(
        ALLOC.current_usage() <= base,
        "leaked {} bytes",
        ALLOC.current_usage() - base
    );
    (idle, after)
}

fn settings() -> Vec<(String, Option<Deflate>)> {
    let mut v = vec![("no deflate".to_string(), None)];
    let base = Deflate::new();
    for (bits, mem) in [
        (15u8, 8u8),
        (15, 5),
        (12, 8),
        (12, 5),
        (10, 5),
        (9, 1),
        (12, 1),
    ] {
        v.push((
            format!("takeover, window {bits}, memory level {mem}"),
            Some(
                base.with_server_max_window_bits(bits)
                    .with_client_max_window_bits(bits)
                    .with_memory_level(mem),
            ),
        ));
    }
    v.push((
        "server_no_context_takeover (window 12, mem 5)".into(),
        Some(
            base.with_server_max_window_bits(12)
                .with_server_no_context_takeover(true),
        ),
    ));
    v.push((
        "client_no_context_takeover (window 12, mem 5)".into(),
        Some(
            base.with_server_max_window_bits(12)
                .with_client_no_context_takeover(true),
        ),
    ));
    v.push((
        "both no_context_takeover".into(),
        Some(
            base.with_server_no_context_takeover(true)
                .with_client_no_context_takeover(true),
        ),
    ));
    v
}

#[test]
fn rfc7692_7_1_1_no_context_takeover_both_ways_costs_nothing_when_idle() {
    let _g = SERIAL.lock().unwrap();
    let (_, plain) = per_connection(None);
    let both = Deflate::new()
        .with_server_no_context_takeover(true)
        .with_client_no_context_takeover(true);
    let (idle, after) = per_connection(Some(both));
    assert!(idle <= plain, "idle {idle} vs plain {plain}");
    // Within 1 KB of the uncompressed connection after a message each way.
    assert!(after <= plain + 1024, "after {after} vs plain {plain}");
}

#[test]
fn rfc7692_7_1_1_context_takeover_keeps_the_state_and_memory_level_counts() {
    let _g = SERIAL.lock().unwrap();
    let (_, plain) = per_connection(None);
    let (_, big) = per_connection(Some(Deflate::new().with_memory_level(9)));
    let (_, small) = per_connection(Some(Deflate::new().with_memory_level(1)));
    assert!(
        small > plain + 32 * 1024,
        "the kept state shows: {small} vs {plain}"
    );
    assert!(big > small, "memory level 9 {big} vs 1 {small}");
}

/// What a fresh server connection with `config` writes for `messages`.
fn compress_all(config: &Config, messages: &[Message]) -> BytesMut {
    let mut server = Connection::server(config.clone());
    let mut wire = BytesMut::new();
    for m in messages {
        server.send(m.clone()).unwrap();
        let mut out = server.outbound();
        let n = out.remaining();
        wire.extend_from_slice(&out.copy_to_bytes(n));
    }
    wire
}

/// The payload bytes a fresh client connection with `config` receives from `wire`.
fn inflate_all(config: &Config, mut wire: BytesMut) -> usize {
    let mut client = Connection::client(
        config.clone(),
        Box::new(sonar_core::testing::FixedMask([0; 4])),
    );
    client.handle_read(&mut wire).unwrap();
    let mut got = 0;
    while let Some(e) = client.poll_event() {
        if let sonar_core::Event::Message(m) = e {
            got += m.payload().len();
        }
    }
    got
}

#[test]
#[ignore = "prints the measurement tables of docs/compression.md"]
fn print_memory_and_throughput_tables() {
    let _g = SERIAL.lock().unwrap();
    println!("\nheap bytes per server connection ({N} connections, 4 KiB text each way):");
    println!("| setting | idle | after one message each way |");
    println!("|---|---:|---:|");
    for (name, d) in settings() {
        let (idle, after) = per_connection(d);
        println!("| {name} | {idle} | {after} |");
    }
    println!(
        "(size_of::<Connection>() = {} bytes, not included)",
        size_of::<Connection>()
    );

    let text = sample(1 << 20);
    let bin = noise(1 << 20);
    println!("\n1 MiB as 64 KiB messages, context takeover, best of 5, one core:");
    println!("| data | level | window | ratio | compress MB/s | inflate MB/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, data) in [("text", text.as_bytes()), ("binary (random)", &bin[..])] {
        for (level, bits) in [
            (1u8, 12u8),
            (2, 12),
            (3, 12),
            (4, 12),
            (6, 12),
            (6, 15),
            (9, 15),
        ] {
            let d = Deflate::new()
                .with_level(level)
                .with_server_max_window_bits(bits)
                .with_client_max_window_bits(bits);
            let config = Config::default()
                .with_deflate(Some(d))
                .with_auto_fragment_size(None);
            let messages: Vec<Message> = data
                .chunks(64 * 1024)
                .map(|chunk| {
                    if name == "text" {
                        Message::text(String::from_utf8(chunk.to_vec()).unwrap())
                    } else {
                        Message::binary(chunk.to_vec())
                    }
                })
                .collect();
            // Best of 5 runs each (the machine is shared).
            let (mut ct, mut it) = (f64::MAX, f64::MAX);
            let mut wire = BytesMut::new();
            for _ in 0..5 {
                let start = Instant::now();
                wire = compress_all(&config, &messages);
                ct = ct.min(start.elapsed().as_secs_f64());
                let input = wire.clone();
                let start = Instant::now();
                let got = inflate_all(&config, input);
                it = it.min(start.elapsed().as_secs_f64());
                assert_eq!(got, data.len());
            }
            let mb = data.len() as f64 / 1e6;
            println!(
                "| {name} | {level} | {bits} | {:.3} | {:.0} | {:.0} |",
                wire.len() as f64 / data.len() as f64,
                mb / ct,
                mb / it
            );
        }
    }
}

/// Compress-and-inflate time by window size at sonar's default level (1), 4 MiB of text as
/// 64 KiB and as 1 KiB messages, context takeover: the windows interleaved round by round,
/// best of 15 rounds each (the machine is shared). zlib-rs slides its window every
/// `2^bits` bytes of input, and each slide rewrites its whole 64 Ki-entry hash table, so a
/// small window costs time on long input.
#[test]
#[ignore = "prints the window-bits table of docs/compression.md"]
fn print_window_bits_speed() {
    let _g = SERIAL.lock().unwrap();
    const WINDOWS: [u8; 4] = [12, 13, 14, 15];
    let text = sample(4 << 20);
    println!("\n4 MiB of text, level 1, context takeover, best of 15 interleaved rounds:");
    println!("| message size | window | ratio | compress + inflate ms | vs window 12 |");
    println!("|---:|---:|---:|---:|---:|");
    for size in [64 * 1024, 1024] {
        let messages: Vec<Message> = text
            .as_bytes()
            .chunks(size)
            .map(|c| Message::text(String::from_utf8(c.to_vec()).unwrap()))
            .collect();
        let mut best = [f64::MAX; WINDOWS.len()];
        let mut wire_len = [0usize; WINDOWS.len()];
        for _ in 0..15 {
            for (i, bits) in WINDOWS.into_iter().enumerate() {
                let d = Deflate::new()
                    .with_server_max_window_bits(bits)
                    .with_client_max_window_bits(bits);
                let config = Config::default()
                    .with_deflate(Some(d))
                    .with_auto_fragment_size(None);
                let start = Instant::now();
                let wire = compress_all(&config, &messages);
                wire_len[i] = wire.len();
                let got = inflate_all(&config, wire);
                best[i] = best[i].min(start.elapsed().as_secs_f64());
                assert_eq!(got, text.len());
            }
        }
        for (i, bits) in WINDOWS.into_iter().enumerate() {
            println!(
                "| {} | {bits} | {:.3} | {:.2} | {:.2}x |",
                if size >= 1024 * 64 { "64 KiB" } else { "1 KiB" },
                wire_len[i] as f64 / text.len() as f64,
                best[i] * 1e3,
                best[0] / best[i]
            );
        }
    }
}
