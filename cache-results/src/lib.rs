//! Result backends and serializers for taskcache: where checkpointed outputs and target
//! files are stored, in a format that is crash-safe and verified on every read.
//!
//! ```
//! use taskcache::results::{LocalResult, Location, ResultBackend, ResultBackendExt};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let result = LocalResult::new(dir.path());
//! let at = Location::new("reports/monday.bin").unwrap();
//! result.write(&vec!["eu".to_string(), "us".to_string()], &at).unwrap();
//! assert!(result.exists(&at).unwrap());
//! let back: Vec<String> = result.read(&at).unwrap();
//! assert_eq!(back, ["eu", "us"]);
//!
//! // The file knows what it holds: reading it as another type is an error, not garbage.
//! assert!(result.read::<Vec<u64>>(&at).is_err());
//! ```
//!
//! - [`LocalResult`]: files under a directory, as Prefect's `LocalResult(dir=…)`;
//!   bincode by default, JSON on request, either compressed with [`Zstd`] (feature
//!   `zstd`, on by default).
//! - [`MemoryResult`]: in process memory, for tests and single-process targets.
//! - [`format`](mod@format): the file format (a header with the type's fingerprint and
//!   the payload's SHA-256), atomic writes, verified streaming reads.
//!
//! Every backend here also lists, checks and removes what it stores without decoding it
//! ([`ResultBackend::list_entries`], [`ResultBackend::verify`], …): what the `taskcache`
//! command (package `taskcache-cli`) uses.
//!
//! The backend trait, [`Location`] and the errors are defined in `taskcache_core::result`
//! and re-exported here.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod format;
mod local;
mod memory;
#[cfg(feature = "object-store")]
mod object;
mod serializers;

pub use local::{LocalResult, Pruned};
pub use memory::MemoryResult;
#[cfg(feature = "azure")]
pub use object::AzureResult;
#[cfg(feature = "gcp")]
pub use object::GcsResult;
#[cfg(feature = "aws")]
pub use object::S3Result;
#[cfg(feature = "object-store")]
pub use object::{object_store, ObjectStoreResult};
#[cfg(feature = "zstd")]
pub use serializers::Zstd;
pub use serializers::{BincodeSerializer, JsonSerializer};
/// The header every stored result starts with, as [`ResultBackend::read_header`] and
/// [`ResultBackend::verify`] return it.
pub use taskcache_core::header::Header;
/// What a persisted cache record says (task, cache key, location, result digest, code
/// version, expiry), read from the bytes [`ResultBackend::read_record_entry`] returns:
/// for tools that list and prune a store.
pub use taskcache_core::persist::RecordInfo;
pub use taskcache_core::result::{
    AsyncResultBackend, BoxFuture, Encoded, Fetched, Location, LocationError, LocationLock,
    PayloadDigest, RecordEntry, Release, RemoteError, ResultBackend, ResultBackendExt, ResultEntry,
    ResultError, SerializeError, Serializer, Slot, TypedSlot, Value, ValueType, Visit,
};
