//! Flows: a run of tasks with parameters, a name, a run id and a date.
//!
//! `#[flow]` turns a function's arguments into the flow's parameters; [`Flow`] builds
//! the same thing at run time:
//!
//! ```
//! use taskcache::Flow;
//!
//! let run = Flow::new("daily")
//!     .parameter("nrows", &10u32)
//!     .run(|| {
//!         let ctx = taskcache::context::current();
//!         assert_eq!(ctx.flow_name(), Some("daily"));
//!         ctx.parameters().value::<u32>("nrows").unwrap() * 2
//!     });
//! assert_eq!(run.into_output(), 20);
//! ```

use crate::context::Context;
use crate::parameters::{Parameter, ParameterError, Parameters};
use crate::state::{panic_message, Failure, Output, PauseSignal, State, StateKind};
use crate::state_store::{
    FlowRunRecord, FlowRunState, SqliteStateStore, StateStore, StateStoreError, TaskRunRecord,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// What the context knows of the flow run in progress.
pub(crate) struct FlowRunInfo {
    pub(crate) name: Arc<str>,
    pub(crate) run_id: String,
    pub(crate) date: DateTime<Utc>,
    /// When the run was scheduled to start: its start, unless the caller pinned it.
    pub(crate) scheduled_start_time: DateTime<Utc>,
    pub(crate) parameters: Parameters,
    reports: Mutex<Vec<TaskRunReport>>,
    /// Where the run's states are recorded, if anywhere.
    pub(crate) recorder: Option<Recorder>,
}

/// A flow run's state store, the index of its next task call, and what an earlier
/// attempt of the same run recorded (empty for a new run).
pub(crate) struct Recorder {
    pub(crate) store: Arc<dyn StateStore>,
    next: std::sync::atomic::AtomicU32,
    pub(crate) earlier: Vec<TaskRunRecord>,
    /// Set once a task call did not match the earlier attempt's: nothing recorded is
    /// replayed after that.
    pub(crate) diverged: std::sync::atomic::AtomicBool,
    started: DateTime<Utc>,
    /// The `manual_only` tasks this attempt may run.
    pub(crate) approved: Vec<String>,
}

impl Recorder {
    /// The index of the next task call of the run.
    pub(crate) fn next_index(&self) -> u32 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }
}

/// What `taskcache::resume` asks of the next flow started in its scope.
#[derive(Debug)]
pub struct ResumeRequest {
    pub(crate) run_id: String,
    pub(crate) approved: Vec<String>,
}

/// Picks up a flow run where it left off: the flow started inside [`Resume::run`] takes
/// the run id `run_id`, and each of its task calls is matched to the call at the same
/// position in the earlier attempt (see [`Flow::run_id`]).
///
/// ```
/// use taskcache::prelude::*;
///
/// #[task(checkpoint, result = LocalResult::new(std::env::temp_dir().join("tc-doc-resume")))]
/// fn double(x: u32) -> u32 { x * 2 }
///
/// #[flow(state = std::env::temp_dir().join("tc-doc-resume.db"))]
/// fn pipeline(x: u32) -> u32 { double(x) + 1 }
///
/// let first = pipeline::run(20);
/// // Later, perhaps in another process: the same run again, its results replayed.
/// let again = taskcache::resume(first.run_id()).run(|| pipeline::run(20));
/// assert_eq!(again.run_id(), first.run_id());
/// assert_eq!(again.task_runs()[0].kind, StateKind::Cached);
/// assert_eq!(again.into_output(), 41);
/// ```
#[derive(Debug)]
pub struct Resume {
    run_id: String,
    store: Option<StoreChoice>,
    approved: Vec<String>,
}

/// Resumes the flow run `run_id` (see [`Resume`]).
pub fn resume(run_id: impl Into<String>) -> Resume {
    Resume {
        run_id: run_id.into(),
        store: None,
        approved: Vec::new(),
    }
}

impl Resume {
    /// Reads the run from this state store file (by default `TASKCACHE_STATE`'s).
    pub fn state_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.store = Some(StoreChoice::File(path.as_ref().to_path_buf()));
        self
    }

    /// Reads the run from this state store.
    pub fn state_store(mut self, store: impl StateStore) -> Self {
        self.store = Some(StoreChoice::Given(Arc::new(store)));
        self
    }

    /// Approves the `manual_only` task `task` (its name) that the run waits for: the
    /// resumed run runs it, with the inputs its paused call persisted, and goes on from
    /// there. Without an approval a `manual_only` task pauses the run again.
    pub fn approve(mut self, task: impl Into<String>) -> Self {
        self.approved.push(task.into());
        self
    }

    /// Runs `f`; the first flow it starts resumes the run.
    pub fn run<R>(self, f: impl FnOnce() -> R) -> R {
        let mut ctx = Context::current();
        ctx.resume = Some(Arc::new(ResumeRequest {
            run_id: self.run_id,
            approved: self.approved,
        }));
        if let Some(store) = self.store {
            ctx.state = Some(Arc::new(store));
        }
        ctx.scope(f)
    }
}

/// A state store chosen by path (opened at the run's start, once per process and
/// path) or given.
#[derive(Clone, Debug)]
pub(crate) enum StoreChoice {
    File(std::path::PathBuf),
    Given(Arc<dyn StateStore>),
}

impl StoreChoice {
    fn open(&self) -> Result<Arc<dyn StateStore>, StateStoreError> {
        match self {
            StoreChoice::Given(s) => Ok(Arc::clone(s)),
            StoreChoice::File(path) => open_shared(path),
        }
    }
}

/// The environment variable naming the default state store file of every flow run.
pub const STATE_ENV: &str = "TASKCACHE_STATE";

/// One store per file per process: opening SQLite is not free, and one connection
/// serialises this process's commits.
fn open_shared(path: &std::path::Path) -> Result<Arc<dyn StateStore>, StateStoreError> {
    static OPEN: Mutex<Vec<(std::path::PathBuf, Arc<dyn StateStore>)>> = Mutex::new(Vec::new());
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, s)) = open.iter().find(|(p, _)| p == path) {
        return Ok(Arc::clone(s));
    }
    let store: Arc<dyn StateStore> = Arc::new(SqliteStateStore::open(path)?);
    open.push((path.to_path_buf(), Arc::clone(&store)));
    Ok(store)
}

impl FlowRunInfo {
    /// Whether a task run of this flow run has failed so far.
    pub(crate) fn any_failed(&self) -> bool {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|r| r.kind == StateKind::Failed)
    }

    pub(crate) fn report(&self, report: TaskRunReport) {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(report);
    }
}

/// The final state of one task run inside a flow run.
#[derive(Debug, Clone)]
pub struct TaskRunReport {
    /// The task's name.
    pub task_name: &'static str,
    /// Its final state.
    pub kind: StateKind,
    /// The final state's message.
    pub message: Cow<'static, str>,
    /// How many times the body ran (0 for a cache hit).
    pub run_count: u32,
    /// When the final state was entered.
    pub timestamp: DateTime<Utc>,
}

/// A flow to run, with its name and parameters.
#[derive(Debug)]
pub struct Flow {
    name: Cow<'static, str>,
    parameters: BTreeMap<String, Parameter>,
    scheduled_start_time: Option<DateTime<Utc>>,
    error: Option<String>,
    store: Option<StoreChoice>,
    run_id: Option<String>,
}

impl Flow {
    /// A flow called `name`, with no parameters yet.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Flow {
            name: name.into(),
            parameters: BTreeMap::new(),
            scheduled_start_time: None,
            error: None,
            store: None,
            run_id: None,
        }
    }

    /// Pins the run's `scheduled_start_time` (Prefect's context key: when a scheduler
    /// meant the run to start), for a run started late or again for an earlier slot.
    /// Unpinned, it is the moment the run starts.
    pub fn scheduled_start_time(mut self, at: DateTime<Utc>) -> Self {
        self.scheduled_start_time = Some(at);
        self
    }

    /// Adds a parameter. A value that cannot be a parameter (see [`Parameter::new`])
    /// makes the flow run fail with a message naming it; use
    /// [`try_parameter`](Self::try_parameter) to handle that here instead.
    pub fn parameter<T: Serialize + ?Sized>(mut self, name: &str, value: &T) -> Self {
        if let Err(e) = self.add(name, value) {
            self.error
                .get_or_insert_with(|| format!("flow `{}`: parameter `{name}`: {e}", self.name));
        }
        self
    }

    /// Adds a parameter, or says why the value cannot be one.
    ///
    /// # Errors
    /// See [`Parameter::new`].
    pub fn try_parameter<T: Serialize + ?Sized>(
        mut self,
        name: &str,
        value: &T,
    ) -> Result<Self, ParameterError> {
        self.add(name, value)?;
        Ok(self)
    }

    fn add<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), ParameterError> {
        self.parameters
            .insert(name.to_owned(), Parameter::new(value)?);
        Ok(())
    }

    /// The flow's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records this run's states in `store`: every task run's state as it changes, so
    /// that the run can be resumed after its process died (see [`Flow::run_id`]).
    /// Without it, a run records into the file `TASKCACHE_STATE` names, if set.
    pub fn state_store(mut self, store: impl StateStore) -> Self {
        self.store = Some(StoreChoice::Given(Arc::new(store)));
        self
    }

    /// Records this run's states in the SQLite state store at `path` (created if
    /// missing; its directory must exist), opened once per process.
    pub fn state_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.store = Some(StoreChoice::File(path.as_ref().to_path_buf()));
        self
    }

    /// Runs with this run id instead of a fresh one. If the state store holds a run of
    /// this flow with this id, this run resumes it: the flow function runs again, and
    /// each task call is matched to the earlier attempt's call at the same position.
    /// A task that succeeded there with a persisted result returns that result without
    /// running its body; a task without one runs again (the log says so), as does a
    /// task that was running when the process died. A call to another task than the
    /// earlier one at its position is reported, and from there on nothing is replayed.
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Some(id.into());
        self
    }

    fn start(self) -> Result<Arc<FlowRunInfo>, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let ctx = Context::current();
        let now = ctx.clock.now();
        // `taskcache::resume` applies to the outermost flow started in its scope.
        let resume = ctx.resume.as_ref().filter(|_| ctx.flow.is_none());
        let run_id = match (&self.run_id, resume) {
            (Some(id), _) => id.clone(),
            (None, Some(r)) => r.run_id.clone(),
            (None, None) => uuid::Uuid::new_v4().to_string(),
        };
        let choice = match (&self.store, &ctx.state) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(c)) => Some((**c).clone()),
            (None, None) => std::env::var_os(STATE_ENV)
                .filter(|p| !p.is_empty())
                .map(|p| StoreChoice::File(p.into())),
        };
        let parameters = Parameters::from_map(self.parameters);
        let recorder = match choice {
            Some(choice) => Some(
                Self::recorder(&self.name, &run_id, &parameters, &choice, resume, now)
                    .map_err(|e| format!("flow `{}`: {e}", self.name))?,
            ),
            None if resume.is_some() => {
                return Err(format!(
                    "flow `{}`: cannot resume run {run_id}: no state store (give one to \
                     `resume(…).state_file(…)`, or set {STATE_ENV})",
                    self.name
                ))
            }
            None => None,
        };
        Ok(Arc::new(FlowRunInfo {
            name: Arc::from(&*self.name),
            run_id,
            date: ctx.date.unwrap_or(now),
            scheduled_start_time: self.scheduled_start_time.unwrap_or(now),
            parameters,
            reports: Mutex::new(Vec::new()),
            recorder,
        }))
    }

    /// Opens the store, and records the run as running: a new one, or an earlier one
    /// of the same flow and parameters taken up again.
    fn recorder(
        name: &str,
        run_id: &str,
        parameters: &Parameters,
        choice: &StoreChoice,
        resume: Option<&Arc<ResumeRequest>>,
        now: DateTime<Utc>,
    ) -> Result<Recorder, String> {
        let must_exist = resume.is_some();
        let store = choice.open().map_err(|e| e.to_string())?;
        let params = parameters.to_json();
        let earlier_run = store.flow_run(run_id).map_err(|e| e.to_string())?;
        let (earlier, started) = match earlier_run {
            Some(run) => {
                if run.flow != name {
                    return Err(format!(
                        "run {run_id} in {} is a run of flow `{}`, not of `{name}`",
                        store.describe(),
                        run.flow
                    ));
                }
                if run.parameters != params {
                    // Names only: parameter values may be secrets.
                    let names = |json: &str| -> Vec<String> {
                        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default()
                    };
                    return Err(format!(
                        "run {run_id} in {} ran with other parameters (it had {:?}; this run \
                         has {:?}, with other values where the names agree); resume it with \
                         the same ones",
                        store.describe(),
                        names(&run.parameters),
                        names(&params),
                    ));
                }
                let mut tasks = store.task_runs(run_id).map_err(|e| e.to_string())?;
                // Looked up by index: sorted, whatever order a store gives them in.
                tasks.sort_by_key(|t| t.index);
                tasks.dedup_by_key(|t| t.index);
                tracing::info!(
                    flow = name,
                    run_id,
                    task_runs = tasks.len(),
                    "resuming a flow run"
                );
                (tasks, run.started)
            }
            None if must_exist => {
                return Err(format!(
                    "cannot resume run {run_id}: {} has no such run",
                    store.describe()
                ))
            }
            None => (Vec::new(), now),
        };
        store
            .put_flow_run(&FlowRunRecord {
                run_id: run_id.to_owned(),
                flow: name.to_owned(),
                parameters: params,
                state: FlowRunState::Running,
                message: String::new(),
                started,
                ended: None,
            })
            .map_err(|e| e.to_string())?;
        Ok(Recorder {
            store,
            next: std::sync::atomic::AtomicU32::new(0),
            earlier,
            diverged: std::sync::atomic::AtomicBool::new(false),
            started,
            approved: resume.map(|r| r.approved.clone()).unwrap_or_default(),
        })
    }

    /// Runs `body` as this flow: tasks called inside it see the flow's context and
    /// report their final states to it.
    pub fn run<T>(self, body: impl FnOnce() -> T) -> FlowRun<T> {
        let info = match self.start() {
            Ok(info) => info,
            Err(message) => return FlowRun::not_started(message),
        };
        let mut ctx = Context::current();
        ctx.flow = Some(Arc::clone(&info));
        let outcome = ctx.scope(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)));
        FlowRun::finished(info, outcome)
    }

    /// Runs the future `body` as this flow (for async flows).
    pub async fn run_async<T>(self, body: impl Future<Output = T>) -> FlowRun<T> {
        let info = match self.start() {
            Ok(info) => info,
            Err(message) => return FlowRun::not_started(message),
        };
        let mut ctx = Context::current();
        ctx.flow = Some(Arc::clone(&info));
        let outcome = crate::runtime::in_context(ctx, body).await;
        FlowRun::finished(info, outcome)
    }
}

/// A finished flow run: its own final state and the final state of every task run in it.
#[derive(Debug)]
pub struct FlowRun<T> {
    state: State<T>,
    run_id: String,
    parameters: Parameters,
    task_runs: Vec<TaskRunReport>,
}

impl<T> FlowRun<T> {
    fn not_started(message: String) -> Self {
        FlowRun {
            state: State::failed(Failure::Runtime(message.clone()), message, Utc::now()),
            run_id: String::new(),
            parameters: Parameters::none(),
            task_runs: Vec::new(),
        }
    }

    fn finished(info: Arc<FlowRunInfo>, outcome: std::thread::Result<T>) -> Self {
        let task_runs =
            std::mem::take(&mut *info.reports.lock().unwrap_or_else(|e| e.into_inner()));
        let paused = match &outcome {
            Err(p) => p.downcast_ref::<PauseSignal>().cloned(),
            Ok(_) => None,
        };
        let waits = paused.as_ref().map(|p| {
            let how = if info.recorder.is_some() {
                format!(
                    "approve it with taskcache::resume(\"{}\").approve(\"{}\")",
                    info.run_id, p.task
                )
            } else {
                "this run records no states, so it cannot be resumed: give the flow a state \
                 store"
                    .to_owned()
            };
            format!(
                "flow `{}` is paused: task `{}` waits for approval; {how}",
                info.name, p.task
            )
        });
        if let Some(recorder) = &info.recorder {
            let (state, message) = match (&outcome, &waits) {
                (_, Some(w)) => (FlowRunState::Paused, w.clone()),
                (Ok(_), None) => (FlowRunState::Success, String::new()),
                (Err(p), None) => (FlowRunState::Failed, panic_message(p.as_ref()).to_string()),
            };
            let record = FlowRunRecord {
                run_id: info.run_id.clone(),
                flow: info.name.to_string(),
                parameters: info.parameters.to_json(),
                state,
                message,
                started: recorder.started,
                ended: Some(Utc::now()),
            };
            if let Err(e) = recorder.store.put_flow_run(&record) {
                tracing::warn!(flow = %info.name, run_id = %info.run_id, error = %e, "cannot record the flow run's end");
            }
        }
        let (kind, message, output) = match (outcome, paused, waits) {
            (_, Some(signal), Some(message)) => (
                StateKind::Paused,
                Cow::Owned(message),
                Output::Failed(Failure::Paused(signal)),
            ),
            (Ok(v), ..) => (
                StateKind::Success,
                Cow::Borrowed("All tasks finished."),
                Output::Value(v),
            ),
            (Err(p), ..) => (
                StateKind::Failed,
                Cow::Owned(format!(
                    "flow `{}` panicked: {}",
                    info.name,
                    panic_message(p.as_ref())
                )),
                Output::Failed(Failure::Panic(p)),
            ),
        };
        FlowRun {
            state: State {
                kind,
                message,
                output,
                cached: None,
                run_count: 1,
                timestamp: crate::context::to_nanos(Utc::now()),
                previous: Vec::new(),
                location: None,
                persist_error: None,
                digest: None,
                miss: None,
            },
            run_id: info.run_id.clone(),
            parameters: info.parameters.clone(),
            task_runs,
        }
    }

    /// The flow's own final state: `Success` with the body's output, or `Failed`.
    pub fn state(&self) -> &State<T> {
        &self.state
    }

    /// The final state of every task run, in the order they finished.
    pub fn task_runs(&self) -> &[TaskRunReport] {
        &self.task_runs
    }

    /// The final states of the runs of the task called `name`.
    pub fn task_runs_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a TaskRunReport> + 'a {
        self.task_runs.iter().filter(move |r| r.task_name == name)
    }

    /// The flow run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The parameters the flow ran with.
    pub fn parameters(&self) -> &Parameters {
        &self.parameters
    }

    /// What calling the flow function returns: the body's output.
    ///
    /// # Panics
    /// Re-raises the body's panic, or panics with the reason the flow could not start.
    pub fn into_output(self) -> T {
        self.state.into_output()
    }
}
