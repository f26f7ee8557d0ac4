//! A task call's place in a flow run that records its states: what is written to the
//! state store as the call's state changes, and what an earlier attempt of the same
//! run left to replay.
//!
//! Calls are matched to the earlier attempt's by their position among the run's task
//! calls and by the task's name, as durable-execution engines match commands to their
//! history: the flow function must call its tasks in the same order every time. A call
//! to another task than the earlier one at its position is reported, and from there on
//! nothing of the earlier attempt is replayed (a mismatched run recomputes; it is never
//! fed another task's value).

use crate::flow::{FlowRunInfo, Recorder};
use crate::result::{Location, PayloadDigest};
use crate::state::{State, StateKind};
use crate::state_store::{TaskRunRecord, TaskRunState};
use chrono::Utc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One task call's place in a recording flow run.
pub(crate) struct Slot {
    flow: Arc<FlowRunInfo>,
    index: u32,
}

/// A call that was `Retrying` when its process died.
pub(crate) struct EarlierRetry {
    pub(crate) run_count: u32,
    pub(crate) inputs: Option<Vec<u8>>,
    pub(crate) next_attempt: Option<chrono::DateTime<Utc>>,
}

/// What an earlier attempt left for a call to replay: its persisted result.
pub(crate) struct Earlier {
    pub(crate) location: Location,
    pub(crate) digest: Option<PayloadDigest>,
}

impl Slot {
    /// The next call's place, when the current flow run records its states.
    ///
    /// Only the flow function's own calls take a place: a call made inside a task's
    /// body belongs to that task (replaying its caller replays it too), and numbering
    /// it would shift the places of the calls after it whenever its caller's body runs
    /// in one attempt and not in the other.
    pub(crate) fn begin() -> Option<Slot> {
        crate::context::Context::with_current(|c| {
            let c = c?;
            if c.task.is_some() || crate::context::framed_task().is_some() {
                return None;
            }
            let flow = c.flow.as_ref()?;
            let index = flow.recorder.as_ref()?.next_index();
            Some(Slot {
                flow: Arc::clone(flow),
                index,
            })
        })
    }

    fn recorder(&self) -> &Recorder {
        self.flow
            .recorder
            .as_ref()
            .expect("a slot is only made for a recording run")
    }

    /// The earlier attempt's record at this call's position, whatever its task.
    fn earlier_at(&self) -> Option<&TaskRunRecord> {
        let earlier = &self.recorder().earlier;
        earlier
            .binary_search_by_key(&self.index, |r| r.index)
            .ok()
            .map(|i| &earlier[i])
    }

    /// The earlier attempt's record of this call, if it was a call of `task`.
    fn earlier_record(&self, task: &str) -> Option<&TaskRunRecord> {
        self.earlier_at().filter(|r| r.task == task)
    }

    /// The earlier attempt's result for this call, if it can be replayed.
    pub(crate) fn earlier(&self, task: &'static str) -> Option<Earlier> {
        let recorder = self.recorder();
        if recorder.diverged.load(Ordering::SeqCst) {
            return None;
        }
        let record = self.earlier_at()?;
        if record.task != task {
            recorder.diverged.store(true, Ordering::SeqCst);
            tracing::error!(
                flow = %self.flow.name,
                run_id = %self.flow.run_id,
                call = self.index,
                earlier = %record.task,
                now = task,
                "the resumed flow run calls its tasks in another order than before: call \
                 #{} was `{}` and is now `{task}`; nothing more of the earlier attempt is \
                 replayed (a flow function must call its tasks in the same order each time)",
                self.index,
                record.task,
            );
            return None;
        }
        if !matches!(record.state, TaskRunState::Success | TaskRunState::Cached) {
            return None;
        }
        let Some(location) = record.location.as_deref() else {
            tracing::info!(
                task,
                run_id = %self.flow.run_id,
                call = self.index,
                "the task succeeded in the earlier attempt of this flow run, but its \
                 result was not persisted (give it a `result`): it runs again"
            );
            return None;
        };
        let location = Location::new(location).ok()?;
        Some(Earlier {
            location,
            digest: record.result_digest.map(PayloadDigest),
        })
    }

    /// Whether this `manual_only` call was approved for this attempt, and if so the
    /// inputs its paused call persisted (`Some(None)`: approved, but nothing persisted
    /// at this position: the call's own inputs are used).
    pub(crate) fn approval(&self, task: &'static str) -> Option<Option<Vec<u8>>> {
        let recorder = self.recorder();
        if !recorder.approved.iter().any(|t| t == task) {
            return None;
        }
        let persisted = self
            .earlier_record(task)
            .filter(|r| r.state == TaskRunState::Paused)
            .and_then(|r| r.inputs.clone());
        Some(persisted)
    }

    /// The flow run's id.
    pub(crate) fn run_id(&self) -> &str {
        &self.flow.run_id
    }

    /// Records that the call waits for approval, with its persisted inputs.
    pub(crate) fn paused(&self, task: &'static str, message: &str, inputs: Option<Vec<u8>>) {
        self.put(TaskRunRecord {
            run_id: self.flow.run_id.clone(),
            index: self.index,
            task: task.to_owned(),
            state: TaskRunState::Paused,
            run_count: 0,
            message: message.to_owned(),
            location: None,
            result_digest: None,
            inputs,
            next_attempt: None,
            updated: Utc::now(),
        });
    }

    /// What an earlier attempt of the run left of this call if it was `Retrying` when
    /// its process died: its attempts so far, its persisted inputs, and when it was due
    /// to run again.
    pub(crate) fn earlier_retry(&self, task: &'static str) -> Option<EarlierRetry> {
        let recorder = self.recorder();
        if recorder.diverged.load(Ordering::SeqCst) {
            return None;
        }
        let record = self
            .earlier_record(task)
            .filter(|r| r.state == TaskRunState::Retrying)?;
        Some(EarlierRetry {
            run_count: record.run_count,
            inputs: record.inputs.clone(),
            next_attempt: record.next_attempt,
        })
    }

    /// Records that the call failed and runs again at `next_attempt`, with its inputs.
    pub(crate) fn retrying(
        &self,
        task: &'static str,
        run_count: u32,
        message: &str,
        inputs: Option<Vec<u8>>,
        next_attempt: Option<chrono::DateTime<Utc>>,
    ) {
        self.put(TaskRunRecord {
            run_id: self.flow.run_id.clone(),
            index: self.index,
            task: task.to_owned(),
            state: TaskRunState::Retrying,
            run_count,
            message: message.to_owned(),
            location: None,
            result_digest: None,
            inputs,
            next_attempt,
            updated: Utc::now(),
        });
    }

    /// Records that the call's body is about to run.
    pub(crate) fn running(&self, task: &'static str, run_count: u32) {
        // Inputs a paused or retrying call persisted stay with it while it runs again,
        // so that a second crash does not lose them.
        let inputs = self.earlier_record(task).and_then(|r| r.inputs.clone());
        self.put(TaskRunRecord {
            run_id: self.flow.run_id.clone(),
            index: self.index,
            task: task.to_owned(),
            state: TaskRunState::Running,
            run_count,
            message: String::new(),
            location: None,
            result_digest: None,
            inputs,
            next_attempt: None,
            updated: Utc::now(),
        });
    }

    /// Records the call's final state.
    pub(crate) fn finished<T>(&self, task: &'static str, state: &State<T>) {
        let kind = match state.kind {
            StateKind::Pending => TaskRunState::Pending,
            StateKind::Running => TaskRunState::Running,
            StateKind::Success => TaskRunState::Success,
            StateKind::Cached => TaskRunState::Cached,
            StateKind::Failed => TaskRunState::Failed,
            StateKind::Retrying => TaskRunState::Retrying,
            StateKind::Paused => TaskRunState::Paused,
        };
        self.put(TaskRunRecord {
            run_id: self.flow.run_id.clone(),
            index: self.index,
            task: task.to_owned(),
            state: kind,
            run_count: state.run_count,
            message: state.message.to_string(),
            location: state.location.as_ref().map(|l| l.as_str().to_owned()),
            result_digest: state.digest.map(|d| d.0),
            inputs: None,
            next_attempt: None,
            updated: Utc::now(),
        });
    }

    fn put(&self, record: TaskRunRecord) {
        if let Err(e) = self.recorder().store.put_task_run(&record) {
            tracing::warn!(
                task = %record.task,
                run_id = %record.run_id,
                error = %e,
                "cannot record the task run's state; a resume of this flow run will run \
                 it again"
            );
        }
    }
}
