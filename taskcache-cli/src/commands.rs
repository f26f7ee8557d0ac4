//! The four commands: `ls`, `verify`, `gc`, `rm`.

use crate::catalog::{
    self, by_location, list_results, par_map, progress_bar, read_record, read_records, store_error,
    Record, RecordState,
};
use crate::cli::{Cli, Command, GcArgs, LsArgs, RmArgs, VerifyArgs};
use crate::error::CliError;
use crate::output::{self, status, Table};
use crate::{EXIT_DAMAGED, EXIT_ERROR, EXIT_OK};
use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};
use taskcache::results::{Header, RecordInfo, ResultBackend, ResultEntry, ResultError};

/// Temporary and lock files older than this, that nobody holds, are leftovers of
/// processes that died (`gc --expired`).
const STALE_AFTER: Duration = Duration::from_secs(60);

/// What every command is given besides its arguments.
struct Ctx<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    jobs: usize,
    quiet: bool,
    progress: bool,
}

impl Ctx<'_> {
    fn status(&mut self, verb: &str, message: &str) {
        status(self.err, self.quiet, verb, message);
    }

    fn bar(&self, json: bool, bytes: bool) -> ProgressBar {
        progress_bar(self.progress && !json && !self.quiet, bytes)
    }

    fn json(&mut self, value: &impl Serialize) -> Result<(), CliError> {
        serde_json::to_writer_pretty(&mut *self.out, value).map_err(std::io::Error::from)?;
        writeln!(self.out)?;
        Ok(())
    }
}

/// Runs the parsed command line; the exit code.
pub(crate) fn run(
    cli: &Cli,
    out: &mut dyn Write,
    err: &mut dyn Write,
    progress: bool,
) -> Result<i32, CliError> {
    let mut ctx = Ctx {
        out,
        err,
        jobs: catalog::jobs(cli.jobs),
        quiet: cli.quiet,
        progress,
    };
    match &cli.command {
        Command::Ls(args) => ls(&*catalog::open(&args.store.dir)?, args, &mut ctx),
        Command::Verify(args) => verify(&*catalog::open(&args.store.dir)?, args, &mut ctx),
        Command::Gc(args) => gc(&*catalog::open(&args.store.dir)?, args, &mut ctx),
        Command::Rm(args) => rm(&*catalog::open(&args.store.dir)?, args, &mut ctx),
    }
}

// ---------------------------------------------------------------------------------- ls

/// One row of `ls --json`.
#[derive(Serialize)]
struct LsRow<'a> {
    location: &'a str,
    /// From the record pointing at the result, when there is one.
    task: Option<&'a str>,
    key: Option<&'a str>,
    /// The stored type's fingerprint, 16 hex digits.
    type_fingerprint: Option<String>,
    serializer: Option<String>,
    serializer_id: Option<u8>,
    size: u64,
    modified: Option<String>,
    age_seconds: Option<i64>,
    expiration: Option<String>,
    expired: bool,
    code_version: Option<&'a str>,
    created: Option<String>,
    /// How many cache records point at the result.
    records: usize,
    /// Whether the record shown describes the file as it is (false: the file was
    /// overwritten since, and the record no longer serves).
    record_matches: bool,
    /// Why the header cannot be read, for a damaged file.
    damaged: Option<String>,
    #[serde(skip)]
    modified_time: Option<SystemTime>,
    #[serde(skip)]
    expiration_time: Option<DateTime<Utc>>,
}

/// A record whose result is gone, in `ls --json`.
#[derive(Serialize)]
struct Orphan<'a> {
    task: &'a str,
    key: &'a str,
    id: &'a str,
    location: &'a str,
}

#[derive(Serialize)]
struct LsJson<'a> {
    store: String,
    results: Vec<LsRow<'a>>,
    records_without_result: Vec<Orphan<'a>>,
}

/// The record to show for a result: the newest whose digest is the file's, else the
/// newest; and whether it matches.
fn record_for<'a>(
    records: Option<&Vec<&'a Record>>,
    header: Option<&Header>,
) -> (Option<&'a RecordInfo>, bool) {
    let infos = records.into_iter().flatten().filter_map(|r| r.info());
    let matching = infos
        .clone()
        .filter(|i| header.is_some_and(|h| h.digest == i.result.0))
        .max_by_key(|i| i.created);
    match matching {
        Some(info) => (Some(info), true),
        None => (infos.max_by_key(|i| i.created), false),
    }
}

fn ls(backend: &dyn ResultBackend, args: &LsArgs, ctx: &mut Ctx<'_>) -> Result<i32, CliError> {
    let now = Utc::now();
    let bar = ctx.bar(args.store.json, false);
    let records = read_records(backend, ctx.jobs, &bar)?;
    let results = list_results(backend)?;
    bar.set_message("reading headers");
    bar.set_position(0);
    bar.set_length(results.len() as u64);
    let headers = par_map(&results, ctx.jobs, |entry| {
        let header = backend.read_header(&entry.location);
        bar.inc(1);
        header
    });
    bar.finish_and_clear();

    let by_location = by_location(&records);
    let mut rows = Vec::with_capacity(results.len());
    for (entry, header) in results.iter().zip(&headers) {
        if matches!(header, Err(ResultError::NotFound { .. })) {
            continue; // removed since it was listed
        }
        let pointing = by_location.get(entry.location.as_str());
        let (info, record_matches) = record_for(pointing, header.as_ref().ok());
        let header_ok = header.as_ref().ok();
        rows.push(LsRow {
            location: entry.location.as_str(),
            task: info.map(|i| i.task.as_str()),
            key: info.map(|i| i.cache_key.as_str()),
            type_fingerprint: header_ok.map(|h| format!("{:016x}", h.fingerprint)),
            serializer: header_ok.map(|h| output::serializer_name(h.serializer)),
            serializer_id: header_ok.map(|h| h.serializer),
            size: entry.size,
            modified: output::rfc3339(entry.modified),
            age_seconds: entry
                .modified
                .map(|m| (now - DateTime::<Utc>::from(m)).num_seconds()),
            expiration: info.and_then(|i| i.expiration).map(|e| e.to_rfc3339()),
            expired: info.and_then(|i| i.expiration).is_some_and(|e| now >= e),
            code_version: info.map(|i| i.code_version.as_str()),
            created: info.map(|i| i.created.to_rfc3339()),
            records: pointing.map_or(0, Vec::len),
            record_matches,
            damaged: header.as_ref().err().map(ToString::to_string),
            modified_time: entry.modified,
            expiration_time: info.and_then(|i| i.expiration),
        });
    }
    let present: HashSet<&str> = rows.iter().map(|r| r.location).collect();
    let orphans: Vec<Orphan<'_>> = records
        .iter()
        .filter_map(|r| Some((r, r.info()?)))
        .filter(|(_, i)| !present.contains(i.location.as_str()))
        .map(|(r, i)| Orphan {
            task: &i.task,
            key: &i.cache_key,
            id: &r.entry.id,
            location: &i.location,
        })
        .collect();

    let total: u64 = rows.iter().map(|r| r.size).sum();
    let summary = format!(
        "{} results ({}), {} cache records{}",
        rows.len(),
        output::size(total),
        records.len(),
        if orphans.is_empty() {
            String::new()
        } else {
            format!(" ({} without their result)", orphans.len())
        }
    );
    if args.store.json {
        ctx.json(&LsJson {
            store: backend.describe(),
            results: rows,
            records_without_result: orphans,
        })?;
    } else {
        let mut table = Table::new(vec![
            "TASK",
            "KEY",
            "LOCATION",
            "TYPE",
            "SERIALIZER",
            "SIZE",
            "AGE",
            "EXPIRES",
            "CODE",
        ]);
        let dash = || "-".to_owned();
        for row in &rows {
            let expires = match row.task {
                None => dash(),
                Some(_) => output::expiry(row.expiration_time, now),
            };
            table.push(vec![
                row.task.map_or_else(dash, str::to_owned),
                row.key.map_or_else(dash, str::to_owned),
                row.location.to_owned(),
                row.type_fingerprint.clone().unwrap_or_else(dash),
                match &row.damaged {
                    Some(_) => "damaged".into(),
                    None => row.serializer.clone().unwrap_or_else(dash),
                },
                output::size(row.size),
                output::age(row.modified_time, now),
                expires,
                match row.code_version {
                    // `sha256:<hex>` (a code fingerprint) or a `cache_version` as written.
                    Some(v) if !v.is_empty() => v
                        .strip_prefix("sha256:")
                        .unwrap_or(v)
                        .chars()
                        .take(12)
                        .collect(),
                    _ => dash(),
                },
            ]);
        }
        if !rows.is_empty() {
            table.print(ctx.out)?;
        }
        ctx.status("Listed", &summary);
    }
    Ok(EXIT_OK)
}

// ------------------------------------------------------------------------------ verify

/// A damaged file, in `verify --json`.
#[derive(Serialize)]
struct Damaged {
    /// `result` or `record`.
    kind: &'static str,
    /// The result's location, or the record's key and id.
    name: String,
    reason: String,
}

#[derive(Serialize)]
struct VerifyJson {
    results: usize,
    records: usize,
    bytes: u64,
    seconds: f64,
    damaged: Vec<Damaged>,
    /// Files that could not be read at all (permissions, a failing store).
    unreadable: Vec<Damaged>,
    /// Intact records of another taskcache version, left alone.
    unknown_records: Vec<String>,
    repaired: bool,
    removed_results: usize,
    removed_records: usize,
    /// What `--repair` could not remove, and why.
    not_removed: Vec<Damaged>,
}

fn verify(
    backend: &dyn ResultBackend,
    args: &VerifyArgs,
    ctx: &mut Ctx<'_>,
) -> Result<i32, CliError> {
    let started = Instant::now();
    let results = list_results(backend)?;
    let mut record_entries = backend
        .list_all_records()
        .map_err(store_error(backend, "list the cache records"))?;
    record_entries.sort();
    let bytes: u64 = results.iter().map(|e| e.size).sum::<u64>()
        + record_entries.iter().map(|e| e.size).sum::<u64>();
    let bar = ctx.bar(args.store.json, true);
    bar.set_message("verifying");
    bar.set_length(bytes);
    let checked = par_map(&results, ctx.jobs, |entry| {
        let verified = backend.verify(&entry.location);
        bar.inc(entry.size);
        verified
    });
    let states = par_map(&record_entries, ctx.jobs, |entry| {
        let state = read_record(backend, entry);
        bar.inc(entry.size);
        state
    });
    bar.finish_and_clear();
    let records: Vec<Record> = record_entries
        .into_iter()
        .zip(states)
        .map(|(entry, state)| Record { entry, state })
        .collect();

    let mut report = VerifyJson {
        results: 0,
        records: records.len(),
        bytes,
        seconds: 0.0,
        damaged: Vec::new(),
        unreadable: Vec::new(),
        unknown_records: Vec::new(),
        repaired: args.repair,
        removed_results: 0,
        removed_records: 0,
        not_removed: Vec::new(),
    };
    let mut damaged_results = Vec::new();
    for (entry, verified) in results.iter().zip(checked) {
        match verified {
            Ok(_) => report.results += 1,
            Err(ResultError::NotFound { .. }) => {} // removed since it was listed
            Err(ResultError::Corrupt { reason, .. }) => {
                report.results += 1;
                report.damaged.push(Damaged {
                    kind: "result",
                    name: entry.location.to_string(),
                    reason,
                });
                damaged_results.push(entry);
            }
            Err(e) => {
                report.results += 1;
                report.unreadable.push(Damaged {
                    kind: "result",
                    name: entry.location.to_string(),
                    reason: e.to_string(),
                });
            }
        }
    }
    let mut damaged_records = Vec::new();
    for record in &records {
        match &record.state {
            RecordState::Read(_) | RecordState::Gone => {}
            RecordState::Unknown => report.unknown_records.push(record.shown()),
            RecordState::Damaged(reason) => {
                report.damaged.push(Damaged {
                    kind: "record",
                    name: record.shown(),
                    reason: reason.clone(),
                });
                damaged_records.push(record);
            }
            RecordState::Failed(reason) => report.unreadable.push(Damaged {
                kind: "record",
                name: record.shown(),
                reason: reason.clone(),
            }),
        }
    }

    if args.repair && !report.damaged.is_empty() {
        let damaged_locations: HashSet<&str> = damaged_results
            .iter()
            .map(|e| e.location.as_str())
            .collect();
        // The records of damaged results go with them: the tasks recompute both.
        let records_to_remove: Vec<&Record> = records
            .iter()
            .filter(|r| {
                r.info()
                    .is_some_and(|i| damaged_locations.contains(i.location.as_str()))
            })
            .chain(damaged_records.iter().copied())
            .collect();
        for record in records_to_remove {
            match backend.remove_record_entry(&record.entry) {
                Ok(()) => report.removed_records += 1,
                Err(e) => report.not_removed.push(Damaged {
                    kind: "record",
                    name: record.shown(),
                    reason: e.to_string(),
                }),
            }
        }
        for entry in damaged_results {
            match backend.remove(&entry.location) {
                Ok(()) => report.removed_results += 1,
                Err(e) => report.not_removed.push(Damaged {
                    kind: "result",
                    name: entry.location.to_string(),
                    reason: e.to_string(),
                }),
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();

    let code = if !report.unreadable.is_empty() {
        EXIT_ERROR
    } else if !report.damaged.is_empty() && (!args.repair || !report.not_removed.is_empty()) {
        EXIT_DAMAGED
    } else {
        EXIT_OK
    };
    if args.store.json {
        ctx.json(&report)?;
        return Ok(code);
    }
    let problems = report
        .damaged
        .iter()
        .map(|d| (d, "damaged"))
        .chain(report.unreadable.iter().map(|d| (d, "unreadable")))
        .chain(report.not_removed.iter().map(|d| (d, "not removed")));
    let mut table = Table::new(vec!["KIND", "FILE", "STATE", "PROBLEM"]);
    let mut any = false;
    for (d, state) in problems {
        any = true;
        table.push(vec![
            d.kind.into(),
            d.name.clone(),
            state.into(),
            d.reason.clone(),
        ]);
    }
    if any {
        table.print(ctx.out)?;
    }
    for unknown in &report.unknown_records {
        let line = format!("{unknown}: a record of another taskcache version, left alone");
        ctx.status("Skipped", &line);
    }
    let mut summary = format!(
        "{} results and {} cache records ({}) in {:.1}s: {} damaged",
        report.results,
        report.records,
        output::size(report.bytes),
        report.seconds,
        report.damaged.len()
    );
    if !report.unreadable.is_empty() {
        summary.push_str(&format!(", {} unreadable", report.unreadable.len()));
    }
    ctx.status("Verified", &summary);
    if args.repair && (report.removed_results + report.removed_records) > 0 {
        let line = format!(
            "{} damaged results and {} cache records",
            report.removed_results, report.removed_records
        );
        ctx.status("Removed", &line);
    } else if !report.damaged.is_empty() && !args.repair {
        ctx.status(
            "Hint",
            "`taskcache verify --repair DIR` removes the damaged files (the tasks recompute them)",
        );
    }
    Ok(code)
}

// ---------------------------------------------------------------------------------- gc

/// What `gc` and `rm` removed (or, with `--dry-run`, would remove).
#[derive(Serialize, Default)]
struct Removal {
    dry_run: bool,
    /// The results, by location, with why.
    results: Vec<RemovedResult>,
    /// The cache records, as key and id, with why.
    records: Vec<RemovedRecord>,
    /// Their bytes (the results').
    bytes: u64,
    /// Temporary and lock files left by processes that died.
    stale_files: usize,
    /// What could not be removed, and why.
    failed: Vec<String>,
}

#[derive(Serialize)]
struct RemovedResult {
    location: String,
    size: u64,
    reason: &'static str,
}

#[derive(Serialize)]
struct RemovedRecord {
    task: Option<String>,
    key: Option<String>,
    id: String,
    reason: &'static str,
}

/// Plans the removal of results and records; then carries it out (unless a dry run).
struct Plan<'a> {
    results: BTreeMap<&'a str, (&'a ResultEntry, &'static str)>,
    records: BTreeMap<&'a str, (&'a Record, &'static str)>,
}

impl<'a> Plan<'a> {
    fn new() -> Self {
        Plan {
            results: BTreeMap::new(),
            records: BTreeMap::new(),
        }
    }

    fn result(&mut self, entry: &'a ResultEntry, reason: &'static str) {
        self.results
            .entry(entry.location.as_str())
            .or_insert((entry, reason));
    }

    fn record(&mut self, record: &'a Record, reason: &'static str) {
        self.records
            .entry(record.entry.name.as_str())
            .or_insert((record, reason));
    }

    /// Adds the records that point at a result to be removed.
    fn records_of_removed_results(&mut self, records: &'a [Record]) {
        for record in records {
            if record
                .info()
                .is_some_and(|i| self.results.contains_key(i.location.as_str()))
            {
                self.record(record, "its result is removed");
            }
        }
    }

    /// Removes what was planned (records first: a record never points at nothing for
    /// longer than it must), `jobs` at a time.
    fn carry_out(
        self,
        backend: &dyn ResultBackend,
        dry_run: bool,
        jobs: usize,
        bar: &ProgressBar,
    ) -> Removal {
        let mut removal = Removal {
            dry_run,
            ..Removal::default()
        };
        let records: Vec<_> = self.records.into_values().collect();
        let results: Vec<_> = self.results.into_values().collect();
        bar.set_message("removing");
        bar.set_length((records.len() + results.len()) as u64);
        let record_outcomes = par_map(&records, jobs, |(record, _)| {
            let removed = if dry_run {
                Ok(())
            } else {
                backend.remove_record_entry(&record.entry)
            };
            bar.inc(1);
            removed
        });
        let result_outcomes = par_map(&results, jobs, |(entry, _)| {
            let removed = if dry_run {
                Ok(())
            } else {
                backend.remove(&entry.location)
            };
            bar.inc(1);
            removed
        });
        bar.finish_and_clear();
        for ((record, reason), outcome) in records.into_iter().zip(record_outcomes) {
            match outcome {
                Ok(()) => removal.records.push(RemovedRecord {
                    task: record.info().map(|i| i.task.clone()),
                    key: record.key().map(str::to_owned),
                    id: record.entry.id.clone(),
                    reason,
                }),
                Err(e) => removal
                    .failed
                    .push(format!("record {}: {e}", record.shown())),
            }
        }
        for ((entry, reason), outcome) in results.into_iter().zip(result_outcomes) {
            match outcome {
                Ok(()) => {
                    removal.bytes += entry.size;
                    removal.results.push(RemovedResult {
                        location: entry.location.to_string(),
                        size: entry.size,
                        reason,
                    });
                }
                Err(e) => removal
                    .failed
                    .push(format!("result {}: {e}", entry.location)),
            }
        }
        removal
    }
}

fn gc(backend: &dyn ResultBackend, args: &GcArgs, ctx: &mut Ctx<'_>) -> Result<i32, CliError> {
    let started = Instant::now();
    let now = Utc::now();
    let now_system = SystemTime::now();
    let bar = ctx.bar(args.store.json, false);
    let records = read_records(backend, ctx.jobs, &bar)?;
    let results = list_results(backend)?;
    let mut plan = Plan::new();

    if let Some(age) = args.older_than {
        for entry in &results {
            let old = entry
                .modified
                .and_then(|m| now_system.duration_since(m).ok())
                .is_some_and(|a| a > age);
            if old {
                plan.result(entry, "older than --older-than");
            }
        }
    }
    if let Some(max) = args.max_bytes {
        let mut left: Vec<&ResultEntry> = results
            .iter()
            .filter(|e| !plan.results.contains_key(e.location.as_str()))
            .collect();
        // Oldest first; a file whose time is unknown counts as new.
        left.sort_by_key(|e| e.modified.unwrap_or(now_system));
        let mut total: u64 = left.iter().map(|e| e.size).sum();
        for entry in left {
            if total <= max {
                break;
            }
            total -= entry.size;
            plan.result(entry, "beyond --max-bytes");
        }
    }
    if args.expired {
        let present: HashSet<&str> = results.iter().map(|e| e.location.as_str()).collect();
        let is_expired = |i: &RecordInfo| i.expiration.is_some_and(|e| now >= e);
        for record in &records {
            match &record.state {
                RecordState::Read(info) if is_expired(info) => plan.record(record, "expired"),
                RecordState::Read(info) if !present.contains(info.location.as_str()) => {
                    plan.record(record, "its result is gone")
                }
                RecordState::Damaged(_) => plan.record(record, "damaged"),
                _ => {}
            }
        }
        // Results that only expired records point at.
        let by_location = by_location(&records);
        for entry in &results {
            if let Some(pointing) = by_location.get(entry.location.as_str()) {
                if pointing.iter().all(|r| r.info().is_some_and(is_expired)) {
                    plan.result(entry, "only expired records point at it");
                }
            }
        }
    }
    plan.records_of_removed_results(&records);
    let mut removal = plan.carry_out(backend, args.dry_run, ctx.jobs, &bar);
    if args.expired && !args.dry_run {
        match backend.remove_stale(STALE_AFTER) {
            Ok(n) => removal.stale_files = n,
            Err(e) => removal
                .failed
                .push(format!("stale temporary and lock files: {e}")),
        }
    }
    report_removal(ctx, &removal, args.store.json, started)
}

fn report_removal(
    ctx: &mut Ctx<'_>,
    removal: &Removal,
    json: bool,
    started: Instant,
) -> Result<i32, CliError> {
    let code = if removal.failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_ERROR
    };
    if json {
        ctx.json(removal)?;
        return Ok(code);
    }
    if !removal.results.is_empty() || !removal.records.is_empty() {
        let mut table = Table::new(vec!["KIND", "FILE", "SIZE", "WHY"]);
        for r in &removal.results {
            table.push(vec![
                "result".into(),
                r.location.clone(),
                output::size(r.size),
                r.reason.into(),
            ]);
        }
        for r in &removal.records {
            let name = match (&r.key, &r.task) {
                (Some(key), _) => format!("{key} / {}", r.id),
                (None, Some(task)) => format!("{task} / {}", r.id),
                (None, None) => r.id.clone(),
            };
            table.push(vec!["record".into(), name, "-".into(), r.reason.into()]);
        }
        table.print(ctx.out)?;
    }
    for failure in &removal.failed {
        let _ = writeln!(ctx.err, "error: {failure}");
    }
    let verb = if removal.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    let mut line = format!(
        "{} results ({}) and {} cache records",
        removal.results.len(),
        output::size(removal.bytes),
        removal.records.len()
    );
    if removal.stale_files > 0 {
        line.push_str(&format!(
            ", {} stale temporary and lock files",
            removal.stale_files
        ));
    }
    line.push_str(&format!(" in {:.1}s", started.elapsed().as_secs_f64()));
    ctx.status(verb, &line);
    Ok(code)
}

// ---------------------------------------------------------------------------------- rm

/// Whether `task` (as a record stores it) is the task `name` names: the same, or its
/// last `::` segment.
fn task_matches(task: &str, name: &str) -> bool {
    task == name || task.rsplit("::").next() == Some(name)
}

fn rm(backend: &dyn ResultBackend, args: &RmArgs, ctx: &mut Ctx<'_>) -> Result<i32, CliError> {
    let started = Instant::now();
    let bar = ctx.bar(args.store.json, false);
    let records = read_records(backend, ctx.jobs, &bar)?;
    let results = list_results(backend)?;
    let selected = |r: &Record| {
        let key_ok =
            args.key.is_empty() || r.key().is_some_and(|k| args.key.iter().any(|a| a == k));
        let task_ok = args.task.is_empty()
            || r.info()
                .is_some_and(|i| args.task.iter().any(|t| task_matches(&i.task, t)));
        key_ok && task_ok
    };
    let mut plan = Plan::new();
    let mut kept: HashSet<&str> = HashSet::new();
    let mut wanted: HashSet<&str> = HashSet::new();
    for record in &records {
        if selected(record) {
            plan.record(record, "selected");
            if let Some(info) = record.info() {
                wanted.insert(info.location.as_str());
            }
        } else if let Some(info) = record.info() {
            kept.insert(info.location.as_str());
        }
    }
    let by_location: HashMap<&str, &ResultEntry> =
        results.iter().map(|e| (e.location.as_str(), e)).collect();
    for location in wanted {
        if kept.contains(location) {
            continue; // another record, kept, still points at it
        }
        if let Some(entry) = by_location.get(location) {
            plan.result(entry, "its records are removed");
        }
    }
    let removal = plan.carry_out(backend, args.dry_run, ctx.jobs, &bar);
    if removal.records.is_empty() && removal.failed.is_empty() && !args.store.json {
        ctx.status("Warning", "no cache record matches; nothing removed");
    }
    report_removal(ctx, &removal, args.store.json, started)
}

#[cfg(test)]
mod tests {
    use super::task_matches;

    #[test]
    fn tasks_match_by_name_or_last_segment() {
        assert!(task_matches("load", "load"));
        assert!(task_matches("etl::load", "load"));
        assert!(task_matches("etl::load", "etl::load"));
        assert!(!task_matches("etl::load", "oad"));
        assert!(!task_matches("download", "load"));
    }
}
