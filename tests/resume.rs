//! Flow runs that pick up where they left off: states recorded in an embedded state
//! store, and a resumed run that replays what an earlier attempt committed.

mod common;

use common::{append, lines};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use taskcache::prelude::*;
use taskcache::state_store::{
    FlowRunState, SqliteStateStore, StateStore, StateStoreError, TaskRunState,
};

/// One step of the pipeline: appends its name to the side file, then computes.
#[task(checkpoint, result = LocalResult::new("unused"))]
fn step(i: u64, acc: u64, log: &Path, pause_ms: u64) -> u64 {
    append(log, &format!("step-{i}"));
    std::thread::sleep(Duration::from_millis(pause_ms));
    acc.wrapping_mul(31).wrapping_add(i)
}

/// 20 steps, each fed the one before.
fn pipeline(log: &Path, pause_ms: u64) -> u64 {
    (0..20).fold(7, |acc, i| step(i, acc, log, pause_ms))
}

/// A step without a result: nothing to replay, it runs again.
#[task]
fn unpersisted(log: &Path) -> u32 {
    append(log, "unpersisted");
    5
}

#[task(checkpoint, result = LocalResult::new("unused"))]
fn first(log: &Path) -> u32 {
    append(log, "first");
    1
}

#[task(checkpoint, result = LocalResult::new("unused"))]
fn second(log: &Path) -> u32 {
    append(log, "second");
    2
}

fn uninterrupted() -> u64 {
    (0..20).fold(7u64, |acc, i| acc.wrapping_mul(31).wrapping_add(i))
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap()
}

/// Runs (or resumes) the pipeline's flow run `run_id`, results under `results`.
fn run_pipeline(state: &Path, results: &Path, log: &Path, run_id: &str, pause_ms: u64) -> u64 {
    Context::current()
        .with_result(LocalResult::new(results))
        .scope(|| {
            Flow::new("pipeline")
                .state_file(state)
                .run_id(run_id)
                .run(|| pipeline(log, pause_ms))
        })
        .into_output()
}

#[test]
fn a_run_killed_at_random_moments_resumes_and_runs_each_body_once() {
    if common::child().is_some() {
        let dir = PathBuf::from(var("TC_DIR"));
        run_pipeline(
            &dir.join("runs.db"),
            &dir.join("results"),
            &dir.join("log"),
            &var("TC_RUN"),
            3,
        );
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut killed_mid_body = 0;
    let mut killed_at_all = 0;
    for trial in 0..50u64 {
        let dir = root.path().join(format!("trial-{trial}"));
        std::fs::create_dir_all(&dir).unwrap();
        let run_id = format!("run-{trial}");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_run_killed_at_random_moments_resumes_and_runs_each_body_once",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TASKCACHE_TEST_CHILD", "1")
            .env("TC_DIR", &dir)
            .env("TC_RUN", &run_id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A spread of moments: before the flow starts, during, and after it ends.
        let delay = (trial * 7919 + 13) % 140;
        std::thread::sleep(Duration::from_millis(delay));
        // SIGKILL: nothing of the child's runs after this.
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !status.success() {
            killed_at_all += 1;
        }
        let before = lines(&dir.join("log"));
        let output = run_pipeline(
            &dir.join("runs.db"),
            &dir.join("results"),
            &dir.join("log"),
            &run_id,
            0,
        );
        assert_eq!(output, uninterrupted(), "trial {trial}");
        let after = lines(&dir.join("log"));
        for i in 0..20 {
            let name = format!("step-{i}");
            let runs = after.iter().filter(|l| **l == name).count();
            assert!(
                (1..=2).contains(&runs),
                "trial {trial}: {name} ran {runs} times\nbefore: {before:?}\nafter: {after:?}"
            );
            if runs == 2 {
                killed_mid_body += 1;
                // Only the step that was running when the child died runs twice: the
                // last one the child started.
                assert_eq!(
                    before.last(),
                    Some(&name),
                    "trial {trial}: {name} ran twice but was not the one killed"
                );
            }
        }
    }
    // Each trial has at most one body run twice; say how many there were.
    println!(
        "{killed_at_all} of 50 children killed before they finished; {killed_mid_body} \
         step bodies ran twice (killed mid-body, or before their Success was committed)"
    );
    assert!(
        killed_at_all >= 25,
        "the kills came too late to test anything"
    );
}

#[test]
fn resume_replays_persisted_results_and_reruns_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("runs.db");
    let log = dir.path().join("log");
    let results = dir.path().join("results");
    let ctx = Context::current().with_result(LocalResult::new(&results));
    let flow = |log: &Path| {
        let a = first(log);
        let b = unpersisted(log);
        let c = second(log);
        a + b + c
    };
    let run = ctx
        .clone()
        .scope(|| Flow::new("mixed").state_file(&state).run(|| flow(&log)));
    assert_eq!(run.state().value(), Some(&8));
    let id = run.run_id().to_owned();
    // Listing: the run and its three task runs, as recorded.
    let store = SqliteStateStore::open(&state).unwrap();
    let runs = store.flow_runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].flow.as_str(), runs[0].state),
        ("mixed", FlowRunState::Success)
    );
    assert!(runs[0].ended.is_some());
    let tasks = store.task_runs(&id).unwrap();
    let names: Vec<_> = tasks.iter().map(|t| (t.task.as_str(), t.state)).collect();
    assert_eq!(
        names,
        [
            ("first", TaskRunState::Success),
            ("unpersisted", TaskRunState::Success),
            ("second", TaskRunState::Success)
        ]
    );
    assert!(tasks[0].location.is_some() && tasks[0].result_digest.is_some());
    // Resumed: the persisted results are replayed; the unpersisted task runs again.
    let again = ctx.clone().scope(|| {
        taskcache::resume(&id)
            .state_file(&state)
            .run(|| Flow::new("mixed").run(|| flow(&log)))
    });
    assert_eq!(again.run_id(), id);
    assert_eq!(again.state().value(), Some(&8));
    assert_eq!(
        lines(&log),
        ["first", "unpersisted", "second", "unpersisted"]
    );
    let kinds: Vec<StateKind> = again.task_runs().iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [StateKind::Cached, StateKind::Success, StateKind::Cached]
    );
    // A replayed result that was damaged since is recomputed, never trusted.
    let at = results.join(tasks[2].location.as_ref().unwrap());
    let mut bytes = std::fs::read(&at).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&at, bytes).unwrap();
    let third = ctx.scope(|| {
        taskcache::resume(&id)
            .state_file(&state)
            .run(|| Flow::new("mixed").run(|| flow(&log)))
    });
    assert_eq!(third.state().value(), Some(&8));
    assert_eq!(lines(&log).iter().filter(|l| *l == "second").count(), 2);
}

#[test]
fn a_flow_that_calls_its_tasks_in_another_order_is_never_fed_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("runs.db");
    let log = dir.path().join("log");
    let ctx = Context::current().with_result(LocalResult::new(dir.path().join("results")));
    let run = ctx.clone().scope(|| {
        Flow::new("ordered")
            .state_file(&state)
            .run(|| (first(&log), second(&log)))
    });
    let id = run.run_id().to_owned();
    // Now `second` comes first: its place held `first`'s result, which it must not get.
    let swapped = ctx.scope(|| {
        taskcache::resume(&id)
            .state_file(&state)
            .run(|| Flow::new("ordered").run(|| (second(&log), first(&log))))
    });
    assert_eq!(swapped.into_output(), (2, 1));
    assert_eq!(lines(&log), ["first", "second", "second", "first"]);
}

#[test]
fn resuming_with_a_damaged_or_newer_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let garbage = dir.path().join("garbage.db");
    std::fs::write(
        &garbage,
        b"this is not a database, just some text ".repeat(200),
    )
    .unwrap();
    let run = taskcache::resume("some-run")
        .state_file(&garbage)
        .run(|| Flow::new("f").run(|| first(&log)));
    assert!(run.state().is_failed());
    let message = run.state().message();
    assert!(
        message.contains("garbage.db") && message.contains("damaged"),
        "{message}"
    );
    assert!(lines(&log).is_empty(), "nothing ran");
    // A store from a newer taskcache.
    let newer = dir.path().join("newer.db");
    drop(SqliteStateStore::open(&newer).unwrap());
    // SQLite keeps `user_version` at bytes 60..64 of the file's header, big-endian.
    let mut bytes = std::fs::read(&newer).unwrap();
    assert_eq!(&bytes[..16], b"SQLite format 3\0");
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(&newer, bytes).unwrap();
    match SqliteStateStore::open(&newer) {
        Err(e @ StateStoreError::NewerFormat { found: 99, .. }) => {
            assert!(e.to_string().contains("upgrade taskcache"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A run id that is not in the store.
    let empty = dir.path().join("empty.db");
    let run = taskcache::resume("nope")
        .state_file(&empty)
        .run(|| Flow::new("f").run(|| first(&log)));
    assert!(
        run.state().message().contains("has no such run"),
        "{}",
        run.state().message()
    );
    // Another flow's run, or other parameters.
    let real = Flow::new("f").state_file(&empty).run(|| 1);
    let other = taskcache::resume(real.run_id())
        .state_file(&empty)
        .run(|| Flow::new("g").run(|| 2));
    assert!(
        other.state().message().contains("not of `g`"),
        "{}",
        other.state().message()
    );
}

/// Fails on its first attempt; `from_pid` is the process that called it first.
#[task(max_retries = 1, retry_delay = "1500ms")]
fn flaky(from_pid: u32, log: &Path) -> u32 {
    let attempt = taskcache::context::current().task_run_count();
    append(log, &format!("attempt {attempt} from {from_pid}"));
    assert!(attempt > 1, "the first attempt fails");
    from_pid
}

#[test]
fn a_task_retrying_when_its_process_died_resumes_with_its_inputs_after_its_delay() {
    if common::child().is_some() {
        let dir = PathBuf::from(var("TC_DIR"));
        Flow::new("retrying")
            .state_file(dir.join("runs.db"))
            .run_id("retry-1")
            .run(|| flaky(std::process::id(), &dir.join("log")));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_task_retrying_when_its_process_died_resumes_with_its_inputs_after_its_delay",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TASKCACHE_TEST_CHILD", "1")
        .env("TC_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    // Wait for the Retrying state to be committed, then kill the child in its delay.
    let state = dir.path().join("runs.db");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let retrying = SqliteStateStore::open(&state)
            .and_then(|s| s.task_runs("retry-1"))
            .is_ok_and(|t| t.first().is_some_and(|t| t.state == TaskRunState::Retrying));
        if retrying {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never retried"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let recorded = SqliteStateStore::open(&state)
        .unwrap()
        .task_runs("retry-1")
        .unwrap();
    assert!(recorded[0].inputs.is_some() && recorded[0].next_attempt.is_some());
    child.kill().unwrap();
    child.wait().unwrap();
    let started = std::time::Instant::now();
    let log = dir.path().join("log");
    let run = taskcache::resume("retry-1")
        .state_file(&state)
        .run(|| Flow::new("retrying").run(|| flaky(std::process::id(), &log)));
    // The second attempt ran with the first process's inputs, after the rest of the
    // delay, and it was the last one (one retry).
    assert_eq!(run.into_output(), child_pid);
    assert_eq!(
        lines(&log),
        [
            format!("attempt 1 from {child_pid}"),
            format!("attempt 2 from {child_pid}")
        ]
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_millis(3000), "{waited:?}");
}

#[task(checkpoint, result = LocalResult::new("unused"))]
fn fetch(x: u32, log: &Path) -> u32 {
    append(log, &format!("fetch {x}"));
    x * 10
}

/// Calls a task from its body.
#[task(checkpoint, result = LocalResult::new("unused"))]
fn outer(x: u32, log: &Path) -> u32 {
    append(log, "outer");
    fetch(x, log) + 1
}

#[test]
fn a_replayed_task_s_nested_calls_do_not_shift_the_calls_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("runs.db");
    let log = dir.path().join("log");
    let ctx = Context::current().with_result(LocalResult::new(dir.path().join("results")));
    let flow = |log: &Path| (outer(1, log), fetch(2, log));
    let run = ctx
        .clone()
        .scope(|| Flow::new("nested").state_file(&state).run(|| flow(&log)));
    assert_eq!(run.state().value(), Some(&(11, 20)));
    let id = run.run_id().to_owned();
    // Resumed: `outer` is replayed without running its body, so its nested `fetch(1)`
    // does not happen; `fetch(2)` must get its own result, not `fetch(1)`'s.
    let again = ctx.scope(|| {
        taskcache::resume(&id)
            .state_file(&state)
            .run(|| Flow::new("nested").run(|| flow(&log)))
    });
    assert_eq!(again.into_output(), (11, 20));
    assert_eq!(lines(&log), ["outer", "fetch 1", "fetch 2"], "all replayed");
}
