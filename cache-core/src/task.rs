//! Task settings: what `#[task(...)]` turns into, readable as `my_task::spec()`.

use crate::store::KeyCache;
use crate::validators::CacheValidator;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The settings of one task, built at compile time by `#[task]`.
///
/// ```
/// use taskcache_core::task::TaskSpec;
/// use taskcache_core::validators::CacheValidator;
/// use std::time::Duration;
///
/// static SPEC: TaskSpec = TaskSpec::new("add", &["x", "y"])
///     .with_cache_for(Duration::from_secs(3600))
///     .with_cache_validator(CacheValidator::AllInputs);
/// assert_eq!(SPEC.cache_key(), "add");
/// ```
pub struct TaskSpec {
    name: &'static str,
    inputs: &'static [&'static str],
    cache_for: Option<Duration>,
    cache_validator: CacheValidator,
    cache_key: Option<&'static str>,
    max_retries: u32,
    retry_delay: Duration,
    target: Option<&'static str>,
    checkpoint: Option<bool>,
    /// The process-wide cache's candidates for this task's key, looked up once.
    pub(crate) global_key: OnceLock<Arc<KeyCache>>,
}

impl TaskSpec {
    /// A task called `name` whose arguments are called `inputs`, with no caching and no
    /// retries.
    pub const fn new(name: &'static str, inputs: &'static [&'static str]) -> Self {
        TaskSpec {
            name,
            inputs,
            cache_for: None,
            cache_validator: CacheValidator::DurationOnly,
            cache_key: None,
            max_retries: 0,
            retry_delay: Duration::ZERO,
            target: None,
            checkpoint: None,
            global_key: OnceLock::new(),
        }
    }

    /// Caches successful outputs for `duration` (`cache_for = "1h"`).
    pub const fn with_cache_for(mut self, duration: Duration) -> Self {
        self.cache_for = Some(duration);
        self
    }

    /// Decides which cached outputs are valid (`cache_validator = all_inputs`).
    pub const fn with_cache_validator(mut self, validator: CacheValidator) -> Self {
        self.cache_validator = validator;
        self
    }

    /// Stores outputs under `key` instead of the task's name, shared with every task and
    /// flow that names the same key (`cache_key = "prices"`).
    pub const fn with_cache_key(mut self, key: &'static str) -> Self {
        self.cache_key = Some(key);
        self
    }

    /// Runs a failed body again up to `max_retries` times, `delay` apart.
    pub const fn with_retries(mut self, max_retries: u32, delay: Duration) -> Self {
        self.max_retries = max_retries;
        self.retry_delay = delay;
        self
    }

    /// Serves runs from the file at this templated location when it exists
    /// (`target = "{date:%A}/{task_name}.bin"`).
    pub const fn with_target(mut self, template: &'static str) -> Self {
        self.target = Some(template);
        self
    }

    /// Whether the task checkpoints its output (`checkpoint`, `checkpoint = false`).
    pub const fn with_checkpoint(mut self, on: bool) -> Self {
        self.checkpoint = Some(on);
        self
    }

    /// The target template, if the task has one.
    pub fn target(&self) -> Option<&'static str> {
        self.target
    }

    /// The task's own `checkpoint` setting: `None` when it does not say.
    pub fn checkpoint(&self) -> Option<bool> {
        self.checkpoint
    }

    /// The task's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The names of the task's arguments, in order.
    pub fn inputs(&self) -> &'static [&'static str] {
        self.inputs
    }

    /// How long outputs are cached; `None` when output caching is off.
    pub fn cache_for(&self) -> Option<Duration> {
        self.cache_for
    }

    /// The cache validator.
    pub fn cache_validator(&self) -> CacheValidator {
        self.cache_validator
    }

    /// The key outputs are stored under: `cache_key`, or the task's name.
    pub fn cache_key(&self) -> &'static str {
        self.cache_key.unwrap_or(self.name)
    }

    /// How many times a failed body is retried.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// How long to wait before a retry.
    pub fn retry_delay(&self) -> Duration {
        self.retry_delay
    }
}

impl std::fmt::Debug for TaskSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSpec")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("cache_for", &self.cache_for)
            .field("cache_validator", &self.cache_validator)
            .field("cache_key", &self.cache_key())
            .field("max_retries", &self.max_retries)
            .field("retry_delay", &self.retry_delay)
            .field("target", &self.target)
            .field("checkpoint", &self.checkpoint)
            .finish()
    }
}
