//! The seed's templated target in Rust: data stored by the day of the week the flow
//! runs on. Placeholders read the context (`date`, `today`, `task_name`, …), the flow's
//! parameters and the task's own arguments; `{name}` and `<name>` both work.
//!
//! ```python
//! @task(target="{date:%A}/{task_name}.txt", checkpoint=True, result=LocalResult(dir="~/.prefect"))
//! def func_task():
//!     return 99
//! ```
//!
//! Run it with `cargo run --example templated_target`.

use taskcache::prelude::*;
use taskcache::results::LocalResult;

/// Where this example keeps its files: under `target/`, so that running it leaves your
/// home alone. A program of your own would write `LocalResult::new("~/.taskcache")`.
const RESULTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/taskcache-examples");

#[task(target = "{date:%A}/{task_name}.txt", checkpoint, result = LocalResult::new(RESULTS))]
fn func_task() -> i32 {
    println!("  func_task body runs");
    99
}

/// A target can name the task's arguments too, in the design card's angle brackets.
#[task(target = "<today>/report-<region>.bin", checkpoint, result = LocalResult::new(RESULTS))]
fn weekly_report(region: String) -> Vec<String> {
    println!("  weekly_report body runs for {region}");
    vec![format!("{region}: all good")]
}

fn main() {
    let state = func_task::run();
    println!(
        "{state} (target {:?})",
        state.location().map(|l| l.to_string())
    );
    let state = weekly_report::run("emea".to_string());
    println!(
        "{state} (target {:?})",
        state.location().map(|l| l.to_string())
    );
}
