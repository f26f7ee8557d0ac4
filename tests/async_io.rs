//! An async task whose result is in object storage awaits the network instead of
//! blocking the thread that polls it: another task on the same single-threaded
//! executor keeps running while the target is read, locked and written, and the task
//! works on an executor that is not tokio's.
//!
//! The store is `object_store`'s in-memory one behind its `ThrottledStore`, which makes
//! every call wait 100 ms, as a slow store across a network does.

#![cfg(feature = "object-store")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use taskcache::prelude::*;
use taskcache::results::object_store::memory::InMemory;
use taskcache::results::object_store::throttle::{ThrottleConfig, ThrottledStore};
use taskcache::results::object_store::ObjectStore;
use taskcache::results::ObjectStoreResult;

/// How long every call to the store waits.
const WAIT_MS: u64 = 100;

/// One slow store for the whole test binary.
fn slow_store() -> Arc<dyn ObjectStore> {
    static STORE: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    let wait = Duration::from_millis(WAIT_MS);
    let config = ThrottleConfig {
        wait_get_per_call: wait,
        wait_put_per_call: wait,
        wait_delete_per_call: wait,
        wait_list_per_call: wait,
        wait_list_with_delimiter_per_call: wait,
        ..ThrottleConfig::default()
    };
    Arc::clone(STORE.get_or_init(|| Arc::new(ThrottledStore::new(InMemory::new(), config))))
}

fn slow(prefix: &str) -> ObjectStoreResult {
    ObjectStoreResult::new(slow_store(), prefix)
}

static TARGET_RUNS: AtomicUsize = AtomicUsize::new(0);
static CACHED_RUNS: AtomicUsize = AtomicUsize::new(0);
static OTHER_EXECUTOR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[task(checkpoint, target = "{x}.bin", result = slow("targets"))]
async fn targeted(x: u64) -> u64 {
    TARGET_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 3
}

#[task(cache_for = "1h", checkpoint, result = slow("records"))]
async fn cached(x: u64) -> Vec<u8> {
    CACHED_RUNS.fetch_add(1, Ordering::SeqCst);
    vec![x as u8; 100]
}

#[task(checkpoint, target = "other/{x}.bin", result = slow("elsewhere"))]
async fn on_another_executor(x: u64) -> String {
    OTHER_EXECUTOR_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("value {x}")
}

/// Runs `call` on a single-threaded tokio runtime beside a task that notes the time of
/// each of its turns; gives the call's output and the longest time the other task went
/// without a turn while the call was under way. A call that blocked the thread on the
/// store would stall it for at least one store call (`WAIT_MS`); one that awaits lets
/// it run every few microseconds.
fn beside_a_ticker<F: std::future::Future>(call: impl FnOnce() -> F) -> (F::Output, Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let last = Arc::new(Mutex::new((Instant::now(), Duration::ZERO)));
        let stop = Arc::new(AtomicBool::new(false));
        let note = |last: &Mutex<(Instant, Duration)>| {
            let mut l = last.lock().unwrap();
            let now = Instant::now();
            l.1 = l.1.max(now - l.0);
            l.0 = now;
        };
        let ticker = tokio::spawn({
            let (last, stop) = (Arc::clone(&last), Arc::clone(&stop));
            async move {
                while !stop.load(Ordering::SeqCst) {
                    note(&last);
                    tokio::task::yield_now().await;
                }
            }
        });
        // (The call starts first: the ticker's first turn comes at the call's first wait.)
        *last.lock().unwrap() = (Instant::now(), Duration::ZERO);
        let output = call().await;
        note(&last);
        let stall = last.lock().unwrap().1;
        stop.store(true, Ordering::SeqCst);
        ticker.await.unwrap();
        (output, stall)
    })
}

/// The longest stall a test accepts: well under one store call, well above a
/// preempted thread's.
const STALL: Duration = Duration::from_millis(WAIT_MS * 3 / 5);

#[test]
fn a_target_is_read_locked_and_written_without_blocking_the_executor() {
    // A miss: the target is read (missing), locked, computed, written, unlocked.
    let (state, stall) = beside_a_ticker(|| targeted::run(7));
    assert_eq!(state.kind(), StateKind::Success, "{}", state.message());
    assert!(
        state.persist_error().is_none(),
        "{:?}",
        state.persist_error()
    );
    assert_eq!(state.into_output(), 21);
    assert_eq!(TARGET_RUNS.load(Ordering::SeqCst), 1);
    assert!(
        stall < STALL,
        "the executor stalled for {stall:?} while the target was written"
    );
    // A hit: read from the store, the body does not run.
    let (state, stall) = beside_a_ticker(|| targeted::run(7));
    assert_eq!(state.kind(), StateKind::Cached, "{}", state.message());
    assert_eq!(state.into_output(), 21);
    assert_eq!(TARGET_RUNS.load(Ordering::SeqCst), 1);
    assert!(
        stall < STALL,
        "the executor stalled for {stall:?} while the target was read"
    );
}

#[test]
fn persisted_cache_records_are_read_and_written_without_blocking_the_executor() {
    let (state, stall) = beside_a_ticker(|| cached::run(5));
    assert_eq!(state.kind(), StateKind::Success, "{}", state.message());
    assert!(
        state.persist_error().is_none(),
        "{:?}",
        state.persist_error()
    );
    assert!(
        stall < STALL,
        "the executor stalled for {stall:?} while the record was written"
    );
    // Another process would find the record: here, a cache of its own, as a fresh
    // process has.
    let fresh = taskcache::OutputCache::new();
    let (state, stall) = beside_a_ticker(|| {
        let ctx = Context::current().with_cache(Arc::clone(&fresh));
        ctx.scope_async(cached::run(5))
    });
    assert_eq!(state.kind(), StateKind::Cached, "{}", state.message());
    assert_eq!(state.into_output(), vec![5u8; 100]);
    assert_eq!(CACHED_RUNS.load(Ordering::SeqCst), 1);
    assert!(
        stall < STALL,
        "the executor stalled for {stall:?} while the record was read"
    );
}

#[test]
fn an_async_task_with_a_store_runs_on_an_executor_that_is_not_tokio() {
    let first = pollster::block_on(on_another_executor(4));
    let second = pollster::block_on(on_another_executor::run(4));
    assert_eq!(first, "value 4");
    assert_eq!(second.kind(), StateKind::Cached, "{}", second.message());
    assert_eq!(second.into_output(), "value 4");
    assert_eq!(OTHER_EXECUTOR_RUNS.load(Ordering::SeqCst), 1);
}
