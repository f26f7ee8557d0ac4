//! A flow run that picks up where it left off after its process died.
//!
//! The seed: "when combined with a compatible state persistence layer ... flows can pick
//! up exactly where they left off if the in-memory cache is lost." Here the layer is an
//! embedded SQLite file: every task run's state is committed as it changes, so a
//! process killed mid-run loses nothing that was committed.
//!
//! ```sh
//! cargo run --example resume_after_crash
//! ```
//!
//! The example starts itself again as a child process, kills it with SIGKILL part-way
//! through the flow, and then resumes the same flow run: the steps the child finished
//! are replayed from their checkpointed results, and only the rest run.

use std::path::{Path, PathBuf};
use std::time::Duration;
use taskcache::prelude::*;
use taskcache::state_store::{SqliteStateStore, StateStore};

/// Where the example keeps its files: under `target/`.
fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/taskcache-examples/resume")
}

#[task(checkpoint, result = LocalResult::new(dir().join("results")))]
fn step(i: u32, acc: u64) -> u64 {
    println!("  step {i} runs");
    std::thread::sleep(Duration::from_millis(150));
    acc * 3 + u64::from(i)
}

fn pipeline() -> u64 {
    (0..10).fold(1, |acc, i| step(i, acc))
}

fn run(run_id: &str) -> FlowRun<u64> {
    Flow::new("pipeline")
        .state_file(dir().join("runs.db"))
        .run_id(run_id)
        .run(pipeline)
}

fn main() {
    if let Ok(run_id) = std::env::var("RESUME_EXAMPLE_CHILD") {
        run(&run_id);
        return;
    }
    let _ = std::fs::remove_dir_all(dir());
    std::fs::create_dir_all(dir()).unwrap();
    let run_id = uuid_like();
    println!("the first attempt, killed after about 0.8 s:");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("RESUME_EXAMPLE_CHILD", &run_id)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    child.kill().unwrap();
    child.wait().unwrap();

    let store = SqliteStateStore::open(dir().join("runs.db")).unwrap();
    let recorded = store.task_runs(&run_id).unwrap();
    println!(
        "the state store holds {} task runs of {run_id}:",
        recorded.len()
    );
    for t in &recorded {
        println!("  #{} {} {}", t.index, t.task, t.state.as_str());
    }

    println!("the resumed run:");
    // `run(&run_id)` again would do the same: a run id the store knows is resumed.
    let resumed = taskcache::resume(&run_id)
        .state_file(dir().join("runs.db"))
        .run(|| Flow::new("pipeline").run(pipeline));
    for t in resumed.task_runs() {
        println!("  {} {:?}: {}", t.task_name, t.kind, t.message);
    }
    println!("output: {:?}", resumed.state().value());
    assert_eq!(
        resumed.into_output(),
        (0..10).fold(1u64, |acc, i| acc * 3 + i)
    );
}

/// A run id for this example run.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("example-{nanos}")
}
