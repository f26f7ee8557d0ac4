//! The in-memory cache under its memory budget (issue 12 §3, issue 15 §11), in one run:
//!
//! ```sh
//! cargo bench -p taskcache-bench --bench memory
//! ```
//!
//! A fresh child process makes 5 million distinct `cache_for` calls of a `u64` task,
//! once without a budget that binds (every output kept) and once under a budget of
//! 20 000 entries. Each reports its peak resident memory (VmHWM) above its peak before
//! the calls, and the cache's entries: memory per entry as a user sees it.

use taskcache::prelude::*;
use taskcache_bench::{cpu, field, peak_growth, run_self};

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn many(x: u64) -> u64 {
    x ^ 0x5555
}

const CALLS: u64 = 5_000_000;

fn child(calls: u64) {
    let started = std::time::Instant::now();
    let (growth, ()) = peak_growth(|| {
        for x in 0..calls {
            many(x);
        }
    });
    let (entries, _) = taskcache::OutputCache::global().usage();
    println!(
        "GROWTH {growth} ENTRIES {entries} NANOS {}",
        started.elapsed().as_nanos() / u128::from(calls)
    );
}

fn run(budget: &str, calls: u64) -> (u64, u64, u64) {
    let text = run_self(|c| {
        c.env("MEMORY_BENCH_CHILD", calls.to_string())
            .env("TASKCACHE_MEMORY_BUDGET", budget);
    });
    let field = |name: &str| field(&text, name).unwrap_or_else(|| panic!("no {name} in {text}"));
    (field("GROWTH "), field("ENTRIES "), field("NANOS "))
}

fn main() {
    if let Ok(calls) = std::env::var("MEMORY_BENCH_CHILD") {
        child(calls.parse().unwrap());
        return;
    }
    println!(
        "memory bench: {} ({})",
        cpu(),
        chrono::Utc::now().format("%Y-%m-%d")
    );
    let (all_growth, all_entries, all_ns) = run("5000000,64GiB", CALLS);
    let (budget_growth, budget_entries, budget_ns) = run("20000", CALLS);
    println!();
    println!("| case | peak RSS growth | entries kept | per kept entry | per call |");
    println!("|---|---|---|---|---|");
    println!(
        "| 5 000 000 distinct calls, every output kept | {:.0} MiB | {all_entries} | {} bytes | {all_ns} ns |",
        all_growth as f64 / (1 << 20) as f64,
        all_growth / all_entries.max(1)
    );
    println!(
        "| 5 000 000 distinct calls, budget of 20 000 entries | {:.1} MiB | {budget_entries} | {} bytes | {budget_ns} ns |",
        budget_growth as f64 / (1 << 20) as f64,
        budget_growth / budget_entries.max(1)
    );
}
