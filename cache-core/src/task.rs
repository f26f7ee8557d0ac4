//! Task settings: what `#[task(...)]` turns into, readable as `my_task::spec()`; and
//! how a task treats its output type (which values are failures, what is cached).

use crate::hash::InputKey;
use crate::parameters::Parameters;
use crate::persist::PersistOps;
use crate::runtime::{CacheableOutput, PersistableOutput};
use crate::state::HashedInputs;
use crate::store::{KeyCache, Lookup};
use crate::validators::CacheValidator;
use std::any::Any;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The settings of one task, built at compile time by `#[task]`.
///
/// ```
/// use taskcache::{CacheValidator, TaskSpec};
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
    trigger: Trigger,
    code_version: &'static str,
    max_entries: Option<usize>,
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
            trigger: Trigger::AllSuccessful,
            code_version: "",
            max_entries: None,
            global_key: OnceLock::new(),
        }
    }

    /// Keeps at most `n` outputs of this task in memory (`max_entries = 1000`), the least
    /// recently used evicted first.
    pub const fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = Some(n);
        self
    }

    /// The most outputs of this task kept in memory, if limited.
    pub fn max_entries(&self) -> Option<usize> {
        self.max_entries
    }

    /// The version of the task's code: `#[task]` sets the SHA-256 (in hex) of the
    /// function's tokens (signature and body, formatting and comments aside), or the
    /// `cache_version` written out. A persisted cache record of another version is a
    /// miss ("the task's code changed").
    pub const fn with_code_version(mut self, version: &'static str) -> Self {
        self.code_version = version;
        self
    }

    /// The version of the task's code (empty for a spec built without one).
    pub fn code_version(&self) -> &'static str {
        self.code_version
    }

    /// What `{task_version}` renders: the code fingerprint's first 12 hex digits, or
    /// the `cache_version` as written.
    pub fn task_version(&self) -> &'static str {
        task_version_of(self.code_version)
    }

    /// When the task may run (`trigger = manual_only`, …).
    pub const fn with_trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// The task's trigger.
    pub fn trigger(&self) -> Trigger {
        self.trigger
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

    /// The key outputs are stored under: `cache_key`, or the task's name. `#[task]`
    /// without `name` or `cache_key` sets the key to the function's path
    /// (`my_crate::module::load`), so that two tasks of the same name in different
    /// modules never share outputs.
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

/// When a task may run, as Prefect's triggers, for tasks called as functions: every
/// call's inputs are values its caller already has, so the upstream of a call is the
/// task runs of its flow run that came before it.
///
/// The target and cache checks come first, as in Prefect: a task whose target exists
/// is `Cached` whatever its trigger says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trigger {
    /// Runs when every earlier task run succeeded (the default). A call is only made
    /// with values in hand, so in a flow function this always holds: a failed task
    /// raises in its caller.
    #[default]
    AllSuccessful,
    /// Runs whatever became of the earlier task runs (`all_finished`, `always_run`):
    /// for a cleanup called after the flow function caught a failure.
    AllFinished,
    /// Runs only if an earlier task run of the flow run failed (an alert or a
    /// fallback); otherwise the call fails with a message saying so.
    AnyFailed,
    /// Never runs on its own: the call ends `Paused`, its inputs are persisted in the
    /// flow run's state store, and the rest of the flow function is unwound, so the flow
    /// run ends `Paused`. `taskcache::resume(run_id).approve("task")` runs it, with the
    /// persisted inputs, and the flow run goes on from there.
    ManualOnly,
}

/// What `{task_version}` renders for a code version: a fingerprint's first 12 hex
/// digits, or a `cache_version` as it is.
pub(crate) fn task_version_of(code_version: &'static str) -> &'static str {
    match code_version.strip_prefix("sha256:") {
        Some(hex) => hex.get(..12).unwrap_or(hex),
        None => code_version,
    }
}

impl Trigger {
    /// Whether a call runs its body with nothing to check first (the triggers that
    /// always hold outside a flow function's failures).
    pub(crate) fn is_plain(self) -> bool {
        matches!(self, Trigger::AllSuccessful | Trigger::AllFinished)
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
            .field("trigger", &self.trigger)
            .field("code_version", &self.code_version)
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

// How a task treats its output type.
//
// The code `#[task]` generates names the function's return type, as written, in
// `OutputType::<R>::NEW`, and calls methods on references to it. Which method runs is
// decided at compile time by method resolution, which tries `&&&OutputType<R>` first,
// then `&&OutputType<R>`, `&OutputType<R>` and `OutputType<R>` ("autoref
// specialisation"): a `Result<T, E>`, whatever it is called (an alias, `io::Result`, a
// re-export under another name), matches the impls for `Result` and any other type
// falls through to the last one. The type is known there, so the choice costs nothing
// at run time.

/// The return type `R` of a task, for the generated code. See the comment above.
pub struct OutputType<R: ?Sized>(PhantomData<fn() -> R>);

impl<R: ?Sized> OutputType<R> {
    /// The one value of the type.
    pub const NEW: Self = OutputType(PhantomData);
}

impl<R: ?Sized> Clone for OutputType<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: ?Sized> Copy for OutputType<R> {}

/// Tells a failed output from a successful one: the failure's message, or `None`.
pub type Classifier<R> = fn(&R) -> Option<String>;

/// An `Err` whose error type implements `Display`: a failure with that text.
pub trait FailsWithDisplay {
    /// The return type.
    type Output;
    /// How to tell a failure.
    fn classifier(self) -> Option<Classifier<Self::Output>>;
}

impl<T, E: std::fmt::Display> FailsWithDisplay for &&&OutputType<Result<T, E>> {
    type Output = Result<T, E>;
    fn classifier(self) -> Option<Classifier<Result<T, E>>> {
        Some(|r| r.as_ref().err().map(|e| e.to_string()))
    }
}

/// An `Err` whose error type implements `Debug` but not `Display`: a failure with the
/// `Debug` text.
pub trait FailsWithDebug {
    /// The return type.
    type Output;
    /// How to tell a failure.
    fn classifier(self) -> Option<Classifier<Self::Output>>;
}

impl<T, E: std::fmt::Debug> FailsWithDebug for &&OutputType<Result<T, E>> {
    type Output = Result<T, E>;
    fn classifier(self) -> Option<Classifier<Result<T, E>>> {
        Some(|r| r.as_ref().err().map(|e| format!("{e:?}")))
    }
}

/// An `Err` whose error type has no text: a failure that names the type.
pub trait FailsWithoutText {
    /// The return type.
    type Output;
    /// How to tell a failure.
    fn classifier(self) -> Option<Classifier<Self::Output>>;
}

impl<T, E> FailsWithoutText for &OutputType<Result<T, E>> {
    type Output = Result<T, E>;
    fn classifier(self) -> Option<Classifier<Result<T, E>>> {
        Some(|r| {
            r.as_ref().err().map(|_| {
                format!(
                    "returned `Err` (its type `{}` implements neither `Display` nor `Debug`)",
                    std::any::type_name::<E>()
                )
            })
        })
    }
}

/// Any other return type: every value is a success.
pub trait NeverFails {
    /// The return type.
    type Output;
    /// How to tell a failure: never.
    fn classifier(self) -> Option<Classifier<Self::Output>>;
}

impl<R> NeverFails for OutputType<R> {
    type Output = R;
    fn classifier(self) -> Option<Classifier<R>> {
        None
    }
}

/// The bound on the success type `T` of a task with `cache_for` returning
/// `Result<T, E>`: only `Ok` values are cached, so `E` needs nothing.
#[diagnostic::on_unimplemented(
    message = "the success type `{Self}` of a task with `cache_for` must be `Clone + Send + Sync + 'static`",
    label = "`Ok` values are shared between threads and cloned out of the cache (an `Err` is never cached)",
    note = "derive `Clone` for the type, or return an `Arc` of it"
)]
pub trait CacheableSuccess: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> CacheableSuccess for T {}

/// How the output cache keeps the values of a task returning `R`: what is stored (the
/// whole value, or the `T` of an `Ok(T)`) and how a stored one is given back.
pub struct CachedValue<R> {
    /// The first valid candidate, given back as an `R`.
    pub(crate) find: FindCached<R>,
    /// The value cached for exactly these inputs (an `all_inputs` hit), as an `R`.
    pub(crate) get: GetExact<R>,
    /// What the cache keeps of a successful output.
    pub(crate) erase: fn(&R) -> Box<dyn Any + Send + Sync>,
}

impl<R> Clone for CachedValue<R> {
    fn clone(&self) -> Self {
        CachedValue {
            find: self.find,
            get: self.get,
            erase: self.erase,
        }
    }
}

impl<R: CacheableOutput> CachedValue<R> {
    /// The whole value is cached (what [`CachedWhole`] chooses).
    pub(crate) fn whole() -> Self {
        CachedValue {
            find: |key, validator, all, each, parameters, now| {
                key.find::<R>(validator, all, each, parameters, now)
            },
            get: |key, inputs, now, miss| key.get_exact::<R>(inputs, now, miss),
            erase: |v| Box::new(v.clone()),
        }
    }
}

/// A lookup in the candidates of one key ([`KeyCache::find`]'s arguments).
pub(crate) type FindCached<R> = fn(
    &KeyCache,
    &CacheValidator,
    Option<&InputKey>,
    Option<&HashedInputs<'_>>,
    &Parameters,
    i128,
) -> Lookup<R>;

/// A hit on exactly these inputs ([`KeyCache::get_exact`]'s arguments).
pub(crate) type GetExact<R> =
    fn(&KeyCache, &InputKey, i128, &mut crate::store::ExactMiss) -> Option<R>;

/// What the cache holds in place of a value it must never serve (an `Err`, which is
/// never offered to it): no task's output type, so no lookup ever matches it.
struct NotCached;

/// A `Result<T, E>` is cached as its `T`, and a hit gives `Ok(t)` back.
pub trait CachedAsSuccess {
    /// The success type.
    type Success;
    /// The return type.
    type Output;
    /// How the cache keeps outputs.
    fn cached_value(self) -> CachedValue<Self::Output>
    where
        Self::Success: CacheableSuccess;
}

impl<T, E> CachedAsSuccess for &OutputType<Result<T, E>> {
    type Success = T;
    type Output = Result<T, E>;
    fn cached_value(self) -> CachedValue<Result<T, E>>
    where
        T: CacheableSuccess,
    {
        CachedValue {
            find: |key, validator, all, each, parameters, now| match key
                .find::<T>(validator, all, each, parameters, now)
            {
                Lookup::Hit(t, cached) => Lookup::Hit(Ok(t), cached),
                Lookup::Miss(reason) => Lookup::Miss(reason),
            },
            get: |key, inputs, now, miss| key.get_exact::<T>(inputs, now, miss).map(Ok),
            erase: |r| match r {
                Ok(t) => Box::new(t.clone()),
                Err(_) => Box::new(NotCached),
            },
        }
    }
}

/// Any other return type is cached whole.
pub trait CachedWhole {
    /// The return type.
    type Output;
    /// How the cache keeps outputs.
    fn cached_value(self) -> CachedValue<Self::Output>
    where
        Self::Output: CacheableOutput;
}

impl<R> CachedWhole for OutputType<R> {
    type Output = R;
    fn cached_value(self) -> CachedValue<R>
    where
        R: CacheableOutput,
    {
        CachedValue::whole()
    }
}

/// The bound on the success type `T` of a task with a `result` returning
/// `Result<T, E>`: only `Ok` values are written, so `E` needs nothing.
#[diagnostic::on_unimplemented(
    message = "the success type `{Self}` of a task with a `result` must implement `serde::Serialize` and `serde::Deserialize`",
    label = "`Ok` values are written to the result and read back from it (an `Err` is never written)",
    note = "derive both for the type"
)]
pub trait PersistableSuccess: serde::Serialize + serde::de::DeserializeOwned + 'static {}

impl<T: serde::Serialize + serde::de::DeserializeOwned + 'static> PersistableSuccess for T {}

/// A `Result<T, E>` is persisted as its `T`, and read back as `Ok(t)`.
pub trait PersistedAsSuccess {
    /// The success type.
    type Success;
    /// The return type.
    type Output;
    /// How the result keeps outputs.
    fn persist_ops(self) -> PersistOps<Self::Output>
    where
        Self::Success: PersistableSuccess;
}

impl<T, E> PersistedAsSuccess for &OutputType<Result<T, E>> {
    type Success = T;
    type Output = Result<T, E>;
    fn persist_ops(self) -> PersistOps<Result<T, E>>
    where
        T: PersistableSuccess,
    {
        PersistOps::success_of()
    }
}

/// Any other return type is persisted whole.
pub trait PersistedWhole {
    /// The return type.
    type Output;
    /// How the result keeps outputs.
    fn persist_ops(self) -> PersistOps<Self::Output>
    where
        Self::Output: PersistableOutput;
}

impl<R> PersistedWhole for OutputType<R> {
    type Output = R;
    fn persist_ops(self) -> PersistOps<R>
    where
        R: PersistableOutput,
    {
        PersistOps::new()
    }
}

#[cfg(test)]
#[allow(clippy::needless_borrow)] // the borrows choose the impl
mod tests {
    use super::*;

    #[allow(unused_imports)]
    use super::{
        CachedAsSuccess as _, CachedWhole as _, FailsWithDebug as _, FailsWithDisplay as _,
        FailsWithoutText as _, NeverFails as _,
    };

    type Res<T> = Result<T, String>;
    use std::result::Result as Outcome;

    #[derive(Debug)]
    struct DebugOnly;
    struct NoText;

    #[test]
    fn failures_are_told_by_the_type() {
        let c = (&&&OutputType::<Res<u32>>::NEW).classifier().unwrap();
        assert_eq!(c(&Err("bad".into())), Some("bad".to_owned()));
        assert_eq!(c(&Ok(1)), None);
        let c = (&&&OutputType::<Outcome<u32, DebugOnly>>::NEW)
            .classifier()
            .unwrap();
        assert_eq!(c(&Err(DebugOnly)), Some("DebugOnly".to_owned()));
        let c = (&&&OutputType::<std::io::Result<()>>::NEW)
            .classifier()
            .unwrap();
        assert_eq!(c(&Err(std::io::Error::other("gone"))), Some("gone".into()));
        let c = (&&&OutputType::<Result<u8, NoText>>::NEW)
            .classifier()
            .unwrap();
        assert!(c(&Err(NoText)).unwrap().contains("NoText"));
        assert!((&&&OutputType::<u32>::NEW).classifier().is_none());
        assert!((&&&OutputType::<Option<u32>>::NEW).classifier().is_none());
    }

    #[test]
    fn only_the_success_of_a_result_is_cached() {
        let v = (&OutputType::<Result<u32, std::io::Error>>::NEW).cached_value();
        assert_eq!((v.erase)(&Ok(7)).downcast_ref::<u32>(), Some(&7));
        assert!((v.erase)(&Err(std::io::Error::other("x")))
            .downcast_ref::<u32>()
            .is_none());
        let v = (&OutputType::<Vec<u8>>::NEW).cached_value();
        assert_eq!(
            (v.erase)(&vec![1]).downcast_ref::<Vec<u8>>(),
            Some(&vec![1])
        );
    }
}
