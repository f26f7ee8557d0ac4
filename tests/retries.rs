//! Retries with input caching, and panics and `Err` as failures.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use taskcache::prelude::*;

/// Not `Clone`: a retry must get it back from the input cache.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Request {
    url: String,
    headers: Vec<(String, String)>,
}

static SEEN: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

#[task(max_retries = 3, retry_delay = "20ms")]
fn fetch(request: Request, attempts_to_fail: &u32) -> Result<String, String> {
    let attempt = taskcache::context::current().task_run_count();
    SEEN.lock().unwrap().push((attempt, request.url.clone()));
    if attempt <= *attempts_to_fail {
        Err(format!("attempt {attempt}: connection reset"))
    } else {
        Ok(format!(
            "{} with {} headers",
            request.url,
            request.headers.len()
        ))
    }
}

#[test]
fn a_retry_runs_with_the_cached_inputs() {
    let request = Request {
        url: "https://example.com/a".into(),
        headers: vec![("accept".into(), "text/csv".into())],
    };
    let started = Instant::now();
    let state = fetch::run(request, &2);
    assert!(
        started.elapsed().as_millis() >= 40,
        "two retry delays of 20ms"
    );
    assert_eq!(state.kind(), StateKind::Success);
    assert_eq!(state.run_count(), 3);
    let kinds: Vec<StateKind> = state.history().iter().map(|r| r.kind).collect();
    use StateKind::*;
    assert_eq!(
        kinds,
        [Running, Retrying, Running, Retrying, Running, Success]
    );
    assert!(
        state.history()[1].message.contains("Attempt 1 of 4"),
        "{}",
        state.history()[1].message
    );
    assert_eq!(
        state.into_output().unwrap(),
        "https://example.com/a with 1 headers"
    );
    let seen: Vec<(u32, String)> = SEEN
        .lock()
        .unwrap()
        .drain(..)
        .filter(|(_, u)| u.ends_with("/a"))
        .collect();
    assert_eq!(
        seen,
        [1, 2, 3].map(|n| (n, "https://example.com/a".to_string())),
        "every attempt saw the same request, and task_run_count counted attempts"
    );
}

#[test]
fn the_err_is_returned_once_retries_are_spent() {
    let request = Request {
        url: "https://example.com/b".into(),
        headers: vec![],
    };
    assert_eq!(
        fetch(request, &10),
        Err("attempt 4: connection reset".to_string())
    );
    let state = fetch::run(
        Request {
            url: "https://example.com/b".into(),
            headers: vec![],
        },
        &10,
    );
    assert!(state.is_failed());
    assert_eq!(state.run_count(), 4);
    assert!(
        state.message().contains("failed after 4 attempts"),
        "{}",
        state.message()
    );
}

static PANICS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 1, retry_delay = "0s")]
fn panicky(x: u32) -> u32 {
    if PANICS.fetch_add(1, Ordering::SeqCst) < 10 {
        panic!("boom {x}");
    }
    x
}

#[test]
fn a_panic_is_a_failure_and_is_raised_again() {
    let state = panicky::run(4);
    assert!(state.is_failed());
    assert_eq!(state.run_count(), 2);
    assert!(state.message().contains("boom 4"), "{}", state.message());
    assert!(matches!(
        state.failure(),
        Some(taskcache::Failure::Panic(_))
    ));
    let caught = std::panic::catch_unwind(|| panicky(5)).expect_err("panics again");
    assert_eq!(
        caught.downcast_ref::<String>().map(String::as_str),
        Some("boom 5")
    );
}

static PLAIN_RUNS: AtomicU32 = AtomicU32::new(0);

#[task]
fn no_retries(x: u32) -> Result<u32, std::io::Error> {
    PLAIN_RUNS.fetch_add(1, Ordering::SeqCst);
    Err(std::io::Error::other(format!("disk {x} gone")))
}

#[test]
fn without_retries_a_failure_is_final_at_once() {
    let err = no_retries(3).unwrap_err();
    assert_eq!(err.to_string(), "disk 3 gone");
    assert_eq!(PLAIN_RUNS.load(Ordering::SeqCst), 1);
}
