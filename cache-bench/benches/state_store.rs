//! The state store's cost (issue 11), in one run:
//!
//! ```sh
//! cargo bench -p taskcache-bench --bench state_store
//! ```
//!
//! - the cost per task of recording its states in a flow run (`Running`, then
//!   `Success`), with the default setting (every commit survives SIGKILL) and with
//!   `durable` (every commit also survives power loss: an fsync per commit), beside
//!   the same flow without a store (target ≤ 50 µs with the default);
//! - resuming a flow run of 10 000 task runs, each replayed from its checkpointed
//!   result (target ≤ 1 s).
//!
//! The store is a file under `target/taskcache-bench/` (this disk, not a tmpfs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskcache::prelude::*;
use taskcache::state_store::SqliteStateStore;
use taskcache_bench::cpu;

#[task]
fn plain(x: u64) -> u64 {
    x + 1
}

#[task(checkpoint, result = LocalResult::new("unused"))]
fn persisted(x: u64) -> u64 {
    x + 1
}

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/taskcache-bench/state");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const TASKS: u64 = 2_000;

/// The time per task of a flow of `TASKS` plain task calls.
fn per_task(flow: impl Fn() -> Flow) -> Duration {
    median(
        (0..7)
            .map(|_| {
                let t = Instant::now();
                let run = flow().run(|| (0..TASKS).map(plain).sum::<u64>());
                assert!(run.state().is_successful());
                t.elapsed() / TASKS as u32
            })
            .collect(),
    )
}

fn main() {
    println!(
        "state_store bench: {} ({})",
        cpu(),
        chrono::Utc::now().format("%Y-%m-%d")
    );
    let d = dir();
    let none = per_task(|| Flow::new("bench"));
    let normal = Arc::new(SqliteStateStore::open(d.join("normal.db")).unwrap());
    let with = per_task(|| Flow::new("bench").state_store(Arc::clone(&normal)));
    let durable = Arc::new(
        SqliteStateStore::open(d.join("durable.db"))
            .unwrap()
            .durable(true)
            .unwrap(),
    );
    let synced = per_task(|| Flow::new("bench").state_store(Arc::clone(&durable)));

    // Resume of 10 000 task runs.
    let results = LocalResult::new(d.join("results"));
    let ctx = Context::current().with_result(results);
    let first = ctx.clone().scope(|| {
        Flow::new("resume")
            .state_file(d.join("resume.db"))
            .run(|| (0..10_000u64).map(persisted).sum::<u64>())
    });
    let id = first.run_id().to_owned();
    let resumes: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let again = ctx.clone().scope(|| {
                taskcache::resume(&id)
                    .state_file(d.join("resume.db"))
                    .run(|| Flow::new("resume").run(|| (0..10_000u64).map(persisted).sum::<u64>()))
            });
            assert_eq!(again.state().value(), first.state().value());
            assert!(again
                .task_runs()
                .iter()
                .all(|r| r.kind == StateKind::Cached));
            t.elapsed()
        })
        .collect();
    let resume = median(resumes);

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!();
    println!("| case | with the state store | without | cost | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| per task, recording Running and Success (SIGKILL-safe, the default) | {:.1} µs | {:.2} µs | +{:.1} µs | ≤ 50 µs |",
        us(with),
        us(none),
        us(with.saturating_sub(none))
    );
    println!(
        "| per task, `durable(true)` (an fsync per commit) | {:.1} µs | {:.2} µs | +{:.1} µs | |",
        us(synced),
        us(none),
        us(synced.saturating_sub(none))
    );
    println!(
        "| resume a flow run of 10 000 task runs (all replayed) | {:.0} ms | | | ≤ 1 s |",
        resume.as_secs_f64() * 1e3
    );
}
