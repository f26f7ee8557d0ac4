//! The seed's "Persisting Output" example in Rust: checkpointing a task's return value
//! to a `LocalResult`.
//!
//! ```python
//! class MyTask(Task):
//!     def run(self):
//!         return 42
//!
//! class_task = MyTask(checkpoint=True, result=LocalResult(dir="~/.prefect"))
//!
//! @task(checkpoint=True, result=LocalResult(dir="~/.prefect"))
//! def func_task():
//!     return 99
//! ```
//!
//! Unlike Prefect Core, whose global `flows.checkpointing` setting is off by default
//! and silently ignores `checkpoint=True`, a task that says `checkpoint` is checkpointed
//! unless `TASKCACHE_CHECKPOINTING=false` turns persistence off for everything.
//!
//! Run it with `cargo run --example persisting_output`.

use taskcache::prelude::*;
use taskcache::results::LocalResult;

/// Where this example keeps its files: under `target/`, so that running it leaves your
/// home alone. A program of your own would write `LocalResult::new("~/.taskcache")`.
const RESULTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/taskcache-examples");

// Rust has no task classes: a task is a function, whatever produced its body.
#[task(checkpoint, result = LocalResult::new(RESULTS))]
fn class_task() -> i32 {
    42
}

#[task(checkpoint, result = LocalResult::new(RESULTS))]
fn func_task() -> i32 {
    99
}

fn main() {
    for state in [class_task::run(), func_task::run()] {
        println!(
            "{state}; value {:?} written to {}",
            state.value(),
            state
                .location()
                .map_or_else(|| "nowhere".to_string(), |l| format!("{RESULTS}/{l}"))
        );
    }
}
