//! Masking throughput: sonar's word-at-a-time `apply_mask` against a byte-wise reference and
//! against `copy_from_slice` of the same buffer (the memcpy ceiling), and fastwebsockets' public
//! `unmask` in the same group.
#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sonar_core::{apply_mask, apply_mask_reference};

const SIZES: [(usize, &str); 4] = [
    (16, "16B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn mask(c: &mut Criterion) {
    for (size, name) in SIZES {
        let mut group = c.benchmark_group(format!("mask/{name}"));
        group.throughput(Throughput::Bytes(size as u64));
        let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let mut buf = src.clone();
        group.bench_function(BenchmarkId::from_parameter("sonar"), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), black_box(1)))
        });
        group.bench_function(BenchmarkId::from_parameter("bytewise"), |b| {
            b.iter(|| apply_mask_reference(black_box(&mut buf), black_box(KEY), black_box(1)))
        });
        // The peer that exposes its masking publicly (fastwebsockets' SIMD-friendly `unmask`;
        // its offset is always 0, so it gets the aligned case).
        group.bench_function(BenchmarkId::from_parameter("fastwebsockets"), |b| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), black_box(KEY)))
        });
        group.bench_function(BenchmarkId::from_parameter("memcpy"), |b| {
            b.iter(|| black_box(&mut buf).copy_from_slice(black_box(&src)))
        });
        group.finish();
    }
}

criterion_group!(benches, mask);
criterion_main!(benches);
