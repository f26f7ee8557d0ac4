//! Tasks as values (`Task` + `TaskBuilder`): the seed's class-based task, settings read
//! from a configuration file, and the same checks `#[task(...)]` makes at compile time.

use serde::Deserialize;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use taskcache::builder::fails_on_err;
use taskcache::prelude::*;
use taskcache::{BuildError, CacheValidator, OutputCache, Task, TaskBuilder};

/// Prefect's `class MyTask(Task): def run(self): return 42`.
struct MyTask {
    runs: AtomicU32,
}

impl Task for MyTask {
    type Input = ();
    type Output = i32;
    fn run(&self, (): ()) -> i32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        42
    }
}

#[test]
fn a_class_based_task_is_configured_when_it_is_built() {
    // class_task = MyTask(checkpoint=True, result=LocalResult(dir="~/.prefect"))
    let dir = tempfile::tempdir().unwrap();
    let task = TaskBuilder::new(
        "class_task",
        MyTask {
            runs: AtomicU32::new(0),
        },
    )
    .checkpoint(true)
    .result(LocalResult::new(dir.path()))
    .target("{task_name}.bin")
    .build()
    .unwrap();
    let state = task.run(());
    assert_eq!(state.value(), Some(&42));
    assert_eq!(state.location().unwrap().as_str(), "class_task.bin");
    let stored: i32 = LocalResult::new(dir.path())
        .read(state.location().unwrap())
        .unwrap();
    assert_eq!(stored, 42);
    // The target exists now: served from it, the body does not run again.
    assert!(task.run(()).is_cached());
    assert_eq!(task.task().runs.load(Ordering::SeqCst), 1);
}

/// Settings a program reads from a configuration file.
#[derive(Deserialize)]
struct Settings {
    name: String,
    cache_for_secs: u64,
    max_retries: u32,
}

struct Fetch {
    attempts: AtomicU32,
}

impl Task for Fetch {
    type Input = (String, u32);
    type Output = Result<String, String>;
    fn run(&self, (region, day): (String, u32)) -> Result<String, String> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(format!("{region} is not ready"))
        } else {
            Ok(format!("{region}/{day}"))
        }
    }
    fn failure(output: &Self::Output) -> Option<String> {
        fails_on_err(output)
    }
}

#[test]
fn settings_from_a_configuration_file() {
    let config = r#"{ "name": "fetch", "cache_for_secs": 3600, "max_retries": 2 }"#;
    let settings: Settings = serde_json::from_str(config).unwrap();
    let task = TaskBuilder::new(
        settings.name,
        Fetch {
            attempts: AtomicU32::new(0),
        },
    )
    .cache_for(Duration::from_secs(settings.cache_for_secs))
    .cache_validator(CacheValidator::AllInputs)
    .retries(settings.max_retries, Duration::ZERO)
    .build()
    .unwrap();
    Context::current().with_cache(OutputCache::new()).scope(|| {
        // The first attempt fails; the retry runs with the same input.
        let state = task.run(("eu".into(), 3));
        assert_eq!(state.run_count(), 2);
        assert_eq!(state.value(), Some(&Ok("eu/3".to_string())));
        // Cached for these inputs, not for others.
        assert!(task.run(("eu".into(), 3)).is_cached());
        assert!(!task.run(("us".into(), 3)).is_cached());
        assert_eq!(task.task().attempts.load(Ordering::SeqCst), 3);
        assert_eq!(
            taskcache::context::current().cache().len_of("fetch"),
            2,
            "stored under the task's name"
        );
    });
}

struct Echo;

impl Task for Echo {
    type Input = u64;
    type Output = u64;
    fn run(&self, x: u64) -> u64 {
        x
    }
}

#[test]
fn a_target_names_the_input() {
    let memory = MemoryResult::new();
    let task = TaskBuilder::new("echo", Echo)
        .result(memory.clone())
        .checkpoint(true)
        .target("echo/{input}.bin")
        .build()
        .unwrap();
    assert_eq!(task.run(7).location().unwrap().as_str(), "echo/7.bin");
    assert!(task.run(7).is_cached());
    assert!(!task.run(8).is_cached());
}

#[test]
fn mistakes_are_refused_when_built() {
    let message = |e: BuildError| e.to_string();
    let e = TaskBuilder::new("t", Echo)
        .target("x.bin")
        .build()
        .unwrap_err();
    assert!(message(e).contains("`target` has no effect without `result`"));
    let e = TaskBuilder::new("t", Echo)
        .cache_validator(CacheValidator::AllInputs)
        .build()
        .unwrap_err();
    assert!(message(e).contains("`cache_validator` has no effect without `cache_for`"));
    let e = TaskBuilder::new("t", Echo)
        .cache_for(Duration::from_secs(60))
        .cache_validator(CacheValidator::PartialInputsOnly(&["x"]))
        .build()
        .unwrap_err();
    assert!(message(e).contains("names `x`"));
    let e = TaskBuilder::new("t", Echo)
        .cache_for(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(message(e).contains("longer than zero"));
    let e = TaskBuilder::new("t", Echo)
        .result(MemoryResult::new())
        .target("{date:%Q}.bin")
        .build()
        .unwrap_err();
    let text = message(e);
    assert!(text.contains("malformed"), "{text}");
    let e = TaskBuilder::new("t", Echo)
        .retries(1, Duration::from_secs(u64::MAX))
        .build()
        .unwrap_err();
    assert!(message(e).contains("100000 years"));
}
