//! The result-backend contract: where checkpointed outputs, target files and persisted
//! cache records live (Prefect's `Result`: `exists`, `read`, `write`).
//!
//! Implementations are in `taskcache-results`: `LocalResult` (files) and
//! `MemoryResult` (in process). The runtime uses a backend through this trait only.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// A location inside a backend's root: a relative path that cannot leave it.
///
/// Checked when built: not empty, not absolute, no `..` component, no NUL byte, no
/// empty component; `./` components are dropped.
///
/// ```
/// use taskcache_core::result::Location;
/// assert_eq!(Location::new("./Monday/report.bin").unwrap().as_str(), "Monday/report.bin");
/// assert!(Location::new("../outside").is_err());
/// assert!(Location::new("/etc/passwd").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Location(String);

/// Why a string is not a [`Location`].
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "`{location}` is not a location inside the result's directory: {reason}; targets and result \
     locations must render to a relative path without `..`"
)]
pub struct LocationError {
    /// The rejected location.
    pub location: String,
    /// Why.
    pub reason: &'static str,
}

impl Location {
    /// Checks and normalises a location.
    ///
    /// # Errors
    /// See the type's documentation.
    pub fn new(location: impl Into<String>) -> Result<Self, LocationError> {
        let location = location.into();
        let fail = |reason| {
            Err(LocationError {
                location: location.clone(),
                reason,
            })
        };
        if location.contains('\0') {
            return fail("it contains a NUL byte");
        }
        if location.starts_with('/') || location.starts_with('\\') {
            return fail("it is an absolute path");
        }
        let bytes = location.as_bytes();
        if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
            return fail("it starts with a drive prefix");
        }
        let mut parts = Vec::new();
        let components: Vec<&str> = location.split(['/', '\\']).collect();
        let last = components.len() - 1;
        for (i, part) in components.iter().enumerate() {
            match *part {
                ".." => return fail("it has a `..` component"),
                "." => {}
                "" if i == last && i > 0 => {}
                "" => return fail("it has an empty component"),
                p => parts.push(p),
            }
        }
        if parts.is_empty() {
            return fail("it names no file");
        }
        Ok(Location(parts.join("/")))
    }

    /// The location as a `/`-separated relative path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The location under `root`.
    pub fn under(&self, root: &std::path::Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(self.0.split('/'));
        path
    }
}

impl TryFrom<String> for Location {
    type Error = LocationError;
    fn try_from(s: String) -> Result<Self, LocationError> {
        Location::new(s)
    }
}

impl From<Location> for String {
    fn from(l: Location) -> String {
        l.0
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({:?})", self.0)
    }
}

/// Why a value could not be serialized or deserialized.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SerializeError(pub String);

/// How values become bytes and back: bincode by default, JSON for humans.
///
/// Writing streams: a large value is never buffered a second time. Reading decodes
/// from the payload once its checksum has been verified, so damaged bytes are never
/// decoded at all.
pub trait Serializer: Send + Sync + fmt::Debug + 'static {
    /// The id written in a file's header, checked when it is read.
    fn id(&self) -> u8;
    /// A name for messages.
    fn name(&self) -> &'static str;
    /// Writes `value` to `out`.
    ///
    /// # Errors
    /// When the value cannot be encoded or `out` fails.
    fn serialize<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut dyn std::io::Write,
    ) -> Result<(), SerializeError>;
    /// Reads a value from `bytes`, which have already passed their integrity check.
    ///
    /// No allocation may be larger than a fixed multiple of `bytes.len()`, however the
    /// bytes claim otherwise: a damaged or crafted length must not exhaust memory.
    ///
    /// # Errors
    /// When the bytes are not a `T`.
    fn deserialize<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, SerializeError>;

    /// True when a `Vec<u8>` value may be stored as its raw bytes (the fast path for
    /// large binary results).
    fn raw_bytes(&self) -> bool {
        false
    }
}

/// Why a backend could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// The file system failed (permission denied, disk full, …).
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// Nothing is stored at the location.
    #[error("nothing is stored at {location}")]
    NotFound {
        /// The location.
        location: Location,
    },
    /// The stored bytes are damaged or not ours.
    #[error("{} is damaged ({reason}); it will be recomputed and overwritten", path.display())]
    Corrupt {
        /// The file or location.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The stored value is of another type than the one asked for.
    #[error("{} holds a `{found}`, not a `{expected}`; it will be recomputed and overwritten", path.display())]
    TypeMismatch {
        /// The file or location.
        path: PathBuf,
        /// The type asked for.
        expected: String,
        /// What the file holds (a type name, or its fingerprint).
        found: String,
    },
    /// The value could not be encoded or decoded.
    #[error("{} could not be (de)serialized with {serializer}: {source}", path.display())]
    Serialize {
        /// The file or location.
        path: PathBuf,
        /// The serializer's name.
        serializer: &'static str,
        /// Why.
        source: SerializeError,
    },
    /// The location is not valid.
    #[error(transparent)]
    Location(#[from] LocationError),
}

/// An exclusive lock on one location, released when dropped.
pub struct LocationLock(#[allow(dead_code)] Box<dyn Send + Sync>);

impl LocationLock {
    /// Wraps whatever keeps the lock held (a locked file, a mutex guard …).
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        LocationLock(Box::new(guard))
    }
}

impl fmt::Debug for LocationLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocationLock")
    }
}

/// Where a task's outputs are stored: Prefect's `Result`, plus the locks and records
/// that targets and cross-process caches need.
pub trait ResultBackend: Send + Sync + fmt::Debug + 'static {
    /// A description for messages, as `LocalResult(dir = /home/u/.taskcache)`.
    fn describe(&self) -> String;
    /// True when stored values outlive the process.
    fn is_persistent(&self) -> bool;
    /// The `location` template outputs are written to, if one was set.
    fn location_template(&self) -> Option<&str>;
    /// A fresh, unique location for one write.
    fn default_location(&self, task_name: &str) -> Location;
    /// Whether something is stored at `location` (not whether it is valid: `read` checks).
    ///
    /// # Errors
    /// When the backend cannot tell.
    fn exists(&self, location: &Location) -> Result<bool, ResultError>;
    /// Reads the value at `location`, verifying its integrity and type.
    ///
    /// # Errors
    /// [`ResultError::Corrupt`] and [`ResultError::TypeMismatch`] for stored bytes that
    /// cannot be trusted; others when the backend fails.
    fn read<T: DeserializeOwned + 'static>(&self, location: &Location) -> Result<T, ResultError>;
    /// Writes `value` at `location`, atomically: a reader sees the old value or the new
    /// one, never a part.
    ///
    /// # Errors
    /// When the value cannot be encoded or stored; nothing partial is left behind.
    fn write<T: Serialize + 'static>(
        &self,
        value: &T,
        location: &Location,
    ) -> Result<(), ResultError>;
    /// Takes an exclusive lock on `location`, across threads and processes, waiting for it.
    ///
    /// # Errors
    /// When the lock cannot be taken.
    fn lock(&self, location: &Location) -> Result<LocationLock, ResultError>;
    /// Stores a cached-state record `id` under the cache `key`, atomically.
    ///
    /// # Errors
    /// When it cannot be stored.
    fn put_record(&self, key: &str, id: &str, bytes: &[u8]) -> Result<(), ResultError>;
    /// The record `id` under `key`, if there is one.
    ///
    /// # Errors
    /// When it cannot be read.
    fn get_record(&self, key: &str, id: &str) -> Result<Option<Vec<u8>>, ResultError>;
    /// The ids of the records under `key`.
    ///
    /// # Errors
    /// When they cannot be listed.
    fn list_records(&self, key: &str) -> Result<Vec<String>, ResultError>;
    /// Removes the record `id` under `key`, if there is one.
    ///
    /// # Errors
    /// When it cannot be removed.
    fn remove_record(&self, key: &str, id: &str) -> Result<(), ResultError>;
}
