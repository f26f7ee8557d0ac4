//! `LocalResult`: results as files in a local directory.

use crate::format;
use crate::serializers::BincodeSerializer;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use taskcache_core::result::{
    Location, LocationError, LocationLock, PayloadDigest, ResultBackend, ResultError, Serializer,
    Slot, Value,
};

/// Stores results as files under a directory, as Prefect's `LocalResult(dir=…)`.
///
/// `~` and `~/…` at the start of the directory are the user's home (`$HOME`). The
/// directory is created on the first write. Each file carries a header with the stored
/// type's fingerprint and the payload's checksum ([`format`](crate::format)); writes
/// are atomic and durable, reads verified. One exception to "every read hashes the
/// payload": a file of 1 MiB or more that this `LocalResult` (or a clone) has already
/// verified is not hashed again while its size, modification time, change time and
/// inode are unchanged; any write to it, or a new file in its place, changes them.
///
/// Besides the results it keeps, under the same directory, `.locks/` (one lock file
/// per location locked now, removed when the lock is released) and
/// `.taskcache-records/` (persisted cache records, in the same checked format as
/// results); locations inside those two are refused.
///
/// Only regular files are read: a FIFO, device or directory in place of a result, a
/// record or a lock file is a miss (or runs the task without the lock), never waited
/// on. Symbolic links inside the directory are followed, also out of it: the directory
/// is trusted to be the user's own.
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
    verified: Arc<Mutex<HashMap<PathBuf, Stamp>>>,
}

/// Large files whose checksum this process has verified are not hashed again while
/// their [`Stamp`] stays the same.
const TRUST_VERIFIED_FROM: u64 = 1 << 20;

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
        }
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

    fn record_path(&self, key: &str, id: &str) -> PathBuf {
        self.records_dir(key).join(format!("{}.rec", encode_id(id)))
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

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A record id as a file name: `[A-Za-z0-9_-]` as is (hex digests are unchanged),
/// every other byte as `%XX`, so that any id comes back from [`decode_id`] unchanged.
pub(crate) fn encode_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
        let path = self.path(location)?;
        let Some((file, meta)) = format::open_regular(&path)? else {
            return Err(ResultError::NotFound {
                location: location.clone(),
            });
        };
        let large = meta.len() >= TRUST_VERIFIED_FROM;
        let stamp = Stamp::of(&meta);
        let verified = || self.verified.lock().unwrap_or_else(|e| e.into_inner());
        let trusted = large && verified().get(&path) == Some(&stamp);
        format::read_into(
            file,
            meta.len(),
            &self.serializer,
            &path,
            !trusted,
            pinned,
            slot,
        )?;
        if large && !trusted {
            verified().insert(path, stamp);
        }
        Ok(())
    }

    fn write_value(
        &self,
        value: Value<'_>,
        location: &Location,
    ) -> Result<PayloadDigest, ResultError> {
        format::write_file(value, &self.serializer, &self.path(location)?)
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
        let path = self.record_path(key, id);
        let Some((mut file, meta)) = format::open_regular(&path)? else {
            return Ok(None);
        };
        let len = meta.len();
        if len > MAX_RECORD {
            return Err(ResultError::Corrupt {
                path,
                reason: format!("{len} bytes, larger than any cache record ({MAX_RECORD})"),
            });
        }
        let mut stored = Vec::with_capacity(len as usize);
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, MAX_RECORD), &mut stored)
            .map_err(io(&path))?;
        format::decode_blob(&stored, RECORD_KIND, &path).map(Some)
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
        let path = self.record_path(key, id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if missing(&e) => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
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
