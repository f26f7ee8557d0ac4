//! What must never happen, whatever the inputs or the files: another input's value
//! served from a persisted cache, a damaged record trusted, a task that waits for
//! itself, a panic on a date past the end of chrono's calendar.

use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use taskcache::prelude::*;
use taskcache::results::LocalResult;
use taskcache::OutputCache;

mod common;

use common::{child, dir, run_child};

/// Runs `f` on a thread of its own and fails if it has not returned within `limit`:
/// a hang fails the test instead of hanging the suite.
fn within<R: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(f());
    });
    receive
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?}: it hangs"))
}

/// The cache records under a result directory.
fn records(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(keys) = std::fs::read_dir(Path::new(dir).join(".taskcache-records")) else {
        return out;
    };
    for key in keys.flatten() {
        for rec in std::fs::read_dir(key.path()).unwrap().flatten() {
            if rec.path().extension().is_some_and(|e| e == "rec") {
                out.push(rec.path());
            }
        }
    }
    out
}

static SQ_RUNS: AtomicU32 = AtomicU32::new(0);

// Every input writes the same file: the record of `sq(2)` points at a file that
// `sq(3)` overwrote.
#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint,
       result = LocalResult::new(dir("sq")).with_location("{task_name}.bin"))]
fn sq(x: u64) -> u64 {
    SQ_RUNS.fetch_add(1, Ordering::SeqCst);
    x * x
}

#[test]
fn a_record_whose_result_was_overwritten_is_a_miss_in_another_process() {
    if let Some(x) = child() {
        let x: u64 = x.parse().unwrap();
        let state = sq::run(x);
        println!(
            "value={} cached={}",
            state.value().unwrap(),
            state.is_cached()
        );
        return;
    }
    assert_eq!(sq(2), 4);
    assert_eq!(sq(3), 9);
    // In this process the in-memory cache answers; another process must agree.
    assert_eq!(sq(2), 4);
    assert_eq!(SQ_RUNS.load(Ordering::SeqCst), 2);
    let test = "a_record_whose_result_was_overwritten_is_a_miss_in_another_process";
    let out = run_child(test, "3");
    assert!(
        out.contains("value=9 cached=true"),
        "the file holds 9: {out}"
    );
    let out = run_child(test, "2");
    assert!(
        out.contains("value=4 cached=false"),
        "sq(2)'s record points at a file that holds sq(3)'s output: recomputed, not served: {out}"
    );
    // Recomputing rewrote the file, so now 2 is served and 3 is recomputed.
    let out = run_child(test, "2");
    assert!(out.contains("value=4 cached=true"), "{out}");
    let out = run_child(test, "3");
    assert!(out.contains("value=9 cached=false"), "{out}");
}

static DAMAGED_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint,
       result = LocalResult::new(dir("damaged_record")))]
fn damaged(x: u64) -> u64 {
    DAMAGED_RUNS.fetch_add(1, Ordering::SeqCst);
    x + 100
}

#[test]
fn a_damaged_record_is_a_miss() {
    if child().is_some() {
        let state = damaged::run(1);
        println!(
            "value={} cached={}",
            state.value().unwrap(),
            state.is_cached()
        );
        return;
    }
    let test = "a_damaged_record_is_a_miss";
    assert_eq!(damaged(1), 101);
    let found = records(&dir("damaged_record"));
    assert_eq!(found.len(), 1, "{found:?}");
    let record = &found[0];
    let intact = std::fs::read(record).unwrap();
    assert!(run_child(test, "1").contains("value=101 cached=true"));

    let text = String::from_utf8_lossy(&intact);
    let at = text
        .find("\"expiration\"")
        .expect("the record names its expiration")
        + 1;
    let mut damages: Vec<(String, Vec<u8>)> = Vec::new();
    // The field's name changed, so a lenient reader would take "no expiration".
    let mut renamed = intact.clone();
    renamed[at + 9] = b'X';
    damages.push(("a renamed field".into(), renamed));
    // A digit of the expiration's year moved forward.
    let year = text[at..].find("\"20").unwrap() + at + 3;
    let mut later = intact.clone();
    later[year] += 1;
    damages.push(("a later year".into(), later));
    damages.push((
        "a truncated record".into(),
        intact[..intact.len() - 1].to_vec(),
    ));
    damages.push(("an empty file".into(), Vec::new()));
    for (what, bytes) in damages {
        std::fs::write(record, &bytes).unwrap();
        let out = run_child(test, "1");
        assert!(
            out.contains("value=101 cached=false"),
            "{what}: the record must not be trusted: {out}"
        );
        // The run that recomputed wrote an intact record again.
        assert!(
            run_child(test, "1").contains("value=101 cached=true"),
            "{what}"
        );
    }
}

static NESTED_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_key = "nested")]
fn nested_inner(x: u64) -> u64 {
    NESTED_RUNS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

#[task(cache_for = "1h", cache_key = "nested")]
fn nested_outer(x: u64) -> u64 {
    nested_inner(x) * 10
}

#[test]
fn a_task_called_with_its_callers_inputs_under_a_shared_key_does_not_wait_for_it() {
    let cache = OutputCache::new();
    let value = within(Duration::from_secs(20), "nested_outer(1)", move || {
        Context::current()
            .with_cache(cache)
            .scope(|| nested_outer(1))
    });
    assert_eq!(value, 20);
    assert_eq!(NESTED_RUNS.load(Ordering::SeqCst), 1);
}

#[task(cache_for = "1h", cache_key = "nested_async")]
async fn nested_inner_async(x: u64) -> u64 {
    x + 2
}

#[task(cache_for = "1h", cache_key = "nested_async")]
async fn nested_outer_async(x: u64) -> u64 {
    nested_inner_async(x).await * 10
}

#[test]
fn an_async_task_does_not_wait_for_its_caller_either() {
    let cache = OutputCache::new();
    let value = within(
        Duration::from_secs(20),
        "nested_outer_async(1)",
        move || {
            Context::current()
                .with_cache(cache)
                .scope(|| pollster::block_on(nested_outer_async(1)))
        },
    );
    assert_eq!(value, 30);
}

#[task(checkpoint, target = "shared.bin", result = LocalResult::new(dir("nested_target")))]
fn target_inner() -> u64 {
    5
}

#[task(checkpoint, target = "shared.bin", result = LocalResult::new(dir("nested_target")))]
fn target_outer() -> u64 {
    target_inner() + 1
}

#[test]
fn a_task_whose_target_its_caller_holds_locked_does_not_wait_for_it() {
    let value = within(Duration::from_secs(20), "target_outer()", target_outer);
    assert_eq!(value, 6);
    // The outer task's output is the one left in the target.
    assert_eq!(
        within(Duration::from_secs(20), "target_outer()", target_outer),
        6
    );
}

#[task(cache_for = "1h", cache_key = "nested_persisted", cache_validator = all_inputs,
       checkpoint, result = LocalResult::new(dir("nested_persisted")))]
fn persisted_inner(x: u64) -> u64 {
    x + 3
}

#[task(cache_for = "1h", cache_key = "nested_persisted", cache_validator = all_inputs,
       checkpoint, result = LocalResult::new(dir("nested_persisted")))]
fn persisted_outer(x: u64) -> u64 {
    persisted_inner(x) * 10
}

#[test]
fn a_persisted_cache_record_lock_is_not_waited_for_by_the_callee() {
    let cache = OutputCache::new();
    let value = within(Duration::from_secs(20), "persisted_outer(1)", move || {
        Context::current()
            .with_cache(cache)
            .scope(|| persisted_outer(1))
    });
    assert_eq!(value, 40);
}

static FAR_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "100000years", cache_validator = all_inputs)]
fn far(x: u64) -> u64 {
    FAR_RUNS.fetch_add(1, Ordering::SeqCst);
    x
}

static EDGE_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 1, retry_delay = "1ms")]
fn fails_once_at_the_end_of_time() -> Result<u32, String> {
    if EDGE_ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        Err("first attempt".into())
    } else {
        Ok(7)
    }
}

#[test]
fn durations_past_the_end_of_the_calendar_do_not_panic() {
    // A clock near chrono's last date: an expiry or a retry time after it cannot be
    // represented.
    let end = DateTime::<Utc>::MAX_UTC - chrono::TimeDelta::days(1);
    Context::current()
        .with_cache(OutputCache::new())
        .with_clock(Clock::fixed(end))
        .scope(|| {
            let state = far::run(1);
            assert!(state.is_successful());
            assert_eq!(
                state.cached().unwrap().expiration,
                None,
                "past the last date: never expires"
            );
            assert!(far::run(1).is_cached());
            assert_eq!(FAR_RUNS.load(Ordering::SeqCst), 1);
            // Called, not run: a lean miss, whose record cannot be remade from nanoseconds
            // this far out; it is made at once, and served.
            assert_eq!(far(2), 2);
            let state = far::run(2);
            assert!(state.is_cached(), "{state}");
            assert_eq!(state.cached().unwrap().created, end);
            assert_eq!(far(2), 2);
            assert_eq!(FAR_RUNS.load(Ordering::SeqCst), 2);
            let manual = ManualClock::new(end);
            manual.advance(Duration::from_secs(10 * 24 * 3600));
            assert_eq!(
                manual.now(),
                DateTime::<Utc>::MAX_UTC,
                "advancing saturates"
            );
            let state = fails_once_at_the_end_of_time::run();
            assert_eq!(state.value(), Some(&Ok(7)));
            assert_eq!(state.run_count(), 2);
        });
}

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint,
       result = LocalResult::new(dir("swapped")))]
fn plus_one(x: u64) -> u64 {
    x + 1
}

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint,
       result = LocalResult::new(dir("swapped")))]
fn plus_two(x: u64) -> u64 {
    x + 2
}

#[test]
fn a_record_copied_under_another_tasks_key_is_not_that_tasks() {
    if child().is_some() {
        let state = plus_two::run(1);
        println!(
            "value={} cached={}",
            state.value().unwrap(),
            state.is_cached()
        );
        return;
    }
    let test = "a_record_copied_under_another_tasks_key_is_not_that_tasks";
    assert_eq!(plus_one(1), 2);
    assert_eq!(plus_two(1), 3);
    let found = records(&dir("swapped"));
    assert_eq!(found.len(), 2, "{found:?}");
    // Same inputs, so the same record name under each task's key.
    assert_eq!(found[0].file_name(), found[1].file_name());
    let ours = run_child(test, "1");
    assert!(ours.contains("value=3 cached=true"), "{ours}");
    // Put plus_one's record (pointing at its own, intact result) in plus_two's place.
    let (one, two) = if std::fs::read(&found[0])
        .unwrap()
        .windows(8)
        .any(|w| w == b"plus_one")
    {
        (&found[0], &found[1])
    } else {
        (&found[1], &found[0])
    };
    std::fs::copy(one, two).unwrap();
    let out = run_child(test, "1");
    assert!(
        out.contains("value=3 cached=false"),
        "another key's record: {out}"
    );
}

#[task(cache_for = "1h", checkpoint, result = LocalResult::new(dir("spent")))]
fn spent(x: u64) -> u64 {
    x
}

#[test]
fn records_are_private_and_spent_ones_are_removed() {
    let start = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 23, 9, 0, 0).unwrap();
    let clock = ManualClock::new(start);
    let fresh = || {
        Context::current()
            .with_cache(OutputCache::new())
            .with_clock(clock.clock())
    };
    fresh().scope(|| spent(1));
    let first = records(&dir("spent"));
    assert_eq!(first.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&first[0]).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "a record holds the flow's parameters: {mode:o}"
        );
    }
    // Expired: the next lookup (duration_only reads every record of the key) removes it.
    clock.advance(Duration::from_secs(2 * 3600));
    assert!(!fresh().scope(|| spent::run(2)).is_cached());
    let now = records(&dir("spent"));
    assert_eq!(
        now.len(),
        1,
        "the spent record is gone, the new one stays: {now:?}"
    );
    assert_ne!(now[0], first[0]);
}

static FAR_LEAN_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "100000years", cache_validator = all_inputs)]
fn far_lean(x: u64) -> u64 {
    FAR_LEAN_RUNS.fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn an_expiration_past_2262_is_kept_exactly_by_a_lean_miss() {
    Context::current().with_cache(OutputCache::new()).scope(|| {
        // Called, not run: a lean miss, whose record is remade from nanoseconds when
        // asked for, which cannot hold this expiration: it is made at once instead.
        assert_eq!(far_lean(3), 3);
        let state = far_lean::run(3);
        assert!(state.is_cached(), "{state}");
        let cached = state.cached().unwrap();
        let expiration = cached
            .expiration
            .expect("100 000 years is a date chrono has");
        let lasts = Duration::from_secs(100_000 * 31_557_600);
        assert_eq!(
            expiration,
            cached.created + chrono::TimeDelta::from_std(lasts).unwrap()
        );
        assert_eq!(far_lean(3), 3);
        assert_eq!(FAR_LEAN_RUNS.load(Ordering::SeqCst), 1);
    });
}
