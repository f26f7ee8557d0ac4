//! `S3Result` against moto beside raw `object_store` GETs and PUTs of the same bytes
//! (issue 10), in one run:
//!
//! ```sh
//! scripts/emulators.sh run -- cargo bench -p taskcache-bench --bench object_store
//! ```
//!
//! - a 1 KiB target hit beside a raw GET of the object (target ≤ 1.2x);
//! - a 64 MiB target hit beside a raw GET (target ≥ 90% of its throughput): the first
//!   in a process, which hashes the payload, and a later one on the same version of the
//!   object, which checks the header against the digest the first verified; and a
//!   64 MiB checkpoint beside a raw single PUT (target ≥ 85%);
//! - peak resident memory (VmHWM) of a fresh child process that writes a 256 MiB
//!   `Vec<u8>` and reads it back, above what the process held before, over the value's
//!   size (target < 1.3x), beside the same round trip with raw `object_store` calls.
//!
//! Without the emulators (`TASKCACHE_S3_ENDPOINT` unset) it says so and exits.

use std::sync::Arc;
use std::time::{Duration, Instant};
use taskcache::prelude::*;
use taskcache::results::object_store::aws::AmazonS3Builder;
use taskcache::results::object_store::path::Path as ObjectPath;
use taskcache::results::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use taskcache::results::{ObjectStoreResult, S3Result};
use taskcache_bench::{cpu, status_bytes};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| var("BENCH_PREFIX"))
}

fn ours() -> ObjectStoreResult {
    S3Result::new(&format!("s3://{}/{}", var("TASKCACHE_S3_BUCKET"), prefix()))
        .with_option("aws_endpoint", var("TASKCACHE_S3_ENDPOINT"))
        .with_option("aws_allow_http", "true")
        .with_option("aws_region", var("TASKCACHE_S3_REGION"))
        .with_option("aws_access_key_id", var("TASKCACHE_S3_ACCESS_KEY_ID"))
        .with_option(
            "aws_secret_access_key",
            var("TASKCACHE_S3_SECRET_ACCESS_KEY"),
        )
}

fn raw() -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(var("TASKCACHE_S3_BUCKET"))
            .with_endpoint(var("TASKCACHE_S3_ENDPOINT"))
            .with_allow_http(true)
            .with_region(var("TASKCACHE_S3_REGION"))
            .with_access_key_id(var("TASKCACHE_S3_ACCESS_KEY_ID"))
            .with_secret_access_key(var("TASKCACHE_S3_SECRET_ACCESS_KEY"))
            .build()
            .expect("the emulator's S3 store"),
    )
}

#[task(checkpoint, target = "kib.bin", result = ours())]
fn kib() -> Vec<u8> {
    vec![7u8; 1024]
}

#[task(checkpoint, target = "big.bin", result = ours())]
fn big() -> Vec<u8> {
    (0..64u32 << 20).map(|i| i as u8).collect()
}

/// A checkpoint per call: each write goes to a fresh location; the value is moved in
/// and out, so the write is what is timed.
#[task(checkpoint, result = ours())]
fn write_value(value: Vec<u8>) -> Vec<u8> {
    value
}

const SAMPLES: usize = 11;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per_run(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1e3 {
        format!("{us:.0} µs")
    } else {
        format!("{:.1} ms", us / 1e3)
    }
}

const ROUND_TRIP: usize = 256 << 20;

/// In a fresh child: one 256 MiB round trip; prints the peak above the start, in bytes.
fn child(mode: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let value: Vec<u8> = (0..ROUND_TRIP).map(|i| (i * 31) as u8).collect();
    let path = ObjectPath::from(format!("{}/round-{mode}.bin", prefix()));
    // What the process holds with the value in memory and nothing else done.
    let start = status_bytes("VmRSS:");
    match mode {
        "ours" => {
            let result = ours();
            let at = taskcache::results::Location::new(format!("round-{mode}.bin")).unwrap();
            result.write(&value, &at).unwrap();
            drop(value);
            let back: Vec<u8> = result.read(&at).unwrap();
            assert_eq!(back.len(), ROUND_TRIP);
        }
        _ => {
            let store = raw();
            // `PutPayload::from(Vec)` takes the vector without a copy.
            let payload = PutPayload::from(value);
            rt.block_on(store.put(&path, payload)).unwrap();
            let back = rt
                .block_on(async { store.get(&path).await.unwrap().bytes().await })
                .unwrap();
            assert_eq!(back.len(), ROUND_TRIP);
        }
    }
    println!("PEAK {}", status_bytes("VmHWM:").saturating_sub(start));
}

fn peak(mode: &str) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("BENCH_CHILD", mode)
        .env("BENCH_PREFIX", prefix())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let bytes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("PEAK ")?.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "child {mode}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    bytes as f64 / ROUND_TRIP as f64
}

fn main() {
    if std::env::var_os("TASKCACHE_S3_ENDPOINT").is_none() {
        println!(
            "skipped: the S3 emulator is not running; run \
             `scripts/emulators.sh run -- cargo bench -p taskcache-bench --bench object_store`"
        );
        return;
    }
    if let Ok(mode) = std::env::var("BENCH_CHILD") {
        child(&mode);
        return;
    }
    if std::env::var_os("BENCH_PREFIX").is_none() {
        // Set before any thread is started.
        let run = format!("bench/{}", std::process::id());
        std::env::set_var("BENCH_PREFIX", run);
    }
    println!(
        "object_store bench: {} ({}), against moto",
        cpu(),
        chrono::Utc::now().format("%Y-%m-%d")
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = raw();
    let get = |name: &str| {
        let path = ObjectPath::from(format!("{}/{name}", prefix()));
        rt.block_on(async { store.get(&path).await.unwrap().bytes().await.unwrap() })
    };
    let mut rows = Vec::new();

    // 1 KiB target hit.
    assert!(!kib::run().is_cached());
    let ours_kib = median(
        (0..SAMPLES)
            .map(|_| per_run(50, || assert!(kib::run().is_cached())))
            .collect(),
    );
    let raw_kib = median(
        (0..SAMPLES)
            .map(|_| per_run(50, || assert!(get("kib.bin").len() > 1024)))
            .collect(),
    );
    rows.push((
        "1 KiB target hit".to_string(),
        show(ours_kib),
        format!("raw GET {}", show(raw_kib)),
        format!("{:.2}x", ours_kib.as_secs_f64() / raw_kib.as_secs_f64()),
        "≤ 1.2x",
    ));

    // 64 MiB target hit.
    assert!(!big::run().is_cached());
    let ours_big = per_run(7, || assert!(big::run().is_cached()));
    let raw_big = per_run(7, || assert!(get("big.bin").len() > 64 << 20));
    let raw_big_hashed = per_run(7, || {
        use sha2::Digest;
        let bytes = get("big.bin");
        std::hint::black_box(sha2::Sha256::digest(&bytes));
    });
    // The first hit on the object in a process: a fresh result (a fresh client, nothing
    // verified yet), so the payload is hashed in full; later hits on the same version
    // of the object are checked against the digest this one verified.
    let ours_big_first = per_run(7, || {
        let fresh = Context::current().with_result(ours());
        assert!(fresh.scope(big::run).is_cached());
    });
    let mib = 64.0;
    let rate = |d: Duration| format!("{} ({:.0} MiB/s)", show(d), mib / d.as_secs_f64());
    let against_raw_get = |case: &str, ours: Duration, target: &'static str| {
        (
            case.to_string(),
            rate(ours),
            format!("raw GET {}", rate(raw_big)),
            format!("{:.0}%", 100.0 * raw_big.as_secs_f64() / ours.as_secs_f64()),
            target,
        )
    };
    rows.push(against_raw_get(
        "64 MiB target hit, first in a process (payload hashed)",
        ours_big_first,
        "",
    ));
    rows.push(against_raw_get(
        "64 MiB target hit, again (its version verified before; CRC-64 checked)",
        ours_big,
        "≥ 90%",
    ));

    rows.push((
        "64 MiB target hit, beside a verified raw GET".into(),
        format!(
            "{} ({:.0} MiB/s)",
            show(ours_big),
            mib / ours_big.as_secs_f64()
        ),
        format!(
            "raw GET + SHA-256 {} ({:.0} MiB/s)",
            show(raw_big_hashed),
            mib / raw_big_hashed.as_secs_f64()
        ),
        format!(
            "{:.0}%",
            100.0 * raw_big_hashed.as_secs_f64() / ours_big.as_secs_f64()
        ),
        "",
    ));

    // 64 MiB checkpoint.
    let value: Vec<u8> = (0..64u32 << 20).map(|i| (i / 7) as u8).collect();
    let mut value = Some(value);
    let ours_put = per_run(7, || {
        let state = write_value::run(value.take().unwrap());
        assert!(state.persist_error().is_none(), "{state}");
        value = state.into_value();
    });
    // Every write goes to a fresh key, as a checkpoint's does (moto is slower to store
    // a new object than to replace one).
    let backend = ours();
    let mut n = 0;
    let direct = per_run(7, || {
        n += 1;
        let at = taskcache::results::Location::new(format!("direct-{n}.bin")).unwrap();
        backend.write(value.as_ref().unwrap(), &at).unwrap();
    });
    let bytes = bytes::Bytes::from(value.take().unwrap());
    let raw_put = per_run(7, || {
        n += 1;
        let path = ObjectPath::from(format!("{}/raw-put-{n}.bin", prefix()));
        rt.block_on(store.put(&path, PutPayload::from(bytes.clone())))
            .unwrap();
    });
    rows.push((
        "64 MiB checkpoint".into(),
        format!(
            "{} ({:.0} MiB/s)",
            show(ours_put),
            mib / ours_put.as_secs_f64()
        ),
        format!(
            "raw PUT {} ({:.0} MiB/s)",
            show(raw_put),
            mib / raw_put.as_secs_f64()
        ),
        format!(
            "{:.0}%",
            100.0 * raw_put.as_secs_f64() / ours_put.as_secs_f64()
        ),
        "≥ 85%",
    ));

    rows.push((
        "64 MiB write through the backend (no task)".into(),
        format!("{} ({:.0} MiB/s)", show(direct), mib / direct.as_secs_f64()),
        format!(
            "raw PUT {} ({:.0} MiB/s)",
            show(raw_put),
            mib / raw_put.as_secs_f64()
        ),
        format!(
            "{:.0}%",
            100.0 * raw_put.as_secs_f64() / direct.as_secs_f64()
        ),
        "",
    ));

    // Peak memory of a 256 MiB round trip.
    let (ours_peak, raw_peak) = (peak("ours"), peak("raw"));
    rows.push((
        "peak memory, 256 MiB round trip (above the value)".into(),
        format!("+{ours_peak:.2}x"),
        format!("raw PUT + GET +{raw_peak:.2}x"),
        format!("{:.2}x in all", 1.0 + ours_peak),
        "< 1.3x",
    ));

    println!();
    println!("| case | S3Result | baseline | ratio | target |");
    println!("|---|---|---|---|---|");
    for (case, a, b, r, t) in rows {
        println!("| {case} | {a} | {b} | {r} | {t} |");
    }
}
