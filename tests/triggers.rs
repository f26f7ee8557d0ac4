//! Triggers: `manual_only` tasks that pause their flow run until approved, possibly in
//! another process, and `any_failed` / `always_run`.

mod common;

use common::{append, lines};

use std::path::{Path, PathBuf};
use std::process::Command;
use taskcache::prelude::*;
use taskcache::state_store::{FlowRunState, SqliteStateStore, StateStore, TaskRunState};

#[task(checkpoint, result = LocalResult::new("unused"))]
fn prepare(log: &Path) -> String {
    append(log, "prepare");
    "report".to_owned()
}

/// Waits for approval; `from_pid` is the process that called it first.
#[task(trigger = manual_only)]
fn publish(report: String, from_pid: u32, log: &Path) -> u32 {
    append(log, &format!("publish {report} {from_pid}"));
    from_pid
}

#[task]
fn announce(pid: u32, log: &Path) -> u32 {
    append(log, "announce");
    pid
}

fn release(log: &Path) -> u32 {
    let report = prepare(log);
    // Each process passes its own id: an approved run must get the paused call's.
    let pid = publish(report, std::process::id(), log);
    announce(pid, log)
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap()
}

fn child(step: &str, dir: &Path, run_id: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_manual_only_task_pauses_the_run_and_an_approval_in_another_process_resumes_it",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TASKCACHE_TEST_CHILD", step)
        .env("TC_DIR", dir)
        .env("TC_RUN", run_id)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{step}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_manual_only_task_pauses_the_run_and_an_approval_in_another_process_resumes_it() {
    if let Some(step) = common::child() {
        let dir = PathBuf::from(var("TC_DIR"));
        let ctx = Context::current().with_result(LocalResult::new(dir.join("results")));
        let log = dir.join("log");
        let state = dir.join("runs.db");
        let run = match step.as_str() {
            "first" => ctx.scope(|| {
                Flow::new("release")
                    .state_file(&state)
                    .run_id(var("TC_RUN"))
                    .run(|| release(&log))
            }),
            _ => ctx.scope(|| {
                taskcache::resume(var("TC_RUN"))
                    .approve("publish")
                    .state_file(&state)
                    .run(|| Flow::new("release").run(|| release(&log)))
            }),
        };
        println!("PID {}", std::process::id());
        println!("STATE {:?} {}", run.state().kind(), run.state().message());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let out = child("first", dir.path(), "release-1");
    // (The harness may print its "test … " on the same line.)
    let first_pid: u32 = out
        .lines()
        .find_map(|l| l.split("PID ").nth(1)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no PID in {out}"));
    assert!(out.contains("STATE Paused"), "{out}");
    assert!(
        out.contains(r#"taskcache::resume("release-1").approve("publish")"#),
        "the flow's state says how to go on: {out}"
    );
    // Nothing after the paused task ran.
    assert_eq!(lines(&log), ["prepare"]);
    let store = SqliteStateStore::open(dir.path().join("runs.db")).unwrap();
    let run = store.flow_run("release-1").unwrap().unwrap();
    assert_eq!(run.state, FlowRunState::Paused);
    assert!(
        run.message.contains("`publish` waits for approval"),
        "{}",
        run.message
    );
    let tasks = store.task_runs("release-1").unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[1].task, "publish");
    assert_eq!(tasks[1].state, TaskRunState::Paused);
    assert!(
        tasks[1].inputs.is_some(),
        "the paused call's inputs are persisted"
    );
    // Approved in a second process: `prepare` is replayed, `publish` runs with what
    // the first process passed it, and the run goes on.
    let out = child("approve", dir.path(), "release-1");
    assert!(out.contains("STATE Success"), "{out}");
    assert_eq!(
        lines(&log),
        [
            "prepare".to_owned(),
            format!("publish report {first_pid}"),
            "announce".to_owned()
        ]
    );
    let run = store.flow_run("release-1").unwrap().unwrap();
    assert_eq!(run.state, FlowRunState::Success);
}

#[test]
fn a_resume_without_the_approval_pauses_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let state = dir.path().join("runs.db");
    let ctx = Context::current().with_result(LocalResult::new(dir.path().join("results")));
    let run = ctx.clone().scope(|| {
        Flow::new("release")
            .state_file(&state)
            .run(|| release(&log))
    });
    assert_eq!(run.state().kind(), StateKind::Paused);
    let id = run.run_id().to_owned();
    let again = ctx.scope(|| {
        taskcache::resume(&id)
            .state_file(&state)
            .run(|| Flow::new("release").run(|| release(&log)))
    });
    assert_eq!(again.state().kind(), StateKind::Paused);
    assert_eq!(
        lines(&log),
        ["prepare"],
        "prepare was replayed, publish waits"
    );
}

#[task(trigger = manual_only, checkpoint, target = "approved.bin", result = LocalResult::new("unused"))]
fn approved_once(log: &Path) -> u32 {
    append(log, "approved_once");
    9
}

#[test]
fn a_manual_only_task_whose_target_exists_is_cached_not_paused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let results = LocalResult::new(dir.path().join("results"));
    results
        .write(
            &9u32,
            &taskcache::results::Location::new("approved.bin").unwrap(),
        )
        .unwrap();
    let state = Context::current()
        .with_result(results)
        .scope(|| approved_once::run(&log));
    assert!(state.is_cached(), "{state}");
    assert!(lines(&log).is_empty());
}

#[test]
fn a_manual_only_task_outside_a_flow_is_paused_and_calling_it_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let state = publish::run("r".into(), 1, &log);
    assert_eq!(state.kind(), StateKind::Paused);
    assert!(
        state.message().contains("nothing can approve it"),
        "{}",
        state.message()
    );
    let called = std::panic::catch_unwind(|| publish("r".into(), 1, &log));
    let payload = called.unwrap_err();
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("waits for approval"), "{message}");
    assert!(lines(&log).is_empty());
}

#[task]
fn fails(log: &Path) -> u32 {
    append(log, "fails");
    panic!("boom")
}

#[task(trigger = any_failed)]
fn alert(log: &Path) -> u32 {
    append(log, "alert");
    1
}

#[task(trigger = always_run)]
fn cleanup(log: &Path) -> u32 {
    append(log, "cleanup");
    2
}

#[test]
fn any_failed_runs_only_after_a_failure_and_always_run_always_runs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let run = Flow::new("ok").run(|| (alert::run(&log).kind(), cleanup(&log)));
    let (alert_kind, _) = run.into_output();
    assert_eq!(alert_kind, StateKind::Failed, "no earlier task failed");
    assert_eq!(lines(&log), ["cleanup"]);
    let run = Flow::new("failing").run(|| {
        let _ = std::panic::catch_unwind(|| fails(&log));
        (alert(&log), cleanup(&log))
    });
    assert_eq!(run.into_output(), (1, 2));
    assert_eq!(lines(&log), ["cleanup", "fails", "alert", "cleanup"]);
}
