//! Large values, measured without criterion (each sample moves 256 MiB): writing and
//! reading a `Vec<u8>` result through `LocalResult` beside `std::fs::write` +
//! `sync_all` (the same durability) and `std::fs::read`; the peak memory of each; and
//! hashing a 256 MiB argument beside raw `sha2` over the same bytes.
//!
//! `cargo bench -p taskcache-bench --bench large` (set `TASKCACHE_BENCH_MIB` for another size, and
//! `TASKCACHE_BENCH_DIR` for another disk than the temporary directory's).
//!
//! Each figure is the median of 5 runs; peak memory is the process's `VmHWM` after a
//! reset, divided by the value's size (Linux only).

use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use taskcache::prelude::{task, LocalResult};
use taskcache::results::{Location, ResultBackendExt};

const RUNS: usize = 5;

/// A task on a byte argument: calling it hashes the argument as every task does.
#[task(cache_for = "1h", cache_validator = all_inputs)]
fn hashed_argument(bytes: &[u8]) -> usize {
    bytes.len()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(mut f: impl FnMut()) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

/// Resets the peak resident set size, so the next reading covers only what follows.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set size since the last reset, in bytes.
fn peak() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn current() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn gib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / (1u64 << 30) as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and CI's `--no-run` builds need nothing more.
    }
    let mib: usize = std::env::var("TASKCACHE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let size = mib << 20;
    let root = match std::env::var_os("TASKCACHE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let value: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2654435761)) as u8)
        .collect();
    let result = LocalResult::new(root.path());
    let at = Location::new("large.bin").unwrap();
    let plain = root.path().join("plain.bin");
    println!(
        "value: {mib} MiB Vec<u8>, {RUNS} runs each, median; directory on {}",
        root.path().display()
    );

    // Writes.
    let write_plain = time(|| {
        let mut f = std::fs::File::create(&plain).unwrap();
        f.write_all(&value).unwrap();
        f.sync_all().unwrap();
    });
    let write_ours = time(|| {
        result.write(&value, &at).unwrap();
    });
    // Reads (the page cache is warm for both: each was just written).
    let read_plain = time(|| {
        black_box(std::fs::read(&plain).unwrap());
    });
    let read_ours = time(|| {
        black_box(result.read::<Vec<u8>>(&at).unwrap());
    });

    // Peak memory: writing holds the value; reading builds it.
    reset_peak();
    let before = current().unwrap_or(0);
    result.write(&value, &at).unwrap();
    let write_peak = peak().map(|p| p.saturating_sub(before) + size as u64);
    drop(value);
    let baseline = current().unwrap_or(0);
    reset_peak();
    let back: Vec<u8> = result.read(&at).unwrap();
    let read_peak = peak().map(|p| p.saturating_sub(baseline));
    assert_eq!(back.len(), size);

    // Hashing an argument.
    let hash_raw = time(|| {
        black_box(Sha256::digest(&back));
    });
    // As a task argument is hashed: a byte run in bulk (a hit after the first call).
    black_box(hashed_argument(&back));
    let hash_ours = time(|| {
        black_box(hashed_argument(&back));
    });

    let row = |name: &str, ours: Duration, base: Duration, base_name: &str| {
        println!(
            "{name:<28} taskcache {:>8.1} ms ({:>5.2} GiB/s)   {base_name:<26} {:>8.1} ms ({:>5.2} GiB/s)   taskcache at {:>5.1}% of baseline throughput",
            ours.as_secs_f64() * 1e3,
            gib_s(size, ours),
            base.as_secs_f64() * 1e3,
            gib_s(size, base),
            base.as_secs_f64() / ours.as_secs_f64() * 100.0
        );
    };
    row(
        "write + fsync",
        write_ours,
        write_plain,
        "fs::write + sync_all",
    );
    row("read + verify", read_ours, read_plain, "fs::read");
    row(
        "hash an argument",
        hash_ours,
        hash_raw,
        "sha2::Sha256::digest",
    );
    let ratio = |p: Option<u64>| {
        p.map_or("n/a".to_string(), |p| {
            format!("{:.3}x", p as f64 / size as f64)
        })
    };
    println!(
        "peak memory while writing: {} of the value",
        ratio(write_peak)
    );
    println!(
        "peak memory while reading: {} of the value",
        ratio(read_peak)
    );
    let _ = Path::new(".");
}
