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
