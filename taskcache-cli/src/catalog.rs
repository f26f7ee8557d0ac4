//! What a store holds: its results and its cache records, read in parallel through
//! the `ResultBackend` trait (a `Box<dyn ResultBackend>`: a later kind of store needs
//! only a constructor in [`open`]).

use crate::error::CliError;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use taskcache::results::{
    LocalResult, RecordEntry, RecordInfo, ResultBackend, ResultEntry, ResultError,
};

/// The store DIR names: a `LocalResult` directory, or a cloud URL when the cargo
/// feature for it is on.
pub(crate) fn open(dir: &OsStr) -> Result<Box<dyn ResultBackend>, CliError> {
    if let Some(url) = dir.to_str() {
        for (scheme, store, feature) in [
            ("s3://", "S3", "aws"),
            ("gs://", "Google Cloud", "gcp"),
            ("az://", "Azure Blob", "azure"),
        ] {
            if url.starts_with(scheme) {
                return open_url(url, store, feature);
            }
        }
    }
    let local = LocalResult::new(PathBuf::from(dir));
    let path = local.dir().to_path_buf();
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(Box::new(local)),
        Ok(_) => Err(CliError::NotADirectory { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::Missing { path }),
        Err(source) => Err(CliError::Unreadable { path, source }),
    }
}

/// The store of a cloud URL.
#[allow(unused_variables)] // without a cloud feature no store is made
fn open_url(
    url: &str,
    store: &'static str,
    feature: &'static str,
) -> Result<Box<dyn ResultBackend>, CliError> {
    #[cfg(feature = "aws")]
    if feature == "aws" {
        return Ok(Box::new(taskcache::results::S3Result::new(url)));
    }
    #[cfg(feature = "gcp")]
    if feature == "gcp" {
        return Ok(Box::new(taskcache::results::GcsResult::new(url)));
    }
    #[cfg(feature = "azure")]
    if feature == "azure" {
        return Ok(Box::new(taskcache::results::AzureResult::new(url)));
    }
    Err(CliError::NoFeature {
        url: shown(url),
        store,
        feature,
    })
}

/// `url` without user information or query string (either may hold a credential).
fn shown(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            let rest = match rest[..host_end].rfind('@') {
                Some(at) => &rest[at + 1..],
                None => rest,
            };
            format!("{scheme}://{rest}")
        }
        None => url.to_owned(),
    }
}

/// A `CliError::Store` for a failed `operation`.
pub(crate) fn store_error(
    backend: &dyn ResultBackend,
    operation: &'static str,
) -> impl FnOnce(ResultError) -> CliError {
    let store = backend.describe();
    move |source| CliError::Store {
        operation,
        store,
        source,
    }
}

/// A cache record as read from the store.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) entry: RecordEntry,
    pub(crate) state: RecordState,
}

/// What reading a record gave.
#[derive(Debug)]
pub(crate) enum RecordState {
    /// A record this taskcache reads.
    Read(RecordInfo),
    /// Intact, but not a record this version of taskcache reads (another version's).
    Unknown,
    /// Damaged: its header or checksum is wrong, or it is not a regular file.
    Damaged(String),
    /// It could not be read (permissions, a store that failed).
    Failed(String),
    /// Removed since it was listed.
    Gone,
}

impl Record {
    /// What the record says, when it was read.
    pub(crate) fn info(&self) -> Option<&RecordInfo> {
        match &self.state {
            RecordState::Read(info) => Some(info),
            _ => None,
        }
    }

    /// Its cache key: the record's own, else the one its name tells.
    pub(crate) fn key(&self) -> Option<&str> {
        self.info()
            .map(|i| i.cache_key.as_str())
            .or(self.entry.key.as_deref())
    }

    /// How messages and `--json` name it: its key and id.
    pub(crate) fn shown(&self) -> String {
        match self.key() {
            Some(key) => format!("{key} / {}", self.entry.id),
            None => self.entry.name.clone(),
        }
    }
}

/// Lists the store's results.
pub(crate) fn list_results(backend: &dyn ResultBackend) -> Result<Vec<ResultEntry>, CliError> {
    let mut results = backend
        .list_entries()
        .map_err(store_error(backend, "list the results"))?;
    results.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(results)
}

/// Lists and reads every cache record, `jobs` at a time.
pub(crate) fn read_records(
    backend: &dyn ResultBackend,
    jobs: usize,
    progress: &ProgressBar,
) -> Result<Vec<Record>, CliError> {
    let mut entries = backend
        .list_all_records()
        .map_err(store_error(backend, "list the cache records"))?;
    entries.sort();
    progress.set_message("reading records");
    progress.set_length(entries.len() as u64);
    let states = par_map(&entries, jobs, |entry| {
        let state = read_record(backend, entry);
        progress.inc(1);
        state
    });
    Ok(entries
        .into_iter()
        .zip(states)
        .map(|(entry, state)| Record { entry, state })
        .collect())
}

pub(crate) fn read_record(backend: &dyn ResultBackend, entry: &RecordEntry) -> RecordState {
    match backend.read_record_entry(entry) {
        Ok(Some(bytes)) => match RecordInfo::parse(&bytes) {
            Some(info) => RecordState::Read(info),
            None => RecordState::Unknown,
        },
        Ok(None) => RecordState::Gone,
        Err(ResultError::Corrupt { reason, .. }) => RecordState::Damaged(reason),
        Err(e) => RecordState::Failed(e.to_string()),
    }
}

/// The records by the location of the result they point at.
pub(crate) fn by_location(records: &[Record]) -> HashMap<&str, Vec<&Record>> {
    let mut map: HashMap<&str, Vec<&Record>> = HashMap::new();
    for record in records {
        if let Some(info) = record.info() {
            map.entry(info.location.as_str()).or_default().push(record);
        }
    }
    map
}

/// `f` over `items`, on `jobs` threads, results in the order of `items`.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let parts: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (i, r) in parts.into_iter().flatten() {
        slots[i] = Some(r);
    }
    slots.into_iter().flatten().collect()
}

/// The number of threads to use: `--jobs`, else the number of CPUs.
pub(crate) fn jobs(asked: Option<usize>) -> usize {
    asked
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .max(1)
}

/// A progress bar on stderr, counting items (or bytes), hidden unless `shown`.
pub(crate) fn progress_bar(shown: bool, bytes: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let template = if bytes {
        "{msg:>16} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"
    } else {
        "{msg:>16} [{bar:40}] {pos}/{len} ({per_sec}, {eta})"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(0).with_style(style)
}
