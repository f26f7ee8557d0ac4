//! One cache shared by many machines: results in object storage.
//!
//! The seed names `S3Result` and `GCSResult` beside `LocalResult`. Here a target lives
//! in an S3 bucket: whichever machine asks first computes it, every other machine (or
//! a later run) finds it there, and two machines that ask at once compute it once,
//! through a lock object with a lease in the same bucket.
//!
//! Against the S3 emulator (moto), started by the project's script:
//!
//! ```sh
//! scripts/emulators.sh run -- cargo run --example shared_cache --features aws
//! ```
//!
//! Without the emulator it runs against `object_store`'s in-memory store, the same code
//! path without the network. In a program of your own the result is simply
//! `S3Result::new("s3://bucket/prefix")`, its credentials and region taken from the
//! `AWS_*` environment variables.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use taskcache::prelude::*;
use taskcache::results::{ObjectStoreResult, S3Result};

static BODY_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The shared store: the emulator's bucket when `scripts/emulators.sh` runs this
/// example, else an in-memory store.
fn shared() -> ObjectStoreResult {
    match std::env::var("TASKCACHE_S3_ENDPOINT") {
        Ok(endpoint) => {
            let var = |name: &str| std::env::var(name).unwrap_or_default();
            let run = std::process::id();
            S3Result::new(&format!(
                "s3://{}/examples/{run}",
                var("TASKCACHE_S3_BUCKET")
            ))
            .with_option("aws_endpoint", endpoint)
            .with_option("aws_allow_http", "true")
            .with_option("aws_region", var("TASKCACHE_S3_REGION"))
            .with_option("aws_access_key_id", var("TASKCACHE_S3_ACCESS_KEY_ID"))
            .with_option(
                "aws_secret_access_key",
                var("TASKCACHE_S3_SECRET_ACCESS_KEY"),
            )
        }
        Err(_) => {
            static MEMORY: std::sync::OnceLock<ObjectStoreResult> = std::sync::OnceLock::new();
            MEMORY
                .get_or_init(|| {
                    let store = Arc::new(taskcache::results::object_store::memory::InMemory::new());
                    ObjectStoreResult::new_multipart(store, "examples")
                })
                .clone()
        }
    }
}

/// A slow report, computed once per region and day by whichever machine asks first.
#[task(checkpoint, target = "reports/{date:%Y-%m-%d}/{region}.bin", result = shared())]
fn daily_report(region: String) -> Vec<u64> {
    BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(300));
    (1..=5).map(|i| i * region.len() as u64).collect()
}

fn main() {
    let store = shared();
    println!("store: {}", store.describe());
    // Two "machines" ask for the same missing report at once.
    let machines: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| daily_report::run("emea".to_string())))
        .collect();
    for (i, machine) in machines.into_iter().enumerate() {
        let state = machine.join().unwrap();
        println!("machine {i}: {state} -> {:?}", state.value());
    }
    // A later run finds it in the store.
    let later = daily_report::run("emea".to_string());
    println!(
        "later: {later} at {:?}",
        later.location().map(|l| l.as_str())
    );
    println!("the body ran {} time(s)", BODY_RUNS.load(Ordering::SeqCst));
    assert_eq!(BODY_RUNS.load(Ordering::SeqCst), 1);
}
