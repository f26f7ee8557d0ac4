//! Large values, measured without criterion (each sample moves 256 MiB): writing and
//! reading a `Vec<u8>` result through `LocalResult` beside `std::fs::write` +
//! `sync_all` (the same durability) and `std::fs::read`; the peak memory of each; and
//! hashing a 256 MiB argument beside raw `sha2` over the same bytes.
//!
//! `cargo bench -p taskcache-bench --bench large` (set `TASKCACHE_BENCH_MIB` for another size, and
//! `TASKCACHE_BENCH_DIR` for another disk than the temporary directory's).
//!
//! Each time is the median of 5 runs. Peak memory is measured as a user sees it (Linux
//! only): each of the four operations (our write, our read, and their `std::fs`
//! baselines) runs once in a fresh child process of this binary that does nothing
//! else, which reports the growth of its peak resident memory (`VmHWM`) over the
//! operation; the figure is that growth divided by the value's size. A writer holds
//! the value before it writes, so the write figures count the value too.

use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use taskcache::prelude::{task, LocalResult};
use taskcache::results::{Location, ResultBackendExt};
use taskcache_bench::{cpu, field, peak_growth, run_self, status_bytes};

const RUNS: usize = 5;

/// Where the children find the parent's temporary directory.
const ROOT_ENV: &str = "TASKCACHE_BENCH_ROOT";
/// What a child does: one of [`CHILDREN`].
const CHILD_ENV: &str = "TASKCACHE_BENCH_CHILD";
/// The children's modes: our write and its baseline, our read and its baseline.
const CHILDREN: [&str; 4] = ["write", "write-fs", "read", "read-fs"];
/// The file `LocalResult` writes, and the baseline's file, in the temporary directory.
const OURS: &str = "large.bin";
const PLAIN: &str = "plain.bin";

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

fn gib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / (1u64 << 30) as f64
}

/// The value of every write, parent's and children's alike.
fn make_value(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(2654435761)) as u8)
        .collect()
}

/// The baseline write: `std::fs` with the durability of ours.
fn fs_write_sync(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

/// In a fresh child: one operation on the parent's directory, and the growth of the
/// peak resident memory over it (`growth=n/a` where there is no `VmHWM`).
fn child(mode: &str, size: usize) {
    let root = std::env::var_os(ROOT_ENV).expect("the parent's directory");
    let root = Path::new(&root);
    let result = LocalResult::new(root);
    let at = Location::new(OURS).unwrap();
    let plain = root.join(PLAIN);
    let growth = match mode {
        "write" => {
            let value = make_value(size);
            let (growth, written) = peak_growth(|| result.write(&value, &at));
            written.unwrap();
            growth
        }
        "write-fs" => {
            let value = make_value(size);
            peak_growth(|| fs_write_sync(&plain, &value)).0
        }
        "read" => {
            let (growth, back) = peak_growth(|| result.read::<Vec<u8>>(&at).unwrap());
            assert_eq!(back.len(), size);
            growth
        }
        "read-fs" => {
            let (growth, back) = peak_growth(|| std::fs::read(&plain).unwrap());
            assert_eq!(back.len(), size);
            growth
        }
        _ => panic!("unknown {CHILD_ENV}: {mode}"),
    };
    if status_bytes("VmHWM:") == 0 {
        println!("growth=n/a");
    } else {
        println!("growth={growth}");
    }
}

/// Runs the child `mode` on `root`; the growth it reports, if any.
fn child_growth(mode: &str, root: &Path, mib: usize) -> Option<u64> {
    let out = run_self(|c| {
        c.env(CHILD_ENV, mode)
            .env(ROOT_ENV, root)
            .env("TASKCACHE_BENCH_MIB", mib.to_string());
    });
    field(&out, "growth=")
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
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        return child(&mode, size);
    }
    let root = match std::env::var_os("TASKCACHE_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let value = make_value(size);
    let result = LocalResult::new(root.path());
    let at = Location::new(OURS).unwrap();
    let plain = root.path().join(PLAIN);
    println!(
        "large values: {} ({}); value: {mib} MiB Vec<u8>, {RUNS} runs each, median; directory on {}",
        cpu(),
        chrono::Utc::now().format("%Y-%m-%d"),
        root.path().display()
    );

    // Writes.
    let write_plain = time(|| fs_write_sync(&plain, &value));
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

    // Hashing an argument.
    let hash_raw = time(|| {
        black_box(Sha256::digest(&value));
    });
    // As a task argument is hashed: a byte run in bulk (a hit after the first call).
    black_box(hashed_argument(&value));
    let hash_ours = time(|| {
        black_box(hashed_argument(&value));
    });
    drop(value);

    // Peak memory, each operation in a fresh child: the writes first, then the reads
    // of the files they leave (writing holds the value; reading builds it).
    let [write_peak, write_fs_peak, read_peak, read_fs_peak] =
        CHILDREN.map(|mode| child_growth(mode, root.path(), mib));
    let held = |p: Option<u64>| p.map(|p| p + size as u64);
    let (write_peak, write_fs_peak) = (held(write_peak), held(write_fs_peak));

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
        "peak memory while writing: {} of the value (counting the value, resident before the write), fs::write + sync_all: {}",
        ratio(write_peak),
        ratio(write_fs_peak)
    );
    println!(
        "peak memory while reading: {} of the value, fs::read: {}",
        ratio(read_peak),
        ratio(read_fs_peak)
    );
}
