//! A task that waits for a person: `trigger = manual_only`.
//!
//! The seed: input caching applies "when a task has a `manual_only` trigger". The first
//! run of the flow stops at `publish`: its state is `Paused`, its inputs are persisted in
//! the flow run's state store, and nothing after it runs. An approval, here in the same
//! program but possibly in another process days later, resumes the run: `prepare` is
//! replayed from its checkpoint, `publish` runs with the persisted inputs, and the run
//! goes on.
//!
//! ```sh
//! cargo run --example manual_approval
//! ```

use std::path::{Path, PathBuf};
use taskcache::prelude::*;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/taskcache-examples/approval")
}

#[task(checkpoint, result = LocalResult::new(dir().join("results")))]
fn prepare(region: String) -> String {
    println!("  prepare runs");
    format!("the {region} report")
}

#[task(trigger = manual_only)]
fn publish(report: String) -> usize {
    println!("  publish runs with {report:?}");
    report.len()
}

#[task]
fn announce(bytes: usize) -> String {
    format!("published {bytes} bytes")
}

#[flow(state = dir().join("runs.db"))]
fn release(region: String) -> String {
    let report = prepare(region);
    let bytes = publish(report);
    announce(bytes)
}

fn main() {
    let _ = std::fs::remove_dir_all(dir());
    std::fs::create_dir_all(dir()).unwrap();
    println!("first run:");
    let first = release::run("emea".into());
    println!("{}", first.state());
    assert_eq!(first.state().kind(), StateKind::Paused);

    println!("approved:");
    let approved = taskcache::resume(first.run_id())
        .approve("publish")
        .run(|| release::run("emea".into()));
    println!("{} -> {:?}", approved.state(), approved.state().value());
    assert_eq!(approved.into_output(), "published 15 bytes");
}
