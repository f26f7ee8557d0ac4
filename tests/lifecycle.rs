//! The cache's life cycle: code fingerprints, refresh, invalidate and clear.

use std::sync::atomic::{AtomicU32, Ordering};
use taskcache::prelude::*;

static V1_RUNS: AtomicU32 = AtomicU32::new(0);
static V2_RUNS: AtomicU32 = AtomicU32::new(0);

// Two versions of one task (one name, one cache key): the second's body differs.
#[task(name = "report", cache_for = "1h", cache_key = "lifecycle::report",
       cache_validator = all_inputs, checkpoint, result = LocalResult::new("unused"))]
fn report_v1(x: u32) -> u32 {
    V1_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 2
}

#[task(name = "report", cache_for = "1h", cache_key = "lifecycle::report",
       cache_validator = all_inputs, checkpoint, result = LocalResult::new("unused"))]
fn report_v2(x: u32) -> u32 {
    V2_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 3
}

// Another task sharing the key on purpose: its records serve, whatever its code.
#[task(name = "sharer", cache_for = "1h", cache_key = "lifecycle::report",
       cache_validator = all_inputs, checkpoint, result = LocalResult::new("unused"))]
fn sharer(x: u32) -> u32 {
    x * 100
}

#[test]
fn a_record_made_by_other_code_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    // Each version in a cache of its own (as in two processes), one result directory.
    let ctx = || {
        Context::current()
            .with_result(LocalResult::new(dir.path()))
            .with_cache(taskcache::OutputCache::new())
    };
    assert_eq!(ctx().scope(|| report_v1(5)), 10);
    let hit = ctx().scope(|| report_v1::run(5));
    assert!(hit.is_cached(), "the same code honours its record: {hit}");
    let other = ctx().scope(|| report_v2::run(5));
    assert!(!other.is_cached(), "the code changed: {other}");
    assert_eq!(other.into_output(), 15);
    assert_eq!(V2_RUNS.load(Ordering::SeqCst), 1);
    assert_ne!(
        report_v1::spec().code_version(),
        report_v2::spec().code_version()
    );
    assert!(report_v1::spec().code_version().starts_with("sha256:"));
    // A task of another name that shares the key is served the shared record, which
    // `report_v2` replaced (its own body would give 500).
    assert_eq!(ctx().scope(|| sharer(5)), 15);
}

// A managed version survives a change of the body.
#[task(name = "managed", cache_for = "1h", cache_key = "lifecycle::managed",
       cache_version = "3", checkpoint, result = LocalResult::new("unused"))]
fn managed_a() -> u32 {
    1
}

#[task(name = "managed", cache_for = "1h", cache_key = "lifecycle::managed",
       cache_version = "3", checkpoint, result = LocalResult::new("unused"))]
fn managed_b() -> u32 {
    // Reworded, not changed in meaning: the user kept the version.
    1
}

#[test]
fn cache_version_replaces_the_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = || {
        Context::current()
            .with_result(LocalResult::new(dir.path()))
            .with_cache(taskcache::OutputCache::new())
    };
    ctx().scope(managed_a::run);
    let b = ctx().scope(managed_b::run);
    assert!(b.is_cached(), "{b}");
    assert_eq!(managed_b::spec().task_version(), "3");
}

#[task(checkpoint, target = "{task_name}-{task_version}.bin", result = LocalResult::new("unused"))]
fn versioned() -> u32 {
    4
}

#[test]
fn task_version_names_the_code_in_a_target() {
    let dir = tempfile::tempdir().unwrap();
    let state = Context::current()
        .with_result(LocalResult::new(dir.path()))
        .scope(versioned::run);
    let version = versioned::spec().task_version();
    assert_eq!(version.len(), 12);
    assert_eq!(
        state.location().map(|l| l.as_str().to_owned()),
        Some(format!("versioned-{version}.bin"))
    );
}

static LOADS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new("unused"))]
fn load(x: u32) -> u32 {
    LOADS.fetch_add(1, Ordering::SeqCst) + x
}

#[test]
fn refresh_replaces_and_invalidate_drops_in_memory_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = taskcache::OutputCache::new();
    let ctx = || {
        Context::current()
            .with_result(LocalResult::new(dir.path()))
            .with_cache(std::sync::Arc::clone(&cache))
    };
    let first = ctx().scope(|| load(100));
    assert_eq!(ctx().scope(|| load(100)), first, "cached");
    let refreshed = ctx().scope(|| load::refresh(100));
    assert_eq!(refreshed, first + 1, "the body ran");
    assert_eq!(
        ctx().scope(|| load(100)),
        refreshed,
        "the new output replaced the old"
    );
    // Another process (an empty in-memory cache) sees the refreshed record too.
    let elsewhere = Context::current()
        .with_result(LocalResult::new(dir.path()))
        .with_cache(taskcache::OutputCache::new())
        .scope(|| load::run(100));
    assert!(elsewhere.is_cached());
    assert_eq!(elsewhere.into_output(), refreshed);
    // Invalidate: nothing cached is left, in memory or persisted.
    ctx().scope(load::invalidate);
    assert_eq!(cache.len_of(load::spec().cache_key()), 0);
    let after = Context::current()
        .with_result(LocalResult::new(dir.path()))
        .with_cache(taskcache::OutputCache::new())
        .scope(|| load::run(100));
    assert!(!after.is_cached(), "{after}");
}

static CLEARED: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h")]
fn in_memory_only() -> u32 {
    CLEARED.fetch_add(1, Ordering::SeqCst)
}

#[test]
fn clear_drops_everything_in_memory() {
    let a = in_memory_only();
    assert_eq!(in_memory_only(), a);
    taskcache::clear();
    assert_eq!(in_memory_only(), a + 1);
}
