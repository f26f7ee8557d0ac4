//! Task states: what happened to one task run, with its history.
//!
//! A task run moves through `Pending → Running → Success | Failed | Retrying …`, or
//! straight to `Cached` when a valid cached output is found. The final [`State`] carries
//! the task's output (or its failure) and, for `Cached`, the [`Cached`] record that made
//! it valid: its expiration, the hashed inputs and the flow parameters it was made from.

use crate::hash::InputDigest;
use crate::parameters::Parameters;
use crate::result::Location;
use chrono::{DateTime, Utc};
use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Which state a task run is in; the data-free part of a [`State`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StateKind {
    /// The run has not started yet.
    Pending,
    /// The body is running.
    Running,
    /// The body ran and returned its output.
    Success,
    /// A valid cached output (or a target file) was used; the body did not run.
    Cached,
    /// The body failed (returned `Err` or panicked) and no retries are left.
    Failed,
    /// The body failed and will run again after the retry delay, with the same inputs.
    Retrying,
    /// The run is paused and waits to be resumed. Reserved: no runner produces it yet.
    Paused,
}

impl StateKind {
    /// True for the states that carry an output: `Success` and `Cached`.
    pub fn is_successful(self) -> bool {
        matches!(self, StateKind::Success | StateKind::Cached)
    }

    /// True for the states a run ends in: `Success`, `Cached` and `Failed`.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            StateKind::Success | StateKind::Cached | StateKind::Failed
        )
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The hashed inputs of a task run: one SHA-256 digest per argument, by argument name.
///
/// Current inputs borrow their digests; the inputs recorded on a [`Cached`] state own them.
#[derive(Clone, PartialEq, Eq)]
pub struct HashedInputs<'a> {
    names: &'static [&'static str],
    digests: Digests<'a>,
}

/// The digests of [`HashedInputs`]: borrowed, or owned, the first two kept inline (a
/// record of a task of one or two arguments is one allocation, not two).
#[derive(Clone)]
enum Digests<'a> {
    Borrowed(&'a [InputDigest]),
    Owned(smallvec::SmallVec<[InputDigest; 2]>),
}

impl std::ops::Deref for Digests<'_> {
    type Target = [InputDigest];
    fn deref(&self) -> &[InputDigest] {
        match self {
            Digests::Borrowed(d) => d,
            Digests::Owned(d) => d,
        }
    }
}

impl PartialEq for Digests<'_> {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl Eq for Digests<'_> {}

impl<'a> HashedInputs<'a> {
    /// Pairs argument names with their digests, in the task's argument order.
    ///
    /// # Panics
    /// If the two slices differ in length.
    pub fn new(names: &'static [&'static str], digests: impl Into<Cow<'a, [InputDigest]>>) -> Self {
        let digests = match digests.into() {
            Cow::Borrowed(d) => Digests::Borrowed(d),
            Cow::Owned(d) => Digests::Owned(smallvec::SmallVec::from_vec(d)),
        };
        assert_eq!(names.len(), digests.len(), "one digest per input name");
        HashedInputs { names, digests }
    }

    /// Owned inputs copied from `digests` (one allocation fewer than going through a
    /// `Vec` for up to two arguments).
    pub(crate) fn copied(
        names: &'static [&'static str],
        digests: &[InputDigest],
    ) -> HashedInputs<'static> {
        assert_eq!(names.len(), digests.len(), "one digest per input name");
        HashedInputs {
            names,
            digests: Digests::Owned(smallvec::SmallVec::from_slice(digests)),
        }
    }

    /// The inputs of a task that takes no arguments.
    pub const fn empty() -> HashedInputs<'static> {
        HashedInputs {
            names: &[],
            digests: Digests::Borrowed(&[]),
        }
    }

    /// The digest of the argument called `name`, if the task has one.
    pub fn get(&self, name: &str) -> Option<&InputDigest> {
        self.names
            .iter()
            .position(|n| *n == name)
            .map(|i| &self.digests[i])
    }

    /// The argument names, in order.
    pub fn names(&self) -> &'static [&'static str] {
        self.names
    }

    /// The digests, in argument order.
    pub fn digests(&self) -> &[InputDigest] {
        &self.digests
    }

    /// `(name, digest)` pairs in argument order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &InputDigest)> + '_ {
        self.names.iter().copied().zip(self.digests.iter())
    }

    /// A copy that owns its digests, for keeping on a [`Cached`] record.
    pub fn into_owned(self) -> HashedInputs<'static> {
        HashedInputs {
            names: self.names,
            digests: Digests::Owned(smallvec::SmallVec::from_slice(&self.digests)),
        }
    }

    /// True when both have the same names and digests (what `all_inputs` checks).
    pub fn same_as(&self, other: &HashedInputs<'_>) -> bool {
        self.names == other.names && self.digests[..] == other.digests[..]
    }
}

impl fmt::Debug for HashedInputs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// What a `Cached` state was made from: Prefect's `cached_result_expiration`,
/// `hashed_inputs` and `cached_parameters`.
///
/// Validators receive the candidate's `Cached` record and decide whether it may serve
/// the current run.
#[derive(Debug, Clone)]
pub struct Cached {
    /// When this cached output stops being valid; `None` never expires (target hits).
    pub expiration: Option<DateTime<Utc>>,
    /// The digests of the inputs of the run that produced the output.
    pub hashed_inputs: HashedInputs<'static>,
    /// The flow parameters of the run that produced the output.
    pub parameters: Parameters,
    /// The key the output was stored under: the task's `cache_key`, or its name.
    pub cache_key: Cow<'static, str>,
    /// When the output was computed.
    pub created: DateTime<Utc>,
}

impl Cached {
    /// True once `now` has reached the expiration.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expiration.is_some_and(|e| now >= e)
    }
}

/// How a failed run failed.
#[non_exhaustive]
pub enum Failure<T> {
    /// The body returned an error value (a task returning `Result` returned `Err`).
    /// The whole return value is kept so that calling the task returns it unchanged.
    Err(T),
    /// The body panicked; the payload is re-raised when the task is called directly.
    Panic(Box<dyn Any + Send + 'static>),
    /// The runtime could not run the body at all (for example the cached inputs of a
    /// retry could not be decoded).
    Runtime(String),
    /// The task is `manual_only` and waits for approval: its body did not run.
    Paused(PauseSignal),
}

/// What a `manual_only` task that waits for approval unwinds its flow function with
/// (as Prefect's PAUSE signal), so that nothing after it runs and the flow run ends
/// `Paused`. Calling such a task outside a flow run panics with a message instead.
#[derive(Debug, Clone)]
pub struct PauseSignal {
    /// The task that waits.
    pub task: &'static str,
    /// The flow run it waits in, if any.
    pub run_id: Option<String>,
}

impl<T> fmt::Debug for Failure<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Err(_) => f.write_str("Err(..)"),
            Failure::Panic(p) => write!(f, "Panic({:?})", panic_message(p.as_ref())),
            Failure::Runtime(m) => write!(f, "Runtime({m:?})"),
            Failure::Paused(p) => write!(f, "Paused({:?})", p.task),
        }
    }
}

/// The text of a panic payload, when it is a string.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "Box<dyn Any>"
    }
}

/// One step of a run's history: the state it was in and why.
#[derive(Debug, Clone)]
pub struct StateRecord {
    /// The state entered.
    pub kind: StateKind,
    /// Why it was entered.
    pub message: Cow<'static, str>,
    /// When it was entered, by the context's clock.
    pub timestamp: DateTime<Utc>,
}

/// The final state of one task run: its kind, message, output or failure, and history.
///
/// Returned by a task's `run` function (`add::run(1, 2)`); calling the task itself
/// (`add(1, 2)`) returns [`State::into_output`] of the same state.
pub struct State<T> {
    pub(crate) kind: StateKind,
    pub(crate) message: Cow<'static, str>,
    pub(crate) output: Output<T>,
    pub(crate) cached: Option<Arc<Cached>>,
    pub(crate) run_count: u32,
    /// Nanoseconds since the epoch: a `DateTime` is built only when asked for.
    pub(crate) timestamp: i64,
    /// The states before this one.
    pub(crate) previous: Vec<StateRecord>,
    /// Where the output was read from or written to.
    pub(crate) location: Option<Location>,
    /// Why the output could not be checkpointed, if it could not.
    pub(crate) persist_error: Option<String>,
    /// The digest of the payload checkpointed at `location` (what a state store
    /// records, so that a resumed run reads back exactly that result).
    pub(crate) digest: Option<crate::result::PayloadDigest>,
    /// Why no cached output served the call, when one was looked for and missed.
    pub(crate) miss: Option<Box<crate::store::MissReason>>,
}

pub(crate) enum Output<T> {
    Value(T),
    Failed(Failure<T>),
}

impl<T> State<T> {
    /// A state with nothing known beyond its kind, message and output: what the
    /// constructors below start from.
    fn bare(
        kind: StateKind,
        message: Cow<'static, str>,
        output: Output<T>,
        run_count: u32,
        timestamp: i64,
    ) -> Self {
        State {
            kind,
            message,
            output,
            cached: None,
            run_count,
            timestamp,
            previous: Vec::new(),
            location: None,
            persist_error: None,
            digest: None,
            miss: None,
        }
    }

    pub(crate) fn hit(value: T, cached: Arc<Cached>, now: i128) -> Self {
        let mut state = State::bare(
            StateKind::Cached,
            Cow::Borrowed("Cache hit: a valid cached output was used."),
            Output::Value(value),
            0,
            crate::context::saturate(now),
        );
        state.cached = Some(cached);
        state
    }

    /// A successful run's state, with nothing more known of it.
    pub(crate) fn success(value: T, run_count: u32, now: DateTime<Utc>) -> Self {
        State::bare(
            StateKind::Success,
            Cow::Borrowed("Task run succeeded."),
            Output::Value(value),
            run_count,
            crate::context::to_nanos(now),
        )
    }

    pub(crate) fn failed(failure: Failure<T>, message: String, now: DateTime<Utc>) -> Self {
        State::bare(
            StateKind::Failed,
            Cow::Owned(message),
            Output::Failed(failure),
            0,
            crate::context::to_nanos(now),
        )
    }

    /// Where the output was read from (a target or persisted cache hit) or checkpointed
    /// to, relative to the result's directory.
    pub fn location(&self) -> Option<&Location> {
        self.location.as_ref()
    }

    /// Why the output could not be checkpointed (permission denied, disk full, …). The
    /// run still succeeded and its value is returned.
    pub fn persist_error(&self) -> Option<&str> {
        self.persist_error.as_deref()
    }

    /// The kind of state.
    pub fn kind(&self) -> StateKind {
        self.kind
    }

    /// Why the run is in this state ("Task run succeeded.", "Cache hit: …", the error …).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True for `Success` and `Cached`.
    pub fn is_successful(&self) -> bool {
        self.kind.is_successful()
    }

    /// True when a cached output or target was used and the body did not run.
    pub fn is_cached(&self) -> bool {
        self.kind == StateKind::Cached
    }

    /// True when the run failed for good.
    pub fn is_failed(&self) -> bool {
        self.kind == StateKind::Failed
    }

    /// The output of a `Success` or `Cached` state.
    pub fn value(&self) -> Option<&T> {
        match &self.output {
            Output::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The output of a `Success` or `Cached` state, by value.
    pub fn into_value(self) -> Option<T> {
        match self.output {
            Output::Value(v) => Some(v),
            _ => None,
        }
    }

    /// How a `Failed` state failed.
    pub fn failure(&self) -> Option<&Failure<T>> {
        match &self.output {
            Output::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// The record a `Cached` state was made from, or that a `Success` state was cached
    /// under (for tasks with `cache_for`).
    pub fn cached(&self) -> Option<&Cached> {
        self.cached.as_deref()
    }

    /// How many times the body ran (0 for a cache hit).
    pub fn run_count(&self) -> u32 {
        self.run_count
    }

    /// When the run entered this state, by the context's clock.
    pub fn timestamp(&self) -> DateTime<Utc> {
        crate::context::from_nanos(self.timestamp)
    }

    /// Every state the run went through, this final one last (for example
    /// `[Running, Retrying, Running, Success]`, or `[Cached]` for a hit).
    pub fn history(&self) -> Vec<StateRecord> {
        let mut all = self.previous.clone();
        all.push(StateRecord {
            kind: self.kind,
            message: self.message.clone(),
            timestamp: self.timestamp(),
        });
        all
    }

    /// Why no cached output served this call, when the task caches its outputs and the
    /// lookup missed: the validator that refused the candidates, how many it refused,
    /// expired or found of another type, and the arguments (or flow parameters) whose
    /// digests differ from the refused candidates'.
    ///
    /// ```
    /// use taskcache::prelude::*;
    ///
    /// #[task(cache_for = "1h", cache_validator = partial_inputs_only(region))]
    /// fn report(region: String, day: u32) -> String { format!("{region} {day}") }
    ///
    /// report("eu".into(), 1);
    /// let state = report::run("us".into(), 1);
    /// let why = state.miss_reason().unwrap();
    /// assert_eq!(why.validator, "partial_inputs_only");
    /// assert_eq!(why.changed_inputs, ["region"]);
    /// ```
    pub fn miss_reason(&self) -> Option<&crate::store::MissReason> {
        self.miss.as_deref()
    }

    /// What calling the task returns: the output; for a task returning `Result`, the
    /// `Err` it returned on its last attempt.
    ///
    /// # Panics
    /// Re-raises the body's panic when the last attempt panicked, and panics with the
    /// state's message when the runtime could not run the body.
    pub fn into_output(self) -> T {
        match self.output {
            Output::Value(v) => v,
            Output::Failed(Failure::Err(e)) => e,
            Output::Failed(Failure::Panic(p)) => std::panic::resume_unwind(p),
            Output::Failed(Failure::Runtime(m)) => panic!("{m}"),
            // In a flow run: unwind the flow function, which ends the run `Paused`.
            Output::Failed(Failure::Paused(signal)) if signal.run_id.is_some() => {
                std::panic::resume_unwind(Box::new(signal))
            }
            Output::Failed(Failure::Paused(_)) => panic!("{}", self.message),
        }
    }
}

impl<T> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("run_count", &self.run_count)
            .field("cached", &self.cached)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}
