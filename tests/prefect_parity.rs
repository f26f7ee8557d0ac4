//! Prefect Core 1.4's documented behaviour where taskcache follows it: validators see
//! the task's context, `scheduled_start_time`, and a `None` output is never stored.

use chrono::{TimeZone, Utc};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use taskcache::prelude::*;
use taskcache::results::LocalResult;
use taskcache::{Cached, HashedInputs, OutputCache, Parameters};

fn dir(task: &str) -> String {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let root = ROOT.get_or_init(|| tempfile::tempdir().unwrap().keep());
    root.join(task).to_string_lossy().into_owned()
}

/// What a validator saw of the context: task name, full name, run count, flow name.
type Seen = (Option<String>, Option<String>, u32, Option<String>);

/// What the validator saw, call by call.
static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

fn seeing(_: &Cached, _: &HashedInputs<'_>, _: &Parameters) -> bool {
    let c = taskcache::context::current();
    SEEN.lock().unwrap().push((
        c.task_name().map(str::to_owned),
        c.task_full_name(),
        c.task_run_count(),
        c.flow_name().map(str::to_owned),
    ));
    false
}

#[task(cache_for = "10s", cache_validator = seeing)]
fn validated() -> u32 {
    1
}

#[test]
fn a_custom_validator_runs_in_the_tasks_context() {
    Context::current()
        .with_cache(OutputCache::new())
        .with_map_index(4)
        .scope(|| {
            Flow::new("parity").run(|| {
                validated();
                validated();
            });
        });
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the first run had no candidate to validate");
    let (name, full_name, run_count, flow) = &seen[0];
    assert_eq!(name.as_deref(), Some("validated"));
    assert_eq!(full_name.as_deref(), Some("validated[4]"));
    assert_eq!(*run_count, 1, "the run about to happen is the first");
    assert_eq!(flow.as_deref(), Some("parity"), "flow keys are still there");
}

static SCHEDULED_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(checkpoint, target = "{scheduled_start_time:%Y-%m-%dT%H}/{task_name}.bin",
       result = LocalResult::new(dir("scheduled")))]
fn hourly() -> String {
    SCHEDULED_RUNS.fetch_add(1, Ordering::SeqCst);
    taskcache::context::current()
        .get("scheduled_start_time")
        .unwrap()
}

#[test]
fn scheduled_start_time_is_the_runs_start_unless_pinned() {
    let slot = Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap();
    let run = Flow::new("hourly")
        .scheduled_start_time(slot)
        .run(hourly::run);
    let state = run.into_output();
    assert_eq!(state.value().unwrap(), &slot.to_rfc3339());
    assert_eq!(
        state.location().unwrap().as_str(),
        "2026-11-23T07/hourly.bin",
        "formatted with strftime, as `date`"
    );
    // The same slot again: its target exists.
    let again = Flow::new("hourly")
        .scheduled_start_time(slot)
        .run(hourly::run);
    assert!(again.into_output().is_cached());
    assert_eq!(SCHEDULED_RUNS.load(Ordering::SeqCst), 1);

    // Unpinned: the run's start, by the context's clock.
    let start = Utc.with_ymd_and_hms(2026, 11, 24, 18, 30, 0).unwrap();
    Context::current()
        .with_clock(Clock::fixed(start))
        .scope(|| {
            Flow::new("unpinned").run(|| {
                let ctx = taskcache::context::current();
                assert_eq!(ctx.scheduled_start_time(), Some(start));
                assert!(ctx.keys().contains(&"scheduled_start_time".to_owned()));
            });
        });
    assert_eq!(
        taskcache::context::current().scheduled_start_time(),
        None,
        "outside a flow there is no scheduled run"
    );
}

static MAYBE_RUNS: AtomicU32 = AtomicU32::new(0);
static MAYBE_ANSWER: Mutex<Option<u32>> = Mutex::new(None);

#[task(checkpoint, target = "maybe.bin", result = LocalResult::new(dir("maybe")))]
fn maybe() -> Option<u32> {
    MAYBE_RUNS.fetch_add(1, Ordering::SeqCst);
    *MAYBE_ANSWER.lock().unwrap()
}

#[test]
fn a_none_output_is_not_checkpointed_and_leaves_the_target_missing() {
    let target = PathBuf::from(dir("maybe")).join("maybe.bin");
    let state = maybe::run();
    assert_eq!(state.value(), Some(&None));
    assert_eq!(state.location(), None, "nothing was written");
    assert_eq!(state.persist_error(), None, "not an error: Prefect's rule");
    assert!(!target.exists());
    assert!(!maybe::run().is_cached(), "the body runs again");
    assert_eq!(MAYBE_RUNS.load(Ordering::SeqCst), 2);

    *MAYBE_ANSWER.lock().unwrap() = Some(5);
    assert_eq!(maybe(), Some(5));
    assert!(target.exists());
    let state = maybe::run();
    assert!(state.is_cached());
    assert_eq!(state.into_output(), Some(5));
    assert_eq!(MAYBE_RUNS.load(Ordering::SeqCst), 3);

    // A `None` put in the target by something else does not satisfy it either.
    *MAYBE_ANSWER.lock().unwrap() = None;
    let backend = LocalResult::new(dir("maybe"));
    let at = taskcache::results::Location::new("maybe.bin").unwrap();
    taskcache::results::ResultBackendExt::write(&backend, &None::<u32>, &at).unwrap();
    assert!(!maybe::run().is_cached());
    assert_eq!(MAYBE_RUNS.load(Ordering::SeqCst), 4);
}
