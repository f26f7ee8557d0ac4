//! `LocalResult`: results as files in a local directory.

use crate::format;
use crate::serializers::BincodeSerializer;
use sha2::{Digest, Sha256};
use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use taskcache_core::header::{Header, HEADER_LEN};
use taskcache_core::persist::RecordInfo;
use taskcache_core::result::{
    Location, LocationError, LocationLock, PayloadDigest, RecordEntry, ResultBackend, ResultEntry,
    ResultError, Serializer, Slot, Value,
};

/// Stores results as files under a directory, as Prefect's `LocalResult(dir=…)`.
///
/// `~` and `~/…` at the start of the directory are the user's home (`$HOME`). The
/// directory is created on the first write. Each file carries a header with the stored
/// type's fingerprint and the payload's checksum ([`format`](crate::format)); writes
/// are atomic and durable, reads verified.
///
/// **Files this process has verified.** One exception to "every read hashes the
/// payload": a file that this `LocalResult` (or a clone) has already read and verified
/// is trusted while its device and inode, size, modification time and change time are
/// all unchanged (any write to it, or a new file in its place, changes them: every
/// write here is a rename, so a rewrite is a new inode). A file of up to 64 KiB read
/// without a pinned payload (a target; a cache record's result goes to the in-memory
/// cache instead) is then kept in memory whole (up to 64 MiB in all, in a process), and
/// a read of it is one `stat` of its path and a decode of the kept bytes; a file of
/// 1 MiB or more is read again but not hashed again. A pinned payload, the serializer
/// and the type are still checked on every read. A file changed less than 50 ms before
/// it was verified (2 s on a file system that keeps whole seconds) is not trusted yet:
/// a change within the same tick of the file system's clock could leave its times as
/// they were. (Small files are kept on Unix only; elsewhere a large file is trusted by
/// its size and modification time.)
///
/// Besides the results it keeps, under the same directory, `.locks/` (one lock file
/// per location locked now, removed when the lock is released) and
/// `.taskcache-records/` (persisted cache records, in the same checked format as
/// results); locations inside those two are refused.
///
/// No file is waited on: a FIFO, device or directory in place of a result, a record or
/// a lock file is a miss (or runs the task without the lock). A record, and a small
/// result a record names, are read in one `read` first: the bytes are used when they
/// are exactly what their header declares and pass its checksum; anything else is read
/// the long way, which refuses what is not a regular file. Symbolic links inside the
/// directory are followed, also out of it: the directory is trusted to be the user's
/// own. (Listing the results, as the `taskcache` command does, follows a link to a file
/// but does not enter a linked directory.)
///
/// **Disk budget.** [`with_max_bytes`](LocalResult::with_max_bytes) and
/// [`with_max_age`](LocalResult::with_max_age) keep the directory within a size and an
/// age: after a write (at most once every two seconds per directory in a process,
/// never on a read) the least recently written results are removed, oldest first,
/// with the cache records that point at them. A reader that has opened a file still
/// reads it whole; one that comes after the removal finds nothing, a miss.
///
/// ```
/// use taskcache::results::{JsonSerializer, LocalResult};
/// let result = LocalResult::new("~/.taskcache")
///     .with_location("{task_name}/{today}.json")
///     .with_serializer(JsonSerializer);
/// assert!(result.dir().ends_with(".taskcache"));
/// ```
#[derive(Debug, Clone)]
pub struct LocalResult<S = BincodeSerializer> {
    dir: PathBuf,
    location: Option<String>,
    serializer: S,
    verified: Arc<RwLock<Verified>>,
    budget: Budget,
}

/// How much a result's directory may hold, and for how long (none: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Budget {
    max_bytes: Option<u64>,
    max_age: Option<Duration>,
}

/// What [`LocalResult::prune`] removed, and what it kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// The results removed.
    pub results: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The cache records removed with them.
    pub records: usize,
    /// The bytes of the results left.
    pub kept_bytes: u64,
}

/// A directory is pruned at most this often by writes in one process.
const PRUNE_EVERY: Duration = Duration::from_secs(2);

/// Large files whose checksum this process has verified are not hashed again while
/// their [`Stamp`] stays the same.
const TRUST_VERIFIED_FROM: u64 = 1 << 20;

/// Whether small verified files are kept in memory and served after a `stat` (only
/// where a [`Stamp`] has the change time and the inode).
const KEEPS_SMALL: bool = cfg!(unix);
/// Verified files up to this size (header included) are kept in memory whole.
const KEEP_MAX: u64 = 64 << 10;
/// What the kept files may hold in all, in one process (and in one `LocalResult`).
const KEEP_TOTAL: usize = 64 << 20;
/// What an entry costs besides its bytes, its location and its path (a guess at the
/// map's and the allocator's share): it bounds the number of entries too.
const ENTRY_COST: usize = 128;
/// The bytes kept by every `LocalResult` of this process.
static KEPT_IN_PROCESS: AtomicUsize = AtomicUsize::new(0);

/// A file changed this recently when it was verified is not trusted: a change in the
/// same tick of the file system's clock would leave its times unchanged.
const SETTLED_AFTER: Duration = Duration::from_millis(50);
/// The same for a file whose change time has no fraction of a second: a file system
/// whose clock ticks in seconds (or two: FAT's modification times).
const SETTLED_AFTER_COARSE: Duration = Duration::from_secs(2);

/// What this process has verified of the files of one `LocalResult` (and its clones),
/// by location.
#[derive(Default)]
struct Verified {
    files: HashMap<String, Trusted>,
    /// The cost of every entry (see [`ENTRY_COST`]), counted in [`KEPT_IN_PROCESS`] too.
    held: usize,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verified")
            .field("files", &self.files.len())
            .field("held", &self.held)
            .finish()
    }
}

/// One verified file.
struct Trusted {
    /// What its entry costs (its bytes, names and [`ENTRY_COST`]).
    cost: usize,
    what: Trust,
}

enum Trust {
    /// A large file: read again, not hashed again, while its stamp is this one.
    Large(Stamp),
    /// A small file, kept whole.
    Kept(Arc<Kept>),
}

/// A small file as this process read and verified it.
struct Kept {
    stamp: Stamp,
    path: PathBuf,
    /// The whole file, header and payload.
    bytes: Box<[u8]>,
    header: Header,
    /// The type it was read as: its fingerprint matched the header's.
    ty: TypeId,
}

impl Kept {
    /// Decodes the kept value into `slot`, with every check of a read but the
    /// checksum's, already made.
    fn decode<S: Serializer>(
        &self,
        serializer: &S,
        pinned: Option<&PayloadDigest>,
        slot: &mut dyn Slot,
    ) -> Result<(), ResultError> {
        let (head, payload) = self
            .bytes
            .split_first_chunk::<HEADER_LEN>()
            .expect("a kept file has its header");
        let ty = slot.ty();
        if ty.id == self.ty && self.header.serializer == serializer.id() {
            // What `check_header` checks of a header already checked for this type.
            if pinned.is_some_and(|p| p.0 != self.header.digest) {
                return Err(ResultError::Changed {
                    path: self.path.clone(),
                });
            }
        } else {
            let len = self.bytes.len() as u64;
            format::check_header(head, len, serializer, &self.path, pinned, ty)?;
        }
        format::decode_payload(payload, &self.header, serializer, &self.path, false, slot)
    }
}

impl Verified {
    /// The kept small file at `location`, if any.
    fn kept(&self, location: &str) -> Option<Arc<Kept>> {
        match &self.files.get(location)?.what {
            Trust::Kept(kept) => Some(Arc::clone(kept)),
            Trust::Large(_) => None,
        }
    }

    /// Whether the large file at `location` was verified with this very `stamp`.
    fn trusts_large(&self, location: &str, stamp: &Stamp) -> bool {
        match self.files.get(location) {
            Some(Trusted {
                what: Trust::Large(verified),
                ..
            }) => verified == stamp,
            _ => false,
        }
    }

    /// Records `what` for `location`, making room for it: the entries it replaces
    /// first, then any others of this map (in no particular order) while this map or
    /// the process is over [`KEEP_TOTAL`]. Not recorded when there is no room.
    fn insert(&mut self, location: &str, what: Trust, bytes: usize) {
        self.remove(location);
        let cost = bytes + 2 * location.len() + ENTRY_COST;
        if cost > KEEP_TOTAL / 4 {
            return;
        }
        let over = |own: usize| {
            own + cost > KEEP_TOTAL || KEPT_IN_PROCESS.load(Ordering::Relaxed) + cost > KEEP_TOTAL
        };
        if over(self.held) {
            // Free a quarter at once, so that a full map does not evict on every insert.
            let goal = KEEP_TOTAL / 4 * 3;
            let mut freed = 0;
            let mut victims = Vec::new();
            for (name, trusted) in &self.files {
                if self.held - freed + cost <= goal {
                    break;
                }
                freed += trusted.cost;
                victims.push(name.clone());
            }
            for name in victims {
                self.remove(&name);
            }
            if over(self.held) {
                // The rest is held by other results: this one keeps nothing more.
                return;
            }
        }
        self.held += cost;
        KEPT_IN_PROCESS.fetch_add(cost, Ordering::Relaxed);
        self.files
            .insert(location.to_owned(), Trusted { cost, what });
    }

    /// Forgets `location`.
    fn remove(&mut self, location: &str) {
        if let Some(old) = self.files.remove(location) {
            self.held -= old.cost;
            KEPT_IN_PROCESS.fetch_sub(old.cost, Ordering::Relaxed);
        }
    }
}

impl Drop for Verified {
    fn drop(&mut self) {
        KEPT_IN_PROCESS.fetch_sub(self.held, Ordering::Relaxed);
    }
}

/// The directory of lock files, under the result's directory.
pub(crate) const LOCKS: &str = ".locks";
/// The directory of cache records, under the result's directory.
pub(crate) const RECORDS: &str = ".taskcache-records";

/// What identifies one version of a file: size, modification and change times, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    changed: (i64, i64),
    #[cfg(unix)]
    inode: (u64, u64),
}

impl Stamp {
    /// Whether the file was last changed long enough before `now` that a later change
    /// cannot leave its times as they are (see [`SETTLED_AFTER`]).
    fn settled(&self, now: SystemTime) -> bool {
        #[cfg(unix)]
        let (changed, window) = {
            let (secs, nanos) = self.changed;
            let window = if nanos == 0 {
                SETTLED_AFTER_COARSE
            } else {
                SETTLED_AFTER
            };
            let changed = u64::try_from(secs)
                .ok()
                .zip(u32::try_from(nanos).ok())
                .and_then(|(s, n)| SystemTime::UNIX_EPOCH.checked_add(Duration::new(s, n)));
            (changed, window)
        };
        #[cfg(not(unix))]
        let (changed, window) = (self.modified, SETTLED_AFTER_COARSE);
        // A time in the future (another clock, or this one set back) is not settled.
        changed
            .and_then(|c| now.duration_since(c).ok())
            .is_some_and(|age| age >= window)
    }

    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            changed: (meta.ctime(), meta.ctime_nsec()),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino()),
        }
    }
}

impl LocalResult {
    /// Results under `dir` (`~` expanded), written with bincode; the directory is created
    /// on the first write.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        LocalResult {
            dir: expand_home(dir.as_ref()),
            location: None,
            serializer: BincodeSerializer,
            verified: Arc::default(),
            budget: Budget::default(),
        }
    }
}

impl<S: Serializer> LocalResult<S> {
    /// Writes each output to this templated location (`"{task_name}/{today}.bin"`),
    /// rendered by the runtime, instead of a fresh unique one.
    pub fn with_location(mut self, template: impl Into<String>) -> Self {
        self.location = Some(template.into());
        self
    }

    /// Uses another serializer: `JsonSerializer` for files people read,
    /// `Zstd::new(BincodeSerializer)` for large compressible values.
    pub fn with_serializer<S2: Serializer>(self, serializer: S2) -> LocalResult<S2> {
        LocalResult {
            dir: self.dir,
            location: self.location,
            serializer,
            verified: Arc::default(),
            budget: self.budget,
        }
    }

    /// Keeps the results under the directory within `bytes` in all: after a write, the
    /// least recently written results are removed, oldest first (by modification
    /// time), until the rest fit. The result just written is always kept, even alone
    /// over the budget. The cache records of removed results are removed with them.
    ///
    /// Pruning walks the directory, so it runs at most once every two seconds per
    /// directory in a process (the directory may be over its budget in between), and
    /// never on a read. Cache records, lock files and temporary files are not counted.
    /// [`prune`](LocalResult::prune) prunes at once.
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.budget.max_bytes = Some(bytes);
        self
    }

    /// Removes results last written longer than `age` ago, with their cache records,
    /// when a write prunes (see [`with_max_bytes`](LocalResult::with_max_bytes)).
    pub fn with_max_age(mut self, age: Duration) -> Self {
        self.budget.max_age = Some(age);
        self
    }

    /// Prunes the directory now to the budget set with
    /// [`with_max_bytes`](LocalResult::with_max_bytes) and
    /// [`with_max_age`](LocalResult::with_max_age) (nothing without one), whenever it
    /// last did. Writes call it themselves.
    ///
    /// A file rewritten since the directory was listed is left alone. A file that
    /// cannot be removed is logged and skipped.
    ///
    /// # Errors
    /// When the directory or its records cannot be listed.
    pub fn prune(&self) -> Result<Pruned, ResultError> {
        self.prune_except(None)
    }

    /// Prunes, keeping `keep` whatever its age.
    fn prune_except(&self, keep: Option<&Location>) -> Result<Pruned, ResultError> {
        let mut pruned = Pruned::default();
        if self.budget == Budget::default() {
            return Ok(pruned);
        }
        let now = SystemTime::now();
        let mut entries = self.list_entries()?;
        // Oldest first; a file whose time is unknown counts as new.
        entries.sort_by_key(|e| e.modified.unwrap_or(now));
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let mut removed = HashSet::new();
        for entry in &entries {
            if Some(&entry.location) == keep {
                continue;
            }
            let too_old = self.budget.max_age.is_some_and(|max| {
                entry
                    .modified
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age > max)
            });
            let over = self.budget.max_bytes.is_some_and(|max| total > max);
            if !too_old && !over {
                // Every later entry is younger, and the total only shrinks.
                break;
            }
            match self.remove_unchanged(entry) {
                Ok(true) => {
                    total -= entry.size;
                    pruned.results += 1;
                    pruned.bytes += entry.size;
                    removed.insert(entry.location.as_str().to_owned());
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot prune a result")
                }
            }
        }
        pruned.kept_bytes = total;
        if !removed.is_empty() {
            pruned.records = self.remove_records_of(&removed)?;
            tracing::debug!(dir = %self.dir.display(), ?pruned, "pruned to the disk budget");
        }
        Ok(pruned)
    }

    /// Removes a listed result unless it was rewritten since it was listed; whether it
    /// removed it.
    fn remove_unchanged(&self, entry: &ResultEntry) -> Result<bool, ResultError> {
        let path = self.path(&entry.location)?;
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if missing(&e) => return Ok(false),
            Err(e) => return Err(io(&path)(e)),
        };
        if meta.is_dir() || meta.len() != entry.size || meta.modified().ok() != entry.modified {
            return Ok(false);
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                self.forget(&entry.location);
                Ok(true)
            }
            Err(e) if missing(&e) => Ok(false),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Removes the cache records that point at one of the `locations`; how many.
    fn remove_records_of(&self, locations: &HashSet<String>) -> Result<usize, ResultError> {
        let mut removed = 0;
        for entry in self.list_all_records()? {
            let Ok(Some(bytes)) = self.read_record_entry(&entry) else {
                continue;
            };
            let points_at_removed =
                RecordInfo::parse(&bytes).is_some_and(|r| locations.contains(&r.location));
            if points_at_removed && self.remove_record_entry(&entry).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Forgets that the file at `location` was verified (and what it held).
    fn forget(&self, location: &Location) {
        self.verified
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(location.as_str());
    }

    /// The kept small file at `location`, if this process verified one there.
    fn kept(&self, location: &Location) -> Option<Arc<Kept>> {
        if !KEEPS_SMALL {
            return None;
        }
        self.verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .kept(location.as_str())
    }

    /// Reads the small file at `location` from the kept bytes if it is still the very
    /// file they were read from; `None` when it is not (or none is kept), and the full
    /// read decides.
    fn read_kept(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
        slot: &mut dyn Slot,
    ) -> Option<Result<(), ResultError>> {
        let kept = self.kept(location)?;
        // `metadata` follows a symbolic link, as opening the file does; the stamp is
        // the linked file's, so a link pointed elsewhere is another file.
        match std::fs::metadata(&kept.path) {
            Ok(meta) if meta.is_file() && Stamp::of(&meta) == kept.stamp => {
                Some(kept.decode(&self.serializer, pinned, slot))
            }
            _ => {
                // Changed, gone, or not a regular file: not this file any more.
                self.forget(location);
                None
            }
        }
    }

    /// Reads and verifies the small file `file` at `location` (its metadata `meta`,
    /// opened after `now`), and keeps it when it has settled and no payload was pinned.
    #[allow(clippy::too_many_arguments)]
    fn read_small(
        &self,
        location: &Location,
        path: PathBuf,
        file: File,
        meta: &std::fs::Metadata,
        now: SystemTime,
        pinned: Option<&PayloadDigest>,
        slot: &mut dyn Slot,
    ) -> Result<(), ResultError> {
        let bytes = format::read_whole(file, meta.len(), &path)?;
        let ty = slot.ty().id;
        let header = self.decode_small(&path, &bytes, pinned, slot)?;
        let stamp = Stamp::of(meta);
        // A read for a cache record (pinned) puts its value in the in-memory output
        // cache, which serves the next calls: keeping the file too would only cost time
        // (about a third of a fresh process's read) and memory. A target is read on
        // every call: kept.
        if pinned.is_none() && stamp.settled(now) {
            let size = bytes.len() + path.as_os_str().len();
            let kept = Kept {
                stamp,
                path,
                bytes: bytes.into_boxed_slice(),
                header,
                ty,
            };
            self.verified
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(location.as_str(), Trust::Kept(Arc::new(kept)), size);
        }
        Ok(())
    }

    /// Decodes a small stored file's `bytes`, read whole, into `slot`: its header, its
    /// checksum and its payload checked. Its header back.
    fn decode_small(
        &self,
        path: &Path,
        bytes: &[u8],
        pinned: Option<&PayloadDigest>,
        slot: &mut dyn Slot,
    ) -> Result<Header, ResultError> {
        let head = bytes
            .first_chunk::<HEADER_LEN>()
            .ok_or_else(|| ResultError::Corrupt {
                path: path.to_path_buf(),
                reason: format!(
                    "{} bytes, shorter than the {HEADER_LEN}-byte header",
                    bytes.len()
                ),
            })?;
        let header = format::check_header(
            head,
            bytes.len() as u64,
            &self.serializer,
            path,
            pinned,
            slot.ty(),
        )?;
        format::decode_payload(
            &bytes[HEADER_LEN..],
            &header,
            &self.serializer,
            path,
            true,
            slot,
        )?;
        Ok(header)
    }

    /// The file of a listed record, refusing names that leave the records' directory.
    fn record_entry_path(&self, entry: &RecordEntry) -> Result<PathBuf, ResultError> {
        let (key, file) = record_name_parts(&entry.name).ok_or_else(|| {
            ResultError::Location(LocationError {
                location: entry.name.clone(),
                reason: "a record's name is `<encoded key>/<encoded id>.rec`",
            })
        })?;
        Ok(self.dir.join(RECORDS).join(key).join(file))
    }

    /// The directory results are stored under, `~` expanded.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The serializer values are written with.
    pub fn serializer(&self) -> &S {
        &self.serializer
    }

    /// The file of `location`, refusing the backend's own directories.
    fn path(&self, location: &Location) -> Result<PathBuf, ResultError> {
        let first = location.as_str().split('/').next().unwrap_or("");
        if first == LOCKS || first == RECORDS {
            return Err(ResultError::Location(LocationError {
                location: location.as_str().to_owned(),
                reason: "it is inside a directory the result keeps for itself \
                         (`.locks`, `.taskcache-records`)",
            }));
        }
        Ok(location.under(&self.dir))
    }

    /// The lock file of `location`: the hex of the first 16 bytes of its SHA-256.
    fn lock_path(&self, location: &Location) -> PathBuf {
        let name = hex(&Sha256::digest(location.as_str().as_bytes())[..16]);
        self.dir.join(LOCKS).join(format!("{name}.lock"))
    }

    fn records_dir(&self, key: &str) -> PathBuf {
        self.dir.join(RECORDS).join(encode_key(key))
    }

    /// `<dir>/.taskcache-records/<encoded key>/<encoded id>.rec`, made without a
    /// reallocation (a lookup in a fresh process makes it on every persisted hit).
    fn record_path(&self, key: &str, id: &str) -> PathBuf {
        let key = encode_key(key);
        let mut path = PathBuf::with_capacity(
            self.dir.as_os_str().len() + RECORDS.len() + key.len() + 3 * id.len() + 8,
        );
        path.push(&self.dir);
        path.push(RECORDS);
        path.push(key);
        path.push(&*encode_id(id));
        path.as_mut_os_string().push(".rec");
        path
    }
}

/// `~` and `~/…` relative to `$HOME`; other paths, and `~` without `$HOME`, unchanged.
fn expand_home(dir: &Path) -> PathBuf {
    let Some(text) = dir.to_str() else {
        return dir.to_path_buf();
    };
    let rest = match text.strip_prefix('~') {
        Some("") => "",
        Some(rest) if rest.starts_with('/') => rest.trim_start_matches('/'),
        _ => return dir.to_path_buf(),
    };
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join(rest),
        _ => dir.to_path_buf(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ResultError + '_ {
    move |source| ResultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A fresh location for one write: `<task name>/<UTC timestamp>-<uuid>.bin`, the task
/// name reduced to `[A-Za-z0-9_-]` (`module::task` becomes `module__task`).
pub(crate) fn unique_location(task_name: &str) -> Location {
    let mut name: String = task_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        name.push_str("task");
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let id = uuid::Uuid::new_v4().simple();
    Location::new(format!("{name}/{stamp}-{id}.bin"))
        .expect("a sanitised name, a timestamp and a uuid make a valid location")
}

/// A cache key as a directory name: its bytes in hex (keys are any text, `/` and all);
/// a key longer than 100 bytes as `sha256-` and the hex of its SHA-256, so the name
/// stays within file-name limits.
pub(crate) fn encode_key(key: &str) -> String {
    if key.len() <= 100 {
        hex(key.as_bytes())
    } else {
        format!("sha256-{}", hex(&Sha256::digest(key.as_bytes())))
    }
}

pub(crate) use taskcache_core::hash::to_hex as hex;

/// A record id as a file name: `[A-Za-z0-9_-]` as is (hex digests are unchanged),
/// every other byte as `%XX`, so that any id comes back from [`decode_id`] unchanged.
pub(crate) fn encode_id(id: &str) -> std::borrow::Cow<'_, str> {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    // (Checked in one pass without an early exit, which the compiler vectorizes: a hit
    // in a fresh process names its record by a 64-digit id.)
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if id.bytes().fold(true, |all, b| all & plain(b)) {
        return std::borrow::Cow::Borrowed(id);
    }
    let mut out = String::with_capacity(id.len() * 3);
    for b in id.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The id [`encode_id`] made `name` from; `None` for names it cannot have made.
pub(crate) fn decode_id(name: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(name.len());
    let mut rest = name.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The fingerprint slot of a cache record's header (the ASCII of `recordv1`), with the
/// blob serializer id: a result file is never read as a record, nor a record as a result.
pub(crate) const RECORD_KIND: u64 = 0x7265_636f_7264_7631;
/// No record is larger: a few digests, a location and the flow's parameters.
pub(crate) const MAX_RECORD: u64 = 16 << 20;

/// A held lock file: while it is held the file is still at its path; when released the
/// file is removed first, then unlocked (closed).
struct HeldLock {
    file: File,
    path: PathBuf,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Removed while still locked: a process that opened the file before the removal
        // and then gets the lock finds that the path no longer names its file, and
        // starts again on a new one (see `lock_file`). So lock files do not pile up.
        #[cfg(unix)]
        let _ = std::fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

/// Takes an exclusive lock on the lock file at `path`, creating it, waiting for it.
///
/// An exclusive lock on the open file description (flock on Unix, LockFileEx on
/// Windows): held across processes and, since each call opens the file anew, across
/// threads; released when the file is closed, also if the process dies. std's
/// `File::lock` (Rust 1.89, our minimum) is what the `fs4` crate offers, without the
/// dependency.
fn lock_file(path: PathBuf) -> Result<HeldLock, ResultError> {
    // Each new try follows a holder that let go; so many in a row mean the path is not
    // behaving as a lock file does (say a symbolic link that keeps changing).
    for _ in 0..LOCK_TRIES {
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        // A FIFO in place of the lock file would block `open` until a reader came.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
        let file: File = options.open(&path).map_err(io(&path))?;
        let meta = file.metadata().map_err(io(&path))?;
        if !meta.is_file() {
            return Err(io(&path)(std::io::Error::other(
                "the lock file is not a regular file (a FIFO, a device or a directory); \
                 remove it",
            )));
        }
        file.lock().map_err(io(&path))?;
        // The previous holder removes the file when it lets go: if the path no longer
        // names the file locked here, another process may hold a lock on a new file
        // there, so start again.
        // (`metadata` follows a symbolic link, as `open` did.)
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            match std::fs::metadata(&path) {
                Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {}
                _ => continue,
            }
        }
        return Ok(HeldLock { file, path });
    }
    Err(io(&path)(std::io::Error::other(format!(
        "the lock file was replaced {LOCK_TRIES} times in a row while this process waited \
         for it; remove it if nothing else should be there"
    ))))
}

/// How many times [`lock_file`] starts again on a replaced lock file before it gives up.
const LOCK_TRIES: u32 = 1000;

/// Whether a write to `dir` should prune it now: at most once every [`PRUNE_EVERY`] per
/// directory in this process.
fn prune_due(dir: &Path) -> bool {
    static LAST: Mutex<Option<HashMap<PathBuf, Instant>>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let last = last.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    match last.get(dir) {
        Some(at) if now.duration_since(*at) < PRUNE_EVERY => false,
        _ => {
            last.insert(dir.to_path_buf(), now);
            true
        }
    }
}

/// Whether `name` is one of the temporary files writes go through (`.tmp-….taskcache`).
fn is_temp(name: &str) -> bool {
    name.starts_with(".tmp-") && name.ends_with(".taskcache")
}

/// The cache key a records directory was named after ([`encode_key`]); `None` for a
/// long key stored under its digest, or a name `encode_key` cannot have made.
pub(crate) fn decode_key(name: &str) -> Option<String> {
    if name.starts_with("sha256-") || !name.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..name.len())
        .step_by(2)
        .map(|i| {
            name.get(i..i + 2)
                .filter(|h| h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The two parts of a record's name, `<encoded key>/<file>`, when it is one that stays
/// inside the records' directory.
pub(crate) fn record_name_parts(name: &str) -> Option<(&str, &str)> {
    let (key, file) = name.split_once('/')?;
    let fine =
        |p: &str| !p.is_empty() && p != "." && p != ".." && !p.contains(['/', '\\', '\0', ':']);
    (fine(key) && fine(file)).then_some((key, file))
}

/// A listed record file `file` in the records directory `key_dir`: its key (when the
/// name tells it) and id; `None` for a file that is not a record.
pub(crate) fn record_entry(
    key_dir: &str,
    file: &str,
    size: u64,
    modified: Option<SystemTime>,
) -> Option<RecordEntry> {
    if is_temp(file) {
        return None;
    }
    let id = file.strip_suffix(".rec").and_then(decode_id)?;
    Some(RecordEntry {
        key: decode_key(key_dir),
        id,
        name: format!("{key_dir}/{file}"),
        size,
        modified,
    })
}

/// The header of a stored result, checked against its length `len` (`path` is for
/// messages); the payload is not read.
fn read_header_from(input: &mut impl Read, len: u64, path: &Path) -> Result<Header, ResultError> {
    let corrupt = |reason: String| ResultError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if len < HEADER_LEN as u64 {
        return Err(corrupt(format!(
            "{len} bytes, shorter than the {HEADER_LEN}-byte header"
        )));
    }
    let mut head = [0u8; HEADER_LEN];
    input.read_exact(&mut head).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt("it ended inside its header while it was read".into())
        } else {
            io(path)(e)
        }
    })?;
    parse_header(&head, len, path)
}

/// Parses a header and checks its payload length against the stored length `len`.
pub(crate) fn parse_header(
    head: &[u8; HEADER_LEN],
    len: u64,
    path: &Path,
) -> Result<Header, ResultError> {
    let header = Header::parse(head, path)?;
    let payload = len - HEADER_LEN as u64;
    if header.len != payload {
        return Err(ResultError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "the header claims {} payload bytes but {payload} follow it",
                header.len
            ),
        });
    }
    Ok(header)
}

/// The buffer [`verify_stream`] hashes through.
const VERIFY_BUFFER: usize = 256 << 10;

/// Verifies a stored result read from `input`, whose length is `len`, without decoding
/// it: its header, its length, and its payload's SHA-256, streaming (`path` is for
/// messages). What `verify` does, for every backend.
pub(crate) fn verify_stream(
    input: &mut impl Read,
    len: u64,
    path: &Path,
) -> Result<Header, ResultError> {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let header = read_header_from(input, len, path)?;
    let digest = BUFFER.with_borrow_mut(|buffer| {
        if buffer.is_empty() {
            buffer.resize(VERIFY_BUFFER, 0);
        }
        let mut hasher = Sha256::new();
        let mut left = header.len;
        while left > 0 {
            let want = buffer
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match input.read(&mut buffer[..want]) {
                Ok(0) => {
                    return Err(ResultError::Corrupt {
                        path: path.to_path_buf(),
                        reason: "it ended before its header's length while it was read".into(),
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(path)(e)),
            };
            hasher.update(&buffer[..n]);
            left -= n as u64;
        }
        Ok(<[u8; 32]>::from(hasher.finalize()))
    })?;
    if digest != header.digest {
        return Err(ResultError::Corrupt {
            path: path.to_path_buf(),
            reason: "checksum mismatch: the payload is not what was written".into(),
        });
    }
    Ok(header)
}

/// What [`walk`] hands each entry to.
type Visit<'a> =
    dyn FnMut(&str, &std::fs::DirEntry, std::fs::FileType) -> Result<(), ResultError> + 'a;

/// Every entry under `root` that is not a directory, depth first, with its path
/// relative to `root` (`/`-separated). Names that are not UTF-8 cannot be locations
/// and are skipped; a directory is entered when `enter` says so for its relative path;
/// symbolic links are handed over as they are. A `root` that does not exist holds
/// nothing.
fn walk(
    root: &Path,
    enter: &dyn Fn(&str) -> bool,
    visit: &mut Visit<'_>,
) -> Result<(), ResultError> {
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Not there (yet, or any more): nothing under it.
            Err(e) if missing(&e) => continue,
            Err(e) => return Err(io(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                tracing::debug!(path = %entry.path().display(), "a name that is not UTF-8 is not a location; skipped");
                continue;
            };
            let rel = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) if missing(&e) => continue,
                Err(e) => return Err(io(&entry.path())(e)),
            };
            if file_type.is_dir() {
                if enter(&rel) {
                    stack.push((entry.path(), rel));
                }
                continue;
            }
            visit(&rel, &entry, file_type)?;
        }
    }
    Ok(())
}

/// The metadata of a listed entry: a symbolic link's target's (`None` for a link to a
/// directory or to nothing), else the entry's own.
fn entry_metadata(
    entry: &std::fs::DirEntry,
    file_type: std::fs::FileType,
) -> Result<Option<std::fs::Metadata>, ResultError> {
    let meta = if file_type.is_symlink() {
        std::fs::metadata(entry.path())
    } else {
        entry.metadata()
    };
    match meta {
        Ok(m) if m.is_dir() => Ok(None),
        Ok(m) => Ok(Some(m)),
        Err(e) if missing(&e) => Ok(None),
        Err(e) => Err(io(&entry.path())(e)),
    }
}

/// Removes the file at `path` if it is a regular file last written at least
/// `older_than` ago that no process holds locked; whether it did.
fn remove_if_stale(path: &Path, older_than: Duration) -> bool {
    let Ok(Some((file, meta))) = format::open_regular(path) else {
        return false;
    };
    let old = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age >= older_than);
    if !old || file.try_lock().is_err() {
        return false;
    }
    // Still the file opened (not renamed into place, or replaced, meanwhile)? Removed
    // while locked, as a lock's holder removes its lock file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let same = std::fs::symlink_metadata(path)
            .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        same && std::fs::remove_file(path).is_ok()
    }
    #[cfg(not(unix))]
    {
        drop(file);
        false
    }
}

/// Reads and verifies the record file at `path`; `None` when there is none.
fn read_record_file(path: PathBuf) -> Result<Option<Vec<u8>>, ResultError> {
    let Some(mut file) = format::open_nonblocking(&path)? else {
        return Ok(None);
    };
    if let Some(stored) = format::read_whole_at_once(&mut file) {
        return format::decode_blob_owned(stored, RECORD_KIND, &path).map(Some);
    }
    // Not a small record read whole: what it is and how long, from its start.
    let meta = format::regular(&file, &path)?;
    std::io::Seek::rewind(&mut file).map_err(io(&path))?;
    let len = meta.len();
    if len > MAX_RECORD {
        return Err(ResultError::Corrupt {
            path,
            reason: format!("{len} bytes, larger than any cache record ({MAX_RECORD})"),
        });
    }
    // Exactly the length `statx` gave: a record is replaced, never grown.
    let stored = format::read_whole(&mut file, len, &path)?;
    format::decode_blob_owned(stored, RECORD_KIND, &path).map(Some)
}

fn missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

impl<S: Serializer> ResultBackend for LocalResult<S> {
    fn describe(&self) -> String {
        match self.serializer.name() {
            "bincode" => format!("LocalResult(dir = {})", self.dir.display()),
            other => format!(
                "LocalResult(dir = {}, serializer = {other})",
                self.dir.display()
            ),
        }
    }

    fn is_persistent(&self) -> bool {
        true
    }

    fn location_template(&self) -> Option<&str> {
        self.location.as_deref()
    }

    fn default_location(&self, task_name: &str) -> Location {
        unique_location(task_name)
    }

    fn exists(&self, location: &Location) -> Result<bool, ResultError> {
        let path = self.path(location)?;
        match std::fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if missing(&e) => Ok(false),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn read_value(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
        slot: &mut dyn Slot,
    ) -> Result<(), ResultError> {
        if let Some(read) = self.read_kept(location, pinned, slot) {
            return read;
        }
        let path = self.path(location)?;
        // Before the file is opened: a change after this is a change after the read.
        let now = SystemTime::now();
        let Some(mut file) = format::open_nonblocking(&path)? else {
            return Err(ResultError::NotFound {
                location: location.clone(),
            });
        };
        // A cache record's result (pinned) is not kept here (see `read_small`): a small
        // one is read whole at once, without a `statx`.
        if pinned.is_some() {
            if let Some(bytes) = format::read_whole_at_once(&mut file) {
                self.decode_small(&path, &bytes, pinned, slot)?;
                return Ok(());
            }
        }
        let meta = format::regular(&file, &path)?;
        if pinned.is_some() {
            std::io::Seek::rewind(&mut file).map_err(io(&path))?;
        }
        if KEEPS_SMALL && meta.len() <= KEEP_MAX {
            return self.read_small(location, path, file, &meta, now, pinned, slot);
        }
        let large = meta.len() >= TRUST_VERIFIED_FROM;
        let stamp = Stamp::of(&meta);
        let trusted = large
            && self
                .verified
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .trusts_large(location.as_str(), &stamp);
        format::read_into(
            file,
            meta.len(),
            &self.serializer,
            &path,
            !trusted,
            pinned,
            slot,
        )?;
        if large && !trusted && stamp.settled(now) {
            self.verified
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(location.as_str(), Trust::Large(stamp), 0);
        }
        Ok(())
    }

    fn write_value(
        &self,
        value: Value<'_>,
        location: &Location,
    ) -> Result<PayloadDigest, ResultError> {
        let written = format::write_file(value, &self.serializer, &self.path(location)?);
        // What was verified at the location is not what is there now (the stamp would
        // tell too; this frees it at once).
        self.forget(location);
        let digest = written?;
        if self.budget != Budget::default() && prune_due(&self.dir) {
            if let Err(e) = self.prune_except(Some(location)) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot prune to the disk budget");
            }
        }
        Ok(digest)
    }

    fn lock(&self, location: &Location) -> Result<LocationLock, ResultError> {
        let path = self.lock_path(location);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        lock_file(path).map(LocationLock::new)
    }

    fn lock_id(&self, location: &Location) -> String {
        // The lock file itself: backends with the same directory, whatever their
        // serializer or how the directory was written, share it.
        self.lock_path(location).display().to_string()
    }

    fn put_record(&self, key: &str, id: &str, bytes: &[u8]) -> Result<(), ResultError> {
        format::write_blob(bytes, RECORD_KIND, &self.record_path(key, id)).map(|_| ())
    }

    fn get_record(&self, key: &str, id: &str) -> Result<Option<Vec<u8>>, ResultError> {
        read_record_file(self.record_path(key, id))
    }

    fn list_records(&self, key: &str) -> Result<Vec<String>, ResultError> {
        let dir = self.records_dir(key);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            // Temporary files (`.tmp-…`) and anything else not ours are skipped.
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rec"))
                .and_then(decode_id)
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn remove_record(&self, key: &str, id: &str) -> Result<(), ResultError> {
        remove_file_if_there(&self.record_path(key, id))
    }

    fn list_entries(&self) -> Result<Vec<ResultEntry>, ResultError> {
        let mut entries = Vec::new();
        // The result's own directories are not entered: `.locks`, `.taskcache-records`.
        let enter = |rel: &str| rel != LOCKS && rel != RECORDS;
        walk(&self.dir, &enter, &mut |rel, entry, file_type| {
            let name = entry.file_name();
            if name.to_str().is_some_and(is_temp) || rel.contains('\\') {
                return Ok(());
            }
            let Some(meta) = entry_metadata(entry, file_type)? else {
                return Ok(());
            };
            // A name `Location` refuses (`C:x`) is not one a location can have made.
            let Ok(location) = Location::new(rel) else {
                return Ok(());
            };
            entries.push(ResultEntry {
                location,
                size: if meta.is_file() { meta.len() } else { 0 },
                modified: meta.modified().ok(),
            });
            Ok(())
        })?;
        Ok(entries)
    }

    fn read_header(&self, location: &Location) -> Result<Header, ResultError> {
        let path = self.path(location)?;
        let Some((mut file, meta)) = format::open_regular(&path)? else {
            return Err(ResultError::NotFound {
                location: location.clone(),
            });
        };
        read_header_from(&mut file, meta.len(), &path)
    }

    fn verify(&self, location: &Location) -> Result<Header, ResultError> {
        let path = self.path(location)?;
        let Some((mut file, meta)) = format::open_regular(&path)? else {
            return Err(ResultError::NotFound {
                location: location.clone(),
            });
        };
        verify_stream(&mut file, meta.len(), &path)
    }

    fn remove(&self, location: &Location) -> Result<(), ResultError> {
        let path = self.path(location)?;
        let removed = remove_file_if_there(&path);
        self.forget(location);
        removed
    }

    fn list_all_records(&self) -> Result<Vec<RecordEntry>, ResultError> {
        let mut records = Vec::new();
        let root = self.dir.join(RECORDS);
        // `<encoded key>/<encoded id>.rec`: one level of directories.
        let enter = |rel: &str| !rel.contains('/');
        walk(&root, &enter, &mut |rel, entry, file_type| {
            let Some((key_dir, file)) = rel.split_once('/') else {
                return Ok(());
            };
            let Some(meta) = entry_metadata(entry, file_type)? else {
                return Ok(());
            };
            let size = if meta.is_file() { meta.len() } else { 0 };
            records.extend(record_entry(key_dir, file, size, meta.modified().ok()));
            Ok(())
        })?;
        Ok(records)
    }

    fn read_record_entry(&self, entry: &RecordEntry) -> Result<Option<Vec<u8>>, ResultError> {
        read_record_file(self.record_entry_path(entry)?)
    }

    fn remove_record_entry(&self, entry: &RecordEntry) -> Result<(), ResultError> {
        remove_file_if_there(&self.record_entry_path(entry)?)
    }

    fn remove_stale(&self, older_than: Duration) -> Result<usize, ResultError> {
        let mut removed = 0;
        // Lock files whose holder died, in `.locks`; temporary files anywhere.
        let enter = |_: &str| true;
        walk(&self.dir, &enter, &mut |rel, entry, file_type| {
            let name = entry.file_name();
            let name = name.to_str().unwrap_or("");
            let lock_file = rel
                .strip_prefix(LOCKS)
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|r| !r.contains('/') && r.ends_with(".lock"));
            if file_type.is_file()
                && (is_temp(name) || lock_file)
                && remove_if_stale(&entry.path(), older_than)
            {
                removed += 1;
            }
            Ok(())
        })?;
        Ok(removed)
    }
}

/// Removes the file at `path`; nothing there is not an error.
fn remove_file_if_there(path: &Path) -> Result<(), ResultError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if missing(&e) => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_come_back_unchanged() {
        for id in ["ab12", "", "a b/c%d.e", "é", "%zz"] {
            let name = encode_id(id);
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)),
                "{name}"
            );
            assert_eq!(decode_id(&name).as_deref(), Some(id));
        }
        assert_eq!(encode_id("0f3a"), "0f3a", "hex digests are their own names");
        assert_eq!(decode_id("%4"), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_as_lock_file_is_locked_not_looped_on() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, b"").unwrap();
        let link = dir.path().join("link.lock");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = send.send(lock_file(link).map(drop).map_err(|e| e.to_string()));
        });
        let locked = receive
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("lock_file returned");
        assert!(locked.is_ok(), "{locked:?}");
    }

    #[test]
    fn long_keys_are_hashed() {
        assert_eq!(encode_key("a/b"), "612f62");
        let long = "k".repeat(500);
        let name = encode_key(&long);
        assert!(
            name.starts_with("sha256-") && name.len() == 7 + 64,
            "{name}"
        );
        assert_ne!(name, encode_key(&"k".repeat(501)));
    }

    use taskcache_core::result::ResultBackendExt;

    /// Longer than [`SETTLED_AFTER`].
    const SETTLE: Duration = Duration::from_millis(120);

    fn kept_at(result: &LocalResult, location: &Location) -> bool {
        result.kept(location).is_some()
    }

    #[cfg(unix)]
    #[test]
    fn a_settled_small_file_is_kept_and_served_after_a_stat() {
        let dir = tempfile::tempdir().unwrap();
        let result = LocalResult::new(dir.path());
        let location = Location::new("a.bin").unwrap();
        result.write(&vec![5u8; 1000], &location).unwrap();
        // Just written: read, verified, not kept (its times could still not show a
        // change in the same tick).
        assert_eq!(result.read::<Vec<u8>>(&location).unwrap(), vec![5u8; 1000]);
        assert!(!kept_at(&result, &location), "kept before it settled");
        std::thread::sleep(SETTLE);
        assert_eq!(result.read::<Vec<u8>>(&location).unwrap(), vec![5u8; 1000]);
        assert!(kept_at(&result, &location), "kept once settled");
        // Served from the kept bytes: the fast path answers by itself.
        let mut slot = taskcache_core::result::TypedSlot::<Vec<u8>>(None);
        let served = result.read_kept(&location, None, &mut slot);
        assert!(matches!(served, Some(Ok(()))), "{served:?}");
        assert_eq!(slot.0, Some(vec![5u8; 1000]));
        // A clone shares what was verified.
        assert!(kept_at(&result.clone(), &location));
        // Another pinned payload is refused from the kept bytes too.
        let other = PayloadDigest([9; 32]);
        assert!(matches!(
            result.read_pinned::<Vec<u8>>(&location, Some(&other)),
            Err(ResultError::Changed { .. })
        ));
        // Another type: checked against the kept header.
        assert!(matches!(
            result.read::<String>(&location),
            Err(ResultError::TypeMismatch { .. })
        ));
        assert_eq!(result.read::<Vec<u8>>(&location).unwrap(), vec![5u8; 1000]);
    }

    #[cfg(unix)]
    #[test]
    fn writes_and_removals_forget_what_was_kept() {
        let dir = tempfile::tempdir().unwrap();
        let result = LocalResult::new(dir.path());
        let location = Location::new("b.bin").unwrap();
        let keep = || {
            result.write(&vec![1u8; 100], &location).unwrap();
            std::thread::sleep(SETTLE);
            result.read::<Vec<u8>>(&location).unwrap();
            assert!(kept_at(&result, &location));
        };
        keep();
        result.write(&vec![2u8; 100], &location).unwrap();
        assert!(!kept_at(&result, &location), "forgotten on a write");
        assert_eq!(result.read::<Vec<u8>>(&location).unwrap(), vec![2u8; 100]);
        keep();
        result.remove(&location).unwrap();
        assert!(!kept_at(&result, &location), "forgotten on a removal");
        assert!(matches!(
            result.read::<Vec<u8>>(&location),
            Err(ResultError::NotFound { .. })
        ));
        // Pruned: forgotten with the file.
        let pruning = LocalResult::new(dir.path()).with_max_age(Duration::ZERO);
        pruning.write(&vec![3u8; 100], &location).unwrap();
        std::thread::sleep(SETTLE);
        pruning.read::<Vec<u8>>(&location).unwrap();
        assert!(kept_at(&pruning, &location));
        assert_eq!(pruning.prune().unwrap().results, 1);
        assert!(!kept_at(&pruning, &location), "forgotten when pruned");
    }

    #[test]
    fn what_is_kept_stays_within_its_bound() {
        let mut verified = Verified::default();
        let stamp = Stamp {
            len: 0,
            modified: None,
            #[cfg(unix)]
            changed: (0, 0),
            #[cfg(unix)]
            inode: (0, 0),
        };
        for i in 0..1000 {
            verified.insert(&format!("f{i}.bin"), Trust::Large(stamp), 1 << 20);
            assert!(verified.held <= KEEP_TOTAL, "{}", verified.held);
        }
        assert!(!verified.files.is_empty(), "still keeps the newest");
        assert!(verified.files.contains_key("f999.bin"));
        let held = verified.held;
        verified.remove("f999.bin");
        assert!(verified.held < held);
        drop(verified);
    }

    #[test]
    fn only_a_file_changed_a_while_ago_has_settled() {
        let now = SystemTime::now();
        let at = |t: SystemTime| {
            let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
            Stamp {
                len: 1,
                modified: Some(t),
                #[cfg(unix)]
                changed: (since.as_secs() as i64, i64::from(since.subsec_nanos()) | 1),
                #[cfg(unix)]
                inode: (1, 1),
            }
        };
        assert!(!at(now).settled(now));
        assert!(!at(now + Duration::from_secs(5)).settled(now), "the future");
        assert!(at(now - Duration::from_secs(5)).settled(now));
        #[cfg(unix)]
        {
            let mut whole_seconds = at(now - Duration::from_secs(1));
            whole_seconds.changed.1 = 0;
            assert!(!whole_seconds.settled(now), "a coarse clock waits longer");
        }
    }

    #[test]
    fn default_locations_are_unique_and_valid() {
        let a = unique_location("module::task");
        let b = unique_location("module::task");
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("module__task/"), "{a}");
        assert!(a.as_str().ends_with(".bin"));
        assert!(unique_location("").as_str().starts_with("task/"));
        assert!(unique_location("../..").as_str().starts_with("_____/"));
    }
}
