//! The deflate backend, chosen by measurement: zlib-rs (what sonar-core uses) against
//! miniz_oxide (the `no_std` alternative, which cannot limit its compressor's window), on the
//! payloads WebSocket applications send: JSON text of 1 KiB and 64 KiB.
//!
//! Both in permessage-deflate's shape: raw deflate (no zlib header), a 15-bit window, level 6,
//! every message ended with a sync flush; compressing and inflating one message from a fresh
//! stream (no context takeover), the state reset and reused rather than allocated per message.
//! The compressed sizes are printed once, so speed is not bought with a worse ratio.
//!
//! `cargo bench -p sonar-benches --bench deflate`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sonar_benches::json_payload;
use std::hint::black_box;

const LEVEL: u8 = 6;
const WINDOW_BITS: u8 = 15;

/// zlib-rs: one message compressed and sync-flushed into `out` (which has room for it).
fn zlib_rs_compress(state: &mut zlib_rs::Deflate, input: &[u8], out: &mut [u8]) -> usize {
    state.reset();
    let before = state.total_out();
    state
        .compress(input, out, zlib_rs::DeflateFlush::SyncFlush)
        .expect("zlib-rs compress");
    usize::try_from(state.total_out() - before).unwrap()
}

fn zlib_rs_inflate(state: &mut zlib_rs::Inflate, input: &[u8], out: &mut [u8]) -> usize {
    state.reset(false);
    let before = state.total_out();
    state
        .decompress(input, out, zlib_rs::InflateFlush::SyncFlush)
        .expect("zlib-rs inflate");
    usize::try_from(state.total_out() - before).unwrap()
}

fn miniz_compress(
    state: &mut miniz_oxide::deflate::core::CompressorOxide,
    input: &[u8],
    out: &mut [u8],
) -> usize {
    use miniz_oxide::deflate::core::{TDEFLFlush, TDEFLStatus, compress};
    state.reset();
    let (status, used, written) = compress(state, input, out, TDEFLFlush::Sync);
    assert!(
        status == TDEFLStatus::Okay && used == input.len(),
        "miniz compress"
    );
    written
}

fn miniz_inflate(
    state: &mut miniz_oxide::inflate::stream::InflateState,
    input: &[u8],
    out: &mut [u8],
) -> usize {
    use miniz_oxide::{DataFormat, MZFlush, inflate::stream::inflate};
    state.reset(DataFormat::Raw);
    let r = inflate(state, input, out, MZFlush::Sync);
    assert!(r.status.is_ok(), "miniz inflate");
    r.bytes_written
}

fn new_miniz_compressor() -> miniz_oxide::deflate::core::CompressorOxide {
    use miniz_oxide::deflate::core::{CompressorOxide, create_comp_flags_from_zip_params};
    // Negative window bits: raw deflate. miniz_oxide ignores the size (its window is 32 KiB).
    CompressorOxide::new(create_comp_flags_from_zip_params(
        i32::from(LEVEL),
        -i32::from(WINDOW_BITS),
        0,
    ))
}

fn deflate(c: &mut Criterion) {
    let mut zc = zlib_rs::Deflate::new(i32::from(LEVEL), false, WINDOW_BITS);
    let mut zi = zlib_rs::Inflate::new(false, WINDOW_BITS);
    let mut mc = new_miniz_compressor();
    let mut mi =
        miniz_oxide::inflate::stream::InflateState::new_boxed(miniz_oxide::DataFormat::Raw);
    for len in [1024usize, 64 * 1024] {
        let input = json_payload(len);
        let mut out = vec![0u8; len * 2 + 1024];
        let mut back = vec![0u8; len + 1024];
        // Each backend's compressed message, and a check that the other one inflates it.
        let z = zlib_rs_compress(&mut zc, &input, &mut out);
        let z_bytes = out[..z].to_vec();
        let m = miniz_compress(&mut mc, &input, &mut out);
        let m_bytes = out[..m].to_vec();
        assert_eq!(miniz_inflate(&mut mi, &z_bytes, &mut back), len);
        assert_eq!(&back[..len], &input[..]);
        assert_eq!(zlib_rs_inflate(&mut zi, &m_bytes, &mut back), len);
        assert_eq!(&back[..len], &input[..]);
        eprintln!(
            "deflate {len} B of JSON: zlib-rs {z} B ({:.1} %), miniz_oxide {m} B ({:.1} %)",
            z as f64 * 100.0 / len as f64,
            m as f64 * 100.0 / len as f64
        );

        let mut g = c.benchmark_group("deflate/compress");
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("zlib-rs", len), &input, |b, input| {
            b.iter(|| zlib_rs_compress(&mut zc, black_box(input), &mut out));
        });
        g.bench_with_input(BenchmarkId::new("miniz_oxide", len), &input, |b, input| {
            b.iter(|| miniz_compress(&mut mc, black_box(input), &mut out));
        });
        g.finish();

        let mut g = c.benchmark_group("deflate/inflate");
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("zlib-rs", len), &z_bytes, |b, data| {
            b.iter(|| zlib_rs_inflate(&mut zi, black_box(data), &mut back));
        });
        g.bench_with_input(BenchmarkId::new("miniz_oxide", len), &z_bytes, |b, data| {
            b.iter(|| miniz_inflate(&mut mi, black_box(data), &mut back));
        });
        g.finish();
    }
}

criterion_group!(benches, deflate);
criterion_main!(benches);
