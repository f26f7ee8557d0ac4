//! A local target hit of a 1 KiB value, beside `std::fs::read` of a 1 KiB file, in
//! one run (issue 3: under 20 µs).
//!
//! `cargo bench -p taskcache-bench --bench persist`

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::OnceLock;
use taskcache::prelude::*;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap().keep())
}

#[task(target = "kib.bin", checkpoint, result = LocalResult::new(dir()))]
fn one_kib() -> Vec<u8> {
    vec![7u8; 1024]
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Row {
    id: u64,
    name: String,
}

#[task(target = "rows.bin", checkpoint, result = LocalResult::new(dir()))]
fn rows() -> Vec<Row> {
    // About 1 KiB once encoded.
    (0..64)
        .map(|id| Row {
            id,
            name: format!("row-{id:08}"),
        })
        .collect()
}

fn target_hits(c: &mut Criterion) {
    assert_eq!(one_kib().len(), 1024);
    assert!(one_kib::run().is_cached());
    rows();
    assert!(rows::run().is_cached());
    let plain = dir().join("plain.bin");
    std::fs::write(&plain, vec![7u8; 1024]).unwrap();

    let mut group = c.benchmark_group("local target hit, 1 KiB");
    group.bench_function("taskcache Vec<u8>", |b| b.iter(|| black_box(one_kib())));
    group.bench_function("taskcache Vec<Row>", |b| b.iter(|| black_box(rows())));
    group.bench_function("std::fs::read", |b| {
        b.iter(|| black_box(std::fs::read(&plain).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, target_hits);
criterion_main!(benches);
