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
use crate::state::{panic_message, Failure, Output, State, StateKind};
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
}

impl FlowRunInfo {
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
}

impl Flow {
    /// A flow called `name`, with no parameters yet.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Flow {
            name: name.into(),
            parameters: BTreeMap::new(),
            scheduled_start_time: None,
            error: None,
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

    fn start(self) -> Result<Arc<FlowRunInfo>, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let ctx = Context::current();
        let now = ctx.clock.now();
        Ok(Arc::new(FlowRunInfo {
            name: Arc::from(&*self.name),
            run_id: uuid::Uuid::new_v4().to_string(),
            date: ctx.date.unwrap_or(now),
            scheduled_start_time: self.scheduled_start_time.unwrap_or(now),
            parameters: Parameters::from_map(self.parameters),
            reports: Mutex::new(Vec::new()),
        }))
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
        let (kind, message, output) = match outcome {
            Ok(v) => (
                StateKind::Success,
                Cow::Borrowed("All tasks finished."),
                Output::Value(v),
            ),
            Err(p) => (
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
