//! Shared fuzz harnesses for the targets in `fuzz_targets/`.

pub mod core_harness;
