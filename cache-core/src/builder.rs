//! Tasks as values, configured when they are built: Prefect's class-based tasks
//! (`MyTask(checkpoint=True, result=LocalResult(dir="~/.prefect"))`), and tasks whose
//! settings come from a configuration file.
//!
//! A type implements [`Task`]; a [`TaskBuilder`] gives it the settings `#[task(...)]`
//! takes, checked when it is built, and the [`BuiltTask`] runs through the same runtime
//! as the macro's tasks.
//!
//! ```
//! use taskcache::{BuiltTask, CacheValidator, Task, TaskBuilder};
//! use taskcache::results::MemoryResult;
//! use std::time::Duration;
//!
//! struct Square;
//!
//! impl Task for Square {
//!     type Input = u64;
//!     type Output = u64;
//!     fn run(&self, x: u64) -> u64 {
//!         x * x
//!     }
//! }
//!
//! let square: BuiltTask<Square> = TaskBuilder::new("square", Square)
//!     .cache_for(Duration::from_secs(3600))
//!     .cache_validator(CacheValidator::AllInputs)
//!     .result(MemoryResult::new())
//!     .checkpoint(true)
//!     .target("squares/{input}.bin")
//!     .build()
//!     .unwrap();
//! assert_eq!(square.call(4), 16);
//! assert!(square.run(4).is_cached());
//! ```

use crate::hash::InputHasher;
use crate::persist::PersistOps;
use crate::result::ResultBackend;
use crate::runtime::{CacheableOutput, PersistableOutput, TaskRun};
use crate::state::State;
use crate::task::{CachedValue, TaskSpec};
use crate::template::Template;
use crate::validators::CacheValidator;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A task as a type: what it takes, what it gives, and its body.
///
/// Its one input is hashed for the cache (`cache_validator = all_inputs` compares it),
/// kept encoded for retries, and named `input` in templates and in
/// `CacheValidator::PartialInputsOnly`; a tuple or a struct holds several values.
pub trait Task: Send + Sync + 'static {
    /// What the task takes.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// What the task gives.
    type Output: Send + 'static;

    /// The task's body.
    fn run(&self, input: Self::Input) -> Self::Output;

    /// Whether `output` is a failure, and why (it is then retried as the task's settings
    /// say, and never cached or stored). Every output succeeds unless this says
    /// otherwise; a task returning a `Result` says
    /// `taskcache::builder::fails_on_err(output)`.
    fn failure(output: &Self::Output) -> Option<String> {
        let _ = output;
        None
    }
}

/// The failure of a `Result` output: its `Err`'s text (see [`Task::failure`]).
pub fn fails_on_err<T, E: fmt::Display>(output: &Result<T, E>) -> Option<String> {
    output.as_ref().err().map(ToString::to_string)
}

/// Why a [`TaskBuilder`] cannot build its task: the same mistakes `#[task(...)]` refuses
/// at compile time.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting needs another one.
    #[error("task `{task}`: `{setting}` has no effect without `{needs}`; {fix}")]
    Needs {
        /// The task.
        task: String,
        /// The setting given.
        setting: &'static str,
        /// The one it needs.
        needs: &'static str,
        /// What to write.
        fix: &'static str,
    },
    /// A duration is zero where it must not be, or too long to add to a date.
    #[error("task `{task}`: `{setting}` is {value:?}; {fix}")]
    Duration {
        /// The task.
        task: String,
        /// The setting.
        setting: &'static str,
        /// The duration given.
        value: Duration,
        /// What to write.
        fix: &'static str,
    },
    /// A template does not parse.
    #[error("task `{task}`: its `{setting}` template is malformed: {reason}")]
    Template {
        /// The task.
        task: String,
        /// `target`.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// A partial validator names an input the task does not have.
    #[error(
        "task `{task}`: the validator names `{name}`, but a built task has one input, \
         called `input`; write `CacheValidator::PartialInputsOnly(&[\"input\"])` or \
         `CacheValidator::AllInputs`"
    )]
    UnknownInput {
        /// The task.
        task: String,
        /// The name given.
        name: &'static str,
    },
}

/// A task's result, and the operations on its output type.
type Persisted<T> = (Arc<dyn ResultBackend>, PersistOps<T>);

/// The longest duration accepted, as in `#[task(...)]`: 100 000 years.
const MAX_DURATION: Duration = Duration::from_secs(100_000 * 31_557_600);

/// Configures a [`Task`]: the settings of `#[task(...)]`, given at run time.
pub struct TaskBuilder<K: Task> {
    task: K,
    name: String,
    cache_for: Option<Duration>,
    cached: Option<CachedValue<K::Output>>,
    validator: CacheValidator,
    cache_key: Option<String>,
    retries: Option<(u32, Duration)>,
    result: Option<Persisted<K::Output>>,
    checkpoint: Option<bool>,
    target: Option<String>,
}

impl<K: Task> TaskBuilder<K> {
    /// Configures `task`, called `name` (its `task_name`, and its cache key unless
    /// [`cache_key`](Self::cache_key) says otherwise).
    pub fn new(name: impl Into<String>, task: K) -> Self {
        TaskBuilder {
            task,
            name: name.into(),
            cache_for: None,
            cached: None,
            validator: CacheValidator::DurationOnly,
            cache_key: None,
            retries: None,
            result: None,
            checkpoint: None,
            target: None,
        }
    }

    /// Caches successful outputs this long (`cache_for = "1h"`).
    pub fn cache_for(mut self, duration: Duration) -> Self
    where
        K::Output: CacheableOutput,
    {
        self.cache_for = Some(duration);
        self.cached = Some(CachedValue::whole());
        self
    }

    /// Which cached outputs are valid (`cache_validator = all_inputs`).
    pub fn cache_validator(mut self, validator: CacheValidator) -> Self {
        self.validator = validator;
        self
    }

    /// Stores outputs under `key`, shared with every task naming it (`cache_key`).
    pub fn cache_key(mut self, key: impl Into<String>) -> Self {
        self.cache_key = Some(key.into());
        self
    }

    /// Runs a failed body again up to `max_retries` times, `delay` apart, with the same
    /// input.
    pub fn retries(mut self, max_retries: u32, delay: Duration) -> Self {
        self.retries = Some((max_retries, delay));
        self
    }

    /// Where outputs are persisted (`result = …`).
    pub fn result(mut self, backend: impl ResultBackend) -> Self
    where
        K::Output: PersistableOutput,
    {
        self.result = Some((Arc::new(backend), PersistOps::new()));
        self
    }

    /// Whether every successful output is written through the result (`checkpoint`).
    pub fn checkpoint(mut self, on: bool) -> Self {
        self.checkpoint = Some(on);
        self
    }

    /// Serves runs from the result at this templated location when it holds a valid
    /// value (`target = "{date:%A}/{task_name}.bin"`; the input is `{input}`).
    pub fn target(mut self, template: impl Into<String>) -> Self {
        self.target = Some(template.into());
        self
    }

    /// Checks the settings against each other and builds the task.
    ///
    /// # Errors
    /// The mistakes `#[task(...)]` refuses at compile time: a validator or key without
    /// `cache_for`, a target or checkpoint without a result, a zero `cache_for`, a
    /// duration over 100 000 years, a malformed target, a partial validator naming
    /// another input than `input`.
    pub fn build(self) -> Result<BuiltTask<K>, BuildError> {
        let task = self.name.clone();
        let needs = |setting, needs, fix| BuildError::Needs {
            task: task.clone(),
            setting,
            needs,
            fix,
        };
        if self.cache_for.is_none() {
            if !matches!(self.validator, CacheValidator::DurationOnly) {
                return Err(needs(
                    "cache_validator",
                    "cache_for",
                    "add `.cache_for(..)` (how long outputs stay cached)",
                ));
            }
            if self.cache_key.is_some() {
                return Err(needs(
                    "cache_key",
                    "cache_for",
                    "add `.cache_for(..)` (how long outputs stay cached)",
                ));
            }
        }
        if self.result.is_none() {
            if self.target.is_some() {
                return Err(needs(
                    "target",
                    "result",
                    "add `.result(LocalResult::new(dir))` (where the target is kept)",
                ));
            }
            if self.checkpoint.is_some() {
                return Err(needs(
                    "checkpoint",
                    "result",
                    "add `.result(LocalResult::new(dir))` (where outputs are written)",
                ));
            }
        }
        let duration = |setting, value: Duration, fix| BuildError::Duration {
            task: task.clone(),
            setting,
            value,
            fix,
        };
        if let Some(d) = self.cache_for {
            if d.is_zero() {
                return Err(duration(
                    "cache_for",
                    d,
                    "give a duration longer than zero, or leave `cache_for` out",
                ));
            }
            if d > MAX_DURATION {
                return Err(duration("cache_for", d, "give at most 100000 years"));
            }
        }
        if let Some((_, d)) = self.retries {
            if d > MAX_DURATION {
                return Err(duration("retry_delay", d, "give at most 100000 years"));
            }
        }
        if let Some(t) = &self.target {
            Template::parse(t).map_err(|e| BuildError::Template {
                task: task.clone(),
                setting: "target",
                reason: e.to_string(),
            })?;
        }
        if let CacheValidator::PartialInputsOnly(names) = self.validator {
            if let Some(name) = names.iter().find(|n| **n != "input") {
                return Err(BuildError::UnknownInput { task, name });
            }
        }
        let mut spec =
            TaskSpec::new(intern(self.name), &["input"]).with_cache_validator(self.validator);
        if let Some(d) = self.cache_for {
            spec = spec.with_cache_for(d);
        }
        if let Some(key) = self.cache_key {
            spec = spec.with_cache_key(intern(key));
        }
        if let Some((n, delay)) = self.retries.filter(|(n, _)| *n > 0) {
            spec = spec.with_retries(n, delay);
        }
        if let Some(t) = self.target {
            spec = spec.with_target(intern(t));
        }
        if let Some(on) = self.checkpoint {
            spec = spec.with_checkpoint(on);
        }
        Ok(BuiltTask {
            task: self.task,
            spec,
            cached: self.cached,
            result: self.result,
        })
    }
}

impl<K: Task> fmt::Debug for TaskBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskBuilder")
            .field("name", &self.name)
            .field("cache_for", &self.cache_for)
            .field("cache_validator", &self.validator)
            .field("cache_key", &self.cache_key)
            .field("retries", &self.retries)
            .field("result", &self.result.as_ref().map(|(b, _)| b.describe()))
            .field("checkpoint", &self.checkpoint)
            .field("target", &self.target)
            .finish()
    }
}

/// A [`Task`] with its settings, built by a [`TaskBuilder`].
pub struct BuiltTask<K: Task> {
    task: K,
    spec: TaskSpec,
    cached: Option<CachedValue<K::Output>>,
    result: Option<Persisted<K::Output>>,
}

impl<K: Task> BuiltTask<K> {
    /// Runs the task and returns its final state, as `my_task::run(..)` does.
    pub fn run(&self, input: K::Input) -> State<K::Output> {
        let mut run = TaskRun::new::<K::Output>(&self.spec, input)
            .hash_inputs(|input: &K::Input, hasher: &mut InputHasher| hasher.input(input))
            .fallible(Some(K::failure))
            .cache_inputs();
        if let Some(cached) = &self.cached {
            run = run.cache_output(cached.clone());
        }
        if let Some((backend, ops)) = &self.result {
            run = run.result_with(&**backend, *ops, self.spec.checkpoint());
            if let Some(target) = self.spec.target() {
                run = run.target(target);
            }
            run = run.template_inputs(|input: &K::Input, name: &str| {
                (name == "input").then(|| crate::template::render_value(input))
            });
        }
        run.run(|input| self.task.run(input))
    }

    /// Runs the task and returns its output (re-raising a panic of the body), as calling
    /// a `#[task]` function does.
    pub fn call(&self, input: K::Input) -> K::Output {
        self.run(input).into_output()
    }

    /// The task's settings.
    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    /// The task itself.
    pub fn task(&self) -> &K {
        &self.task
    }
}

impl<K: Task> fmt::Debug for BuiltTask<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltTask")
            .field("spec", &self.spec)
            .field("result", &self.result.as_ref().map(|(b, _)| b.describe()))
            .finish_non_exhaustive()
    }
}

/// `text` as a `&'static str`, kept once per distinct text: the settings of a task are
/// `'static` (the macro's are literals), and a program builds few distinct names.
fn intern(text: String) -> &'static str {
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    if let Some(&kept) = seen.get(text.as_str()) {
        return kept;
    }
    let kept: &'static str = Box::leak(text.into_boxed_str());
    seen.insert(kept);
    kept
}
