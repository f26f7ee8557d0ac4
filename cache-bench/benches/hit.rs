//! The in-memory cache hit of issue 2: `add(1, 2)` with `all_inputs`, beside the
//! `cached` crate's `#[cached(ttl_secs = 3600)]` hit of the same function, in one run.
//!
//! `cargo bench -p taskcache-bench --bench hit`

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use taskcache::prelude::*;

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn add(x: u64, y: u64) -> u64 {
    x + y
}

#[task(cache_for = "1h")]
fn add_duration_only(x: u64, y: u64) -> u64 {
    x + y
}

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn add_miss(x: u64, y: u64) -> u64 {
    x + y
}

#[task]
fn add_uncached(x: u64, y: u64) -> u64 {
    x + y
}

#[cached::proc_macro::cached(ttl_secs = 3600)]
fn add_with_cached_crate(x: u64, y: u64) -> u64 {
    x + y
}

#[inline(never)]
fn add_plain(x: u64, y: u64) -> u64 {
    x + y
}

fn hits(c: &mut Criterion) {
    let mut group = c.benchmark_group("in-memory hit");
    add(1, 2);
    add_duration_only(1, 2);
    add_with_cached_crate(1, 2);
    group.bench_function("taskcache all_inputs", |b| {
        b.iter(|| add(black_box(1), black_box(2)))
    });
    group.bench_function("taskcache duration_only", |b| {
        b.iter(|| add_duration_only(black_box(1), black_box(2)))
    });
    group.bench_function("cached ttl_secs", |b| {
        b.iter(|| add_with_cached_crate(black_box(1), black_box(2)))
    });
    group.finish();

    let mut group = c.benchmark_group("pieces of a hit");
    group.bench_function("hash one u64", |b| {
        b.iter(|| taskcache::hash_input(black_box(&1u64)))
    });
    group.bench_function("Utc::now", |b| b.iter(chrono::Utc::now));
    group.finish();

    let mut group = c.benchmark_group("call overhead");
    group.bench_function("taskcache no caching", |b| {
        b.iter(|| add_uncached(black_box(1), black_box(2)))
    });
    group.bench_function("plain function", |b| {
        b.iter(|| add_plain(black_box(1), black_box(2)))
    });
    group.finish();

    let mut group = c.benchmark_group("miss");
    let mut i = 0u64;
    group.bench_function("taskcache cache_for, all_inputs", |b| {
        b.iter(|| {
            i += 1;
            add_miss(black_box(i), 2)
        })
    });
    // What `compare` times: misses into a cache that grows from empty (no eviction).
    group.bench_function("taskcache cache_for, all_inputs, growing cache", |b| {
        b.iter_custom(|iters| {
            let cache = taskcache::OutputCache::new();
            Context::current().with_cache(cache).scope(|| {
                let t = std::time::Instant::now();
                for i in 0..iters {
                    black_box(add_miss(black_box(i), 2));
                }
                t.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, hits);
criterion_main!(benches);
