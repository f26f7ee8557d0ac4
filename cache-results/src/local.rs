//! `LocalResult`: results as files in a local directory.

use crate::format;
use crate::serializers::BincodeSerializer;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use taskcache_core::result::{Location, LocationLock, ResultBackend, ResultError, Serializer};

/// Stores results as files under a directory, as Prefect's `LocalResult(dir=…)`.
///
/// `~` at the start of the directory is the user's home. The directory is created on
/// the first write. Each file carries a header with the stored type's fingerprint and
/// the payload's checksum; writes are atomic and durable. Every read checks the
/// checksum, except that a file of 1 MiB or more which this `LocalResult` has already
/// verified is not hashed again while its size, modification time, change time and
/// inode are unchanged (any write to it, or a new file in its place, changes them).
///
/// ```
/// use taskcache_results::LocalResult;
/// let result = LocalResult::new("~/.taskcache").with_location("{task_name}/{today}.bin");
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
/// these stay the same: any write to the file, or a new file in its place, changes them.
const TRUST_VERIFIED_FROM: u64 = 1 << 20;

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
    /// Results under `dir` (`~` expanded), written with bincode.
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
    /// Writes each output to this templated location (`"{task_name}/{today}.bin"`)
    /// instead of a fresh unique one.
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
            verified: self.verified,
        }
    }

    /// The directory results are stored under.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, location: &Location) -> PathBuf {
        location.under(&self.dir)
    }

    fn records_dir(&self, key: &str) -> PathBuf {
        let encoded: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(".taskcache-records").join(encoded)
    }
}

/// `~` and `~/…` relative to `$HOME`; other paths unchanged.
fn expand_home(dir: &Path) -> PathBuf {
    let Some(text) = dir.to_str() else {
        return dir.to_path_buf();
    };
    let rest = match text.strip_prefix('~') {
        Some("") => "",
        Some(rest) if rest.starts_with('/') => &rest[1..],
        _ => return dir.to_path_buf(),
    };
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(rest),
        None => dir.to_path_buf(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ResultError + '_ {
    move |source| ResultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl<S: Serializer + Clone> ResultBackend for LocalResult<S> {
    fn describe(&self) -> String {
        format!("LocalResult(dir = {})", self.dir.display())
    }

    fn is_persistent(&self) -> bool {
        true
    }

    fn location_template(&self) -> Option<&str> {
        self.location.as_deref()
    }

    fn default_location(&self, task_name: &str) -> Location {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let id = uuid::Uuid::new_v4().simple();
        Location::new(format!("{}/{stamp}-{id}.bin", safe_name(task_name)))
            .expect("a sanitised name and a timestamp make a valid location")
    }

    fn exists(&self, location: &Location) -> Result<bool, ResultError> {
        let path = self.path(location);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(false),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn read<T: serde::de::DeserializeOwned + 'static>(
        &self,
        location: &Location,
    ) -> Result<T, ResultError> {
        let path = self.path(location);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(ResultError::NotFound {
                    location: location.clone(),
                })
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let meta = file.metadata().map_err(io(&path))?;
        let large = meta.len() >= TRUST_VERIFIED_FROM;
        let stamp = Stamp::of(&meta);
        let trusted = large
            && self
                .verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&path)
                == Some(&stamp);
        let value = format::read_checked(file, meta.len(), &self.serializer, &path, !trusted)?;
        if large && !trusted {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(path, stamp);
        }
        Ok(value)
    }

    fn write<T: serde::Serialize + 'static>(
        &self,
        value: &T,
        location: &Location,
    ) -> Result<(), ResultError> {
        format::write_file(value, &self.serializer, &self.path(location))
    }

    fn lock(&self, location: &Location) -> Result<LocationLock, ResultError> {
        let path = format::lock_path(&self.dir, location.as_str());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let file: File = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        // An exclusive lock on the open file: held across processes and, since each call
        // opens the file anew, across threads too; released when the file is closed.
        file.lock().map_err(io(&path))?;
        Ok(LocationLock::new(file))
    }

    fn put_record(&self, key: &str, id: &str, bytes: &[u8]) -> Result<(), ResultError> {
        let path = self.records_dir(key).join(format!("{}.rec", safe_name(id)));
        format::write_bytes(bytes, &path)
    }

    fn get_record(&self, key: &str, id: &str) -> Result<Option<Vec<u8>>, ResultError> {
        let path = self.records_dir(key).join(format!("{}.rec", safe_name(id)));
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    fn list_records(&self, key: &str) -> Result<Vec<String>, ResultError> {
        let dir = self.records_dir(key);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rec"))
            {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn remove_record(&self, key: &str, id: &str) -> Result<(), ResultError> {
        let path = self.records_dir(key).join(format!("{}.rec", safe_name(id)));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serializers::JsonSerializer;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Report {
        region: String,
        rows: Vec<u64>,
    }

    fn report() -> Report {
        Report {
            region: "emea".into(),
            rows: (0..1000).collect(),
        }
    }

    fn round_trip<S: Serializer + Clone>(serializer: S) -> PathBuf {
        let dir = tempfile::tempdir().unwrap().keep();
        let result = LocalResult::new(&dir).with_serializer(serializer);
        let at = Location::new("a/b/report.bin").unwrap();
        result.write(&report(), &at).unwrap();
        assert_eq!(result.read::<Report>(&at).unwrap(), report());
        let bytes: Vec<u8> = (0..=255).collect();
        let raw = Location::new("bytes.bin").unwrap();
        result.write(&bytes, &raw).unwrap();
        assert_eq!(result.read::<Vec<u8>>(&raw).unwrap(), bytes);
        at.under(&dir)
    }

    #[test]
    fn round_trips_with_every_serializer() {
        let json = round_trip(JsonSerializer);
        let text = std::fs::read(&json).unwrap();
        assert!(text.ends_with(b"999]}"), "JSON payload after the header");
        round_trip(BincodeSerializer);
        #[cfg(feature = "zstd")]
        {
            let path = round_trip(crate::Zstd::new(BincodeSerializer));
            let plain = round_trip(BincodeSerializer);
            assert!(
                std::fs::metadata(path).unwrap().len() < std::fs::metadata(plain).unwrap().len()
            );
            round_trip(crate::Zstd::new(JsonSerializer).with_level(9));
        }
    }

    #[test]
    fn a_file_from_another_serializer_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let at = Location::new("r.bin").unwrap();
        LocalResult::new(dir.path())
            .with_serializer(JsonSerializer)
            .write(&report(), &at)
            .unwrap();
        let e = LocalResult::new(dir.path())
            .read::<Report>(&at)
            .unwrap_err();
        assert!(matches!(e, ResultError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn a_verified_large_file_damaged_later_is_still_caught() {
        let dir = tempfile::tempdir().unwrap();
        let result = LocalResult::new(dir.path());
        let at = Location::new("large.bin").unwrap();
        let value: Vec<u8> = (0..2 * TRUST_VERIFIED_FROM as u32)
            .map(|i| i as u8)
            .collect();
        result.write(&value, &at).unwrap();
        assert_eq!(result.read::<Vec<u8>>(&at).unwrap(), value);
        assert_eq!(
            result.read::<Vec<u8>>(&at).unwrap(),
            value,
            "unchanged: trusted"
        );
        let path = at.under(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let e = result.read::<Vec<u8>>(&at).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
    }

    #[test]
    fn home_is_expanded() {
        let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
            // Without HOME, `~` is kept as written.
            assert_eq!(LocalResult::new("~/x").dir(), Path::new("~/x"));
            return;
        };
        assert_eq!(
            LocalResult::new("~/.taskcache").dir(),
            home.join(".taskcache")
        );
        assert_eq!(LocalResult::new("~").dir(), home);
        assert_eq!(LocalResult::new("data/~x").dir(), Path::new("data/~x"));
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let result = LocalResult::new(dir.path().join("file").join("sub"));
        let e = result
            .write(&1u32, &Location::new("a.bin").unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("file"), "{e}");
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file left");
    }

    #[test]
    fn locks_serialize_threads() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let result = LocalResult::new(dir.path());
        let at = Location::new("t.bin").unwrap();
        let inside = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let _lock = result.lock(&at).unwrap();
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "one holder at a time"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }

    #[test]
    fn records_with_any_key() {
        let dir = tempfile::tempdir().unwrap();
        let result = LocalResult::new(dir.path());
        let key = "prices / eu and us";
        result.put_record(key, "ab12", b"one").unwrap();
        result.put_record(key, "cd34", b"two").unwrap();
        assert_eq!(
            result.get_record(key, "ab12").unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(result.list_records(key).unwrap(), ["ab12", "cd34"]);
        result.remove_record(key, "ab12").unwrap();
        assert_eq!(result.list_records(key).unwrap(), ["cd34"]);
        assert_eq!(result.get_record("other", "ab12").unwrap(), None);
    }
}
