//! The fast paths of a hit (issue 13) notice every change to the file behind them.
//!
//! A `LocalResult` keeps a small file it has read and verified in memory and serves it
//! again after one `stat`, while the file's device and inode, size, modification time
//! and change time are unchanged. Each test here serves a target (or a persisted
//! cached output) from that kept copy, then changes the file behind it in one way
//! (rewritten, truncated, replaced by a file of the same size and time, edited in
//! place, removed, a FIFO put there), and checks that the next call notices: it serves
//! the new value, or recomputes a damaged file, and never serves the kept bytes.
//!
//! A file changed less than 50 ms before it was verified is not kept (a change in the
//! same tick of the file system's clock could leave its times unchanged), so each
//! test lets its file settle before the hit that keeps it.

mod common;

use common::dir;
use std::fs::{FileTimes, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use taskcache::prelude::*;
use taskcache::results::Location;
use taskcache::OutputCache;

/// Longer than the time a file must have settled before a read keeps it (50 ms).
const SETTLE: Duration = Duration::from_millis(150);

/// The tests share one counter of body runs per case: they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

static RUNS: AtomicU32 = AtomicU32::new(0);

fn runs() -> u32 {
    RUNS.load(Ordering::SeqCst)
}

/// The value the task computes for `case`: 1 KiB.
fn computed(case: &str) -> Vec<u8> {
    let mut v = vec![7u8; 1024];
    v[..case.len()].copy_from_slice(case.as_bytes());
    v
}

#[task(target = "{case}.bin", checkpoint, result = LocalResult::new(dir("fast")))]
fn kib(case: String) -> Vec<u8> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    computed(&case)
}

fn target_path(case: &str) -> PathBuf {
    Path::new(&dir("fast")).join(format!("{case}.bin"))
}

/// Writes the target of `case`, lets it settle, and serves it twice: the first hit
/// verifies and keeps it, the second is served from what was kept.
fn served_from_memory(case: &str) {
    let before = runs();
    let state = kib::run(case.into());
    assert_eq!(state.kind(), StateKind::Success, "{case}: first run");
    assert_eq!(runs(), before + 1);
    std::thread::sleep(SETTLE);
    for _ in 0..2 {
        let state = kib::run(case.into());
        assert!(state.is_cached(), "{case}: a target hit: {state}");
        assert_eq!(state.into_output(), computed(case));
    }
    assert_eq!(runs(), before + 1, "{case}: served, not run");
}

/// The next call must recompute (the file is damaged or gone) and return the right
/// value, and the call after it is served from the rewritten file.
fn recomputes(case: &str) {
    let before = runs();
    let state = kib::run(case.into());
    assert_eq!(
        state.kind(),
        StateKind::Success,
        "{case}: the changed file was noticed and recomputed"
    );
    assert_eq!(runs(), before + 1, "{case}: the body ran");
    assert_eq!(state.into_output(), computed(case));
    let state = kib::run(case.into());
    assert!(state.is_cached(), "{case}: rewritten: {state}");
    assert_eq!(state.into_output(), computed(case));
}

/// The next call must serve `expected`, the file's new valid content.
fn serves(case: &str, expected: &[u8]) {
    let before = runs();
    let state = kib::run(case.into());
    assert!(state.is_cached(), "{case}: a target hit: {state}");
    assert_eq!(
        state.into_output(),
        expected,
        "{case}: the new file's value, not the kept one"
    );
    assert_eq!(runs(), before, "{case}: served, not run");
}

/// Another valid file of `value`, of the same size as the target's.
fn other_valid_file(case: &str, value: &[u8]) -> PathBuf {
    let location = format!("{case}-other.bin");
    LocalResult::new(dir("fast"))
        .write(&value.to_vec(), &Location::new(location.clone()).unwrap())
        .unwrap();
    Path::new(&dir("fast")).join(location)
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn set_modified(path: &Path, at: std::time::SystemTime) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.set_times(FileTimes::new().set_modified(at)).unwrap();
}

#[test]
fn a_rewrite_through_another_result_is_served() {
    let _serial = serial();
    let case = "rewritten";
    served_from_memory(case);
    let new = vec![42u8; 1024];
    LocalResult::new(dir("fast"))
        .write(&new, &Location::new(format!("{case}.bin")).unwrap())
        .unwrap();
    serves(case, &new);
}

#[test]
fn a_rewrite_by_another_process_is_served() {
    let case = "by_process";
    if common::child().as_deref() == Some("rewrite") {
        LocalResult::new(dir("fast"))
            .write(
                &vec![43u8; 1024],
                &Location::new(format!("{case}.bin")).unwrap(),
            )
            .unwrap();
        return;
    }
    let _serial = serial();
    served_from_memory(case);
    common::run_child("a_rewrite_by_another_process_is_served", "rewrite");
    serves(case, &[43u8; 1024]);
}

#[test]
fn a_truncated_file_is_recomputed() {
    let _serial = serial();
    let case = "truncated";
    served_from_memory(case);
    let path = target_path(case);
    let len = std::fs::metadata(&path).unwrap().len();
    // In place: the same inode, shorter.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    recomputes(case);
}

#[test]
fn a_file_of_the_same_size_and_time_put_in_its_place_is_served() {
    let _serial = serial();
    let case = "replaced";
    served_from_memory(case);
    let path = target_path(case);
    let new = vec![44u8; 1024];
    let other = other_valid_file(case, &new);
    assert_eq!(
        std::fs::metadata(&other).unwrap().len(),
        std::fs::metadata(&path).unwrap().len(),
        "the same size"
    );
    set_modified(&other, modified(&path));
    assert_eq!(modified(&other), modified(&path), "the same time");
    std::fs::rename(&other, &path).unwrap();
    serves(case, &new);
}

#[test]
fn a_damaged_file_of_the_same_size_and_time_put_in_its_place_is_recomputed() {
    let _serial = serial();
    let case = "replaced_damaged";
    served_from_memory(case);
    let path = target_path(case);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let other = Path::new(&dir("fast")).join(format!("{case}-other.bin"));
    std::fs::write(&other, &bytes).unwrap();
    set_modified(&other, modified(&path));
    std::fs::rename(&other, &path).unwrap();
    recomputes(case);
}

#[test]
fn an_edit_in_place_that_keeps_size_and_time_is_recomputed() {
    let _serial = serial();
    let case = "edited";
    served_from_memory(case);
    let path = target_path(case);
    let meta = std::fs::metadata(&path).unwrap();
    let (len, mtime) = (meta.len(), meta.modified().unwrap());
    {
        // One byte of the payload flipped, in place: the same inode and size.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        file.seek(SeekFrom::Start(len - 1)).unwrap();
        file.write_all(&[0x40 ^ 7]).unwrap();
        file.set_times(FileTimes::new().set_modified(mtime))
            .unwrap();
    }
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!((after.len(), after.modified().unwrap()), (len, mtime));
    #[cfg(unix)]
    {
        // What tells the two apart: the change time, which no one can set back.
        use std::os::unix::fs::MetadataExt;
        assert_eq!(after.ino(), meta.ino(), "the same inode");
        assert_ne!(
            (after.ctime(), after.ctime_nsec()),
            (meta.ctime(), meta.ctime_nsec()),
            "an edit changes the change time"
        );
    }
    recomputes(case);
}

#[test]
fn a_removed_file_is_recomputed() {
    let _serial = serial();
    let case = "removed";
    served_from_memory(case);
    std::fs::remove_file(target_path(case)).unwrap();
    recomputes(case);
}

#[cfg(unix)]
#[test]
fn a_fifo_in_place_of_a_kept_file_is_not_waited_on() {
    let _serial = serial();
    let case = "fifo";
    served_from_memory(case);
    let path = target_path(case);
    std::fs::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&path).status();
    if !made.is_ok_and(|s| s.success()) {
        println!("skipped: mkfifo is not available");
        return;
    }
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let state = kib::run(case.into());
        let _ = send.send((state.kind(), state.into_output()));
    });
    let (kind, value) = receive
        .recv_timeout(Duration::from_secs(30))
        .expect("the call returned");
    // A FIFO is not a result: the task runs; its write replaces the FIFO.
    assert_eq!(kind, StateKind::Success);
    assert_eq!(value, computed(case));
}

#[task(target = "typed.bin", checkpoint, result = LocalResult::new(dir("fast_typed")))]
fn typed_bytes() -> Vec<u8> {
    vec![1u8; 1024]
}

#[task(target = "typed.bin", checkpoint, result = LocalResult::new(dir("fast_typed")))]
fn typed_text() -> String {
    "text".repeat(256)
}

#[test]
fn a_kept_file_read_as_another_type_is_a_miss() {
    let _serial = serial();
    // Each task has a `LocalResult` of its own: one shared by both, as a context sets
    // it, keeps the file one task read for the other's reads.
    let shared = LocalResult::new(dir("fast_typed"));
    let scoped = || Context::current().with_result(shared.clone());
    assert_eq!(
        scoped().scope(|| typed_bytes::run().kind()),
        StateKind::Success
    );
    std::thread::sleep(SETTLE);
    for _ in 0..2 {
        assert_eq!(
            scoped().scope(|| typed_bytes::run().kind()),
            StateKind::Cached
        );
    }
    // Kept as a `Vec<u8>`: a `String` task finds another type there, and runs.
    assert_eq!(
        scoped().scope(|| typed_text::run().kind()),
        StateKind::Success,
        "a file of another type is a miss"
    );
    let state = scoped().scope(typed_text::run);
    assert!(state.is_cached(), "{state}");
    assert_eq!(state.into_output(), "text".repeat(256));
    assert_eq!(
        scoped().scope(|| typed_bytes::run().kind()),
        StateKind::Success,
        "and back"
    );
}

static PINNED_RUNS: AtomicU32 = AtomicU32::new(0);

/// Every input's output goes to one location: a record pins the payload it describes.
#[task(
    cache_for = "1h",
    cache_validator = all_inputs,
    checkpoint,
    result = LocalResult::new(dir("fast_pinned")).with_location("shared.bin")
)]
fn pinned(x: u32) -> Vec<u32> {
    PINNED_RUNS.fetch_add(1, Ordering::SeqCst);
    vec![x; 256]
}

/// A target at that location: read without a pinned payload, so kept in memory.
#[task(target = "shared.bin", checkpoint, result = LocalResult::new(dir("fast_pinned")))]
fn shared_target() -> Vec<u32> {
    panic!("the target is there")
}

#[test]
fn a_kept_file_is_served_only_for_the_payload_a_record_pins() {
    let _serial = serial();
    // One `LocalResult` for both tasks (each has its own otherwise), and each call in
    // a fresh in-memory cache: outputs come from the records and the file.
    let shared = LocalResult::new(dir("fast_pinned"));
    let fresh = || {
        Context::current()
            .with_result(shared.clone())
            .with_cache(OutputCache::new())
    };
    assert_eq!(fresh().scope(|| pinned::run(1)).kind(), StateKind::Success);
    // Input 2's output replaces input 1's file; input 1's record still pins its own.
    assert_eq!(fresh().scope(|| pinned::run(2)).kind(), StateKind::Success);
    std::thread::sleep(SETTLE);
    for _ in 0..2 {
        let state = fresh().scope(shared_target::run);
        assert!(state.is_cached(), "{state}");
        assert_eq!(state.into_output(), vec![2; 256]);
    }
    let state = fresh().scope(|| pinned::run(2));
    assert!(state.is_cached(), "{state}");
    // The file kept in memory holds input 2's payload: input 1's record must not get it.
    let before = PINNED_RUNS.load(Ordering::SeqCst);
    let state = fresh().scope(|| pinned::run(1));
    assert_eq!(
        state.kind(),
        StateKind::Success,
        "another payload than the pinned one is a miss"
    );
    assert_eq!(state.into_output(), vec![1; 256]);
    assert_eq!(PINNED_RUNS.load(Ordering::SeqCst), before + 1);
}

static AT_ONCE_RUNS: AtomicU32 = AtomicU32::new(0);

/// A persisted hit in a fresh process reads a small record and a small result each in
/// one `read`, checked against their own headers instead of a `statx`.
#[task(
    cache_for = "1h",
    cache_validator = all_inputs,
    checkpoint,
    result = LocalResult::new(dir("fast_at_once")).with_location("r/{x}.bin")
)]
fn at_once(x: u64, len: usize) -> Vec<u8> {
    AT_ONCE_RUNS.fetch_add(1, Ordering::SeqCst);
    vec![x as u8; len]
}

/// A fresh in-memory cache and a fresh `LocalResult`: what a new process reads.
fn fresh_process() -> Context {
    Context::current()
        .with_cache(OutputCache::new())
        .with_result(LocalResult::new(dir("fast_at_once")))
}

/// The record file that names `x`'s result.
fn record_of(x: u64) -> PathBuf {
    let needle = format!("\"location\":\"r/{x}.bin\"");
    let records = Path::new(&dir("fast_at_once")).join(".taskcache-records");
    std::fs::read_dir(records)
        .unwrap()
        .flatten()
        .flat_map(|key| std::fs::read_dir(key.path()).unwrap().flatten())
        .map(|e| e.path())
        .find(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .expect("the record of the result")
}

/// Changes the file at the first path (the second: the same file of another input).
type Damage = fn(&Path, &Path);

#[test]
fn a_record_and_result_read_at_once_notice_every_change() {
    let _serial = serial();
    let result_of = |x: u64| Path::new(&dir("fast_at_once")).join(format!("r/{x}.bin"));
    let damages: [(&str, Damage); 5] = [
        ("a byte appended", |p, _| {
            OpenOptions::new()
                .append(true)
                .open(p)
                .unwrap()
                .write_all(&[0])
                .unwrap();
        }),
        ("cut short by a byte", |p, _| {
            let f = OpenOptions::new().write(true).open(p).unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len - 1).unwrap();
        }),
        ("its last byte changed", |p, _| {
            let mut bytes = std::fs::read(p).unwrap();
            *bytes.last_mut().unwrap() ^= 1;
            std::fs::write(p, bytes).unwrap();
        }),
        (
            "replaced by another input's file of the same size",
            |p, other| {
                std::fs::copy(other, p).unwrap();
            },
        ),
        ("emptied", |p, _| std::fs::write(p, b"").unwrap()),
    ];
    // Small files (read at once) and a result past the first read (read the long way).
    for len in [16usize, 5000] {
        for (n, (how, damage)) in damages.iter().enumerate() {
            for file in ["record", "result"] {
                let (x, other) = (100 * len as u64 + 10 * n as u64, 7);
                for input in [x, other] {
                    let state = fresh_process().scope(|| at_once::run(input, len));
                    assert!(state.is_successful(), "{state}");
                }
                let hit = fresh_process().scope(|| at_once::run(x, len));
                assert!(hit.is_cached(), "{len} bytes: a fresh process hits: {hit}");
                let (path, others) = match file {
                    "record" => (record_of(x), record_of(other)),
                    _ => (result_of(x), result_of(other)),
                };
                damage(&path, &others);
                let before = AT_ONCE_RUNS.load(Ordering::SeqCst);
                let state = fresh_process().scope(|| at_once::run(x, len));
                assert_eq!(
                    state.kind(),
                    StateKind::Success,
                    "{len} bytes, the {file} {how}: recomputed"
                );
                assert_eq!(state.into_output(), vec![x as u8; len]);
                assert_eq!(AT_ONCE_RUNS.load(Ordering::SeqCst), before + 1);
                let again = fresh_process().scope(|| at_once::run(x, len));
                assert!(again.is_cached(), "{len} bytes, the {file} {how}: {again}");
            }
        }
    }
}
