//! The context: what a task run can know about where it runs, as `prefect.context`.
//!
//! Inside a task body, [`current()`] gives the date, the flow's name, run id and
//! parameters, the task's name and how many times it has run. Tests and callers can
//! override parts of it for a scope, most usefully the [`date`](Context::date) and the
//! [`Clock`] that decides when cached outputs expire:
//!
//! ```
//! use taskcache::context::{Context, ManualClock};
//! use chrono::{TimeZone, Utc};
//!
//! let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap());
//! Context::current().with_clock(clock.clock()).scope(|| {
//!     let ctx = taskcache::context::current();
//!     assert_eq!(ctx.today(), "2026-11-23");
//!     assert_eq!(ctx.date().format("%A").to_string(), "Monday");
//! });
//! ```
//!
//! The context is per thread, and per future for async code:
//! [`Context::scope_async`] installs a context on every poll of a future, so that an
//! async test can isolate the cache or pin the date. A thread you spawn starts with the
//! default context; [`spawn`] starts one that carries the caller's (a flow's tasks
//! inside it report to the flow), or pass `Context::current()` into the thread and call
//! [`Context::scope`] there.

use crate::flow::FlowRunInfo;
use crate::parameters::Parameters;
use crate::store::OutputCache;
use chrono::{DateTime, Duration as TimeDelta, Utc};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Where "now" comes from: the system clock, or one a test controls.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>>);

impl Clock {
    /// The system clock (the default).
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock that always reads `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Clock(Some(Arc::new(move || at)))
    }

    /// A clock that reads `f()`.
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Clock(Some(Arc::new(f)))
    }

    /// The current time by this clock.
    #[inline]
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            None => Utc::now(),
            Some(f) => f(),
        }
    }

    /// The current time as nanoseconds since the Unix epoch: what expiry checks compare.
    ///
    /// For the system clock on Linux this reads the coarse realtime clock, which costs a
    /// few nanoseconds where a precise reading and a `DateTime` cost ~40: a cache hit
    /// pays for it on every call. Its resolution is one scheduler tick (1 to 10 ms), so
    /// an output may be served up to that long after its expiration.
    ///
    /// An `i128`, exact for every date chrono holds: an `i64` of nanoseconds ends in 2262,
    /// and a clock set past it must still tell expired outputs from live ones.
    #[inline]
    pub(crate) fn now_nanos(&self) -> i128 {
        match &self.0 {
            None => i128::from(system_nanos()),
            Some(f) => instant(f()),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Clock::system"),
            Some(_) => write!(f, "Clock({})", self.now()),
        }
    }
}

#[cfg(target_os = "linux")]
#[inline]
fn system_nanos() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    t.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec)
}

#[cfg(not(target_os = "linux"))]
#[inline]
fn system_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Nanoseconds since the Unix epoch, saturating (chrono's range is wider than i64's).
pub(crate) fn to_nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// The inverse of [`to_nanos`].
pub(crate) fn from_nanos(n: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(n)
}

/// Nanoseconds since the Unix epoch, exactly, for any date chrono holds.
pub(crate) fn instant(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

/// The inverse of [`instant`], saturating at chrono's first and last dates.
pub(crate) fn from_instant(n: i128) -> DateTime<Utc> {
    let secs = n.div_euclid(1_000_000_000);
    let nanos = n.rem_euclid(1_000_000_000) as u32;
    i64::try_from(secs)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, nanos))
        .unwrap_or(if n < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

/// An [`instant`] as a state's `i64` timestamp, saturating.
pub(crate) fn saturate(n: i128) -> i64 {
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

/// A clock that stands still until moved: for testing expiry.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    /// The current reading.
    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t = TimeDelta::from_std(by)
            .ok()
            .and_then(|d| t.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    /// Sets the reading to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// A [`Clock`] that reads this one.
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Clock::from_fn(move || me.now())
    }
}

/// The task-level part of the context, set while a task body runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TaskInfo {
    pub(crate) name: &'static str,
    /// The task's code version (`sha256:…` or its `cache_version`): `{task_version}`
    /// renders it shortened ([`crate::task::task_version_of`]).
    pub(crate) version: &'static str,
    pub(crate) run_count: u32,
}

/// What a running task holds that the tasks its body calls must not wait for: its
/// single-flight slot, its target's lock, its cache record's lock. A nested call that
/// needs one of them would wait for its own caller forever; it runs without it instead.
#[derive(Debug)]
pub(crate) struct Held {
    /// What is held: see [`Holding`].
    pub(crate) what: Holding,
    /// The task that holds it, for messages.
    pub(crate) task: &'static str,
    /// What the callers further up hold.
    pub(crate) outer: Option<Arc<Held>>,
}

/// One thing a running task holds (see [`Held`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Holding {
    /// The single-flight slot of these inputs in one key's cache (its address).
    Flight(usize, crate::hash::InputKey),
    /// The lock of a location: the backend's description and the location.
    Lock(String),
}

impl Held {
    /// The task up the chain that holds `what`, if one does.
    pub(crate) fn holder(mut held: Option<&Held>, what: &Holding) -> Option<&'static str> {
        while let Some(h) = held {
            if h.what == *what {
                return Some(h.task);
            }
            held = h.outer.as_deref();
        }
        None
    }
}

/// What a task run can know about where it runs. Cheap to clone.
///
/// Read it with [`current()`]; override parts of it for a scope with the `with_*`
/// methods and [`Context::scope`].
#[derive(Clone, Default)]
pub struct Context {
    pub(crate) date: Option<DateTime<Utc>>,
    pub(crate) clock: Clock,
    pub(crate) flow: Option<Arc<FlowRunInfo>>,
    pub(crate) task: Option<TaskInfo>,
    pub(crate) map_index: Option<usize>,
    pub(crate) cache: Option<Arc<OutputCache>>,
    pub(crate) checkpointing: Option<bool>,
    pub(crate) values: Option<Arc<BTreeMap<String, String>>>,
    /// What the tasks whose bodies are running here hold (innermost first).
    pub(crate) held: Option<Arc<Held>>,
    /// The result that takes the place of every task's own (`with_result`).
    pub(crate) result: Option<Arc<dyn crate::result::ResultBackend>>,
    /// The run id the next flow started in this scope resumes (`taskcache::resume`).
    pub(crate) resume: Option<Arc<crate::flow::ResumeRequest>>,
    /// The state store of flows started in this scope.
    pub(crate) state: Option<Arc<crate::flow::StoreChoice>>,
    /// Whether task calls in this scope skip the cache and replace what it holds.
    pub(crate) refresh: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<Context>> = const { RefCell::new(None) };
    /// The task whose body runs on this thread in the current context without a
    /// context of its own (a task with nothing to retry or persist, outside a flow
    /// run and a refresh: see [`TaskFrame`]). It is the `task` of [`Context::current`]; entering a scope
    /// clears it until the scope ends, as a scope's context says all there is.
    static TASK: Cell<Option<TaskInfo>> = const { Cell::new(None) };
    /// What the framed tasks whose bodies run here hold (each a [`HeldFrame`]),
    /// outermost first, on top of what the installed context's `held` says. Part of
    /// the `held` of [`Context::current`]; entering a scope sets it aside until the
    /// scope ends.
    static FRAME_HELD: RefCell<Vec<(Holding, &'static str)>> = const { RefCell::new(Vec::new()) };
}

/// While alive, a framed task (one that runs without a context of its own) holds
/// `what`: the tasks its body calls see it, as they would see it in a context's
/// [`Held`] chain, and run without it rather than wait for their caller. Entering and
/// leaving cost no allocation (past the stack's first growth on a thread): the chain is
/// only built when a context is made from it ([`Context::current`] in the body).
pub(crate) struct HeldFrame(());

impl HeldFrame {
    pub(crate) fn enter(what: Holding, task: &'static str) -> Self {
        FRAME_HELD.with_borrow_mut(|held| held.push((what, task)));
        HeldFrame(())
    }
}

impl Drop for HeldFrame {
    fn drop(&mut self) {
        FRAME_HELD.with_borrow_mut(|held| held.pop());
    }
}

/// What the tasks running on this thread hold: the framed ones' holdings on top of
/// `installed`'s.
pub(crate) fn held_here(installed: Option<&Context>) -> Option<Arc<Held>> {
    let outer = installed.and_then(|c| c.held.clone());
    FRAME_HELD.with_borrow(|held| {
        held.iter().fold(outer, |outer, (what, task)| {
            Some(Arc::new(Held {
                what: what.clone(),
                task,
                outer,
            }))
        })
    })
}

/// The task running on this thread (framed, or in the installed context) that holds
/// `what`, if one does.
pub(crate) fn holder_here(installed: Option<&Context>, what: &Holding) -> Option<&'static str> {
    let framed = FRAME_HELD.with_borrow(|held| {
        held.iter()
            .rev()
            .find_map(|(w, task)| (w == what).then_some(*task))
    });
    framed.or_else(|| Held::holder(installed.and_then(|c| c.held.as_deref()), what))
}

/// While alive, `info` is the task of the current context: how a task body runs
/// without installing a context (see [`TASK`]).
pub(crate) struct TaskFrame {
    previous: Option<TaskInfo>,
}

impl TaskFrame {
    pub(crate) fn enter(info: TaskInfo) -> Self {
        TaskFrame {
            previous: TASK.replace(Some(info)),
        }
    }
}

impl Drop for TaskFrame {
    fn drop(&mut self) {
        TASK.set(self.previous);
    }
}

/// The task whose body runs here without a context of its own, if one does.
pub(crate) fn framed_task() -> Option<TaskInfo> {
    TASK.get()
}

/// The context of the current thread (a default one outside any flow or scope).
pub fn current() -> Context {
    Context::current()
}

impl Context {
    /// The context of the current thread (a default one outside any flow or scope).
    pub fn current() -> Context {
        let mut ctx = CURRENT.with(|c| c.borrow().clone().unwrap_or_default());
        if let Some(task) = TASK.get() {
            ctx.task = Some(task);
        }
        if FRAME_HELD.with_borrow(|held| !held.is_empty()) {
            ctx.held = held_here(Some(&ctx));
        }
        ctx
    }

    /// Reads the current context without cloning it.
    pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Context>) -> R) -> R {
        CURRENT.with(|c| f(c.borrow().as_ref()))
    }

    /// Runs `f` with `self` as the current context, then restores the previous one
    /// (also when `f` panics).
    pub fn scope<R>(self, f: impl FnOnce() -> R) -> R {
        let _guard = self.enter();
        f()
    }

    /// `future`, with `self` as the current context whenever it is polled: the async
    /// twin of [`scope`](Self::scope).
    ///
    /// ```
    /// use taskcache::context::Context;
    /// use taskcache::OutputCache;
    /// # let block_on = |f: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>| {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut f = f;
    /// #     while f.as_mut().poll(&mut std::task::Context::from_waker(&waker)).is_pending() {}
    /// # };
    /// let isolated = Context::current().with_cache(OutputCache::new());
    /// block_on(Box::pin(isolated.scope_async(async {
    ///     // Tasks awaited here use their own output cache.
    ///     assert!(taskcache::context::current().cache().len_of("any") == 0);
    /// })));
    /// ```
    pub fn scope_async<F: std::future::Future>(self, future: F) -> Scoped<F> {
        Scoped {
            ctx: self,
            future: Box::pin(future),
        }
    }

    /// Makes `self` the current context until the guard is dropped.
    pub(crate) fn enter(self) -> ScopeGuard {
        let previous = CURRENT.with(|c| c.replace(Some(self)));
        ScopeGuard {
            previous,
            task: TASK.take(),
            held: FRAME_HELD.take(),
        }
    }

    /// The same context with `backend` in place of the `result` of every task run in
    /// it (tasks without a `result` are unchanged): say a test's own temporary
    /// directory. Values are written with `backend`'s serializer. Each task keeps its
    /// `checkpoint` setting and target, and its location template unless `backend` has
    /// one of its own; [`with_checkpointing`](Self::with_checkpointing) decides the rest.
    ///
    /// ```
    /// use taskcache::prelude::*;
    ///
    /// #[task(checkpoint, result = LocalResult::new("~/.taskcache"))]
    /// fn report() -> u32 { 7 }
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let state = Context::current()
    ///     .with_result(LocalResult::new(dir.path()))
    ///     .scope(report::run);
    /// let written = dir.path().join(state.location().unwrap().as_str());
    /// assert!(written.exists(), "written under the test's directory");
    /// ```
    pub fn with_result(mut self, backend: impl crate::result::ResultBackend) -> Self {
        self.result = Some(Arc::new(backend));
        self
    }

    /// The same context in which every task call skips its cached outputs and targets,
    /// runs its body, and replaces what the cache held for its inputs, in memory and
    /// persisted (`my_task::refresh(…)` does it for one call). The tasks a body calls
    /// are not refreshed.
    ///
    /// ```
    /// use taskcache::prelude::*;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    ///
    /// static RUNS: AtomicU32 = AtomicU32::new(0);
    ///
    /// #[task(cache_for = "1h")]
    /// fn load() -> u32 { RUNS.fetch_add(1, Ordering::SeqCst) + 1 }
    ///
    /// assert_eq!(load(), 1);
    /// assert_eq!(load(), 1); // cached
    /// assert_eq!(Context::current().with_refresh(true).scope(load), 2);
    /// assert_eq!(load(), 2); // the refreshed output replaced the old one
    /// ```
    pub fn with_refresh(mut self, on: bool) -> Self {
        self.refresh = on;
        self
    }

    /// The same context with `date` pinned: templates, `today` and friends read it.
    pub fn with_date(mut self, date: DateTime<Utc>) -> Self {
        self.date = Some(date);
        self
    }

    /// The same context with another clock: expirations are computed and checked by it,
    /// and `date` follows it unless pinned.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same context with its own output cache instead of the process-wide one:
    /// tasks run in this scope neither see nor fill the process-wide cache.
    pub fn with_cache(mut self, cache: Arc<OutputCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The same context with a map index, shown in `task_full_name` as `name[index]`.
    pub fn with_map_index(mut self, index: usize) -> Self {
        self.map_index = Some(index);
        self
    }

    /// The same context with the global checkpointing switch set for this scope,
    /// overriding the `TASKCACHE_CHECKPOINTING` environment variable.
    pub fn with_checkpointing(mut self, on: bool) -> Self {
        self.checkpointing = Some(on);
        self
    }

    /// The same context with an extra value, readable with [`Context::get`] and in
    /// templates as `{key}`.
    pub fn with_value(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(self.values.get_or_insert_with(Default::default))
            .insert(key.into(), value.into());
        self
    }

    /// The clock in force.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The current time by the clock in force.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The run's date: pinned with [`with_date`](Self::with_date), else the start of the
    /// flow run, else now.
    pub fn date(&self) -> DateTime<Utc> {
        self.date
            .or_else(|| self.flow.as_ref().map(|f| f.date))
            .unwrap_or_else(|| self.clock.now())
    }

    /// `date` as `YYYY-MM-DD`.
    pub fn today(&self) -> String {
        self.date().format("%Y-%m-%d").to_string()
    }

    /// The day before `date`, as `YYYY-MM-DD`.
    pub fn yesterday(&self) -> String {
        self.date()
            .checked_sub_signed(TimeDelta::days(1))
            .unwrap_or_else(|| self.date())
            .format("%Y-%m-%d")
            .to_string()
    }

    /// The day after `date`, as `YYYY-MM-DD`.
    pub fn tomorrow(&self) -> String {
        self.date()
            .checked_add_signed(TimeDelta::days(1))
            .unwrap_or_else(|| self.date())
            .format("%Y-%m-%d")
            .to_string()
    }

    /// `date` as `YYYYMMDD`.
    pub fn today_nodash(&self) -> String {
        self.date().format("%Y%m%d").to_string()
    }

    /// The day before `date`, as `YYYYMMDD`.
    pub fn yesterday_nodash(&self) -> String {
        self.date()
            .checked_sub_signed(TimeDelta::days(1))
            .unwrap_or_else(|| self.date())
            .format("%Y%m%d")
            .to_string()
    }

    /// The day after `date`, as `YYYYMMDD`.
    pub fn tomorrow_nodash(&self) -> String {
        self.date()
            .checked_add_signed(TimeDelta::days(1))
            .unwrap_or_else(|| self.date())
            .format("%Y%m%d")
            .to_string()
    }

    /// The name of the flow being run.
    pub fn flow_name(&self) -> Option<&str> {
        self.flow.as_ref().map(|f| &*f.name)
    }

    /// The id of the flow run (a v4 UUID).
    pub fn flow_run_id(&self) -> Option<&str> {
        self.flow.as_ref().map(|f| &*f.run_id)
    }

    /// The parameters of the flow run (none outside a flow).
    pub fn parameters(&self) -> &Parameters {
        self.flow
            .as_ref()
            .map_or(Parameters::none_ref(), |f| &f.parameters)
    }

    /// When the flow run was scheduled to start (Prefect's `scheduled_start_time`): the
    /// run's start unless pinned with `Flow::scheduled_start_time`; `None` outside a
    /// flow.
    pub fn scheduled_start_time(&self) -> Option<DateTime<Utc>> {
        self.flow.as_ref().map(|f| f.scheduled_start_time)
    }

    /// The context values that are dates, which templates format with strftime
    /// (`{date:%A}`, `{scheduled_start_time:%H}`).
    pub(crate) fn date_value(&self, key: &str) -> Option<DateTime<Utc>> {
        match key {
            "date" => Some(self.date()),
            "scheduled_start_time" => self.scheduled_start_time(),
            _ => None,
        }
    }

    /// The name of the task whose body is running.
    pub fn task_name(&self) -> Option<&'static str> {
        self.task.as_ref().map(|t| t.name)
    }

    /// The task's name with the map index, as `name[index]`, or the name alone.
    pub fn task_full_name(&self) -> Option<String> {
        let name = self.task_name()?;
        Some(match self.map_index {
            Some(i) => format!("{name}[{i}]"),
            None => name.to_owned(),
        })
    }

    /// Which attempt of the task is running: 1 for the first run, 2 for the first retry.
    pub fn task_run_count(&self) -> u32 {
        self.task.as_ref().map_or(0, |t| t.run_count)
    }

    /// The map index set with [`with_map_index`](Self::with_map_index).
    pub fn map_index(&self) -> Option<usize> {
        self.map_index
    }

    /// The output cache in force: this scope's own, or the process-wide one.
    pub fn cache(&self) -> &Arc<OutputCache> {
        self.cache.as_ref().unwrap_or_else(|| OutputCache::global())
    }

    /// Any context value by its Prefect name, rendered as text: `today`, `flow_name`,
    /// `task_run_count`, `date` (RFC 3339), a value set with
    /// [`with_value`](Self::with_value), or a flow parameter. `None` when unknown.
    pub fn get(&self, key: &str) -> Option<String> {
        let text = match key {
            "date" => self.date().to_rfc3339(),
            "today" => self.today(),
            "yesterday" => self.yesterday(),
            "tomorrow" => self.tomorrow(),
            "today_nodash" => self.today_nodash(),
            "yesterday_nodash" => self.yesterday_nodash(),
            "tomorrow_nodash" => self.tomorrow_nodash(),
            "flow_name" => self.flow_name()?.to_owned(),
            "flow_run_id" => self.flow_run_id()?.to_owned(),
            "scheduled_start_time" => self.scheduled_start_time()?.to_rfc3339(),
            "task_name" => self.task_name()?.to_owned(),
            "task_version" => crate::task::task_version_of(self.task.as_ref()?.version).to_owned(),
            "task_full_name" => self.task_full_name()?,
            "task_run_count" => self.task_run_count().to_string(),
            "map_index" => self.map_index?.to_string(),
            _ => {
                if let Some(v) = self.values.as_ref().and_then(|m| m.get(key)) {
                    v.clone()
                } else {
                    self.parameters().get(key)?.render()
                }
            }
        };
        Some(text)
    }

    /// The names [`get`](Self::get) answers in this context.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = [
            "date",
            "today",
            "yesterday",
            "tomorrow",
            "today_nodash",
            "yesterday_nodash",
            "tomorrow_nodash",
            "task_run_count",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.flow.is_some() {
            keys.extend(["flow_name", "flow_run_id", "scheduled_start_time"].map(String::from));
        }
        if self.task.is_some() {
            keys.extend(["task_name", "task_full_name", "task_version"].map(String::from));
        }
        if self.map_index.is_some() {
            keys.push("map_index".into());
        }
        keys.extend(self.values.iter().flat_map(|m| m.keys().cloned()));
        keys.extend(self.parameters().iter().map(|(k, _)| k.to_owned()));
        keys.sort();
        keys.dedup();
        keys
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("date", &self.date())
            .field("flow_name", &self.flow_name())
            .field("flow_run_id", &self.flow_run_id())
            .field("parameters", self.parameters())
            .field("task_name", &self.task_name())
            .field("task_run_count", &self.task_run_count())
            .field("map_index", &self.map_index)
            .finish_non_exhaustive()
    }
}

/// A future run with a context installed on every poll: see [`Context::scope_async`].
/// (Boxed, so that no pin projection, and no `unsafe`, is needed.)
#[must_use = "a future does nothing until it is awaited"]
pub struct Scoped<F> {
    ctx: Context,
    future: std::pin::Pin<Box<F>>,
}

impl<F: std::future::Future> std::future::Future for Scoped<F> {
    type Output = F::Output;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.get_mut();
        let future = this.future.as_mut();
        this.ctx.clone().scope(|| future.poll(cx))
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

/// Spawns a thread that runs `f` in the caller's context, as [`std::thread::spawn`]
/// does with the default one: the tasks `f` calls see the flow, its parameters, the
/// pinned date and the cache in force here, and report to the flow.
///
/// ```
/// use taskcache::context::{self, Context};
/// let date = chrono::DateTime::from_timestamp(0, 0).unwrap();
/// Context::current().with_date(date).scope(|| {
///     let today = context::spawn(|| context::current().today()).join().unwrap();
///     assert_eq!(today, "1970-01-01");
/// });
/// ```
pub fn spawn<F, R>(f: F) -> std::thread::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let ctx = Context::current();
    std::thread::spawn(move || ctx.scope(f))
}

/// Restores the previous context when dropped.
pub(crate) struct ScopeGuard {
    previous: Option<Context>,
    task: Option<TaskInfo>,
    held: Vec<(Holding, &'static str)>,
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // The scope's context is dropped once the slot is let go of: dropping it may
        // drop the last of a cache whose outputs' `Drop` reads the context.
        let scoped = CURRENT.with(|c| c.replace(previous));
        drop(scoped);
        TASK.set(self.task);
        FRAME_HELD.set(std::mem::take(&mut self.held));
    }
}
