//! The seed's "Output Caching based on a file target" example in Rust: the task runs
//! only when its target file does not exist yet, as a Make rule would.
//!
//! ```python
//! @task(target="func_task_target.txt", checkpoint=True, result=LocalResult(dir="~/.prefect"))
//! def func_task():
//!     return 99
//! ```
//!
//! Run it twice with `cargo run --example target_caching`: the second process finds
//! the target and does not run the body.

use taskcache::prelude::*;
use taskcache::results::LocalResult;

/// Where this example keeps its files: under `target/`, so that running it leaves your
/// home alone. A program of your own would write `LocalResult::new("~/.taskcache")`.
const RESULTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/taskcache-examples");

#[task(target = "func_task_target.txt", checkpoint, result = LocalResult::new(RESULTS))]
fn func_task() -> i32 {
    println!("  func_task body runs");
    99
}

fn main() {
    let state = func_task::run();
    println!("{state}");
    println!("value: {}", state.into_output());
}
