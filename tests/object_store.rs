//! `ObjectStoreResult` over `object_store`'s in-memory store: the backend contract,
//! streaming, verification and locks, without an emulator. The same code runs against
//! S3, Azure and GCS emulators in tests/clouds.rs.

#![cfg(feature = "object-store")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use taskcache::prelude::*;
use taskcache::results::object_store::memory::InMemory;
use taskcache::results::object_store::path::Path as ObjectPath;
use taskcache::results::object_store::{ObjectStoreExt, PutPayload};
use taskcache::results::{JsonSerializer, Location, ObjectStoreResult, ResultError};

fn memory() -> (Arc<InMemory>, ObjectStoreResult) {
    let store = Arc::new(InMemory::new());
    let result = ObjectStoreResult::new_multipart(Arc::clone(&store), "team/cache");
    (store, result)
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

fn object(store: &InMemory, path: &str) -> Vec<u8> {
    block(async {
        store
            .get(&ObjectPath::from(path))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    })
    .to_vec()
}

fn put(store: &InMemory, path: &str, bytes: Vec<u8>) {
    block(store.put(&ObjectPath::from(path), PutPayload::from(bytes))).unwrap();
}

#[test]
fn values_round_trip_under_the_prefix_as_result_files() {
    let (store, result) = memory();
    let at = Location::new("reports/monday.bin").unwrap();
    result
        .write(&vec!["eu".to_string(), "us".into()], &at)
        .unwrap();
    assert!(result.exists(&at).unwrap());
    assert!(!result.exists(&Location::new("nothing").unwrap()).unwrap());
    let back: Vec<String> = result.read(&at).unwrap();
    assert_eq!(back, ["eu", "us"]);
    // The object is a result file: LocalResult reads it once downloaded.
    let bytes = object(&store, "team/cache/reports/monday.bin");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("reports")).unwrap();
    std::fs::write(dir.path().join("reports/monday.bin"), &bytes).unwrap();
    let local: Vec<String> = LocalResult::new(dir.path()).read(&at).unwrap();
    assert_eq!(local, ["eu", "us"]);
    // And the other way round: a file LocalResult wrote, uploaded as it is.
    let other = Location::new("uploaded.bin").unwrap();
    LocalResult::new(dir.path())
        .write(&(7u8, 'x'), &other)
        .unwrap();
    put(
        &store,
        "team/cache/uploaded.bin",
        std::fs::read(dir.path().join("uploaded.bin")).unwrap(),
    );
    assert_eq!(result.read::<(u8, char)>(&other).unwrap(), (7, 'x'));
    // A wrong type is refused, not garbage.
    assert!(matches!(
        result.read::<Vec<u64>>(&at),
        Err(ResultError::TypeMismatch { .. })
    ));
    assert!(matches!(
        result.read::<u8>(&Location::new("missing.bin").unwrap()),
        Err(ResultError::NotFound { .. })
    ));
}

#[test]
fn large_values_stream_in_parts_and_come_back_whole() {
    let (store, result) = memory();
    let result = result.with_part_size(5 << 20).with_single_put_max(0);
    // A `Vec<u8>` of 3.5 parts, and a structured value of more than one part.
    let bytes: Vec<u8> = (0..(17u32 << 20) + 3).map(|i| (i % 251) as u8).collect();
    let at = Location::new("big/bytes.bin").unwrap();
    result.write(&bytes, &at).unwrap();
    assert_eq!(result.read::<Vec<u8>>(&at).unwrap(), bytes);
    let words: Vec<String> = (0..800_000).map(|i| format!("word {i}")).collect();
    let at2 = Location::new("big/words.bin").unwrap();
    result.write(&words, &at2).unwrap();
    assert_eq!(result.read::<Vec<String>>(&at2).unwrap(), words);
    // Held in one piece up to 12 MiB, then cut into parts: what was held becomes the
    // first parts.
    let held = result.clone().with_single_put_max(12 << 20);
    let many: Vec<String> = (0..1_500_000).map(|i| format!("entry {i:>9}")).collect();
    held.write(&many, &at2).unwrap();
    assert_eq!(held.read::<Vec<String>>(&at2).unwrap(), many);
    // Both are ordinary result files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("big")).unwrap();
    std::fs::write(
        dir.path().join("big/bytes.bin"),
        object(&store, "team/cache/big/bytes.bin"),
    )
    .unwrap();
    assert_eq!(
        LocalResult::new(dir.path()).read::<Vec<u8>>(&at).unwrap(),
        bytes
    );
}

#[test]
fn damaged_truncated_and_foreign_objects_are_refused() {
    let (store, result) = memory();
    for (name, value_len) in [("small.bin", 100usize), ("large.bin", 3 << 20)] {
        let at = Location::new(name).unwrap();
        let value: Vec<u32> = (0..value_len as u32 / 4).collect();
        result.write(&value, &at).unwrap();
        let path = format!("team/cache/{name}");
        let good = object(&store, &path);
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        put(&store, &path, flipped);
        let err = result.read::<Vec<u32>>(&at).unwrap_err();
        assert!(matches!(err, ResultError::Corrupt { .. }), "{err}");
        put(&store, &path, good[..good.len() / 2].to_vec());
        let err = result.read::<Vec<u32>>(&at).unwrap_err();
        assert!(matches!(err, ResultError::Corrupt { .. }), "{err}");
        put(&store, &path, b"not a taskcache result".to_vec());
        let err = result.read::<Vec<u32>>(&at).unwrap_err();
        assert!(matches!(err, ResultError::Corrupt { .. }), "{err}");
        // Written by another serializer.
        let json = result.clone().with_serializer(JsonSerializer);
        json.write(&value, &at).unwrap();
        let err = result.read::<Vec<u32>>(&at).unwrap_err();
        assert!(matches!(err, ResultError::Corrupt { .. }), "{err}");
    }
}

/// A large object this process has verified is not hashed again while its version is
/// the same; every other version is: rewritten in place with a flipped byte (same size),
/// truncated, or replaced by another value of the same size.
#[test]
fn a_verified_large_object_is_checked_again_once_anything_rewrites_it() {
    let (store, result) = memory();
    // (Failures say what, not the millions of numbers.)
    let refused = |r: Result<Vec<u32>, ResultError>| match r {
        Ok(v) => panic!("a rewritten object was read as {} numbers", v.len()),
        Err(e) => assert!(matches!(e, ResultError::Corrupt { .. }), "{e}"),
    };
    let same = |r: Result<Vec<u32>, ResultError>, want: &Vec<u32>| {
        assert!(
            r.expect("a good object reads") == *want,
            "read another value"
        )
    };
    let at = Location::new("large/verified.bin").unwrap();
    let path = "team/cache/large/verified.bin";
    let value: Vec<u32> = (0..(3u32 << 20) / 4).collect();
    result.write(&value, &at).unwrap();
    for _ in 0..2 {
        same(result.read(&at), &value);
    }
    let good = object(&store, path);
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    put(&store, path, flipped);
    refused(result.read(&at));
    // The same bytes again (a new version of them): verified, then read.
    put(&store, path, good.clone());
    same(result.read(&at), &value);
    same(result.read(&at), &value);
    put(&store, path, good[..good.len() - 4].to_vec());
    refused(result.read(&at));
    // Another value of the same size, written properly: read as itself.
    let other: Vec<u32> = value.iter().map(|v| v ^ 7).collect();
    result.write(&other, &at).unwrap();
    same(result.read(&at), &other);
    // A byte vector goes the same way (its bytes land straight in their vector).
    let bytes_at = Location::new("large/bytes.bin").unwrap();
    let bytes = vec![5u8; 2 << 20];
    result.write(&bytes, &bytes_at).unwrap();
    assert!(result.read::<Vec<u8>>(&bytes_at).unwrap() == bytes);
    assert!(result.read::<Vec<u8>>(&bytes_at).unwrap() == bytes);
    let mut flipped = object(&store, "team/cache/large/bytes.bin");
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    put(&store, "team/cache/large/bytes.bin", flipped);
    match result.read::<Vec<u8>>(&bytes_at) {
        Ok(v) => panic!("a rewritten object was read as {} bytes", v.len()),
        Err(e) => assert!(matches!(e, ResultError::Corrupt { .. }), "{e}"),
    }
}

#[test]
fn records_are_stored_listed_and_removed() {
    let (_, result) = memory();
    assert!(result.list_records("tests::key/a").unwrap().is_empty());
    result
        .put_record("tests::key/a", "one", b"{\"x\":1}")
        .unwrap();
    result.put_record("tests::key/a", "two/%", b"{}").unwrap();
    result.put_record("tests::key/b", "three", b"{}").unwrap();
    assert_eq!(
        result.list_records("tests::key/a").unwrap(),
        ["one", "two/%"]
    );
    assert_eq!(
        result.get_record("tests::key/a", "one").unwrap().unwrap(),
        b"{\"x\":1}"
    );
    result.remove_record("tests::key/a", "one").unwrap();
    result.remove_record("tests::key/a", "one").unwrap();
    assert_eq!(result.get_record("tests::key/a", "one").unwrap(), None);
    assert_eq!(result.list_records("tests::key/a").unwrap(), ["two/%"]);
    // Results cannot be written over the result's own folders.
    let err = result
        .write(&1u8, &Location::new(".locks/x").unwrap())
        .unwrap_err();
    assert!(matches!(err, ResultError::Location(_)), "{err}");
}

#[test]
fn a_lock_excludes_and_its_expired_lease_is_taken_over() {
    let (store, result) = memory();
    let result = result.with_lease(Duration::from_millis(300));
    let at = Location::new("target.bin").unwrap();
    let held = result.lock(&at).unwrap();
    // A second taker waits while the holder renews (past several leases).
    let waiter = {
        let result = result.clone();
        let at = at.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let lock = result.lock(&at).unwrap();
            (started.elapsed(), lock)
        })
    };
    std::thread::sleep(Duration::from_millis(1200));
    assert!(!waiter.is_finished(), "the lock was taken while held");
    drop(held);
    let (waited, second) = waiter.join().unwrap();
    assert!(waited >= Duration::from_millis(1100), "{waited:?}");
    drop(second);
    // A holder that stops renewing (a killed process): its lock object stays "held";
    // forge one and check that a taker takes over once the lease has run out.
    let lock_path = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(b"target.bin");
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("team/cache/.locks/{name}.lock")
    };
    assert!(
        !object(&store, &lock_path).is_empty(),
        "one lock object per location"
    );
    put(
        &store,
        &lock_path,
        br#"{"state":"held","owner":"dead","lease_ms":300,"renewal":0}"#.to_vec(),
    );
    let started = Instant::now();
    let taken = result.lock(&at).unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    drop(taken);
}

#[task(checkpoint, target = "{task_name}/{n}.bin", result = LocalResult::new("unused"))]
fn counted(n: u32, runs: &AtomicUsize) -> u32 {
    runs.fetch_add(1, Ordering::SeqCst);
    n * 10
}

#[test]
fn tasks_checkpoint_hit_and_recompute_a_corrupt_target() {
    let (store, result) = memory();
    let runs = AtomicUsize::new(0);
    let ctx = Context::current().with_result(result);
    let first = ctx.clone().scope(|| counted::run(4, &runs));
    assert_eq!(first.value(), Some(&40));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let hit = ctx.clone().scope(|| counted::run(4, &runs));
    assert!(hit.is_cached(), "{hit}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "a hit does not run the body"
    );
    let path = "team/cache/counted/4.bin";
    let mut bytes = object(&store, path);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    put(&store, path, bytes);
    let again = ctx.clone().scope(|| counted::run(4, &runs));
    assert_eq!(again.value(), Some(&40));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "a corrupt target is recomputed"
    );
    let hit = ctx.scope(|| counted::run(4, &runs));
    assert!(
        hit.is_cached(),
        "the recomputed target was written back: {hit}"
    );
}

#[task(checkpoint, target = "slow/{n}.bin", result = LocalResult::new("unused"))]
async fn fetched(n: u32) -> u32 {
    n + 1
}

#[test]
fn an_async_task_waiting_on_the_store_does_not_stall_its_executor() {
    // One worker thread: if the task's wait for the lock blocked it, nothing else on the
    // runtime would run until the lock came free.
    let (_, result) = memory();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let held = result.lock(&Location::new("slow/1.bin").unwrap()).unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        drop(held);
    });
    let state = rt.block_on({
        let ticks = Arc::clone(&ticks);
        async move {
            let ticker = tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            let task = tokio::spawn(
                Context::current()
                    .with_result(result)
                    .scope_async(fetched::run(1)),
            );
            let state = task.await.unwrap();
            ticker.abort();
            state
        }
    });
    releaser.join().unwrap();
    assert_eq!(state.value(), Some(&2), "{state}");
    // The ticker ran while the task waited (about 600 ms / 5 ms).
    assert!(
        ticks.load(Ordering::SeqCst) > 20,
        "{}",
        ticks.load(Ordering::SeqCst)
    );
}
