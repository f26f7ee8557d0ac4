//! The seed's "Output Caching" example in Rust:
//!
//! ```python
//! # this task will be cached for 1 hour
//! task_1 = prefect.Task(cache_for=datetime.timedelta(hours=1))
//!
//! # this task will be cached for 1 hour, but only if the flow is run with the same parameters
//! task_2 = prefect.Task(
//!     cache_for=datetime.timedelta(hours=1),
//!     cache_validator=prefect.engine.cache_validators.all_parameters)
//! ```
//!
//! Run it with `cargo run --example output_caching`.

use taskcache::prelude::*;

// this task will be cached for 1 hour
#[task(cache_for = "1h")]
fn task_1() -> u64 {
    println!("    task_1 runs");
    1
}

// this task will be cached for 1 hour, but only if the flow is run with the same parameters
#[task(cache_for = "1h", cache_validator = all_parameters)]
fn task_2() -> u64 {
    println!("    task_2 runs");
    2
}

#[flow]
fn report(region: String) -> u64 {
    task_1() + task_2()
}

fn main() {
    for region in ["eu", "eu", "us"] {
        println!("flow run with region = {region}");
        let run = report::run(region.to_string());
        for task in run.task_runs() {
            println!("  {:<7} {:?}", task.task_name, task.kind);
        }
    }
}
