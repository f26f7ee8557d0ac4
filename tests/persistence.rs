//! Persisting output: checkpoints, target files (also across processes), templates,
//! damaged files, the checkpointing switch, and output caches that outlive the process.

use chrono::{TimeZone, Utc};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use taskcache::prelude::*;
use taskcache::results::LocalResult;
use taskcache::OutputCache;

mod common;

use common::{child, dir, files_under, run_child};

static CHECKPOINT_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(checkpoint, result = LocalResult::new(dir("checkpointed")))]
fn checkpointed(n: u32) -> Vec<String> {
    CHECKPOINT_RUNS.fetch_add(1, Ordering::SeqCst);
    (0..n).map(|i| format!("row {i}")).collect()
}

#[test]
fn a_checkpointed_result_is_read_back_by_another_process() {
    if let Some(location) = child() {
        let backend = LocalResult::new(dir("checkpointed"));
        let location = taskcache::results::Location::new(location).unwrap();
        let value: Vec<String> =
            taskcache::results::ResultBackendExt::read(&backend, &location).unwrap();
        println!("read={}", value.join(","));
        return;
    }
    let state = checkpointed::run(3);
    assert_eq!(state.kind(), StateKind::Success);
    assert_eq!(state.persist_error(), None);
    let location = state.location().expect("checkpointed").to_string();
    assert_eq!(files_under(&dir("checkpointed")).len(), 1);
    let out = run_child(
        "a_checkpointed_result_is_read_back_by_another_process",
        &location,
    );
    assert!(out.contains("read=row 0,row 1,row 2"), "{out}");
}

#[task(checkpoint, result = LocalResult::new(dir("switch")))]
fn switched() -> u32 {
    5
}

#[task(result = LocalResult::new(dir("switch_unset")))]
fn result_without_checkpoint() -> u32 {
    6
}

#[task(checkpoint = false, result = LocalResult::new(dir("switch_opt_out")))]
fn opted_out() -> u32 {
    7
}

#[test]
fn the_checkpointing_switch() {
    let written = |d: &str| files_under(&dir(d)).len();
    // Off: nothing is written, whatever the task says.
    Context::current().with_checkpointing(false).scope(|| {
        assert_eq!(switched::run().location(), None);
    });
    assert_eq!(written("switch"), 0);
    // Unset: the task's own `checkpoint` decides.
    Context::current().scope(|| {
        if taskcache::checkpointing().is_none() {
            assert!(switched::run().location().is_some());
            assert!(result_without_checkpoint::run().location().is_none());
        }
    });
    // On: every task with a result, unless it says `checkpoint = false`.
    Context::current().with_checkpointing(true).scope(|| {
        assert!(result_without_checkpoint::run().location().is_some());
        assert!(opted_out::run().location().is_none());
    });
    assert_eq!(written("switch_unset"), 1);
    assert_eq!(written("switch_opt_out"), 0);
}

#[test]
fn the_environment_variable_turns_persistence_off() {
    if child().is_some() {
        let state = switched::run();
        println!("location={:?}", state.location().map(|l| l.to_string()));
        return;
    }
    let root = Path::new(&dir("x")).parent().unwrap().to_path_buf();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_environment_variable_turns_persistence_off",
            "--nocapture",
        ])
        .env("TASKCACHE_TEST_ROOT", root)
        .env("TASKCACHE_TEST_CHILD", "1")
        .env("TASKCACHE_CHECKPOINTING", "false")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("location=None"), "{out}");
}

static TARGET_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(target = "func_task_target.bin", checkpoint, result = LocalResult::new(dir("target")))]
fn func_task() -> i32 {
    TARGET_RUNS.fetch_add(1, Ordering::SeqCst);
    99
}

#[test]
fn a_target_hit_across_two_processes() {
    if child().is_some() {
        let state = func_task::run();
        println!(
            "kind={:?} runs={}",
            state.kind(),
            TARGET_RUNS.load(Ordering::SeqCst)
        );
        return;
    }
    let first = run_child("a_target_hit_across_two_processes", "1");
    assert!(first.contains("kind=Success runs=1"), "{first}");
    let second = run_child("a_target_hit_across_two_processes", "1");
    assert!(
        second.contains("kind=Cached runs=0"),
        "the body did not run: {second}"
    );
    let state = func_task::run();
    assert!(state.is_cached());
    assert!(
        state.message().contains("func_task_target.bin"),
        "{}",
        state.message()
    );
    assert_eq!(state.cached().unwrap().expiration, None);
    assert_eq!(state.into_output(), 99);
    assert_eq!(TARGET_RUNS.load(Ordering::SeqCst), 0);
}

static RACE_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(target = "race.bin", checkpoint, result = LocalResult::new(dir("race")))]
fn raced() -> String {
    RACE_RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(300));
    "computed once".to_string()
}

#[test]
fn two_processes_racing_on_one_target_run_the_body_once() {
    if child().is_some() {
        let state = raced::run();
        println!("kind={:?} value={}", state.kind(), state.value().unwrap());
        return;
    }
    let root = Path::new(&dir("x")).parent().unwrap().to_path_buf();
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "two_processes_racing_on_one_target_run_the_body_once",
                "--nocapture",
            ])
            .env("TASKCACHE_TEST_ROOT", &root)
            .env("TASKCACHE_TEST_CHILD", "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs: Vec<String> = [a, b]
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned())
        .collect();
    let kinds: Vec<&str> = outs
        .iter()
        .map(|o| {
            if o.contains("kind=Success") {
                "Success"
            } else if o.contains("kind=Cached") {
                "Cached"
            } else {
                "?"
            }
        })
        .collect();
    assert!(
        kinds.contains(&"Success") && kinds.contains(&"Cached"),
        "{outs:?}"
    );
    assert!(
        outs.iter().all(|o| o.contains("value=computed once")),
        "{outs:?}"
    );
}

#[task(
    target = "{date:%A}/{today}/{yesterday}/{tomorrow}/{today_nodash}-{yesterday_nodash}-{tomorrow_nodash}/<flow_name>/{task_name}-{task_full_name}-{task_run_count}-{map_index}-{region}-{nrows}.bin",
    checkpoint,
    result = LocalResult::new(dir("templated"))
)]
fn templated(region: String) -> u32 {
    region.len() as u32
}

#[flow]
fn weekly(nrows: u32) -> taskcache::State<u32> {
    let _ = nrows;
    templated::run("emea".to_string())
}

#[test]
fn every_context_placeholder_with_a_pinned_date() {
    let date = Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 0).unwrap(); // a Monday
    let state = Context::current()
        .with_date(date)
        .with_map_index(3)
        .scope(|| weekly(12));
    assert_eq!(state.persist_error(), None);
    assert_eq!(
        state.location().unwrap().as_str(),
        "Monday/2026-11-23/2026-11-22/2026-11-24/20261123-20261122-20261124/weekly/templated-templated[3]-1-3-emea-12.bin"
    );
    let flow_run_id_template = Context::current().with_date(date).scope(|| weekly::run(1));
    assert!(flow_run_id_template.state().is_successful());
}

#[task(target = "{region}/report.bin", checkpoint, result = LocalResult::new(dir("escape")))]
fn escaping(region: String) -> u32 {
    let _ = region;
    1
}

#[test]
fn renders_that_leave_the_directory_are_rejected() {
    for region in ["../../outside", "/etc", "a\0b"] {
        let state = escaping::run(region.to_string());
        assert!(state.is_failed(), "{region:?}: {state}");
        assert!(state.message().contains("target"), "{}", state.message());
    }
    assert!(files_under(&dir("escape")).is_empty());
    assert!(!Path::new(&dir("escape")).join("../outside").exists());
}

#[task(target = "{regon}/report.bin", checkpoint, result = LocalResult::new(dir("unknown_name")))]
fn misspelled(region: String) -> u32 {
    let _ = region;
    1
}

#[test]
fn an_unknown_template_name_is_an_error_listing_what_is_available() {
    let state = misspelled::run("emea".into());
    assert!(state.is_failed());
    assert!(state.message().contains("regon"), "{}", state.message());
    assert!(
        state.message().contains("today"),
        "lists what is available: {}",
        state.message()
    );
}

static DAMAGE_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(target = "<case>.bin", checkpoint, result = LocalResult::new(dir("damaged")))]
fn damaged(case: String) -> Vec<u64> {
    DAMAGE_RUNS.fetch_add(1, Ordering::SeqCst);
    let _ = case;
    (0..100).collect()
}

#[task(target = "<case>.bin", checkpoint, result = LocalResult::new(dir("damaged")))]
fn other_type(case: String) -> String {
    case
}

#[test]
fn a_damaged_target_is_recomputed_not_trusted() {
    let path = |case: &str| Path::new(&dir("damaged")).join(format!("{case}.bin"));
    type Damage<'a> = (&'a str, &'a dyn Fn(&Path));
    let damage: [Damage; 4] = [
        ("truncated", &|p| {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
        }),
        ("flipped", &|p| {
            let mut bytes = std::fs::read(p).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x40;
            std::fs::write(p, bytes).unwrap();
        }),
        ("huge_length", &|p| {
            // The header's payload length (bytes 20..28) claims 2^62 bytes.
            let mut bytes = std::fs::read(p).unwrap();
            bytes[20..28].copy_from_slice(&(1u64 << 62).to_le_bytes());
            std::fs::write(p, bytes).unwrap();
        }),
        ("garbage", &|p| std::fs::write(p, vec![0xFF; 4096]).unwrap()),
    ];
    for (case, hurt) in damage {
        assert_eq!(damaged(case.into()).len(), 100);
        hurt(&path(case));
        let before = DAMAGE_RUNS.load(Ordering::SeqCst);
        let state = damaged::run(case.into());
        assert_eq!(state.kind(), StateKind::Success, "{case}: recomputed");
        assert_eq!(state.into_output().len(), 100);
        assert_eq!(DAMAGE_RUNS.load(Ordering::SeqCst), before + 1, "{case}");
        assert!(
            damaged::run(case.into()).is_cached(),
            "{case}: overwritten with a good file"
        );
    }
    // A file of another type at the target is a miss, then overwritten.
    assert_eq!(damaged("typed".into()).len(), 100);
    let state = other_type::run("typed".into());
    assert_eq!(state.kind(), StateKind::Success);
    assert_eq!(state.into_output(), "typed");
}

#[task(checkpoint, result = LocalResult::new(format!("{}/not-a-dir/results", dir("unwritable_parent"))))]
fn unwritable() -> u32 {
    42
}

#[test]
fn a_failed_write_is_on_the_state_and_the_value_is_still_returned() {
    // A regular file where a directory should be: fails even for root.
    std::fs::create_dir_all(dir("unwritable_parent")).unwrap();
    std::fs::write(
        Path::new(&dir("unwritable_parent")).join("not-a-dir"),
        b"file",
    )
    .unwrap();
    let state = unwritable::run();
    assert_eq!(state.kind(), StateKind::Success);
    let error = state.persist_error().expect("the write failed");
    assert!(
        error.contains("not-a-dir"),
        "the error names the path: {error}"
    );
    assert!(
        error.contains("unwritable"),
        "the error names the task: {error}"
    );
    assert_eq!(state.into_output(), 42);
    assert_eq!(unwritable(), 42);
}

static CROSS_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new(dir("cross_process_cache")))]
fn expensive(x: u64) -> u64 {
    CROSS_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 1000
}

#[task(cache_for = "1h", cache_key = "shared-across-processes", checkpoint, result = LocalResult::new(dir("cross_process_key")))]
fn shared_a() -> String {
    CROSS_RUNS.fetch_add(1, Ordering::SeqCst);
    "made by a".into()
}

#[task(cache_for = "1h", cache_key = "shared-across-processes", checkpoint, result = LocalResult::new(dir("cross_process_key")))]
fn shared_b() -> String {
    CROSS_RUNS.fetch_add(1, Ordering::SeqCst);
    "made by b".into()
}

#[test]
fn an_output_cache_outlives_the_process() {
    if let Some(step) = child() {
        let out = match step.as_str() {
            "expensive" => format!("{:?}", expensive::run(7).kind()),
            "shared_a" => format!("{:?}", shared_a::run().kind()),
            _ => {
                let s = shared_b::run();
                format!("{:?} {}", s.kind(), s.value().unwrap())
            }
        };
        println!("out={out} runs={}", CROSS_RUNS.load(Ordering::SeqCst));
        return;
    }
    let test = "an_output_cache_outlives_the_process";
    assert!(run_child(test, "expensive").contains("out=Success runs=1"));
    assert!(
        run_child(test, "expensive").contains("out=Cached runs=0"),
        "fresh process, persisted cache"
    );
    // Other inputs miss.
    Context::current().with_cache(OutputCache::new()).scope(|| {
        assert_eq!(expensive::run(8).kind(), StateKind::Success);
        assert_eq!(expensive::run(7).kind(), StateKind::Cached);
    });
    assert!(run_child(test, "shared_a").contains("out=Success runs=1"));
    let b = run_child(test, "shared_b");
    assert!(
        b.contains("out=Cached made by a runs=0"),
        "cache_key shared across processes: {b}"
    );
}

#[test]
fn an_expired_persisted_cache_is_not_used() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
    Context::current()
        .with_cache(OutputCache::new())
        .with_clock(clock.clock())
        .scope(|| {
            assert_eq!(expensive::run(99).kind(), StateKind::Success);
            assert_eq!(expensive::run(99).kind(), StateKind::Cached);
        });
    clock.advance(std::time::Duration::from_secs(3601));
    Context::current()
        .with_cache(OutputCache::new())
        .with_clock(clock.clock())
        .scope(|| assert_eq!(expensive::run(99).kind(), StateKind::Success));
}
