//! The state persistence layer: flow runs and their task runs, recorded as their states
//! change, so that a flow run can pick up where it left off after its process died
//! (Prefect's "compatible state persistence layer").
//!
//! A [`StateStore`] keeps two kinds of record: one [`FlowRunRecord`] per flow run, and
//! one [`TaskRunRecord`] per task call in it, keyed by the run's id and the call's
//! position in the run (its `index`: the first task call of the flow function is 0).
//! Each `put_*` is one committed transaction: once it returns, a process killed with
//! SIGKILL loses nothing of it.
//!
//! [`SqliteStateStore`] is the embedded store: one SQLite file, in WAL mode, that
//! several processes on one machine can use at once. The trait is small so that a
//! store for teams on many machines (PostgreSQL, as Prefect Server uses) can follow.

mod sqlite;

pub use sqlite::SqliteStateStore;

use chrono::{DateTime, Utc};
use std::fmt;
use std::path::PathBuf;

/// Where a flow run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowRunState {
    /// Its flow function is running (or its process died while it was).
    Running,
    /// It ended: the flow function returned.
    Success,
    /// It ended: the flow function panicked, or a task failed it.
    Failed,
    /// It waits for a `manual_only` task to be approved.
    Paused,
}

impl FlowRunState {
    /// The name stored for it: `running`, `success`, `failed`, `paused`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowRunState::Running => "running",
            FlowRunState::Success => "success",
            FlowRunState::Failed => "failed",
            FlowRunState::Paused => "paused",
        }
    }

    /// The state stored as `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "running" => FlowRunState::Running,
            "success" => FlowRunState::Success,
            "failed" => FlowRunState::Failed,
            "paused" => FlowRunState::Paused,
            _ => return None,
        })
    }
}

/// One flow run.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRunRecord {
    /// The run's id (a v4 UUID unless the caller chose one).
    pub run_id: String,
    /// The flow's name.
    pub flow: String,
    /// The flow's parameters, as a JSON object.
    pub parameters: String,
    /// Where the run is.
    pub state: FlowRunState,
    /// A message for people: why it failed, which task waits for approval, …
    pub message: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended (or paused); `None` while it runs.
    pub ended: Option<DateTime<Utc>>,
}

/// Where a task run is: the task states of Prefect, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskRunState {
    /// Not started yet.
    Pending,
    /// Its body is running (or its process died while it was).
    Running,
    /// Its body ran and returned its output.
    Success,
    /// A cached output or target was used.
    Cached,
    /// It failed for good.
    Failed,
    /// It failed and runs again at `next_attempt`, with the persisted inputs.
    Retrying,
    /// It waits for approval (`manual_only`), with the persisted inputs.
    Paused,
}

impl TaskRunState {
    /// The name stored for it: `pending`, `running`, `success`, `cached`, `failed`,
    /// `retrying`, `paused`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskRunState::Pending => "pending",
            TaskRunState::Running => "running",
            TaskRunState::Success => "success",
            TaskRunState::Cached => "cached",
            TaskRunState::Failed => "failed",
            TaskRunState::Retrying => "retrying",
            TaskRunState::Paused => "paused",
        }
    }

    /// The state stored as `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "pending" => TaskRunState::Pending,
            "running" => TaskRunState::Running,
            "success" => TaskRunState::Success,
            "cached" => TaskRunState::Cached,
            "failed" => TaskRunState::Failed,
            "retrying" => TaskRunState::Retrying,
            "paused" => TaskRunState::Paused,
            _ => return None,
        })
    }
}

/// One task call of a flow run.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRunRecord {
    /// The flow run it belongs to.
    pub run_id: String,
    /// Its position among the flow run's task calls, from 0.
    pub index: u32,
    /// The task's name.
    pub task: String,
    /// Where it is.
    pub state: TaskRunState,
    /// Attempts so far.
    pub run_count: u32,
    /// A message for people.
    pub message: String,
    /// The location of its persisted result (Success or Cached with a result).
    pub location: Option<String>,
    /// The SHA-256 of that result's payload, as its file header records it: a resume
    /// reads the result only if it is still this one.
    pub result_digest: Option<[u8; 32]>,
    /// Its owned inputs, encoded in the checked blob format (Retrying and Paused).
    pub inputs: Option<Vec<u8>>,
    /// When it runs again (Retrying).
    pub next_attempt: Option<DateTime<Utc>>,
    /// When this record was written.
    pub updated: DateTime<Utc>,
}

/// Why a state store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateStoreError {
    /// The store's file could not be opened, read or written.
    #[error(
        "the state store {}: {message}; check that the directory exists and is writable, \
         and that the disk has free space",
        path.display()
    )]
    Io {
        /// The store's file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The file is not a state store, or is damaged.
    #[error(
        "the state store {} is damaged or not a taskcache state store ({reason}); move it \
         aside to start a new one (flow runs recorded in it cannot be resumed)",
        path.display()
    )]
    Corrupt {
        /// The store's file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by a newer taskcache, whose format this one cannot read.
    #[error(
        "the state store {} has format version {found}, newer than the {supported} this \
         taskcache reads; upgrade taskcache, or use another file",
        path.display()
    )]
    NewerFormat {
        /// The store's file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build reads.
        supported: i64,
    },
}

/// Where flow runs and their task runs are recorded (see the [module](self)).
pub trait StateStore: Send + Sync + fmt::Debug + 'static {
    /// A description for messages: `SqliteStateStore(runs.db)`.
    fn describe(&self) -> String;
    /// Inserts or replaces the flow run `run.run_id`, committed.
    ///
    /// # Errors
    /// When it cannot be stored.
    fn put_flow_run(&self, run: &FlowRunRecord) -> Result<(), StateStoreError>;
    /// Inserts or replaces the task run (`task.run_id`, `task.index`), committed.
    ///
    /// # Errors
    /// When it cannot be stored.
    fn put_task_run(&self, task: &TaskRunRecord) -> Result<(), StateStoreError>;
    /// The flow run `run_id`, if there is one.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn flow_run(&self, run_id: &str) -> Result<Option<FlowRunRecord>, StateStoreError>;
    /// Every flow run, the most recently started first.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn flow_runs(&self) -> Result<Vec<FlowRunRecord>, StateStoreError>;
    /// The task runs of `run_id`, by index.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn task_runs(&self, run_id: &str) -> Result<Vec<TaskRunRecord>, StateStoreError>;
}

/// A shared store is a store: one handle for many flow runs (`Arc::clone` per run).
impl<S: StateStore + ?Sized> StateStore for std::sync::Arc<S> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn put_flow_run(&self, run: &FlowRunRecord) -> Result<(), StateStoreError> {
        (**self).put_flow_run(run)
    }
    fn put_task_run(&self, task: &TaskRunRecord) -> Result<(), StateStoreError> {
        (**self).put_task_run(task)
    }
    fn flow_run(&self, run_id: &str) -> Result<Option<FlowRunRecord>, StateStoreError> {
        (**self).flow_run(run_id)
    }
    fn flow_runs(&self) -> Result<Vec<FlowRunRecord>, StateStoreError> {
        (**self).flow_runs()
    }
    fn task_runs(&self, run_id: &str) -> Result<Vec<TaskRunRecord>, StateStoreError> {
        (**self).task_runs(run_id)
    }
}
