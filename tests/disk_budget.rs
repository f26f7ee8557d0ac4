//! The disk budget of `LocalResult` (`with_max_bytes`, `with_max_age`): writes beyond
//! it end under it, the oldest results go first and the newest stay, old results go,
//! cache records go with their results, pruning is throttled and never done by reads,
//! and a reader racing pruning gets the value or a miss, never a wrong value.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use taskcache::prelude::*;
use taskcache::results::{Location, RecordInfo, ResultError};
use taskcache::OutputCache;

fn at(i: usize) -> Location {
    Location::new(format!("values/{i:03}.bin")).unwrap()
}

/// A value that says which location it was written to.
fn value(i: usize, len: usize) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; len];
    v[..8].copy_from_slice(&(i as u64).to_le_bytes());
    v
}

fn set_modified(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

/// Writes `n` values with an unbudgeted result, the i-th last written `n - i` minutes
/// ago (so the order is known whatever the file system's clock resolution); returns
/// the size of one file.
fn write_old(dir: &Path, n: usize, len: usize) -> u64 {
    let plain = LocalResult::new(dir);
    let now = SystemTime::now();
    for i in 0..n {
        plain.write(&value(i, len), &at(i)).unwrap();
        let minutes = (n - i) as u64;
        set_modified(&at(i).under(dir), now - Duration::from_secs(60 * minutes));
    }
    std::fs::metadata(at(0).under(dir)).unwrap().len()
}

fn stored(dir: &Path) -> Vec<usize> {
    let mut kept: Vec<usize> = LocalResult::new(dir)
        .list_entries()
        .unwrap()
        .iter()
        .map(|e| e.location.as_str()["values/".len()..][..3].parse().unwrap())
        .collect();
    kept.sort();
    kept
}

fn total_bytes(dir: &Path) -> u64 {
    LocalResult::new(dir)
        .list_entries()
        .unwrap()
        .iter()
        .map(|e| e.size)
        .sum()
}

#[test]
fn writes_beyond_the_budget_end_under_it_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let one = write_old(dir, 30, 1000);
    let budget = 10 * one;
    let budgeted = LocalResult::new(dir).with_max_bytes(budget);

    // The first write into this directory prunes.
    let first = Instant::now();
    budgeted.write(&value(30, 1000), &at(30)).unwrap();
    assert!(
        total_bytes(dir) <= budget,
        "{} > {budget}",
        total_bytes(dir)
    );
    assert_eq!(
        stored(dir),
        (21..=30).collect::<Vec<_>>(),
        "the newest kept"
    );

    // Within two seconds of it, writes do not prune again (the walk is throttled)…
    for i in 31..35 {
        budgeted.write(&value(i, 1000), &at(i)).unwrap();
    }
    // …and reads never do.
    let read: Vec<u8> = budgeted.read(&at(34)).unwrap();
    assert_eq!(read, value(34, 1000));
    // (Unless the machine is so loaded that these writes took two seconds.)
    if first.elapsed() < Duration::from_millis(1900) {
        assert!(total_bytes(dir) > budget);
        assert_eq!(stored(dir).len(), 14);
    }

    // The next write after the pause prunes.
    std::thread::sleep(Duration::from_millis(2100));
    budgeted.write(&value(35, 1000), &at(35)).unwrap();
    assert!(total_bytes(dir) <= budget);
    let kept = stored(dir);
    assert_eq!(kept.len(), 10, "{kept:?}");
    assert!(kept.contains(&35), "the value just written is kept");
    assert!(!kept.contains(&21), "the oldest went first: {kept:?}");

    // `prune` prunes at once, whatever the throttle; the result just written is kept
    // even alone over a budget smaller than it.
    let tiny = LocalResult::new(dir).with_max_bytes(one / 2);
    let pruned = tiny.prune().unwrap();
    assert_eq!(pruned.results, 10);
    assert_eq!(pruned.kept_bytes, 0);
    assert!(stored(dir).is_empty());
}

#[test]
fn max_age_removes_results_last_written_long_ago() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_old(dir, 6, 100);
    let now = SystemTime::now();
    for i in 0..3 {
        set_modified(&at(i).under(dir), now - Duration::from_secs(3 * 86_400));
    }
    let budgeted = LocalResult::new(dir).with_max_age(Duration::from_secs(86_400));
    budgeted.write(&value(6, 100), &at(6)).unwrap();
    assert_eq!(stored(dir), vec![3, 4, 5, 6]);
    // Without a budget, `prune` removes nothing.
    assert_eq!(LocalResult::new(dir).prune().unwrap().results, 0);
}

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new("~/.taskcache-budget-tests"))]
fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn records_of_pruned_results_are_removed_with_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let budgeted = LocalResult::new(dir).with_max_bytes(1 << 30);
    Context::current()
        .with_result(budgeted)
        .with_cache(OutputCache::new())
        .scope(|| {
            for x in 0..6 {
                assert_eq!(square(x), x * x);
            }
        });
    let plain = LocalResult::new(dir);
    let records = |r: &LocalResult| -> Vec<RecordInfo> {
        r.list_all_records()
            .unwrap()
            .iter()
            .map(|e| RecordInfo::parse(&r.read_record_entry(e).unwrap().unwrap()).unwrap())
            .collect()
    };
    let mut infos = records(&plain);
    assert_eq!(infos.len(), 6);
    // The first three results were written two days ago.
    infos.sort_by_key(|i| i.created);
    let now = SystemTime::now();
    for info in &infos[..3] {
        let path = Location::new(info.location.clone()).unwrap().under(dir);
        set_modified(&path, now - Duration::from_secs(2 * 86_400));
    }
    let pruned = plain
        .clone()
        .with_max_age(Duration::from_secs(86_400))
        .prune()
        .unwrap();
    assert_eq!(pruned.results, 3);
    assert_eq!(pruned.records, 3, "each result's record went with it");
    let left = records(&plain);
    assert_eq!(left.len(), 3);
    for info in &left {
        assert!(Location::new(info.location.clone())
            .unwrap()
            .under(dir)
            .exists());
    }
    // The pruned outputs are recomputed, the others served from the store.
    Context::current()
        .with_result(LocalResult::new(dir))
        .with_cache(OutputCache::new())
        .scope(|| {
            let cached = (0..6).filter(|&x| square::run(x).is_cached()).count();
            assert_eq!(cached, 3);
        });
}

#[test]
fn a_reader_racing_pruning_gets_the_value_or_a_miss() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    const SLOTS: usize = 8;
    // Large enough that a read takes a while, so that files are unlinked mid-read.
    const LEN: usize = 2 << 20;
    let budgeted = LocalResult::new(&dir).with_max_bytes(3 * LEN as u64);
    let stop = Arc::new(AtomicBool::new(false));
    let (hits, misses) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    std::thread::scope(|s| {
        // Writes every slot over and over.
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                budgeted
                    .write(&value(i % SLOTS, LEN), &at(i % SLOTS))
                    .unwrap();
                i += 1;
            }
        });
        // Prunes as fast as it can.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                budgeted.prune().unwrap();
            }
        });
        for reader in 0..2 {
            let (dir, stop, hits, misses) = (&dir, &stop, &hits, &misses);
            s.spawn(move || {
                // Each reader its own `LocalResult`: every read is hashed.
                let local = LocalResult::new(dir);
                let mut i = reader;
                while !stop.load(Ordering::Relaxed) {
                    match local.read::<Vec<u8>>(&at(i % SLOTS)) {
                        Ok(v) => {
                            assert!(v == value(i % SLOTS, LEN), "a wrong value for slot {i}");
                            hits.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(ResultError::NotFound { .. }) => {
                            misses.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("neither the value nor a miss: {e}"),
                    }
                    i += 1;
                }
            });
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(2500) {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let (hits, misses) = (hits.load(Ordering::Relaxed), misses.load(Ordering::Relaxed));
    assert!(hits > 0, "hits {hits}, misses {misses}");
    assert!(
        misses > 0,
        "pruning removed files under the readers: hits {hits}"
    );
    budgeted.prune().unwrap();
    assert!(total_bytes(&dir) <= 3 * LEN as u64 + 200);
}
