//! Failures are told by the return type, whatever it is called: an `Err` of any
//! `Result` (an alias, `io::Result`, a re-export under another name) fails the run, is
//! retried, and is never cached nor written; a type merely named `Result` is not one.

mod common;

use chrono::{TimeZone, Utc};
use common::{dir, files_under};
use std::sync::atomic::{AtomicU32, Ordering};
use taskcache::prelude::*;
use taskcache::OutputCache;

fn isolated<R>(f: impl FnOnce() -> R) -> R {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap());
    Context::current()
        .with_cache(OutputCache::new())
        .with_clock(clock.clock())
        .scope(f)
}

fn runs(counter: &AtomicU32) -> u32 {
    counter.load(Ordering::SeqCst)
}

type Res<T> = Result<T, String>;

static ALIAS_RUNS: AtomicU32 = AtomicU32::new(0);
/// How many runs fail before the first success.
static ALIAS_FAILS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", max_retries = 2, retry_delay = "0s")]
fn through_alias(x: u32) -> Res<u32> {
    let n = ALIAS_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    if n <= ALIAS_FAILS.load(Ordering::SeqCst) {
        Err(format!("run {n} failed"))
    } else {
        Ok(x * 2)
    }
}

#[test]
fn an_err_through_an_alias_is_retried_and_never_cached() {
    isolated(|| {
        ALIAS_FAILS.store(3, Ordering::SeqCst);
        let state = through_alias::run(1);
        assert_eq!(state.kind(), StateKind::Failed);
        assert_eq!(state.run_count(), 3, "retried twice");
        assert!(
            state.message().contains("run 3 failed"),
            "{}",
            state.message()
        );
        assert!(state.cached().is_none());
        assert_eq!(state.into_output(), Err("run 3 failed".to_owned()));
        // Not served from the cache: the body runs again, and now succeeds.
        let state = through_alias::run(1);
        assert_eq!(state.kind(), StateKind::Success);
        assert_eq!(runs(&ALIAS_RUNS), 4);
        assert_eq!(state.into_output(), Ok(2));
        // The `Ok` is cached.
        let state = through_alias::run(1);
        assert!(state.is_cached());
        assert_eq!(state.into_output(), Ok(2));
        assert_eq!(runs(&ALIAS_RUNS), 4);
    });
}

static IO_RUNS: AtomicU32 = AtomicU32::new(0);

/// `io::Error` is not `Clone`: only the `u32` of an `Ok` is cached.
#[task(cache_for = "1h", cache_validator = all_inputs)]
fn read_size(x: u32) -> std::io::Result<u32> {
    IO_RUNS.fetch_add(1, Ordering::SeqCst);
    if x == 0 {
        Err(std::io::Error::other("no such file"))
    } else {
        Ok(x + 100)
    }
}

#[test]
fn io_result_caches_its_ok_values() {
    isolated(|| {
        assert_eq!(read_size(1).unwrap(), 101);
        let state = read_size::run(1);
        assert!(state.is_cached());
        assert_eq!(state.into_output().unwrap(), 101);
        assert_eq!(runs(&IO_RUNS), 1);

        let state = read_size::run(0);
        assert!(state.is_failed());
        assert_eq!(state.message(), "Task run failed: no such file");
        assert_eq!(read_size(0).unwrap_err().to_string(), "no such file");
        assert_eq!(runs(&IO_RUNS), 3, "an Err is never served from the cache");
    });
}

static BOXED_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn boxed(x: u32) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    BOXED_RUNS.fetch_add(1, Ordering::SeqCst);
    if x == 0 {
        Err("zero".into())
    } else {
        Ok(x)
    }
}

#[test]
fn a_boxed_error_compiles_with_cache_for() {
    isolated(|| {
        assert_eq!(boxed(5).unwrap(), 5);
        assert_eq!(boxed(5).unwrap(), 5);
        assert_eq!(boxed(0).unwrap_err().to_string(), "zero");
        assert_eq!(boxed(0).unwrap_err().to_string(), "zero");
        assert_eq!(runs(&BOXED_RUNS), 3);
    });
}

mod renamed {
    pub use std::result::Result as Outcome;
}
use renamed::Outcome;

static OUTCOME_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 1, retry_delay = "0s")]
fn outcome() -> Outcome<u32, String> {
    OUTCOME_RUNS.fetch_add(1, Ordering::SeqCst);
    Err("refused".into())
}

#[test]
fn a_result_under_another_name_fails_on_err() {
    let state = outcome::run();
    assert!(state.is_failed());
    assert_eq!(state.run_count(), 2);
    assert_eq!(runs(&OUTCOME_RUNS), 2);
    assert_eq!(state.message(), "Task run failed after 2 attempts: refused");
}

/// An error type with `Debug` only: its `Debug` text is the failure's message.
#[derive(Debug)]
enum MyErr {
    Bad,
}

#[task]
fn fetch() -> Result<i32, MyErr> {
    Err(MyErr::Bad)
}

/// An error type with neither `Display` nor `Debug`: the message names the type.
struct Opaque;

#[task]
fn opaque() -> Result<i32, Opaque> {
    Err(Opaque)
}

#[test]
fn an_error_without_display_fails_with_its_debug_text_or_its_type() {
    let state = fetch::run();
    assert!(state.is_failed());
    assert_eq!(state.message(), "Task run failed: Bad");
    let state = opaque::run();
    assert!(state.is_failed());
    assert!(state.message().contains("Opaque"), "{}", state.message());
    assert!(state.message().contains("neither"), "{}", state.message());
}

/// A type named `Result` that is not `std`'s: its values are all successes.
mod mine {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Result {
        Done,
        Err,
    }
}

#[task(cache_for = "1h")]
fn own_result() -> mine::Result {
    mine::Result::Err
}

#[test]
fn a_type_merely_named_result_never_fails() {
    isolated(|| {
        let state = own_result::run();
        assert_eq!(state.kind(), StateKind::Success);
        assert_eq!(state.into_output(), mine::Result::Err);
        assert!(own_result::run().is_cached());
        assert_ne!(mine::Result::Done, mine::Result::Err);
    });
}

#[task(cache_for = "1h", cache_key = "fallible-shared")]
fn shared_fallible() -> Res<u32> {
    Ok(7)
}

#[task(cache_for = "1h", cache_key = "fallible-shared")]
fn shared_plain() -> u32 {
    unreachable!("served by `shared_fallible`'s output")
}

#[test]
fn the_cache_holds_the_ok_value_itself() {
    isolated(|| {
        assert_eq!(shared_fallible(), Ok(7));
        let state = shared_plain::run();
        assert!(state.is_cached());
        assert_eq!(state.into_output(), 7);
    });
}

static ASYNC_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 2, retry_delay = "0s")]
async fn async_alias() -> Res<u32> {
    let n = ASYNC_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    if n < 3 {
        Err(format!("attempt {n}"))
    } else {
        Ok(n)
    }
}

#[test]
fn an_async_task_fails_on_err_through_an_alias() {
    let state = pollster::block_on(async_alias::run());
    assert_eq!(state.kind(), StateKind::Success);
    assert_eq!(state.run_count(), 3);
    assert_eq!(state.into_output(), Ok(3));
}

static TARGET_RUNS: AtomicU32 = AtomicU32::new(0);
static TARGET_FAILS: AtomicU32 = AtomicU32::new(0);

#[task(target = "{x}.bin", checkpoint, result = LocalResult::new(dir("target")))]
fn with_target(x: u32) -> Res<u32> {
    let n = TARGET_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    if n <= TARGET_FAILS.load(Ordering::SeqCst) {
        Err("not yet".into())
    } else {
        Ok(x + 1)
    }
}

static CHECKPOINT_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", checkpoint, result = LocalResult::new(dir("checkpoint")))]
fn checkpointed(x: u32) -> Res<u32> {
    CHECKPOINT_RUNS.fetch_add(1, Ordering::SeqCst);
    if x == 0 {
        Err("zero".into())
    } else {
        Ok(x)
    }
}

#[test]
fn an_err_is_never_checkpointed_nor_written_to_a_target() {
    TARGET_FAILS.store(2, Ordering::SeqCst);
    for _ in 0..2 {
        let state = with_target::run(4);
        assert!(state.is_failed());
        assert!(state.location().is_none());
        assert!(files_under(&dir("target")).is_empty());
    }
    let state = with_target::run(4);
    assert_eq!(state.kind(), StateKind::Success);
    assert_eq!(state.location().map(|l| l.as_str()), Some("4.bin"));
    assert_eq!(files_under(&dir("target")).len(), 1);
    let state = with_target::run(4);
    assert!(state.is_cached(), "served from the target");
    assert_eq!(state.into_output(), Ok(5));
    assert_eq!(runs(&TARGET_RUNS), 3);
    // An `Err` put in the target by something else does not satisfy it.
    let backend = LocalResult::new(dir("target"));
    let at = taskcache::results::Location::new("4.bin").unwrap();
    let planted: Res<u32> = Err("planted".into());
    taskcache::results::ResultBackendExt::write(&backend, &planted, &at).unwrap();
    let state = with_target::run(4);
    assert_eq!(state.kind(), StateKind::Success, "recomputed, not served");
    assert_eq!(state.into_output(), Ok(5));
    assert_eq!(runs(&TARGET_RUNS), 4);

    isolated(|| {
        let state = checkpointed::run(0);
        assert!(state.is_failed());
        assert!(state.location().is_none());
        assert!(files_under(&dir("checkpoint")).is_empty());
        assert!(checkpointed::run(0).is_failed(), "an Err is not cached");
        assert_eq!(checkpointed(3), Ok(3));
        assert_eq!(files_under(&dir("checkpoint")).len(), 1);
        assert!(checkpointed::run(3).is_cached());
        assert_eq!(runs(&CHECKPOINT_RUNS), 3);
    });
}

static IO_TARGET_RUNS: AtomicU32 = AtomicU32::new(0);

/// `std::io::Error` is not `Serialize`: only the `Ok` value is stored.
#[task(checkpoint, target = "io/{x}.bin", result = LocalResult::new(dir("io_target")))]
fn io_target(x: u32) -> std::io::Result<u32> {
    IO_TARGET_RUNS.fetch_add(1, Ordering::SeqCst);
    if x == 0 {
        Err(std::io::Error::other("zero"))
    } else {
        Ok(x * 2)
    }
}

#[test]
fn a_result_output_stores_its_success_and_needs_no_serde_error() {
    let state = io_target::run(4);
    assert_eq!(state.location().unwrap().as_str(), "io/4.bin");
    // The file holds what a task returning `u32` would write.
    let stored: u32 = LocalResult::new(dir("io_target"))
        .read(state.location().unwrap())
        .unwrap();
    assert_eq!(stored, 8);
    let again = io_target::run(4);
    assert!(again.is_cached());
    assert_eq!(again.into_output().unwrap(), 8);
    assert!(io_target::run(0).is_failed());
    assert!(files_under(&dir("io_target"))
        .iter()
        .all(|p| !p.ends_with("io/0.bin")));
    assert_eq!(runs(&IO_TARGET_RUNS), 2);
}
