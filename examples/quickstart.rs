//! A first tour of taskcache: output caching, validators, a shared cache key,
//! retries with cached inputs, and a flow with parameters.
//!
//! Run it with `cargo run --example quickstart`.

use std::sync::atomic::{AtomicU32, Ordering};
use taskcache::prelude::*;

/// Cached for an hour, but only reused for the same inputs.
#[task(cache_for = "1h", cache_validator = all_inputs)]
fn add(x: i64, y: i64) -> i64 {
    println!("    (add body runs for {x} + {y})");
    x + y
}

/// Reused whenever `x` and `y` match, whatever `as_string` is.
#[task(cache_for = "1d", cache_validator = partial_inputs_only(x, y))]
fn add_fmt(x: i64, y: i64, as_string: bool) -> String {
    println!("    (add_fmt body runs)");
    if as_string {
        format!("{x} + {y} = {}", x + y)
    } else {
        (x + y).to_string()
    }
}

/// Two tasks sharing one cache under the key "prices".
#[task(cache_for = "1h", cache_key = "prices")]
fn prices() -> Vec<f64> {
    println!("    (prices body runs: an expensive download)");
    vec![101.5, 99.25, 100.0]
}

#[task(cache_for = "1h", cache_key = "prices")]
fn prices_again() -> Vec<f64> {
    println!("    (prices_again body runs)");
    vec![]
}

#[derive(Debug)]
struct FetchError(String);

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Fails twice, then succeeds: each retry gets exactly the same `url`, without `Clone`.
#[task(max_retries = 3, retry_delay = "50ms")]
fn fetch(url: String) -> Result<String, FetchError> {
    let attempt = taskcache::context::current().task_run_count();
    ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    println!("    (fetch attempt {attempt} for {url})");
    if attempt < 3 {
        Err(FetchError(format!("{url}: connection reset")))
    } else {
        Ok(format!("contents of {url}"))
    }
}

/// A flow: its arguments are its parameters.
#[flow]
fn daily(nrows: u32, runtime: String) -> i64 {
    let ctx = taskcache::context::current();
    println!(
        "    flow {} (run {}) with nrows={nrows} runtime={runtime}",
        ctx.flow_name().unwrap_or("?"),
        ctx.flow_run_id().unwrap_or("?")
    );
    add(i64::from(nrows), 1) + add(i64::from(nrows), 1)
}

fn main() {
    println!("add(1, 2) twice: the second call is served from the cache");
    println!("  = {}", add(1, 2));
    println!("  = {}", add(1, 2));
    let state = add::run(1, 2);
    println!("  add::run(1, 2) -> {state}");

    println!("add_fmt ignores `as_string` when validating");
    println!("  = {}", add_fmt(1, 2, true));
    println!("  = {}", add_fmt(1, 2, false));

    println!("prices and prices_again share the cache key \"prices\"");
    println!("  = {:?}", prices());
    println!("  = {:?}", prices_again());

    println!("fetch fails twice and is retried with its cached input");
    let state = fetch::run("https://example.com/data.csv".to_string());
    for record in state.history() {
        println!("  {:?}: {}", record.kind, record.message);
    }
    println!("  body ran {} times", ATTEMPTS.load(Ordering::SeqCst));

    println!("a flow run reports every task run's final state");
    let run = daily::run(10, "fast".to_string());
    for report in run.task_runs() {
        println!("  {} -> {:?}", report.task_name, report.kind);
    }
    println!("  output: {}", run.into_output());
}
