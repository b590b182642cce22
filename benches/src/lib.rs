//! Benchmarks for sonar live in `benches/benches/`; run them with `cargo bench -p sonar-benches`.
//! This library holds what more than one of them uses.

use std::fmt::Write as _;

/// Deterministic JSON records (market-data-like ticks), exactly `len` bytes of ASCII text: a
/// compressible payload such as applications send.
///
/// ```
/// let text = sonar_benches::json_payload(100);
/// assert_eq!(text.len(), 100);
/// assert!(text.starts_with(b"[{\"id\":0,"));
/// ```
pub fn json_payload(len: usize) -> Vec<u8> {
    let mut out = String::with_capacity(len + 128);
    let mut i: u64 = 0;
    out.push('[');
    while out.len() < len {
        let price = 10_000 + (i * 7919) % 5_000;
        let side = if i.is_multiple_of(3) { "sell" } else { "buy" };
        let _ = write!(
            out,
            "{{\"id\":{i},\"symbol\":\"SYM{}\",\"price\":{}.{:02},\"qty\":{},\"side\":\"{side}\",\"ts\":{}}},",
            i % 17,
            price / 100,
            price % 100,
            1 + (i * 31) % 900,
            1_767_225_600_000 + i * 13
        );
        i += 1;
    }
    let mut bytes = out.into_bytes();
    bytes.truncate(len);
    bytes
}
