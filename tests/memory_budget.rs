//! Bounded memory: a process-wide budget for the in-memory output cache, per-task
//! `max_entries`, least-recently-used eviction, and expired outputs dropped at the
//! lookup that meets them.

mod common;

use std::time::Duration;
use taskcache::prelude::*;

#[task(cache_for = "1h", cache_validator = all_inputs, max_entries = 3)]
fn small(x: u64) -> u64 {
    x * 2
}

#[test]
fn max_entries_evicts_the_least_recently_used() {
    let clock = ManualClock::new(chrono::Utc::now());
    let ctx = Context::current()
        .with_cache(taskcache::OutputCache::new())
        .with_clock(clock.clock());
    let tick = || clock.advance(Duration::from_millis(10));
    let run = |x| ctx.clone().scope(|| small::run(x));
    for x in [1, 2, 3] {
        run(x);
        tick();
    }
    assert!(run(1).is_cached());
    tick();
    // A fourth output: the least recently used of the others (2) goes.
    run(4);
    tick();
    assert_eq!(ctx.cache().len_of(small::spec().cache_key()), 3);
    assert!(run(1).is_cached(), "used recently: kept");
    tick();
    assert!(run(3).is_cached(), "kept");
    tick();
    assert!(!run(2).is_cached(), "the least recently used was evicted");
}

#[task(cache_for = "1h", cache_validator = all_inputs, max_entries = 100)]
fn hundred(x: u64) -> u64 {
    x + 1
}

#[test]
fn eviction_keeps_every_output_served_since_it_was_stored() {
    let clock = ManualClock::new(chrono::Utc::now());
    let ctx = Context::current()
        .with_cache(taskcache::OutputCache::new())
        .with_clock(clock.clock());
    let tick = || clock.advance(Duration::from_millis(2));
    let run = |x| ctx.clone().scope(|| hundred::run(x));
    for x in 0..100 {
        run(x);
        tick();
    }
    // The oldest half is served again, then 50 new outputs come.
    for x in 0..50 {
        assert!(run(x).is_cached());
        tick();
    }
    for x in 100..150 {
        run(x);
        tick();
    }
    assert_eq!(ctx.cache().len_of(hundred::spec().cache_key()), 100);
    for x in 0..50 {
        assert!(
            run(x).is_cached(),
            "{x} was served since it was stored: kept"
        );
    }
    for x in 100..150 {
        assert!(
            run(x).is_cached(),
            "{x} is newer than every unserved output: kept"
        );
    }
    // 100 outputs and none of them is one of 50..100: those were the ones evicted.
    assert_eq!(ctx.cache().len_of(hundred::spec().cache_key()), 100);
}

#[task(cache_for = "1s", cache_validator = all_inputs)]
fn short_lived(x: u64) -> u64 {
    x
}

#[test]
fn an_expired_output_does_not_outlive_the_lookup_that_meets_it() {
    let clock = ManualClock::new(chrono::Utc::now());
    let cache = taskcache::OutputCache::new();
    let ctx = Context::current()
        .with_cache(std::sync::Arc::clone(&cache))
        .with_clock(clock.clock());
    for x in 0..10 {
        ctx.clone().scope(|| short_lived(x));
    }
    assert_eq!(cache.usage().0, 10);
    clock.advance(Duration::from_secs(2));
    // Looking up 0 meets its expired output (same inputs): it is removed, and the new
    // one stored.
    ctx.clone().scope(|| short_lived(0));
    assert_eq!(cache.len_of(short_lived::spec().cache_key()), 1);
    assert_eq!(cache.usage().0, 1);
}

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn many(x: u64) -> u64 {
    x ^ 0x5555
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

const CALLS: u64 = 5_000_000;
const BUDGET: usize = 20_000;

#[test]
fn five_million_distinct_inputs_stay_within_the_budget() {
    if common::child().is_some() {
        assert_eq!(taskcache::memory_budget().max_entries, BUDGET);
        let before = peak_rss();
        for x in 0..CALLS {
            many(x);
        }
        let (entries, bytes) = taskcache::OutputCache::global().usage();
        println!(
            "GROWTH {} ENTRIES {entries} BYTES {bytes}",
            peak_rss().saturating_sub(before)
        );
        return;
    }
    if !cfg!(target_os = "linux") {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "five_million_distinct_inputs_stay_within_the_budget",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TASKCACHE_TEST_CHILD", "1")
        .env("TASKCACHE_MEMORY_BUDGET", BUDGET.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> u64 {
        text.split(name)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let (growth, entries) = (field("GROWTH "), field("ENTRIES "));
    assert!(entries <= BUDGET as u64, "{entries} entries kept");
    // The budget's entries at about 1 KiB each (measured: see BENCHMARKS.md), plus 32 MiB
    // for the allocator and the test harness: far below what 5 million would take.
    let allowed = BUDGET as u64 * 1024 + (32 << 20);
    assert!(
        growth < allowed,
        "resident memory grew by {growth} bytes for {CALLS} distinct inputs, over \
         {allowed}"
    );
}
