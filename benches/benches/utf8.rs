//! Placeholder: the utf8 benchmarks are being written.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};

fn placeholder(c: &mut Criterion) {
    c.bench_function("utf8_placeholder", |b| b.iter(|| std::hint::black_box(1u8)));
}

criterion_group!(benches, placeholder);
criterion_main!(benches);
