//! The `taskcache` command on large stores, measured without criterion (each sample
//! reads 2 GiB or 100 000 files), each beside its baseline:
//!
//! - `verify` over 10 000 results totalling 2 GiB, beside raw `sha2` over the same
//!   number of bytes in memory on one thread (target: at least 80 % of its throughput);
//! - `ls` over 100 000 cache records and their results (target: under 2 s), beside a
//!   plain single-threaded read of every record and every result's header;
//! - `gc --expired` of 100 000 files (50 000 expired records and their results; target:
//!   under 5 s), beside `std::fs::remove_file` of the same number of files.
//!
//! `cargo bench -p taskcache-bench --bench cli`. The fixtures are built under
//! `target/taskcache-bench/cli/` and kept for the next run (the `gc` one is rebuilt
//! each time, as `gc` removes it). Each figure is the median of 3 runs with a warm page
//! cache. The command runs in this process through `taskcache_cli::run`, as the binary
//! does, with its default number of threads (the CPUs).

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use taskcache::prelude::*;
use taskcache::results::{format, PayloadDigest, Value};
use taskcache::OutputCache;
use taskcache_bench::cpu;

const RUNS: usize = 3;
/// `verify`: 10 000 files, 2 GiB in all.
const VERIFY_FILES: usize = 10_000;
const VERIFY_BYTES: u64 = 2 << 30;
/// `ls`: 100 000 records, each with its result.
const LS_RECORDS: usize = 100_000;
/// `gc`: 50 000 expired records and their 50 000 results.
const GC_RECORDS: usize = 50_000;
/// Cache keys (tasks) the records are spread over.
const KEYS: usize = 100;
/// The fingerprint slot of a record's header, as `LocalResult` writes it (`recordv1`).
const RECORD_KIND: u64 = 0x7265_636f_7264_7631;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
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

fn root() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("taskcache-bench").join("cli")
}

/// Runs the command; its exit code.
fn taskcache(args: &[&str]) -> i32 {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = taskcache_cli::run(
        std::iter::once("taskcache").chain(args.iter().copied()),
        taskcache_cli::Io {
            out: &mut out,
            err: &mut err,
            progress: false,
        },
    );
    if code != 0 {
        eprintln!("{}", String::from_utf8_lossy(&err));
    }
    code
}

/// Fast pseudo-random bytes (xorshift): incompressible, cheap to make.
fn fill_random(buf: &mut [u8], mut seed: u64) {
    for chunk in buf.chunks_mut(8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let bytes = seed.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// A result file's bytes: a `Vec<u8>` payload of `len` bytes behind its header.
fn result_bytes(payload: &[u8]) -> (Vec<u8>, PayloadDigest) {
    let mut out = std::io::Cursor::new(Vec::with_capacity(payload.len() + 80));
    let value = payload.to_vec();
    let digest = format::encode_into(
        Value::of(&value),
        &taskcache::results::BincodeSerializer,
        &mut out,
        Path::new("bench"),
        |_| Ok(()),
    )
    .expect("encoding into memory");
    (out.into_inner(), digest)
}

/// Writes `bytes` to `path`, creating its directory (no fsync: a fixture).
fn put(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 10 000 results of about 210 KiB, 2 GiB in all, in 100 directories.
fn verify_fixture(dir: &Path) {
    let marker = dir.with_extension("complete");
    if marker.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    let per_file = (VERIFY_BYTES / VERIFY_FILES as u64) as usize;
    let mut payload = vec![0u8; per_file];
    for i in 0..VERIFY_FILES {
        fill_random(&mut payload, i as u64 + 1);
        let (bytes, _) = result_bytes(&payload);
        put(&dir.join(format!("task{:02}/{i:05}.bin", i % 100)), &bytes);
    }
    std::fs::write(marker, b"").unwrap();
}

#[task(cache_for = "1h", checkpoint, result = LocalResult::new("~/.taskcache-bench-unused"))]
fn template(x: u64) -> u64 {
    x
}

/// The JSON of a real cache record, to make the fixture's records from.
fn record_template() -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let local = LocalResult::new(tmp.path());
    Context::current()
        .with_result(local.clone())
        .with_cache(OutputCache::new())
        .scope(|| template(1));
    let entry = local.list_all_records().unwrap().pop().expect("a record");
    let bytes = local.read_record_entry(&entry).unwrap().unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `records` records, each with a small result, spread over [`KEYS`] keys; expired
/// ones when `expired`.
fn records_fixture(dir: &Path, records: usize, expired: bool) {
    let template = record_template();
    let now = chrono::Utc::now();
    let (created, expiration) = if expired {
        (
            now - chrono::Duration::days(2),
            now - chrono::Duration::days(1),
        )
    } else {
        (now, now + chrono::Duration::days(1))
    };
    let mut payload = vec![0u8; 100];
    for i in 0..records {
        let task = format!("task{:02}", i % KEYS);
        let key = format!("bench::{task}");
        let location = format!("{task}/{i:06}.bin");
        fill_random(&mut payload, i as u64 + 1);
        let (bytes, digest) = result_bytes(&payload);
        put(&dir.join(&location), &bytes);
        let mut record = template.clone();
        record["task"] = task.into();
        record["cache_key"] = key.clone().into();
        record["location"] = location.into();
        record["result"] = serde_json::to_value(digest).unwrap();
        record["created"] = serde_json::to_value(created).unwrap();
        record["expiration"] = serde_json::to_value(expiration).unwrap();
        let json = serde_json::to_vec(&record).unwrap();
        let id = hex(&Sha256::digest(i.to_le_bytes()));
        let path = dir
            .join(".taskcache-records")
            .join(hex(key.as_bytes()))
            .join(format!("{id}.rec"));
        put(&path, &format::encode_blob(&json, RECORD_KIND));
    }
}

fn ls_fixture(dir: &Path) {
    let marker = dir.with_extension("complete");
    if marker.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    records_fixture(dir, LS_RECORDS, false);
    std::fs::write(marker, b"").unwrap();
}

/// Every file under `dir`, depth first.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

fn gib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / (1u64 << 30) as f64
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not take.
    let root = root();
    std::fs::create_dir_all(&root).unwrap();
    let date = chrono::Utc::now().format("%Y-%m-%d");
    println!("taskcache cli bench: {} ({} CPUs), {date}", cpu(), cores());
    println!("fixtures under {}", root.display());
    let mut rows: Vec<[String; 4]> = Vec::new();

    // verify
    let verify_dir = root.join("verify");
    let t = Instant::now();
    verify_fixture(&verify_dir);
    eprintln!("verify fixture ready in {:.1}s", t.elapsed().as_secs_f64());
    let dir = verify_dir.to_str().unwrap();
    assert_eq!(
        taskcache(&["verify", dir, "-q"]),
        0,
        "warming the page cache"
    );
    let verify = time(|| assert_eq!(taskcache(&["verify", dir, "-q", "--json"]), 0));
    let verify_one = time(|| assert_eq!(taskcache(&["verify", dir, "-q", "--json", "-j", "1"]), 0));
    let per_file = (VERIFY_BYTES / VERIFY_FILES as u64) as usize;
    let mut buffer = vec![0u8; per_file + 64];
    fill_random(&mut buffer, 7);
    let baseline = time(|| {
        let mut sink = 0u8;
        for _ in 0..VERIFY_FILES {
            let digest = Sha256::digest(&buffer);
            sink ^= digest[0];
        }
        std::hint::black_box(sink);
    });
    let total = (per_file as u64 + 64) * VERIFY_FILES as u64;
    rows.push([
        format!("verify, 10 000 files, 2 GiB ({} threads)", cores()),
        format!("{} ({:.2} GiB/s)", secs(verify), gib_s(total, verify)),
        format!(
            "sha2 in memory, 1 thread: {:.2} GiB/s",
            gib_s(total, baseline)
        ),
        format!(
            "{:.0} % of sha2 (target ≥ 80 %)",
            100.0 * baseline.as_secs_f64() / verify.as_secs_f64()
        ),
    ]);
    rows.push([
        "verify, 10 000 files, 2 GiB (-j 1)".into(),
        format!(
            "{} ({:.2} GiB/s)",
            secs(verify_one),
            gib_s(total, verify_one)
        ),
        format!(
            "sha2 in memory, 1 thread: {:.2} GiB/s",
            gib_s(total, baseline)
        ),
        format!(
            "{:.0} % of sha2",
            100.0 * baseline.as_secs_f64() / verify_one.as_secs_f64()
        ),
    ]);

    // ls
    let ls_dir = root.join("ls");
    let t = Instant::now();
    ls_fixture(&ls_dir);
    eprintln!("ls fixture ready in {:.1}s", t.elapsed().as_secs_f64());
    let dir = ls_dir.to_str().unwrap();
    assert_eq!(taskcache(&["ls", dir, "-q", "--json"]), 0);
    let ls = time(|| assert_eq!(taskcache(&["ls", dir, "-q", "--json"]), 0));
    let ls_table = time(|| assert_eq!(taskcache(&["ls", dir, "-q"]), 0));
    let all = files(&ls_dir);
    let read_baseline = time(|| {
        let mut n = 0usize;
        for path in &all {
            if path.extension().is_some_and(|e| e == "rec") {
                n += std::fs::read(path).unwrap().len();
            } else {
                let mut head = [0u8; 60];
                let mut f = std::fs::File::open(path).unwrap();
                std::io::Read::read_exact(&mut f, &mut head).unwrap();
                n += head.len();
            }
        }
        std::hint::black_box(n);
    });
    rows.push([
        "ls --json, 100 000 records and results".into(),
        secs(ls),
        format!(
            "read every record and header, 1 thread: {}",
            secs(read_baseline)
        ),
        "target < 2 s".into(),
    ]);
    rows.push([
        "ls (table), 100 000 records and results".into(),
        secs(ls_table),
        format!(
            "read every record and header, 1 thread: {}",
            secs(read_baseline)
        ),
        "target < 2 s".into(),
    ]);

    // gc
    let gc_dir = root.join("gc");
    let mut gc_times = Vec::new();
    let mut remove_times = Vec::new();
    for _ in 0..RUNS {
        let _ = std::fs::remove_dir_all(&gc_dir);
        let t = Instant::now();
        records_fixture(&gc_dir, GC_RECORDS, true);
        eprintln!("gc fixture ready in {:.1}s", t.elapsed().as_secs_f64());
        let dir = gc_dir.to_str().unwrap();
        let t = Instant::now();
        assert_eq!(taskcache(&["gc", dir, "--expired", "-q", "--json"]), 0);
        gc_times.push(t.elapsed());
        assert!(files(&gc_dir).is_empty(), "gc --expired removed every file");
        // The baseline: the same number of files removed one by one.
        records_fixture(&gc_dir, GC_RECORDS, true);
        let all = files(&gc_dir);
        assert_eq!(all.len(), 2 * GC_RECORDS);
        let t = Instant::now();
        for path in &all {
            std::fs::remove_file(path).unwrap();
        }
        remove_times.push(t.elapsed());
    }
    let _ = std::fs::remove_dir_all(&gc_dir);
    let (gc, remove) = (median(gc_times), median(remove_times));
    rows.push([
        "gc --expired, 100 000 files".into(),
        secs(gc),
        format!("remove_file of each, 1 thread: {}", secs(remove)),
        "target < 5 s".into(),
    ]);

    let header = ["what", "taskcache", "baseline", "note"];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |out: &mut dyn Write, cells: [&str; 4]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str("| ");
            text.push_str(cell);
            text.extend(std::iter::repeat_n(
                ' ',
                widths[i] - cell.chars().count() + 1,
            ));
        }
        let _ = writeln!(out, "{text}|");
    };
    line(&mut out, header);
    let rule = widths.map(|w| "-".repeat(w));
    line(&mut out, [&rule[0], &rule[1], &rule[2], &rule[3]]);
    for row in &rows {
        line(&mut out, [&row[0], &row[1], &row[2], &row[3]]);
    }
}
