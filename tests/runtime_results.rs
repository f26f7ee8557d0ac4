//! A result chosen at run time: `Context::with_result` puts a backend in place of every
//! task's own `result` for a scope, whatever the tasks' output types.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use taskcache::prelude::*;
use taskcache::results::Location;
use taskcache::OutputCache;

fn attribute_dir() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| tempfile::tempdir().unwrap().keep())
        .join("attribute")
}

fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

static REPORTS: AtomicU32 = AtomicU32::new(0);

#[task(checkpoint, target = "reports/{region}.bin",
       result = LocalResult::new(attribute_dir()))]
fn report(region: String) -> Vec<String> {
    REPORTS.fetch_add(1, Ordering::SeqCst);
    vec![format!("{region}: ok")]
}

#[task(checkpoint, result = LocalResult::new(attribute_dir()).with_location("totals/{n}.bin"))]
fn total(n: u64) -> u64 {
    let _ = report(format!("r{n}"));
    n * 10
}

#[test]
fn a_scoped_result_takes_the_place_of_every_tasks_own() {
    let memory = MemoryResult::new();
    let dir = tempfile::tempdir().unwrap();
    // Into memory: nothing reaches the attribute's directory, and each task keeps its
    // target and location template.
    let state = Context::current()
        .with_cache(OutputCache::new())
        .with_result(memory.clone())
        .scope(|| total::run(3));
    assert_eq!(state.location().unwrap().as_str(), "totals/3.bin");
    assert_eq!(
        files(&attribute_dir()),
        0,
        "the task's own directory is untouched"
    );
    let at = Location::new("totals/3.bin").unwrap();
    assert_eq!(memory.read::<u64>(&at).unwrap(), 30);
    // The nested task's target went to memory too, as a `Vec<String>`: one backend
    // serves outputs of every type.
    let target = Location::new("reports/r3.bin").unwrap();
    assert_eq!(memory.read::<Vec<String>>(&target).unwrap(), ["r3: ok"]);
    // And serves the target: a hit, the body does not run again.
    let runs = REPORTS.load(Ordering::SeqCst);
    let again = Context::current()
        .with_result(memory.clone())
        .scope(|| report::run("r3".into()));
    assert!(again.is_cached());
    assert_eq!(REPORTS.load(Ordering::SeqCst), runs);

    // Into a test's own directory.
    let state = Context::current()
        .with_result(LocalResult::new(dir.path()))
        .scope(|| report::run("eu".into()));
    assert_eq!(state.location().unwrap().as_str(), "reports/eu.bin");
    assert!(dir.path().join("reports/eu.bin").exists());
    assert_eq!(files(&attribute_dir()), 0);

    // Outside the scope, the task's own result again.
    assert!(report::run("us".into()).is_successful());
    assert!(attribute_dir().join("reports/us.bin").exists());
}
