//! The result-backend contract: where checkpointed outputs, target files and persisted
//! cache records live (Prefect's `Result`: `exists`, `read`, `write`).
//!
//! Implementations are in `taskcache-results`: `LocalResult` (files) and
//! `MemoryResult` (in process). The runtime uses a backend through [`ResultBackend`]
//! only; a backend turns values into bytes with a [`Serializer`].
//!
//! Like `object_store`'s trait this is kept small: a [`Location`] type that cannot
//! leave the backend's root, one serializer trait, one backend trait, one error type.
//! Both traits are object-safe: a value crosses them type-erased (a [`Value`] to
//! write, a [`Slot`] to read into, through `erased_serde`), so a backend chosen at run
//! time (`Arc<dyn ResultBackend>`, say for a scope with `Context::with_result`) serves
//! tasks of every output type. [`ResultBackendExt`] gives the typed `read` and `write`.
//!
//! Tools that walk a store without knowing the types in it (the `taskcache` command) use
//! the trait's byte-level methods: [`ResultBackend::list_entries`],
//! [`ResultBackend::read_header`], [`ResultBackend::verify`], [`ResultBackend::remove`],
//! [`ResultBackend::list_all_records`] and the record-entry methods beside them.

use crate::header::Header;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::{Any, TypeId};
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

/// A location inside a backend's root: a relative path that cannot leave it.
///
/// Checked when built, so that every later use can trust it: not empty, not absolute
/// (no leading `/` or `\`, no Windows drive prefix such as `C:` in any component), no
/// `..` component, no NUL byte, no empty component except a trailing one (`reports/`
/// is `reports`); `.` components are dropped and `\` is read as `/`.
///
/// ```
/// use taskcache::results::Location;
/// assert_eq!(Location::new("./Monday/report.bin").unwrap().as_str(), "Monday/report.bin");
/// assert!(Location::new("../outside").is_err());
/// assert!(Location::new("/etc/passwd").is_err());
/// assert!(Location::new("a//b").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Location(String);

/// Why a string is not a [`Location`].
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "`{location}` is not a valid location: {reason}; targets and result \
     locations must stay inside the result's directory, as a relative path without `..` \
     (for example `{{date:%Y-%m-%d}}/{{task_name}}.bin`)"
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
    /// A [`LocationError`] naming the location and the rule it breaks (see the type's
    /// documentation).
    pub fn new(location: impl Into<String>) -> Result<Self, LocationError> {
        let location = location.into();
        // Most locations are already in their normal form (every one this library
        // writes, and every one read back from a record): kept as they are, without
        // splitting and joining them.
        if is_normal(&location) {
            return Ok(Location(location));
        }
        Location::normalised(location)
    }

    /// [`Location::new`] the long way: split, checked and joined.
    fn normalised(location: String) -> Result<Self, LocationError> {
        let fail = |reason| {
            Err(LocationError {
                location: location.clone(),
                reason,
            })
        };
        if location.is_empty() {
            return fail("it is empty");
        }
        if location.contains('\0') {
            return fail("it contains a NUL byte");
        }
        if location.starts_with('/') || location.starts_with('\\') {
            return fail("it is an absolute path");
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
                // On Windows, joining `C:` (or `C:x`) to a path replaces the whole path:
                // refused everywhere, so that a location means the same on every system.
                p if p.len() >= 2
                    && p.as_bytes()[1] == b':'
                    && p.as_bytes()[0].is_ascii_alphabetic() =>
                {
                    return fail("it has a Windows drive prefix");
                }
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

    /// The path of this location under a backend's `root` directory.
    pub fn under(&self, root: &std::path::Path) -> PathBuf {
        // (Room for all of it at once: growing the path as it is pushed reallocates.)
        let mut path = PathBuf::with_capacity(root.as_os_str().len() + 1 + self.0.len());
        path.push(root);
        path.extend(self.0.split('/'));
        path
    }
}

/// Whether `location` is a valid location in its normal form: components joined by
/// single `/`, none of them empty, `.`, `..` or a drive prefix, no `\`, no NUL. (What
/// [`Location::new`] would return unchanged; anything else goes the long way.)
fn is_normal(location: &str) -> bool {
    !location.is_empty()
        && location.as_bytes().split(|&b| b == b'/').all(|part| {
            !matches!(part, [] | [b'.'] | [b'.', b'.'] | [b'a'..=b'z' | b'A'..=b'Z', b':', ..])
                && !part.iter().any(|&b| b == b'\\' || b == 0)
        })
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

/// What a serializer hands its decoder to, to deserialize the value from it (see
/// [`Serializer::deserialize_with`]).
pub type Visit<'a> =
    dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error> + 'a;

/// Why a value could not be serialized or deserialized (the serializer's own message).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SerializeError(pub String);

/// How values become bytes and back: bincode by default, JSON for people, either
/// compressed with zstd (the implementations are in `taskcache-results`).
///
/// Both directions stream: a large value is never held a second time in memory as
/// bytes. A backend verifies the stored payload's checksum before it hands it to
/// [`Serializer::deserialize`], so damaged bytes are never decoded; what remains to
/// guard against is a crafted payload, hence the allocation bound on `deserialize`.
pub trait Serializer: Send + Sync + fmt::Debug + 'static {
    /// The id written in a file's header and checked when it is read: a file is only
    /// decoded by the serializer that wrote it. Ids up to 127 are taskcache's; a
    /// wrapper sets the high bit (as `Zstd` does).
    fn id(&self) -> u8;
    /// The serializer's name, for messages (`"bincode"`, `"json"`, …).
    fn name(&self) -> &'static str;
    /// Encodes `value` into `out`, streaming.
    ///
    /// `out` is buffered by the caller; small writes are cheap.
    ///
    /// # Errors
    /// When the value cannot be encoded or `out` fails.
    fn serialize(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut dyn std::io::Write,
    ) -> Result<(), SerializeError>;
    /// Decodes one value from `input`, streaming, and leaves whatever follows it
    /// unconsumed (the caller checks that nothing does).
    ///
    /// `input` yields at most `max_len` bytes. Nothing may be allocated for a length
    /// the bytes claim ahead of the bytes behind it: a claim larger than what `input`
    /// can still yield fails before allocating, and buffers grow as bytes arrive, so a
    /// crafted length fails quickly instead of exhausting memory. When `input`'s buffer
    /// already holds all `max_len` bytes (a payload read whole, or held in memory), an
    /// implementation may decode from that slice directly.
    ///
    /// (`BufRead` rather than `Read`: a serializer that read ahead into its own buffer
    /// would swallow the bytes the caller checks for; `max_len`: to refuse claims
    /// beyond the bytes left.)
    ///
    /// The decoder is handed to `visit`, which deserializes the value from it (for a
    /// typed value, [`deserialize`](Self::deserialize) does that).
    ///
    /// # Errors
    /// When the bytes are not an encoded value of the type `visit` reads, or `visit`
    /// fails.
    fn deserialize_with(
        &self,
        input: &mut dyn std::io::BufRead,
        max_len: u64,
        visit: &mut Visit<'_>,
    ) -> Result<(), SerializeError>;

    /// Decodes one `T` from `input`, as [`deserialize_with`](Self::deserialize_with).
    ///
    /// # Errors
    /// When the bytes are not an encoded `T`.
    fn deserialize<T: DeserializeOwned>(
        &self,
        input: &mut dyn std::io::BufRead,
        max_len: u64,
    ) -> Result<T, SerializeError>
    where
        Self: Sized,
    {
        let mut slot = None;
        self.deserialize_with(input, max_len, &mut |de| {
            slot = Some(erased_serde::deserialize::<T>(de)?);
            Ok(())
        })?;
        slot.ok_or_else(|| SerializeError("the decoder produced no value".into()))
    }

    /// True when this serializer encodes a `Vec<u8>` exactly as bincode's standard
    /// configuration does: its length as a varint, then the bytes. The file format then
    /// writes and reads such a value in one piece instead of byte by byte through
    /// serde, and the file stays what the serializer itself would have written.
    fn encodes_bytes_as_bincode(&self) -> bool {
        false
    }
}

/// Why a backend could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// The file system failed (permission denied, disk full, a file where a directory
    /// should be, …).
    #[error(
        "{}: {source}; check that the path is a writable directory tree on a disk with free \
         space (a result's `dir` is created on the first write)",
        path.display()
    )]
    Io {
        /// The file or directory that failed.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// Nothing is stored at the location (for the runtime, a miss: the task runs).
    #[error("nothing is stored at `{location}`; run the task (or write the value) first")]
    NotFound {
        /// The location.
        location: Location,
    },
    /// The stored bytes are damaged or not a taskcache result: bad magic, a short file,
    /// a length or checksum mismatch, another serializer. The runtime treats it as a
    /// miss and overwrites the file.
    #[error(
        "{} is damaged or not a taskcache result ({reason}); the task will recompute and \
         overwrite it",
        path.display()
    )]
    Corrupt {
        /// The file or location.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The stored value is of another type than the one asked for, or of an earlier
    /// definition of it. The runtime treats it as a miss and overwrites the file.
    #[error(
        "{} does not hold a `{expected}`: it holds {found}; the task will recompute and \
         overwrite it",
        path.display()
    )]
    TypeMismatch {
        /// The file or location.
        path: PathBuf,
        /// The type asked for.
        expected: String,
        /// What the file holds, in words (its type's fingerprint, or why it does not
        /// decode as `expected`).
        found: String,
    },
    /// The value could not be encoded (bincode cannot encode some serde features, such as
    /// sequences or maps of unknown length from a custom `Serialize`); nothing was
    /// written.
    #[error(
        "the value for {} could not be serialized with {serializer}: {source}; check the \
         type's `Serialize` implementation, or use `JsonSerializer` for types bincode \
         cannot encode",
        path.display()
    )]
    Serialize {
        /// The file or location the value was for.
        path: PathBuf,
        /// The serializer's name.
        serializer: &'static str,
        /// Why.
        source: SerializeError,
    },
    /// The stored value is intact but is not the one a cache record pinned: the file was
    /// replaced since the record was written. The record is not used; the task runs.
    #[error(
        "{} no longer holds the output its cache record describes (it was overwritten \
         since, perhaps by a run with other inputs writing the same location); the record \
         is ignored and the task recomputes. Give each input its own location (name the \
         arguments in the location template) to keep every output",
        path.display()
    )]
    Changed {
        /// The file or location.
        path: PathBuf,
    },
    /// The location is not valid (see [`Location`]).
    #[error(transparent)]
    Location(#[from] LocationError),
    /// The backend does not implement this operation (a byte-level one such as
    /// [`ResultBackend::list_entries`], which a backend of one's own may leave out).
    #[error(
        "{backend} cannot {operation}; implement `ResultBackend::{method}` for it, or use \
         a `LocalResult`, `MemoryResult` or `ObjectStoreResult`"
    )]
    Unsupported {
        /// The backend, as [`ResultBackend::describe`] names it.
        backend: String,
        /// What was asked, in words (`list its results`).
        operation: &'static str,
        /// The trait method to implement.
        method: &'static str,
    },
    /// A remote store (object storage) failed or could not be set up (see
    /// [`RemoteError`]). For the runtime a failed read is a miss (the task runs) and a
    /// failed write is the state's `persist_error` (the value is still returned).
    #[error(transparent)]
    Remote(Box<RemoteError>),
}

/// Why a remote store (object storage) failed: a bad URL, missing credentials, a
/// refused request, a timeout. `message` has had every credential the store was given,
/// and every URL query string, removed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} `{object}` failed: {message}; {fix}")]
pub struct RemoteError {
    /// The store, as `S3Result(s3://bucket/prefix)`.
    pub store: String,
    /// What was being done: `read`, `write`, `lock`, `connect`, …
    pub operation: &'static str,
    /// The object (or the store's URL, for `connect`).
    pub object: String,
    /// The store's own message, without credentials.
    pub message: String,
    /// What to do about it.
    pub fix: &'static str,
}

/// The SHA-256 of a stored payload, as its file header records it: what a persisted
/// cache record pins its result by, so that a file overwritten since (by another input's
/// output, or another run) is never served for the record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PayloadDigest(pub [u8; 32]);

impl fmt::Debug for PayloadDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadDigest({self})")
    }
}

impl fmt::Display for PayloadDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// One stored result, as [`ResultBackend::list_entries`] lists it: where it is, how
/// large, when it was last written. Nothing is read from inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultEntry {
    /// Its location.
    pub location: Location,
    /// Its size in bytes, header included (0 for something that is not a regular file,
    /// such as a FIFO, which [`ResultBackend::verify`] reports).
    pub size: u64,
    /// When it was last written, when the backend knows.
    pub modified: Option<SystemTime>,
}

/// One stored cache record, as [`ResultBackend::list_all_records`] lists it, without
/// reading it: what [`ResultBackend::read_record_entry`] and
/// [`ResultBackend::remove_record_entry`] take.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordEntry {
    /// The cache key it is stored under, when the backend can tell it from the record's
    /// name; `None` when the key is too long to be kept in a name (a backend may store
    /// such a key under its digest): the record's own `cache_key` says it.
    pub key: Option<String>,
    /// The record's id under its key.
    pub id: String,
    /// The backend's name of the record, relative to where it keeps records
    /// (`<encoded key>/<encoded id>.rec` for `LocalResult`): what identifies it when
    /// `key` is `None`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written, when the backend knows.
    pub modified: Option<SystemTime>,
}

/// The error of a byte-level operation `backend` does not implement.
fn unsupported<B: ResultBackend + ?Sized>(
    backend: &B,
    operation: &'static str,
    method: &'static str,
) -> ResultError {
    ResultError::Unsupported {
        backend: backend.describe(),
        operation,
        method,
    }
}

/// An exclusive lock on one location, released when dropped; each backend fills it its
/// own way (a locked file, a guard on an in-process set, …).
pub struct LocationLock(Guard);

enum Guard {
    Plain(#[allow(dead_code)] Box<dyn Send + Sync>),
    Releasable(Box<dyn Release>),
}

/// A lock guard whose release waits on a network: [`release`](Release::release) lets an
/// async caller await it instead of blocking in `Drop` (which the guard must still do,
/// bounded in time, when it is dropped without being released).
pub trait Release: Send + Sync + 'static {
    /// Releases the lock; the future ends once the release is done or has given up.
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

impl LocationLock {
    /// Wraps whatever keeps the lock held (a locked file, a mutex guard …).
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        LocationLock(Guard::Plain(Box::new(guard)))
    }

    /// Wraps a guard whose release can be awaited (see [`Release`]).
    pub fn releasable(guard: impl Release) -> Self {
        LocationLock(Guard::Releasable(Box::new(guard)))
    }

    /// Releases the lock: at once for a plain guard, through its future for a
    /// [`Release`] one, so that an async caller never blocks on it.
    pub fn release(self) -> BoxFuture<'static, ()> {
        match self.0 {
            Guard::Plain(guard) => {
                drop(guard);
                Box::pin(std::future::ready(()))
            }
            Guard::Releasable(guard) => guard.release(),
        }
    }
}

/// A boxed future that can move between threads, as [`AsyncResultBackend`] returns.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A value fetched by [`AsyncResultBackend::fetch`]: downloaded and verified (header,
/// length, checksum, pinned digest), not yet decoded. Opaque: only the backend that
/// made it reads it, in [`AsyncResultBackend::decode`].
pub struct Fetched(Box<dyn Any + Send>);

impl Fetched {
    /// Wraps a backend's own form of a fetched value.
    pub fn new(inner: impl Any + Send) -> Self {
        Fetched(Box::new(inner))
    }

    /// The backend's own form, when it is a `T`.
    ///
    /// # Errors
    /// The value itself, when it is not a `T` (it was fetched by another backend).
    pub fn downcast<T: Any>(self) -> Result<T, Self> {
        match self.0.downcast::<T>() {
            Ok(t) => Ok(*t),
            Err(other) => Err(Fetched(other)),
        }
    }
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fetched")
    }
}

/// A value encoded by [`AsyncResultBackend::encode`] (header, checksum and payload, in
/// memory or spilled to a temporary file), ready for [`AsyncResultBackend::store`].
/// Opaque, like [`Fetched`].
pub struct Encoded {
    digest: PayloadDigest,
    inner: Box<dyn Any + Send>,
}

impl Encoded {
    /// Wraps a backend's own form of an encoded value whose payload has `digest`.
    pub fn new(digest: PayloadDigest, inner: impl Any + Send) -> Self {
        Encoded {
            digest,
            inner: Box::new(inner),
        }
    }

    /// The digest of the encoded payload.
    pub fn digest(&self) -> PayloadDigest {
        self.digest
    }

    /// The backend's own form, when it is a `T`.
    ///
    /// # Errors
    /// The value itself, when it is not a `T` (it was encoded by another backend).
    pub fn downcast<T: Any>(self) -> Result<T, Self> {
        match self.inner.downcast::<T>() {
            Ok(t) => Ok(*t),
            Err(inner) => Err(Encoded {
                digest: self.digest,
                inner,
            }),
        }
    }
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoded")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// The I/O of a [`ResultBackend`] whose calls wait on a network (object storage), as
/// futures: what an `async fn` task awaits, so that it never blocks its executor,
/// whichever executor that is. [`ResultBackend::as_async`] offers it.
///
/// Every future is `'static` and `Send` and does its waiting wherever the backend
/// chooses (its own runtime, say): the caller only polls it. Decoding and encoding are
/// plain CPU work, done by the caller between the futures, so that no value of the
/// task's type has to cross threads. The semantics are the blocking methods' of the
/// same names: a fetch verifies exactly what [`ResultBackend::read_value`] verifies
/// (with `pinned` honoured the same way), a store is as atomic as
/// [`ResultBackend::write_value`], and the record methods store the same bytes.
pub trait AsyncResultBackend: Send + Sync {
    /// Downloads the value at `location` and verifies it (integrity, the type `ty`, the
    /// `pinned` digest), ready for [`decode`](Self::decode).
    ///
    /// # Errors
    /// As [`ResultBackend::read_value`].
    fn fetch(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
        ty: ValueType,
    ) -> BoxFuture<'static, Result<Fetched, ResultError>>;
    /// Decodes a value [`fetch`](Self::fetch) returned into `slot`.
    ///
    /// # Errors
    /// When the verified bytes are not a value of the slot's type.
    fn decode(&self, fetched: Fetched, slot: &mut dyn Slot) -> Result<(), ResultError>;
    /// Encodes `value` for `location`, ready for [`store`](Self::store).
    ///
    /// # Errors
    /// When the value cannot be encoded.
    fn encode(&self, value: Value<'_>, location: &Location) -> Result<Encoded, ResultError>;
    /// Stores an encoded value at `location`, atomically; returns its payload's digest.
    ///
    /// # Errors
    /// As [`ResultBackend::write_value`].
    fn store(
        &self,
        encoded: Encoded,
        location: &Location,
    ) -> BoxFuture<'static, Result<PayloadDigest, ResultError>>;
    /// As [`ResultBackend::lock`]; the lock's [`LocationLock::release`] can be awaited.
    ///
    /// # Errors
    /// When the lock cannot be taken.
    fn lock(&self, location: &Location) -> BoxFuture<'static, Result<LocationLock, ResultError>>;
    /// As [`ResultBackend::put_record`].
    ///
    /// # Errors
    /// When it cannot be stored.
    fn put_record(
        &self,
        key: &str,
        id: &str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), ResultError>>;
    /// As [`ResultBackend::get_record`].
    ///
    /// # Errors
    /// When it cannot be read.
    fn get_record(
        &self,
        key: &str,
        id: &str,
    ) -> BoxFuture<'static, Result<Option<Vec<u8>>, ResultError>>;
    /// As [`ResultBackend::list_records`].
    ///
    /// # Errors
    /// When they cannot be listed.
    fn list_records(&self, key: &str) -> BoxFuture<'static, Result<Vec<String>, ResultError>>;
    /// As [`ResultBackend::remove_record`].
    ///
    /// # Errors
    /// When it cannot be removed.
    fn remove_record(&self, key: &str, id: &str) -> BoxFuture<'static, Result<(), ResultError>>;
}

impl fmt::Debug for LocationLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocationLock")
    }
}

/// The Rust type of a value crossing a [`ResultBackend`]: what its file header
/// fingerprints, and what tells a `Vec<u8>` (written in one piece) from other values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueType {
    /// `std::any::type_name` of the type.
    pub name: &'static str,
    /// Its `TypeId`.
    pub id: TypeId,
}

impl ValueType {
    /// The type `T`.
    pub fn of<T: ?Sized + 'static>() -> Self {
        ValueType {
            name: std::any::type_name::<T>(),
            id: TypeId::of::<T>(),
        }
    }

    /// Whether this is `Vec<u8>`.
    pub fn is_byte_vec(&self) -> bool {
        self.id == TypeId::of::<Vec<u8>>()
    }
}

/// A value to write, type-erased: its serde form, its type, and its bytes when it is a
/// `Vec<u8>` (written in one piece, not byte by byte through serde). Made only by
/// [`Value::of`], so the three always agree.
#[derive(Clone, Copy)]
pub struct Value<'a> {
    serialize: &'a dyn erased_serde::Serialize,
    ty: ValueType,
    bytes: Option<&'a [u8]>,
}

impl<'a> Value<'a> {
    /// `value`, erased.
    pub fn of<T: Serialize + 'static>(value: &'a T) -> Self {
        Value {
            serialize: value,
            ty: ValueType::of::<T>(),
            bytes: (value as &dyn Any)
                .downcast_ref::<Vec<u8>>()
                .map(Vec::as_slice),
        }
    }

    /// The value, to serialize.
    pub fn serialize(&self) -> &'a dyn erased_serde::Serialize {
        self.serialize
    }

    /// Its type.
    pub fn ty(&self) -> ValueType {
        self.ty
    }

    /// The bytes of a `Vec<u8>` value.
    pub fn bytes(&self) -> Option<&'a [u8]> {
        self.bytes
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("ty", &self.ty.name)
            .finish_non_exhaustive()
    }
}

/// Where a read value goes, type-erased: a backend checks the stored type against
/// [`ty`](Slot::ty) and then hands over the bytes of a `Vec<u8>` or a decoder.
pub trait Slot {
    /// The type expected.
    fn ty(&self) -> ValueType;
    /// Takes the bytes of a `Vec<u8>` value (only called when `ty` is `Vec<u8>`).
    fn put_bytes(&mut self, bytes: Vec<u8>);
    /// Decodes the value from `de`.
    ///
    /// # Errors
    /// When `de` does not hold a value of the type.
    fn decode(
        &mut self,
        de: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<(), erased_serde::Error>;
}

/// The [`Slot`] of a typed read: holds the value once read.
pub struct TypedSlot<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> Slot for TypedSlot<T> {
    fn ty(&self) -> ValueType {
        ValueType::of::<T>()
    }
    fn put_bytes(&mut self, bytes: Vec<u8>) {
        let boxed: Box<dyn Any> = Box::new(bytes);
        self.0 = boxed.downcast::<T>().ok().map(|b| *b);
    }
    fn decode(
        &mut self,
        de: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<(), erased_serde::Error> {
        self.0 = Some(erased_serde::deserialize::<T>(de)?);
        Ok(())
    }
}

/// Typed reads and writes on any [`ResultBackend`] (a concrete one or `dyn`).
pub trait ResultBackendExt {
    /// Reads the `T` at `location`, verifying its integrity and type.
    ///
    /// # Errors
    /// [`ResultError::NotFound`] when nothing is there; [`ResultError::Corrupt`] and
    /// [`ResultError::TypeMismatch`] for stored bytes that cannot be trusted as a `T`;
    /// others when the backend fails.
    fn read<T: DeserializeOwned + 'static>(&self, location: &Location) -> Result<T, ResultError> {
        self.read_pinned(location, None)
    }
    /// Reads as [`read`](Self::read) does and, when `pinned` is given, only if the
    /// stored payload's digest is that one (checked before decoding).
    ///
    /// # Errors
    /// As [`read`](Self::read), and [`ResultError::Changed`] when the payload is another
    /// than the pinned one.
    fn read_pinned<T: DeserializeOwned + 'static>(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
    ) -> Result<T, ResultError>;
    /// Writes `value` at `location`, atomically; returns the stored payload's digest.
    ///
    /// # Errors
    /// When the value cannot be encoded or stored; nothing partial is left behind.
    fn write<T: Serialize + 'static>(
        &self,
        value: &T,
        location: &Location,
    ) -> Result<PayloadDigest, ResultError>;
}

impl<R: ResultBackend + ?Sized> ResultBackendExt for R {
    fn read_pinned<T: DeserializeOwned + 'static>(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
    ) -> Result<T, ResultError> {
        let mut slot = TypedSlot::<T>(None);
        self.read_value(location, pinned, &mut slot)?;
        slot.0.ok_or_else(|| ResultError::Corrupt {
            path: PathBuf::from(location.as_str()),
            reason: "the backend produced no value".into(),
        })
    }

    fn write<T: Serialize + 'static>(
        &self,
        value: &T,
        location: &Location,
    ) -> Result<PayloadDigest, ResultError> {
        self.write_value(Value::of(value), location)
    }
}

/// Where a task's outputs are stored: Prefect's `Result`, plus the locks and records
/// that targets and cross-process caches need. Object-safe: values cross it erased
/// ([`Value`], [`Slot`]); [`ResultBackendExt`] reads and writes typed values.
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
    /// Reads the value at `location` into `slot`, verifying its integrity and its type
    /// (`slot.ty()`) first and, when `pinned` is given, that the stored payload's digest
    /// is that one. An implementation must honour `pinned`: a cache record names its
    /// result by location and digest, and another payload at that location (another
    /// input's output) must not be served for it.
    ///
    /// # Errors
    /// [`ResultError::NotFound`] when nothing is there; [`ResultError::Corrupt`] and
    /// [`ResultError::TypeMismatch`] for stored bytes that cannot be trusted;
    /// [`ResultError::Changed`] for another payload than the pinned one; others when
    /// the backend fails.
    fn read_value(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
        slot: &mut dyn Slot,
    ) -> Result<(), ResultError>;
    /// Writes `value` at `location`, atomically: a reader sees the old value or the new
    /// one, never a part. Returns the digest of the stored payload.
    ///
    /// # Errors
    /// When the value cannot be encoded or stored; nothing partial is left behind.
    fn write_value(
        &self,
        value: Value<'_>,
        location: &Location,
    ) -> Result<PayloadDigest, ResultError>;
    /// Takes an exclusive lock on `location`, across threads and processes, waiting for it.
    ///
    /// # Errors
    /// When the lock cannot be taken.
    fn lock(&self, location: &Location) -> Result<LocationLock, ResultError>;
    /// What identifies the lock of `location`: two backends whose locks on it exclude
    /// each other must give the same text, so that a task called from a body that holds
    /// the lock is known not to wait for it. By default the description and the
    /// location.
    fn lock_id(&self, location: &Location) -> String {
        format!("{}\0{location}", self.describe())
    }
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

    /// The same I/O as futures, for a backend whose calls wait on a network: an async
    /// task then awaits them instead of blocking its executor. `None` (the default) for
    /// a backend whose calls are local (files, memory), which an async task makes
    /// directly, as it would read a file.
    fn as_async(&self) -> Option<&dyn AsyncResultBackend> {
        None
    }

    // Byte-level access, for tools that list, check and prune a store without knowing
    // the Rust types of what it holds (the `taskcache` command). None of these decodes
    // a value.

    /// Every stored result: not the cache records, lock files or temporary files the
    /// backend keeps beside them. In no particular order.
    ///
    /// # Errors
    /// [`ResultError::Unsupported`] by default; others when the store cannot be listed.
    fn list_entries(&self) -> Result<Vec<ResultEntry>, ResultError> {
        Err(unsupported(self, "list its results", "list_entries"))
    }

    /// The header of the result at `location` (serializer id, type fingerprint, payload
    /// length and digest), read without reading the payload.
    ///
    /// # Errors
    /// [`ResultError::NotFound`] when nothing is there, [`ResultError::Corrupt`] when it
    /// does not start with a header this version reads; [`ResultError::Unsupported`] by
    /// default.
    fn read_header(&self, location: &Location) -> Result<Header, ResultError> {
        let _ = location;
        Err(unsupported(self, "read a result's header", "read_header"))
    }

    /// Checks the result at `location` without decoding it: its header, that the
    /// payload is as long as the header says, and the payload's SHA-256, streaming.
    /// Returns the header.
    ///
    /// # Errors
    /// [`ResultError::NotFound`] when nothing is there, [`ResultError::Corrupt`] when it
    /// is damaged (or not a regular file); [`ResultError::Unsupported`] by default.
    fn verify(&self, location: &Location) -> Result<Header, ResultError> {
        let _ = location;
        Err(unsupported(self, "verify a result", "verify"))
    }

    /// Removes the result at `location`; nothing there is not an error. A later read
    /// finds nothing (a miss, never a part of the value): with `LocalResult` a reader
    /// that has already opened the file still reads it whole.
    ///
    /// # Errors
    /// When it cannot be removed; [`ResultError::Unsupported`] by default.
    fn remove(&self, location: &Location) -> Result<(), ResultError> {
        let _ = location;
        Err(unsupported(self, "remove a result", "remove"))
    }

    /// Every stored cache record, under every key, without reading them.
    ///
    /// # Errors
    /// [`ResultError::Unsupported`] by default; others when they cannot be listed.
    fn list_all_records(&self) -> Result<Vec<RecordEntry>, ResultError> {
        Err(unsupported(
            self,
            "list its cache records",
            "list_all_records",
        ))
    }

    /// The bytes of a listed record (as [`get_record`](Self::get_record) returns them,
    /// verified); `None` when it is gone. By default through `get_record`, which needs
    /// the entry's `key`.
    ///
    /// # Errors
    /// [`ResultError::Corrupt`] for a damaged record, others when it cannot be read.
    fn read_record_entry(&self, entry: &RecordEntry) -> Result<Option<Vec<u8>>, ResultError> {
        match &entry.key {
            Some(key) => self.get_record(key, &entry.id),
            None => Err(unsupported(
                self,
                "read a record by its name",
                "read_record_entry",
            )),
        }
    }

    /// Removes a listed record; one already gone is not an error. By default through
    /// [`remove_record`](Self::remove_record), which needs the entry's `key`.
    ///
    /// # Errors
    /// When it cannot be removed.
    fn remove_record_entry(&self, entry: &RecordEntry) -> Result<(), ResultError> {
        match &entry.key {
            Some(key) => self.remove_record(key, &entry.id),
            None => Err(unsupported(
                self,
                "remove a record by its name",
                "remove_record_entry",
            )),
        }
    }

    /// Removes what writers and lock holders that died left behind: temporary files
    /// and lock files that nobody holds and that were last written at least
    /// `older_than` ago. Returns how many were removed. Safe beside live writers and
    /// lock holders, in this process or others. By default nothing (a store without
    /// such leftovers).
    ///
    /// # Errors
    /// When the store cannot be listed.
    fn remove_stale(&self, older_than: std::time::Duration) -> Result<usize, ResultError> {
        let _ = older_than;
        Ok(0)
    }
}

#[cfg(test)]
mod location_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A location the short way keeps as it is, the long way keeps as it is too.
        #[test]
        fn what_is_normal_the_long_way_leaves_unchanged(text in "[a-zA-Z/\\\\.:\\x00-]{0,12}") {
            if is_normal(&text) {
                let long = Location::normalised(text.clone());
                prop_assert_eq!(long.map(String::from).ok(), Some(text));
            }
        }
    }

    #[test]
    fn the_short_way_refuses_what_is_not_normal() {
        for text in [
            "", "a//b", "/a", "a/", "./a", "a/..", "C:/a", "a/c:x", "a\\b", "a\0b", ".",
        ] {
            assert!(!is_normal(text), "{text:?}");
        }
        for text in ["a", "a/b.bin", "a/.b", "a/b..c", "1:/x", "ab:/x", "a/-"] {
            assert!(is_normal(text), "{text:?}");
        }
    }
}
