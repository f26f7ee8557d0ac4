//! [`SqliteStateStore`]: the embedded [`StateStore`], one SQLite file in WAL mode.

use super::{
    FlowRunRecord, FlowRunState, StateStore, StateStoreError, TaskRunRecord, TaskRunState,
};
use chrono::{DateTime, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row};
use rusqlite::{Error as SqlError, TransactionBehavior};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The format version this build writes and reads (`PRAGMA user_version`).
const FORMAT_VERSION: i64 = 1;

/// How long a writer waits for another connection (another process) to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The tables of format version 1, created in one transaction with the version.
const SCHEMA: &str = "
CREATE TABLE flow_runs (
    run_id     TEXT    NOT NULL PRIMARY KEY,
    flow       TEXT    NOT NULL,
    parameters TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    started    INTEGER NOT NULL,
    ended      INTEGER
);
CREATE INDEX flow_runs_by_started ON flow_runs (started DESC, run_id);
CREATE TABLE task_runs (
    run_id        TEXT    NOT NULL,
    idx           INTEGER NOT NULL,
    task          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    run_count     INTEGER NOT NULL,
    message       TEXT    NOT NULL,
    location      TEXT,
    result_digest BLOB,
    inputs        BLOB,
    next_attempt  INTEGER,
    updated       INTEGER NOT NULL,
    PRIMARY KEY (run_id, idx)
);
PRAGMA user_version = 1;
";

/// The columns of each table (name, declared type), in order, as `SCHEMA` makes them:
/// what a file of version 1 must have.
const TABLES: [(&str, &[(&str, &str)]); 2] = [
    (
        "flow_runs",
        &[
            ("run_id", "TEXT"),
            ("flow", "TEXT"),
            ("parameters", "TEXT"),
            ("state", "TEXT"),
            ("message", "TEXT"),
            ("started", "INTEGER"),
            ("ended", "INTEGER"),
        ],
    ),
    (
        "task_runs",
        &[
            ("run_id", "TEXT"),
            ("idx", "INTEGER"),
            ("task", "TEXT"),
            ("state", "TEXT"),
            ("run_count", "INTEGER"),
            ("message", "TEXT"),
            ("location", "TEXT"),
            ("result_digest", "BLOB"),
            ("inputs", "BLOB"),
            ("next_attempt", "INTEGER"),
            ("updated", "INTEGER"),
        ],
    ),
];

const PUT_FLOW_RUN: &str = "
INSERT INTO flow_runs (run_id, flow, parameters, state, message, started, ended)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (run_id) DO UPDATE SET
    flow = excluded.flow, parameters = excluded.parameters, state = excluded.state,
    message = excluded.message, started = excluded.started, ended = excluded.ended";

const PUT_TASK_RUN: &str = "
INSERT INTO task_runs (run_id, idx, task, state, run_count, message, location,
                       result_digest, inputs, next_attempt, updated)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
ON CONFLICT (run_id, idx) DO UPDATE SET
    task = excluded.task, state = excluded.state, run_count = excluded.run_count,
    message = excluded.message, location = excluded.location,
    result_digest = excluded.result_digest, inputs = excluded.inputs,
    next_attempt = excluded.next_attempt, updated = excluded.updated";

/// The columns `flow_from_row` reads, in its order.
macro_rules! flow_columns {
    () => {
        "run_id, flow, parameters, state, message, started, ended"
    };
}

/// The columns `task_from_row` reads, in its order.
macro_rules! task_columns {
    () => {
        "run_id, idx, task, state, run_count, message, location, result_digest, inputs, \
         next_attempt, updated"
    };
}

const SELECT_FLOW_RUN: &str = concat!(
    "SELECT ",
    flow_columns!(),
    " FROM flow_runs WHERE run_id = ?1"
);

const SELECT_FLOW_RUNS: &str = concat!(
    "SELECT ",
    flow_columns!(),
    " FROM flow_runs ORDER BY started DESC, run_id"
);

const SELECT_TASK_RUNS: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM task_runs WHERE run_id = ?1 ORDER BY idx"
);

/// The embedded [`StateStore`]: one SQLite file in WAL mode, which several processes on
/// one machine can use at once.
///
/// Each handle holds one connection; calls from several threads take turns on it.
/// [`flow_runs`](StateStore::flow_runs) lists the most recently started first, runs
/// started at the same instant by `run_id`; [`task_runs`](StateStore::task_runs) lists by
/// index.
///
/// # Format (version 1)
///
/// The format version is kept in `PRAGMA user_version`. A new (or zero-length) file
/// gets both tables and version 1 in one transaction; a file of a later version is
/// refused with [`StateStoreError::NewerFormat`] and left untouched.
///
/// ```sql
/// CREATE TABLE flow_runs (
///     run_id TEXT NOT NULL PRIMARY KEY, flow TEXT NOT NULL, parameters TEXT NOT NULL,
///     state TEXT NOT NULL, message TEXT NOT NULL,
///     started INTEGER NOT NULL, ended INTEGER);
/// CREATE INDEX flow_runs_by_started ON flow_runs (started DESC, run_id);
/// CREATE TABLE task_runs (
///     run_id TEXT NOT NULL, idx INTEGER NOT NULL, task TEXT NOT NULL,
///     state TEXT NOT NULL, run_count INTEGER NOT NULL, message TEXT NOT NULL,
///     location TEXT, result_digest BLOB, inputs BLOB,
///     next_attempt INTEGER, updated INTEGER NOT NULL,
///     PRIMARY KEY (run_id, idx));
/// ```
///
/// States are stored by their names ([`FlowRunState::as_str`], [`TaskRunState::as_str`]).
/// Timestamps are stored as integer nanoseconds since the Unix epoch, so they read back
/// exactly as written and sort as numbers. That integer covers 1677-09-21T00:12:43Z to
/// 2262-04-11T23:47:16Z; an instant outside that range is stored as the nearest end of
/// it (a `next_attempt` a thousand years away reads back as in 2262: as good as never).
///
/// Everything read is checked: a state name this build does not know, a digest that is
/// not 32 bytes, a negative index or attempt count, a value of the wrong type, is
/// [`StateStoreError::Corrupt`] naming the run and the field, never a panic or a
/// silently wrong record.
///
/// # Concurrency and durability
///
/// The file is in WAL mode: readers never block the writer, and several processes on
/// one machine can use the store at once; a writer waits up to 10 s for another to
/// finish ([`StateStoreError::Io`] after that). WAL needs shared memory between the
/// processes, so the file must be on a local disk, not a network file system.
///
/// Each `put_*` is one statement, committed when it returns. By default
/// (`PRAGMA synchronous=NORMAL`) a commit survives the process being killed, even with
/// SIGKILL; only a power loss or an operating system crash can lose the last commits.
/// [`SqliteStateStore::durable`] makes each commit survive those too, at the price of
/// an fsync per commit.
pub struct SqliteStateStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    durable: bool,
}

impl SqliteStateStore {
    /// Opens the store at `path`, creating the file if there is none (but not its
    /// directory).
    ///
    /// A new or zero-length file becomes an empty store. Commits survive the process
    /// being killed; see [`durable`](Self::durable) for power loss.
    ///
    /// # Errors
    /// [`StateStoreError::Io`] when the file cannot be opened or created (its directory
    /// does not exist, permissions) or another process keeps it locked for more than
    /// 10 s; [`StateStoreError::Corrupt`] when it is not a SQLite database, or is one
    /// without the tables of a state store; [`StateStoreError::NewerFormat`] when a
    /// newer taskcache wrote it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateStoreError> {
        let path = path.as_ref().to_path_buf();
        // The store holds flow parameters and persisted inputs, which may be secrets: a
        // new file is readable by its owner only (as cache records are), and SQLite
        // gives its `-wal` and `-shm` files the database file's permissions.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    let message = if e.kind() == std::io::ErrorKind::NotFound {
                        "its directory does not exist (it is not created: create it first)"
                            .to_owned()
                    } else {
                        format!("cannot create the file: {e}")
                    };
                    return Err(StateStoreError::Io { path, message });
                }
            }
        }
        // No SQLITE_OPEN_URI: the path is a file name, even if it starts with `file:`.
        // NO_MUTEX: the connection is only used under `self.conn`'s lock.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn =
            Connection::open_with_flags(&path, flags).map_err(|e| open_error(&path, e))?;
        let err = |doing: &'static str| {
            let path = &path;
            move |e: SqlError| sql_error(path, doing, e)
        };
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(err("setting the busy timeout"))?;

        // Reading the version reads the file's header: a file that is not a database
        // fails here, before anything is written to it.
        let version = probe(&conn, &path)?;
        if version != 0 {
            check_schema(&conn, &path)?;
        }

        switch_to_wal(&conn, &path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err("setting PRAGMA synchronous"))?;

        if version == 0 {
            create_schema(&mut conn, &path)?;
        }
        Ok(SqliteStateStore {
            conn: Mutex::new(conn),
            path,
            durable: false,
        })
    }

    /// Makes each commit also survive power loss and operating system crashes when `on`
    /// (`PRAGMA synchronous=FULL`: an fsync of the WAL per commit, which costs a few
    /// milliseconds on many disks); `false` restores the default
    /// (`PRAGMA synchronous=NORMAL`: a commit survives the process being killed, but a
    /// power loss may lose the last commits, never damaging the file).
    ///
    /// The setting is this handle's: other handles on the same file keep theirs.
    ///
    /// # Errors
    /// [`StateStoreError::Io`] if SQLite refuses the setting.
    pub fn durable(mut self, on: bool) -> Result<Self, StateStoreError> {
        self.lock()
            .pragma_update(None, "synchronous", if on { "FULL" } else { "NORMAL" })
            .map_err(|e| sql_error(&self.path, "setting PRAGMA synchronous", e))?;
        self.durable = on;
        Ok(self)
    }

    /// Whether each commit survives power loss (see [`durable`](Self::durable)).
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// The store's file, as given to [`open`](Self::open).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection. A thread that panicked while holding it cannot have left a
    /// statement half done (each is its own transaction), so a poisoned lock is taken
    /// over; a transaction left open, if any, is rolled back.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        match self.conn.lock() {
            Ok(conn) => conn,
            Err(poisoned) => {
                self.conn.clear_poison();
                let conn = poisoned.into_inner();
                if !conn.is_autocommit() {
                    // If this fails, the next statement reports why.
                    let _ = conn.execute_batch("ROLLBACK");
                }
                conn
            }
        }
    }

    fn corrupt(&self, reason: String) -> StateStoreError {
        StateStoreError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }
}

impl fmt::Debug for SqliteStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStateStore")
            .field("path", &self.path)
            .field("durable", &self.durable)
            .finish()
    }
}

impl StateStore for SqliteStateStore {
    fn describe(&self) -> String {
        format!("SqliteStateStore({})", self.path.display())
    }

    fn put_flow_run(&self, run: &FlowRunRecord) -> Result<(), StateStoreError> {
        let conn = self.lock();
        conn.prepare_cached(PUT_FLOW_RUN)
            .and_then(|mut stmt| {
                stmt.execute(params![
                    run.run_id,
                    run.flow,
                    run.parameters,
                    run.state.as_str(),
                    run.message,
                    to_nanos(&run.started),
                    run.ended.as_ref().map(to_nanos),
                ])
            })
            .map_err(|e| {
                let doing = format!("recording flow run {:?}", run.run_id);
                sql_error(&self.path, &doing, e)
            })?;
        Ok(())
    }

    fn put_task_run(&self, task: &TaskRunRecord) -> Result<(), StateStoreError> {
        let conn = self.lock();
        conn.prepare_cached(PUT_TASK_RUN)
            .and_then(|mut stmt| {
                stmt.execute(params![
                    task.run_id,
                    i64::from(task.index),
                    task.task,
                    task.state.as_str(),
                    i64::from(task.run_count),
                    task.message,
                    task.location,
                    task.result_digest,
                    task.inputs,
                    task.next_attempt.as_ref().map(to_nanos),
                    to_nanos(&task.updated),
                ])
            })
            .map_err(|e| {
                let doing = format!("recording task run {:?} #{}", task.run_id, task.index);
                sql_error(&self.path, &doing, e)
            })?;
        Ok(())
    }

    fn flow_run(&self, run_id: &str) -> Result<Option<FlowRunRecord>, StateStoreError> {
        let conn = self.lock();
        let found = conn
            .prepare_cached(SELECT_FLOW_RUN)
            .and_then(|mut stmt| {
                stmt.query_row([run_id], |row| Ok(flow_from_row(row)))
                    .optional()
            })
            .map_err(|e| sql_error(&self.path, &format!("reading flow run {run_id:?}"), e))?;
        found.transpose().map_err(|reason| self.corrupt(reason))
    }

    fn flow_runs(&self) -> Result<Vec<FlowRunRecord>, StateStoreError> {
        let conn = self.lock();
        let err = |e: SqlError| sql_error(&self.path, "reading the flow runs", e);
        let mut stmt = conn.prepare_cached(SELECT_FLOW_RUNS).map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        let mut runs = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            runs.push(flow_from_row(row).map_err(|reason| self.corrupt(reason))?);
        }
        Ok(runs)
    }

    fn task_runs(&self, run_id: &str) -> Result<Vec<TaskRunRecord>, StateStoreError> {
        let conn = self.lock();
        let err = |e: SqlError| {
            sql_error(
                &self.path,
                &format!("reading the task runs of {run_id:?}"),
                e,
            )
        };
        let mut stmt = conn.prepare_cached(SELECT_TASK_RUNS).map_err(err)?;
        let mut rows = stmt.query([run_id]).map_err(err)?;
        let mut tasks = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            tasks.push(task_from_row(row).map_err(|reason| self.corrupt(reason))?);
        }
        Ok(tasks)
    }
}

// ---------------------------------------------------------------------------------------
// Opening

/// The file's format version, checked: a later one is `NewerFormat`, and version 0
/// (a new file) must hold nothing, since a database of some other program is not to be
/// made into a state store. One statement reads both, so that they are consistent with
/// each other while another process creates the tables.
fn probe(conn: &Connection, path: &Path) -> Result<i64, StateStoreError> {
    let (version, objects): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version),
                    (SELECT count(*) FROM sqlite_master)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(|e| sql_error(path, "reading the format version", e))?;
    let corrupt = |reason: String| StateStoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if version > FORMAT_VERSION {
        return Err(StateStoreError::NewerFormat {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version < 0 {
        return Err(corrupt(format!("its format version is {version}")));
    }
    if version == 0 && objects > 0 {
        return Err(corrupt(format!(
            "a SQLite database with {objects} tables or indexes but no format version"
        )));
    }
    Ok(version)
}

/// Switches the file to WAL mode (a no-op when it is already). While another connection
/// switches it or creates the tables at the same moment, SQLite answers `SQLITE_BUSY` at
/// once instead of waiting (its busy timeout does not apply), so this waits and tries
/// again itself, for up to `BUSY_TIMEOUT`.
fn switch_to_wal(conn: &Connection, path: &Path) -> Result<(), StateStoreError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
        {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(StateStoreError::Io {
                    path: path.to_path_buf(),
                    message: format!(
                        "cannot switch it to WAL mode (its journal mode stays {mode})"
                    ),
                })
            }
            Err(e) if is_busy(&e) && start.elapsed() < BUSY_TIMEOUT => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(sql_error(path, "switching to WAL mode", e)),
        }
    }
}

fn is_busy(e: &SqlError) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Creates the tables and sets the version, in one transaction that first looks again:
/// another process may have created them since this one read version 0.
fn create_schema(conn: &mut Connection, path: &Path) -> Result<(), StateStoreError> {
    let err = |doing: &'static str| move |e: SqlError| sql_error(path, doing, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("creating its tables"))?;
    if probe(&tx, path)? == 0 {
        tx.execute_batch(SCHEMA)
            .map_err(err("creating its tables"))?;
    } else {
        check_schema(&tx, path)?;
    }
    tx.commit().map_err(err("creating its tables"))
}

/// A file of version 1 must have the tables and columns of version 1.
fn check_schema(conn: &Connection, path: &Path) -> Result<(), StateStoreError> {
    let err = |e: SqlError| sql_error(path, "reading its schema", e);
    let corrupt = |reason: String| StateStoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut stmt = conn
        .prepare("SELECT name, type FROM pragma_table_info(?1)")
        .map_err(err)?;
    for (table, expected) in TABLES {
        let found = stmt
            .query_map([table], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        if found.is_empty() {
            return Err(corrupt(format!(
                "format version {FORMAT_VERSION}, but it has no table {table}"
            )));
        }
        let same = found.len() == expected.len()
            && found
                .iter()
                .zip(expected)
                .all(|((name, ty), (want, want_ty))| {
                    name.eq_ignore_ascii_case(want) && ty.eq_ignore_ascii_case(want_ty)
                });
        if !same {
            let list = |cols: Vec<String>| cols.join(", ");
            return Err(corrupt(format!(
                "its table {table} has columns ({}), not ({})",
                list(found.iter().map(|(n, t)| format!("{n} {t}")).collect()),
                list(expected.iter().map(|(n, t)| format!("{n} {t}")).collect()),
            )));
        }
    }
    Ok(())
}

/// Why a file could not be opened; a missing directory is named as such.
fn open_error(path: &Path, e: SqlError) -> StateStoreError {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return StateStoreError::Io {
                path: path.to_path_buf(),
                message: format!(
                    "cannot create it: the directory {} does not exist ({e})",
                    dir.display()
                ),
            };
        }
    }
    sql_error(path, "opening it", e)
}

/// `Corrupt` for a file that is not a database or is damaged; `Io` for everything else.
fn sql_error(path: &Path, doing: &str, e: SqlError) -> StateStoreError {
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StateStoreError::Corrupt {
            path,
            reason: format!("{doing}: {e}"),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StateStoreError::Io {
            path,
            message: format!(
                "{doing}: another process (or handle) has held the store locked for more \
                 than {} s ({e})",
                BUSY_TIMEOUT.as_secs()
            ),
        },
        _ => StateStoreError::Io {
            path,
            message: format!("{doing}: {e}"),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Values

/// An instant as stored: nanoseconds since the epoch, clamped to what an `i64` holds.
fn to_nanos(at: &DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

fn from_nanos(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// What a stored value is, for messages.
fn kind(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

// Each reader returns what is wrong with the value, for the caller to name the field.

fn value<'r>(row: &'r Row<'_>, i: usize) -> Result<ValueRef<'r>, String> {
    row.get_ref(i).map_err(|e| e.to_string())
}

fn opt_text(row: &Row<'_>, i: usize) -> Result<Option<String>, String> {
    match value(row, i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| "is not valid UTF-8".to_owned()),
        other => Err(format!("is {}, not text", kind(other))),
    }
}

fn text(row: &Row<'_>, i: usize) -> Result<String, String> {
    opt_text(row, i)?.ok_or_else(|| "is NULL, not text".to_owned())
}

fn opt_int(row: &Row<'_>, i: usize) -> Result<Option<i64>, String> {
    match value(row, i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(n) => Ok(Some(n)),
        other => Err(format!("is {}, not an integer", kind(other))),
    }
}

fn int(row: &Row<'_>, i: usize) -> Result<i64, String> {
    opt_int(row, i)?.ok_or_else(|| "is NULL, not an integer".to_owned())
}

fn count(row: &Row<'_>, i: usize) -> Result<u32, String> {
    let n = int(row, i)?;
    u32::try_from(n).map_err(|_| format!("is {n}, not from 0 to {}", u32::MAX))
}

fn opt_blob(row: &Row<'_>, i: usize) -> Result<Option<Vec<u8>>, String> {
    match value(row, i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(bytes) => Ok(Some(bytes.to_vec())),
        other => Err(format!("is {}, not a blob", kind(other))),
    }
}

fn opt_digest(row: &Row<'_>, i: usize) -> Result<Option<[u8; 32]>, String> {
    match value(row, i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(bytes) => <[u8; 32]>::try_from(bytes)
            .map(Some)
            .map_err(|_| format!("is {} bytes long, not 32", bytes.len())),
        other => Err(format!("is {}, not a blob", kind(other))),
    }
}

/// A row of `FLOW_COLUMNS`, or what is wrong with it.
fn flow_from_row(row: &Row<'_>) -> Result<FlowRunRecord, String> {
    let run_id = text(row, 0).map_err(|why| format!("a flow run's run_id {why}"))?;
    let bad = |field: &str, why: String| format!("flow run {run_id:?}: its {field} {why}");
    let state = text(row, 3).map_err(|why| bad("state", why))?;
    let state = FlowRunState::parse(&state).ok_or_else(|| {
        bad(
            "state",
            format!("is {state:?}, not a flow run state this taskcache knows"),
        )
    })?;
    Ok(FlowRunRecord {
        flow: text(row, 1).map_err(|why| bad("flow", why))?,
        parameters: text(row, 2).map_err(|why| bad("parameters", why))?,
        state,
        message: text(row, 4).map_err(|why| bad("message", why))?,
        started: from_nanos(int(row, 5).map_err(|why| bad("started", why))?),
        ended: opt_int(row, 6)
            .map_err(|why| bad("ended", why))?
            .map(from_nanos),
        run_id,
    })
}

/// A row of `TASK_COLUMNS`, or what is wrong with it.
fn task_from_row(row: &Row<'_>) -> Result<TaskRunRecord, String> {
    let run_id = text(row, 0).map_err(|why| format!("a task run's run_id {why}"))?;
    let index = count(row, 1).map_err(|why| format!("a task run of {run_id:?}: its idx {why}"))?;
    let bad = |field: &str, why: String| format!("task run {run_id:?} #{index}: its {field} {why}");
    let state = text(row, 3).map_err(|why| bad("state", why))?;
    let state = TaskRunState::parse(&state).ok_or_else(|| {
        bad(
            "state",
            format!("is {state:?}, not a task run state this taskcache knows"),
        )
    })?;
    Ok(TaskRunRecord {
        index,
        task: text(row, 2).map_err(|why| bad("task", why))?,
        state,
        run_count: count(row, 4).map_err(|why| bad("run_count", why))?,
        message: text(row, 5).map_err(|why| bad("message", why))?,
        location: opt_text(row, 6).map_err(|why| bad("location", why))?,
        result_digest: opt_digest(row, 7).map_err(|why| bad("result_digest", why))?,
        inputs: opt_blob(row, 8).map_err(|why| bad("inputs", why))?,
        next_attempt: opt_int(row, 9)
            .map_err(|why| bad("next_attempt", why))?
            .map(from_nanos),
        updated: from_nanos(int(row, 10).map_err(|why| bad("updated", why))?),
        run_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};
    use std::sync::Arc;
    use std::time::Instant;

    fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
        match DateTime::from_timestamp(secs, nanos) {
            Some(t) => t,
            None => panic!("bad test instant {secs}.{nanos}"),
        }
    }

    fn flow(run_id: &str, started: DateTime<Utc>) -> FlowRunRecord {
        FlowRunRecord {
            run_id: run_id.to_owned(),
            flow: "etl".to_owned(),
            parameters: r#"{"day":"2024-02-29","n":3}"#.to_owned(),
            state: FlowRunState::Running,
            message: String::new(),
            started,
            ended: None,
        }
    }

    fn task(run_id: &str, index: u32) -> TaskRunRecord {
        TaskRunRecord {
            run_id: run_id.to_owned(),
            index,
            task: format!("task_{index}"),
            state: TaskRunState::Running,
            run_count: 1,
            message: String::new(),
            location: None,
            result_digest: None,
            inputs: None,
            next_attempt: None,
            updated: at(1_700_000_000, 123_456_789),
        }
    }

    fn new_store() -> (tempfile::TempDir, PathBuf, SqliteStateStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.db");
        let store = SqliteStateStore::open(&path).unwrap();
        (dir, path, store)
    }

    /// Bytes that look like nothing: xorshift from a fixed seed.
    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn corrupt_reason(result: Result<impl fmt::Debug, StateStoreError>) -> String {
        match result {
            Err(StateStoreError::Corrupt { reason, .. }) => reason,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn is_send_sync_static_and_a_state_store() {
        fn check<T: StateStore + Send + Sync + 'static>() {}
        check::<SqliteStateStore>();
        let (_dir, path, store) = new_store();
        let dynamic: Arc<dyn StateStore> = Arc::new(store);
        assert_eq!(
            dynamic.describe(),
            format!("SqliteStateStore({})", path.display())
        );
        assert_eq!(
            format!("{dynamic:?}"),
            format!("SqliteStateStore {{ path: {path:?}, durable: false }}")
        );
    }

    #[test]
    fn flow_runs_round_trip() {
        let (_dir, _path, store) = new_store();
        let running = FlowRunRecord {
            message: "läuft \u{1F680} 'quoted' \"too\"".to_owned(),
            ..flow("run-1", at(1_700_000_000, 987_654_321))
        };
        let done = FlowRunRecord {
            state: FlowRunState::Failed,
            message: "task 3 failed: boom".to_owned(),
            ended: Some(at(1_700_000_100, 1)),
            ..flow("run-2", at(1_700_000_050, 0))
        };
        store.put_flow_run(&running).unwrap();
        store.put_flow_run(&done).unwrap();
        assert_eq!(store.flow_run("run-1").unwrap(), Some(running.clone()));
        assert_eq!(store.flow_run("run-2").unwrap(), Some(done.clone()));
        assert_eq!(store.flow_run("run-3").unwrap(), None);
        assert_eq!(store.flow_runs().unwrap(), vec![done, running]);

        for state in [
            FlowRunState::Running,
            FlowRunState::Success,
            FlowRunState::Failed,
            FlowRunState::Paused,
        ] {
            let run = FlowRunRecord {
                state,
                ..flow("states", at(0, 0))
            };
            store.put_flow_run(&run).unwrap();
            assert_eq!(store.flow_run("states").unwrap(), Some(run));
        }
    }

    #[test]
    fn task_runs_round_trip() {
        let (_dir, _path, store) = new_store();
        let full = TaskRunRecord {
            task: "fetch".to_owned(),
            state: TaskRunState::Retrying,
            run_count: 2,
            message: "connection refused".to_owned(),
            location: Some("results/fetch/2024-02-29.bin".to_owned()),
            result_digest: Some(std::array::from_fn(|i| i as u8 * 7)),
            inputs: Some(noise(10_000)),
            next_attempt: Some(at(1_700_000_010, 500)),
            ..task("run", 0)
        };
        let empty_blob = TaskRunRecord {
            inputs: Some(Vec::new()),
            location: Some(String::new()),
            ..task("run", 1)
        };
        let extremes = TaskRunRecord {
            run_count: u32::MAX,
            ..task("run", u32::MAX)
        };
        for t in [&full, &empty_blob, &extremes] {
            store.put_task_run(t).unwrap();
        }
        assert_eq!(
            store.task_runs("run").unwrap(),
            vec![full, empty_blob, extremes]
        );
        assert_eq!(store.task_runs("other").unwrap(), vec![]);

        for state in [
            TaskRunState::Pending,
            TaskRunState::Running,
            TaskRunState::Success,
            TaskRunState::Cached,
            TaskRunState::Failed,
            TaskRunState::Retrying,
            TaskRunState::Paused,
        ] {
            let t = TaskRunRecord {
                state,
                ..task("states", 0)
            };
            store.put_task_run(&t).unwrap();
            assert_eq!(store.task_runs("states").unwrap(), vec![t]);
        }
    }

    #[test]
    fn puts_replace() {
        let (_dir, _path, store) = new_store();
        store.put_flow_run(&flow("r", at(10, 0))).unwrap();
        let ended = FlowRunRecord {
            state: FlowRunState::Success,
            parameters: "{}".to_owned(),
            message: "done".to_owned(),
            ended: Some(at(20, 0)),
            ..flow("r", at(11, 0))
        };
        store.put_flow_run(&ended).unwrap();
        assert_eq!(store.flow_runs().unwrap(), vec![ended.clone()]);
        // Back to None: every column is replaced, not only those that are set.
        let reopened = flow("r", at(12, 0));
        store.put_flow_run(&reopened).unwrap();
        assert_eq!(store.flow_runs().unwrap(), vec![reopened]);

        store.put_task_run(&task("r", 0)).unwrap();
        let succeeded = TaskRunRecord {
            state: TaskRunState::Success,
            location: Some("loc".to_owned()),
            result_digest: Some([0xab; 32]),
            inputs: Some(vec![1, 2, 3]),
            next_attempt: Some(at(30, 0)),
            updated: at(31, 0),
            ..task("r", 0)
        };
        store.put_task_run(&succeeded).unwrap();
        assert_eq!(store.task_runs("r").unwrap(), vec![succeeded]);
        let retrying = TaskRunRecord {
            state: TaskRunState::Retrying,
            run_count: 2,
            task: "renamed".to_owned(),
            ..task("r", 0)
        };
        store.put_task_run(&retrying).unwrap();
        assert_eq!(store.task_runs("r").unwrap(), vec![retrying]);
    }

    #[test]
    fn flow_runs_newest_first_and_task_runs_by_index() {
        let (_dir, _path, store) = new_store();
        // Before the epoch, after it, and a tie broken by run_id.
        for (id, secs) in [("b", 100), ("old", -5_000), ("new", 200), ("a", 100)] {
            store.put_flow_run(&flow(id, at(secs, 0))).unwrap();
        }
        let order: Vec<String> = store
            .flow_runs()
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        assert_eq!(order, ["new", "a", "b", "old"]);

        // By number, not as text (10 after 2), and only the run asked for.
        for index in [10, 2, 0, 1] {
            store.put_task_run(&task("r", index)).unwrap();
            store.put_task_run(&task("r2", index + 100)).unwrap();
        }
        let order: Vec<u32> = store
            .task_runs("r")
            .unwrap()
            .into_iter()
            .map(|t| t.index)
            .collect();
        assert_eq!(order, [0, 1, 2, 10]);
    }

    #[test]
    fn timestamps_round_trip_to_the_nanosecond() {
        let (_dir, path, store) = new_store();
        let now = Utc::now();
        let instants = [
            now,
            at(0, 0),
            at(1_709_210_096, 123_456_789),
            at(-1, 999_999_999),
            Utc.with_ymd_and_hms(1900, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2262, 4, 11, 23, 47, 16).unwrap(),
            Utc.with_ymd_and_hms(1677, 9, 21, 0, 12, 44).unwrap(),
        ];
        for (i, t) in instants.iter().enumerate() {
            let run = FlowRunRecord {
                ended: Some(*t),
                ..flow(&format!("t{i}"), *t)
            };
            store.put_flow_run(&run).unwrap();
            let back = store.flow_run(&run.run_id).unwrap().unwrap();
            assert_eq!(back, run);
            assert_eq!(back.started.nanosecond(), t.nanosecond());
            let t_run = TaskRunRecord {
                next_attempt: Some(*t),
                updated: *t,
                ..task(&run.run_id, 0)
            };
            store.put_task_run(&t_run).unwrap();
            assert_eq!(store.task_runs(&run.run_id).unwrap(), vec![t_run]);
        }
        drop(store);
        let store = SqliteStateStore::open(&path).unwrap();
        assert_eq!(store.flow_run("t0").unwrap().unwrap().started, now);
    }

    #[test]
    fn timestamps_outside_the_nanosecond_range_are_clamped() {
        let (_dir, _path, store) = new_store();
        let far = Utc.with_ymd_and_hms(3000, 1, 1, 0, 0, 0).unwrap();
        let long_ago = Utc.with_ymd_and_hms(1000, 1, 1, 0, 0, 0).unwrap();
        let run = FlowRunRecord {
            ended: Some(DateTime::<Utc>::MAX_UTC),
            ..flow("far", far)
        };
        store.put_flow_run(&run).unwrap();
        store.put_flow_run(&flow("long_ago", long_ago)).unwrap();
        store
            .put_flow_run(&flow("min", DateTime::<Utc>::MIN_UTC))
            .unwrap();
        let back = store.flow_run("far").unwrap().unwrap();
        assert_eq!(back.started, DateTime::from_timestamp_nanos(i64::MAX));
        assert_eq!(back.ended, Some(DateTime::from_timestamp_nanos(i64::MAX)));
        let back = store.flow_run("long_ago").unwrap().unwrap();
        assert_eq!(back.started, DateTime::from_timestamp_nanos(i64::MIN));
        let back = store.flow_run("min").unwrap().unwrap();
        assert_eq!(back.started, DateTime::from_timestamp_nanos(i64::MIN));
    }

    #[test]
    fn data_survives_reopening_and_the_file_is_in_wal_mode() {
        let (_dir, path, store) = new_store();
        store.put_flow_run(&flow("r", at(1, 0))).unwrap();
        store.put_task_run(&task("r", 0)).unwrap();
        drop(store);
        let store = SqliteStateStore::open(&path).unwrap();
        assert_eq!(store.flow_runs().unwrap(), vec![flow("r", at(1, 0))]);
        assert_eq!(store.task_runs("r").unwrap(), vec![task("r", 0)]);
        let conn = store.lock();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
    }

    #[test]
    fn two_handles_see_each_others_commits() {
        let (_dir, path, a) = new_store();
        let b = SqliteStateStore::open(&path).unwrap();
        a.put_flow_run(&flow("from-a", at(1, 0))).unwrap();
        assert_eq!(
            b.flow_run("from-a").unwrap(),
            Some(flow("from-a", at(1, 0)))
        );
        b.put_task_run(&task("from-a", 0)).unwrap();
        assert_eq!(a.task_runs("from-a").unwrap(), vec![task("from-a", 0)]);
        let done = FlowRunRecord {
            state: FlowRunState::Success,
            ..flow("from-a", at(1, 0))
        };
        b.put_flow_run(&done).unwrap();
        assert_eq!(a.flow_run("from-a").unwrap(), Some(done));
    }

    #[test]
    fn one_handle_writes_while_others_read_and_write() {
        const N: u32 = 300;
        let (_dir, path, writer) = new_store();
        let reader = SqliteStateStore::open(&path).unwrap();
        let other_writer = SqliteStateStore::open(&path).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..N {
                    writer.put_task_run(&task("w1", i)).unwrap();
                }
            });
            s.spawn(|| {
                for i in 0..N {
                    other_writer.put_task_run(&task("w2", i)).unwrap();
                }
            });
            s.spawn(|| {
                let mut seen = 0;
                while seen < N as usize {
                    let tasks = reader.task_runs("w1").unwrap();
                    assert!(tasks.len() >= seen, "a commit went missing");
                    // Commits are seen in order: always a prefix.
                    for (i, t) in tasks.iter().enumerate() {
                        assert_eq!(*t, task("w1", i as u32));
                    }
                    seen = tasks.len();
                }
            });
        });
        assert_eq!(reader.task_runs("w2").unwrap().len(), N as usize);
    }

    #[test]
    fn several_handles_can_create_the_same_new_store_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.db");
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for i in 0..4 {
                let (path, barrier) = (&path, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let store = SqliteStateStore::open(path).unwrap();
                    store.put_task_run(&task("r", i)).unwrap();
                });
            }
        });
        let store = SqliteStateStore::open(&path).unwrap();
        assert_eq!(store.task_runs("r").unwrap().len(), 4);
    }

    const CHILD_TEST: &str = "state_store::sqlite::tests::child_writer";

    /// The writer process of the tests below: this test binary, run again with only
    /// this test and the store, run id and count in the environment. It prints
    /// `committed <index>` once each put has returned.
    #[test]
    #[ignore = "run by the multi-process tests, in a child process"]
    fn child_writer() {
        let Ok(path) = std::env::var("TASKCACHE_TEST_STORE") else {
            return;
        };
        let run = std::env::var("TASKCACHE_TEST_RUN").unwrap();
        let n: u32 = std::env::var("TASKCACHE_TEST_N").unwrap().parse().unwrap();
        let store = SqliteStateStore::open(path).unwrap();
        for i in 0..n {
            store.put_task_run(&task(&run, i)).unwrap();
            println!("committed {i}");
        }
    }

    fn spawn_writer(path: &Path, run: &str, n: u32) -> std::process::Child {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env("TASKCACHE_TEST_STORE", path)
            .env("TASKCACHE_TEST_RUN", run)
            .env("TASKCACHE_TEST_N", n.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap()
    }

    #[test]
    fn several_processes_share_a_store() {
        const N: u32 = 200;
        let (_dir, path, store) = new_store();
        let children: Vec<_> = (0..3)
            .map(|c| spawn_writer(&path, &format!("child-{c}"), N))
            .collect();
        for i in 0..N {
            store.put_task_run(&task("parent", i)).unwrap();
        }
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "a writer process failed");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains(&format!("committed {}", N - 1)), "{text}");
        }
        for run in ["parent", "child-0", "child-1", "child-2"] {
            let tasks = store.task_runs(run).unwrap();
            let expected: Vec<_> = (0..N).map(|i| task(run, i)).collect();
            assert_eq!(tasks, expected, "{run}");
        }
    }

    #[test]
    fn commits_survive_sigkill() {
        use std::io::BufRead;
        let (_dir, path, store) = new_store();
        let mut child = spawn_writer(&path, "killed", 1_000_000);
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut committed = 0;
        for line in lines {
            if let Some(i) = line.unwrap().strip_prefix("committed ") {
                committed = i.parse::<usize>().unwrap() + 1;
                if committed == 300 {
                    break;
                }
            }
        }
        // `Child::kill` is SIGKILL on Unix: no destructor, no flush.
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(committed, 300, "the writer process stopped early");
        let tasks = store.task_runs("killed").unwrap();
        assert!(tasks.len() >= committed, "{} < {committed}", tasks.len());
        for (i, t) in tasks.iter().enumerate() {
            assert_eq!(*t, task("killed", i as u32));
        }
        // The file is fine for a new handle too (the WAL is recovered).
        drop(store);
        let store = SqliteStateStore::open(&path).unwrap();
        assert!(store.task_runs("killed").unwrap().len() >= committed);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_corrupt_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("random.db", noise(8192)),
            ("short.db", noise(7)),
            ("text.db", b"run_id,state\nr1,running\n".repeat(200)),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let err = SqliteStateStore::open(&path).unwrap_err();
            assert!(
                matches!(&err, StateStoreError::Corrupt { path: p, .. } if *p == path),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains(name), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name} was changed");
        }
    }

    #[test]
    fn a_zero_length_file_is_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.db");
        std::fs::write(&path, b"").unwrap();
        let store = SqliteStateStore::open(&path).unwrap();
        assert_eq!(store.flow_runs().unwrap(), vec![]);
        store.put_flow_run(&flow("r", at(1, 0))).unwrap();
        assert_eq!(store.flow_runs().unwrap().len(), 1);
    }

    #[test]
    fn a_newer_format_is_refused() {
        let (_dir, path, store) = new_store();
        store.put_flow_run(&flow("r", at(1, 0))).unwrap();
        drop(store);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 2)
            .unwrap();
        match SqliteStateStore::open(&path) {
            Err(StateStoreError::NewerFormat {
                path: p,
                found: 2,
                supported: 1,
            }) => assert_eq!(p, path),
            other => panic!("expected NewerFormat, got {other:?}"),
        }

        // A bare file with only a version, too.
        let bare = path.with_file_name("bare.db");
        Connection::open(&bare)
            .unwrap()
            .pragma_update(None, "user_version", 7)
            .unwrap();
        assert!(matches!(
            SqliteStateStore::open(&bare),
            Err(StateStoreError::NewerFormat { found: 7, .. })
        ));
    }

    #[test]
    fn a_wrong_schema_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &str, &str); 4] = [
            (
                "no-tables.db",
                "PRAGMA user_version = 1;",
                "no table flow_runs",
            ),
            (
                "no-task-runs.db",
                "CREATE TABLE flow_runs (run_id TEXT NOT NULL PRIMARY KEY, flow TEXT NOT NULL,
                     parameters TEXT NOT NULL, state TEXT NOT NULL, message TEXT NOT NULL,
                     started INTEGER NOT NULL, ended INTEGER);
                 PRAGMA user_version = 1;",
                "no table task_runs",
            ),
            (
                "wrong-columns.db",
                "CREATE TABLE flow_runs (run_id TEXT, flow TEXT);
                 PRAGMA user_version = 1;",
                "flow_runs has columns (run_id TEXT, flow TEXT)",
            ),
            (
                "someone-elses.db",
                "CREATE TABLE notes (body TEXT);",
                "no format version",
            ),
        ];
        for (name, sql, expected) in cases {
            let path = dir.path().join(name);
            Connection::open(&path).unwrap().execute_batch(sql).unwrap();
            let reason = corrupt_reason(SqliteStateStore::open(&path));
            assert!(reason.contains(expected), "{name}: {reason}");
        }
    }

    #[test]
    fn a_missing_directory_is_an_io_error_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no").join("such");
        let path = missing.join("runs.db");
        match SqliteStateStore::open(&path) {
            Err(err @ StateStoreError::Io { .. }) => {
                let text = err.to_string();
                assert!(text.contains(&path.display().to_string()), "{text}");
                assert!(text.contains("does not exist"), "{text}");
            }
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(!missing.exists());
        assert!(!dir.path().join("no").exists());
    }

    #[test]
    fn a_directory_as_the_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            SqliteStateStore::open(dir.path()),
            Err(StateStoreError::Io { .. })
        ));
    }

    /// Writes a row by hand, as a damaged or foreign writer would.
    fn raw(path: &Path, sql: &str) {
        Connection::open(path).unwrap().execute_batch(sql).unwrap();
    }

    #[test]
    fn bad_values_read_back_as_corrupt_naming_run_and_field() {
        let (_dir, path, store) = new_store();
        raw(
            &path,
            "INSERT INTO flow_runs VALUES ('f1', 'etl', '{}', 'exploded', '', 0, NULL);",
        );
        for reason in [
            corrupt_reason(store.flow_run("f1")),
            corrupt_reason(store.flow_runs()),
        ] {
            assert!(reason.contains("\"f1\""), "{reason}");
            assert!(reason.contains("state"), "{reason}");
            assert!(reason.contains("exploded"), "{reason}");
        }
        raw(&path, "DELETE FROM flow_runs;");
        raw(
            &path,
            "INSERT INTO flow_runs VALUES ('f2', 'etl', '{}', 'running', '', 'yesterday', NULL);",
        );
        let reason = corrupt_reason(store.flow_runs());
        assert!(
            reason.contains("\"f2\"") && reason.contains("started"),
            "{reason}"
        );

        let task_cases = [
            (
                "INSERT INTO task_runs VALUES ('t', 0, 'x', 'teleported', 1, '', NULL, NULL, NULL, NULL, 0);",
                "#0: its state",
            ),
            (
                "INSERT INTO task_runs VALUES ('t', 1, 'x', 'success', 1, '', 'loc', x'0102030405', NULL, NULL, 0);",
                "#1: its result_digest is 5 bytes long",
            ),
            (
                "INSERT INTO task_runs VALUES ('t', -1, 'x', 'success', 1, '', NULL, NULL, NULL, NULL, 0);",
                "its idx is -1",
            ),
            (
                "INSERT INTO task_runs VALUES ('t', 4294967296, 'x', 'success', 1, '', NULL, NULL, NULL, NULL, 0);",
                "its idx is 4294967296",
            ),
            (
                "INSERT INTO task_runs VALUES ('t', 2, 'x', 'failed', -3, '', NULL, NULL, NULL, NULL, 0);",
                "#2: its run_count is -3",
            ),
            (
                "INSERT INTO task_runs VALUES ('t', 3, 'x', 'failed', 1, '', NULL, NULL, 'text, not a blob', NULL, 0);",
                "#3: its inputs is text",
            ),
            (
                "INSERT INTO task_runs VALUES ('t', 4, 'x', 'failed', 1, '', x'00ff', NULL, NULL, NULL, 0);",
                "#4: its location is a blob",
            ),
            (
                "INSERT INTO task_runs VALUES ('t', 5, 'x', 'retrying', 1, '', NULL, NULL, NULL, 1.5, 0);",
                "#5: its next_attempt is a real number",
            ),
            (
                "INSERT INTO task_runs VALUES ('t', 6, 'x', 'retrying', 1, CAST(x'ff00' AS TEXT), NULL, NULL, NULL, NULL, 0);",
                "#6: its message is not valid UTF-8",
            ),
        ];
        for (sql, expected) in task_cases {
            raw(&path, "DELETE FROM task_runs;");
            raw(&path, sql);
            let reason = corrupt_reason(store.task_runs("t"));
            assert!(reason.contains("\"t\""), "{reason}");
            assert!(reason.contains(expected), "{expected}: {reason}");
        }
    }

    #[test]
    fn durable_stores_work() {
        let (_dir, path, store) = new_store();
        let store = store.durable(true).unwrap();
        assert!(store.is_durable());
        assert!(format!("{store:?}").contains("durable: true"));
        let sync: i64 = store
            .lock()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        store.put_flow_run(&flow("r", at(1, 0))).unwrap();
        store.put_task_run(&task("r", 0)).unwrap();
        assert_eq!(store.task_runs("r").unwrap(), vec![task("r", 0)]);
        drop(store);
        let store = SqliteStateStore::open(&path).unwrap();
        assert!(!store.is_durable());
        assert_eq!(store.flow_runs().unwrap(), vec![flow("r", at(1, 0))]);
        let store = store.durable(false).unwrap();
        assert!(!store.is_durable());
    }

    #[test]
    fn a_poisoned_lock_is_taken_over() {
        let (_dir, _path, store) = new_store();
        let store = Arc::new(store);
        let holder = Arc::clone(&store);
        let panicked = std::thread::spawn(move || {
            let conn = holder.conn.lock().unwrap();
            conn.execute_batch("BEGIN").unwrap();
            panic!("while holding the connection");
        })
        .join();
        assert!(panicked.is_err());
        assert!(store.conn.is_poisoned());
        store.put_flow_run(&flow("r", at(1, 0))).unwrap();
        assert!(!store.conn.is_poisoned());
        // The open transaction was rolled back, so the put is committed: another
        // handle sees it.
        let other = SqliteStateStore::open(store.path()).unwrap();
        assert_eq!(other.flow_runs().unwrap().len(), 1);
    }

    /// Prints the time to record a task run, as a runtime does per task (Running, then
    /// Success): `cargo test -p taskcache-core --lib state_store -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing, not a test: run with --ignored --nocapture"]
    fn time_per_put_task_run() {
        for (durable, n) in [(false, 10_000u32), (true, 10_000)] {
            let (_dir, _path, store) = new_store();
            let store = store.durable(durable).unwrap();
            let digest = Some([7u8; 32]);
            let start = Instant::now();
            for i in 0..n / 2 {
                let mut t = task("timing", i);
                store.put_task_run(&t).unwrap();
                t.state = TaskRunState::Success;
                t.location = Some(format!("results/task_{i}.bin"));
                t.result_digest = digest;
                store.put_task_run(&t).unwrap();
            }
            let elapsed = start.elapsed();
            println!(
                "durable={durable}: {n} put_task_run in {elapsed:?}: {:.1} µs per put, \
                 {:.1} µs per task (Running + Success)",
                elapsed.as_secs_f64() * 1e6 / f64::from(n),
                elapsed.as_secs_f64() * 2e6 / f64::from(n),
            );
        }
    }
}
