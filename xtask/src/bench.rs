//! `cargo xtask bench [--quick]`: the criterion benchmarks and the side-by-side end-to-end
//! runs against other Rust WebSocket crates, written to `target/bench-report.md`.

pub(crate) fn bench(_args: &[String]) -> Result<(), String> {
    Err("the benchmark harness is not written yet".into())
}
