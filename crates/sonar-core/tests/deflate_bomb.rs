//! RFC 7692 §8 (security considerations): a decompression bomb. `max_message_size` applies to
//! the inflated message, which is inflated in bounded pieces, so a message that would inflate
//! to 1 GiB of zeros fails with 1009 against a 1 MiB limit, holding at most the limit plus one
//! piece. A counting global allocator (peak live bytes) shows what reading the bomb cost.
//! One test in its own binary, so nothing else allocates beside it.
#![cfg(feature = "deflate")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use bytes::BytesMut;
use sonar_core::testing::{FrameBuilder, PeerDeflate};
use sonar_core::{CloseCode, Config, Connection, Deflate, ProtocolError, RSV1};

#[global_allocator]
static ALLOC: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

const MIB: usize = 1 << 20;

/// The compressed form of 1 GiB of zeros, built from 1 MiB pieces each ending in a sync flush:
/// after the first piece, every piece compresses to the same bytes (the window holds zeros
/// either way), which the function checks on the first few before repeating them.
fn bomb_1gib() -> Vec<u8> {
    let zeros = vec![0u8; MIB];
    let mut peer = PeerDeflate::with_level(15, 9);
    let mut sync = |data: &[u8]| {
        let mut z = peer.message(data);
        z.extend_from_slice(&[0, 0, 0xff, 0xff]);
        z
    };
    let first = sync(&zeros);
    let second = sync(&zeros);
    assert_eq!(sync(&zeros), second, "pieces repeat");
    assert_eq!(sync(&zeros), second, "pieces repeat");
    let mut bomb = first;
    for _ in 1..1024 {
        bomb.extend_from_slice(&second);
    }
    // The tail of the last flush is what the receiver appends itself (RFC 7692 §7.2.1).
    bomb.truncate(bomb.len() - 4);
    bomb
}

/// Inflates `z` (plus the tail) into a reused buffer; returns the byte count, checking
/// every byte is zero.
fn inflated_zeros(z: &[u8]) -> usize {
    let mut input = z.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut inf = zlib_rs::Inflate::new(false, 15);
    let mut out = vec![0u8; 64 * 1024];
    let mut used = 0usize;
    let mut total = 0usize;
    loop {
        let (i0, o0) = (inf.total_in(), inf.total_out());
        inf.decompress(&input[used..], &mut out, zlib_rs::InflateFlush::NoFlush)
            .unwrap();
        used += (inf.total_in() - i0) as usize;
        let n = (inf.total_out() - o0) as usize;
        assert!(out[..n].iter().all(|&b| b == 0));
        total += n;
        if n < out.len() && used == input.len() {
            return total;
        }
    }
}

#[test]
fn rfc7692_8_bomb_of_1_gib_against_a_1_mib_limit_is_1009_within_a_few_mib() {
    let bomb = bomb_1gib();
    assert!(bomb.len() < 2 * MIB, "compressed size {}", bomb.len());
    // The bomb really is 1 GiB of zeros: inflated through a 64 KiB buffer and counted.
    assert_eq!(inflated_zeros(&bomb), 1 << 30);

    // As a client would send it: 64 KiB fragments, masked.
    let mut wire = Vec::new();
    let pieces: Vec<&[u8]> = bomb.chunks(64 * 1024).collect();
    let last = pieces.len() - 1;
    for (i, p) in pieces.iter().enumerate() {
        let f = if i == 0 {
            FrameBuilder::binary(p).rsv(RSV1)
        } else {
            FrameBuilder::continuation(p)
        };
        wire.extend(f.fin(i == last).mask([1, 2, 3, 4]).build());
    }
    drop(pieces);
    let config = Config::default()
        .with_deflate(Some(Deflate::new()))
        .with_max_message_size(MIB);
    let mut server = Connection::server(config);
    let mut buf = BytesMut::from(&wire[..]);
    drop(wire);

    ALLOC.reset_peak_usage();
    let base = ALLOC.current_usage();
    let start = Instant::now();
    let err = server.handle_read(&mut buf).unwrap_err();
    let took = start.elapsed();
    let peak = ALLOC.peak_usage();
    let ProtocolError::MessageTooLarge { len, max } = err else {
        panic!("expected 1009, got {err:?}");
    };
    assert_eq!(err.close_code(), CloseCode::TOO_BIG);
    assert_eq!(max, MIB);
    // Inflated bytes held: the limit plus the one byte that showed it was passed.
    assert_eq!(len as usize, MIB + 1);
    let grew = peak.saturating_sub(base);
    println!(
        "bomb: {} compressed bytes (1 GiB inflated), failed after holding {len} inflated bytes \
         in {took:?}; peak live allocations grew by {grew} bytes ({:.2} MiB) over {base} bytes",
        bomb.len(),
        grew as f64 / MIB as f64
    );
    // The limit, one 32 KiB piece and the decompressor's state (about 45 KiB), with slack.
    assert!(
        grew < MIB + 256 * 1024,
        "peak allocations grew by {grew} bytes"
    );
}
