//! Benchmarks of taskcache; nothing to use here. The benches are in `benches/`: run
//! `cargo bench -p taskcache-bench --bench compare` for the table in BENCHMARKS.md.
