//! Fragmented-text validation: 1 MiB of mixed multi-byte text in 1 KiB masked fragments
//! (code points split across fragment boundaries) through `Connection::handle_read`,
//! next to the same text in one frame.
#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sonar_core::testing::FrameBuilder;
use sonar_core::{Config, Connection, Event};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn text(len: usize) -> Vec<u8> {
    let sample = "ascii text, κόσμε, 日本語のテキスト, emoji 🎉🚀, ümlaut ß; ";
    let mut s = String::new();
    while s.len() < len {
        s.push_str(sample);
    }
    while s.len() > len {
        s.pop();
    }
    s.into_bytes()
}

fn push_frame(out: &mut Vec<u8>, first: bool, fin: bool, payload: &[u8]) {
    let frame = if first {
        FrameBuilder::text(payload)
    } else {
        FrameBuilder::continuation(payload)
    };
    out.extend(frame.fin(fin).mask(KEY).build());
}

fn utf8(c: &mut Criterion) {
    let payload = text(1 << 20);
    let mut fragmented = Vec::new();
    let n = payload.len().div_ceil(1024);
    for (i, chunk) in payload.chunks(1024).enumerate() {
        push_frame(&mut fragmented, i == 0, i + 1 == n, chunk);
    }
    let mut single = Vec::new();
    push_frame(&mut single, true, true, &payload);

    let mut group = c.benchmark_group("utf8");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.sample_size(20);
    for (name, input) in [
        ("1MiB_in_1KiB_fragments", &fragmented),
        ("1MiB_single_frame", &single),
    ] {
        let mut conn = Connection::server(Config::default());
        group.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&input[..]),
                |mut buf| {
                    conn.handle_read(&mut buf).unwrap();
                    match conn.poll_event() {
                        // Returned, so that freeing it is not timed.
                        Some(Event::Message(m)) => (buf, black_box(m)),
                        other => panic!("{other:?}"),
                    }
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    // Why `Utf8Bytes::as_str` is the one `unsafe` block outside masking: the codec validates
    // text once, as it arrives; a safe `as_str` would have to validate again on every access.
    // This group measures both on the same 64 KiB text.
    let text = bytes::Bytes::from(text(64 * 1024));
    let checked = sonar_core::Utf8Bytes::try_from(text.clone()).unwrap();
    let mut group = c.benchmark_group("utf8_access_64KiB");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("utf8bytes_as_str_unchecked", |b| {
        b.iter(|| black_box(black_box(&checked).as_str().len()))
    });
    group.bench_function("safe_str_from_utf8_revalidate", |b| {
        b.iter(|| black_box(core::str::from_utf8(black_box(&text[..])).unwrap().len()))
    });
    group.finish();
}

criterion_group!(benches, utf8);
criterion_main!(benches);
