//! Benchmarks of taskcache; the benches are in `benches/`: run
//! `cargo bench -p taskcache-bench --bench compare` for the table in BENCHMARKS.md.
//! This library holds what several benches share.

/// The host's CPU model, from `/proc/cpuinfo`: printed beside every table, so that
/// figures from different machines are never compared as if they were one.
pub fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// A field of `/proc/self/status` in bytes (`"VmHWM:"`: the peak resident size,
/// `"VmRSS:"`: the resident size now); 0 where there is none.
pub fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}
