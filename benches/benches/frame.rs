//! Frame decode (server role, masked input) and encode (server role: header + `Bytes`,
//! no payload copy; client role: masked copy) at 16 B, 1 KiB, 64 KiB and 16 MiB.
#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

use std::hint::black_box;

use bytes::{Buf, Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sonar_core::testing::FrameBuilder;
use sonar_core::{Config, Connection, Event, Message};

const SIZES: [(usize, &str); 4] = [
    (16, "16B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (16 << 20, "16MiB"),
];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn masked_frame(payload: &[u8]) -> Vec<u8> {
    FrameBuilder::binary(payload).mask(KEY).build()
}

fn batch(size: usize) -> BatchSize {
    if size >= 1 << 20 {
        BatchSize::PerIteration
    } else {
        BatchSize::SmallInput
    }
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (size, name) in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            group.sample_size(10);
        }
        let frame = masked_frame(&vec![0xab; size]);
        // One connection for all iterations: only handle_read + poll_event are timed.
        let mut conn = Connection::server(Config::default());
        group.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&frame[..]),
                |mut buf| {
                    conn.handle_read(&mut buf).unwrap();
                    match conn.poll_event() {
                        // Returned, so that freeing it is not timed.
                        Some(Event::Message(m)) => (buf, black_box(m)),
                        other => panic!("{other:?}"),
                    }
                },
                batch(size),
            )
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (size, name) in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            group.sample_size(10);
        }
        let payload = Bytes::from(vec![0xab; size]);
        let mut conn = Connection::server(Config::default());
        group.bench_function(format!("server/{name}"), |b| {
            b.iter(|| {
                conn.send(Message::Binary(payload.clone())).unwrap();
                let mut out = conn.outbound();
                while out.has_remaining() {
                    let len = {
                        let mut slices = [std::io::IoSlice::new(&[]); 64];
                        let n = out.chunks_vectored(&mut slices);
                        black_box(&slices[..n]);
                        slices[..n].iter().map(|s| s.len()).sum::<usize>()
                    };
                    out.advance(len);
                }
            })
        });
        let mut conn = Connection::client(Config::default(), Box::new(|| KEY));
        group.bench_function(format!("client/{name}"), |b| {
            b.iter(|| {
                conn.send(Message::Binary(payload.clone())).unwrap();
                let mut out = conn.outbound();
                while out.has_remaining() {
                    let n = black_box(out.chunk()).len();
                    out.advance(n);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
