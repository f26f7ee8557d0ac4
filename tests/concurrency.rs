//! Threads: concurrent calls with the same key and inputs compute once; no lock is held
//! while a body runs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;
use taskcache::prelude::*;
use taskcache::OutputCache;

static SLOW_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn slow_square(x: u64) -> u64 {
    SLOW_RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    x * x
}

#[test]
fn concurrent_calls_with_the_same_inputs_compute_once() {
    let ctx = Context::current().with_cache(OutputCache::new());
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let ctx = ctx.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                ctx.scope(|| {
                    barrier.wait();
                    slow_square::run(7)
                })
            })
        })
        .collect();
    let states: Vec<State<u64>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        SLOW_RUNS.load(Ordering::SeqCst),
        1,
        "single-flight: one body run"
    );
    assert_eq!(
        states
            .iter()
            .filter(|s| s.kind() == StateKind::Success)
            .count(),
        1
    );
    assert_eq!(states.iter().filter(|s| s.is_cached()).count(), 7);
    assert!(states.iter().all(|s| *s.value().unwrap() == 49));
}

static PARALLEL_RUNS: AtomicU32 = AtomicU32::new(0);

static RENDEZVOUS: Barrier = Barrier::new(2);

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn parallel(x: u64) -> u64 {
    PARALLEL_RUNS.fetch_add(1, Ordering::SeqCst);
    // Both bodies must be inside at the same time to pass: no lock is held while a body runs.
    RENDEZVOUS.wait();
    x
}

#[test]
fn different_inputs_run_at_the_same_time() {
    let ctx = Context::current().with_cache(OutputCache::new());
    let handles: Vec<_> = (0..2u64)
        .map(|i| {
            let ctx = ctx.clone();
            std::thread::spawn(move || ctx.scope(|| parallel(i)))
        })
        .collect();
    let mut out: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    out.sort();
    assert_eq!(out, [0, 1]);
    assert_eq!(PARALLEL_RUNS.load(Ordering::SeqCst), 2);
}

static FAIL_FIRST: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn fails_for_the_leader(x: u64) -> Result<u64, String> {
    if FAIL_FIRST.fetch_add(1, Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(100));
        return Err("leader failed".into());
    }
    Ok(x)
}

#[test]
fn waiters_run_themselves_when_the_leader_fails() {
    let ctx = Context::current().with_cache(OutputCache::new());
    let barrier = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (ctx, barrier) = (ctx.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                ctx.scope(|| {
                    barrier.wait();
                    fails_for_the_leader(1)
                })
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert_eq!(results.iter().filter(|r| **r == Ok(1)).count(), 2);
    assert_eq!(
        FAIL_FIRST.load(Ordering::SeqCst),
        2,
        "one failure, then one success shared"
    );
}
