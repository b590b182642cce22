//! Benchmarks for sonar live in `benches/benches/`; run them with `cargo bench -p sonar-benches`.
