//! `async fn` tasks and flows behave like their blocking twins.

use std::sync::atomic::{AtomicU32, Ordering};
use taskcache::prelude::*;
use taskcache::OutputCache;

static RUNS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs)]
async fn double(x: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    x * 2
}

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 2, retry_delay = "10ms")]
async fn flaky(name: String) -> Result<String, String> {
    let attempt = taskcache::context::current().task_run_count();
    ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    if attempt < 2 {
        Err(format!("{name} not yet"))
    } else {
        Ok(format!("{name} at attempt {attempt}"))
    }
}

#[flow]
async fn pipeline(x: u64) -> u64 {
    assert_eq!(taskcache::context::current().flow_name(), Some("pipeline"));
    double(x).await + double(x).await
}

#[test]
fn async_tasks_cache_retry_and_report() {
    Context::current().with_cache(OutputCache::new()).scope(|| {
        pollster::block_on(async {
            assert_eq!(double(4).await, 8);
            assert!(double::run(4).await.is_cached());
            assert_eq!(RUNS.load(Ordering::SeqCst), 1);

            let state = flaky::run("job".into()).await;
            assert_eq!(state.into_output().unwrap(), "job at attempt 2");
            assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 2);

            let run = pipeline::run(5).await;
            let kinds: Vec<StateKind> = run.task_runs().iter().map(|r| r.kind).collect();
            assert_eq!(kinds, [StateKind::Success, StateKind::Cached]);
            assert_eq!(run.into_output(), 20);
        })
    });
}

static SCOPED_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h")]
async fn today_in_scope() -> String {
    SCOPED_RUNS.fetch_add(1, Ordering::SeqCst);
    taskcache::context::current().today()
}

#[test]
fn a_context_scopes_a_future_across_its_awaits() {
    let monday = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 11, 23, 9, 0, 0).unwrap();
    let first = Context::current()
        .with_cache(OutputCache::new())
        .with_date(monday);
    let value = pollster::block_on(first.scope_async(async {
        // A yield between polls: the context is installed again on the next one.
        YieldOnce(false).await;
        today_in_scope().await
    }));
    assert_eq!(value, "2026-11-23");
    // Another isolated cache: the output cached above is not seen.
    let again = pollster::block_on(
        Context::current()
            .with_cache(OutputCache::new())
            .scope_async(today_in_scope::run()),
    );
    assert!(!again.is_cached());
    assert_eq!(SCOPED_RUNS.load(Ordering::SeqCst), 2);
}

/// Pending once, then ready: forces a second poll.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

#[task]
fn in_thread(x: u64) -> u64 {
    x + 1
}

#[test]
fn tasks_in_a_thread_spawned_with_the_context_report_to_the_flow() {
    let run = Flow::new("threads").run(|| {
        let handles: Vec<_> = (0..3)
            .map(|i| taskcache::context::spawn(move || in_thread(i)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(
        run.task_runs().len(),
        3,
        "each task in a spawned thread reported"
    );
    assert_eq!(run.into_output(), 6);
}
