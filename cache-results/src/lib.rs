//! Result backends and serializers for taskcache: where checkpointed outputs and target
//! files are stored, in a format that is crash-safe and verified on every read.
//!
//! ```
//! use taskcache_results::LocalResult;
//! use taskcache_core::result::{Location, ResultBackend};
//!
//! let dir = std::env::temp_dir().join(format!("taskcache-doc-{}", std::process::id()));
//! let result = LocalResult::new(&dir);
//! let at = Location::new("reports/monday.bin").unwrap();
//! result.write(&vec!["eu".to_string(), "us".to_string()], &at).unwrap();
//! assert!(result.exists(&at).unwrap());
//! let back: Vec<String> = result.read(&at).unwrap();
//! assert_eq!(back, ["eu", "us"]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
//!
//! - [`LocalResult`]: files under a directory (bincode by default, JSON on request,
//!   either compressed with `Zstd`).
//! - [`MemoryResult`]: in process memory, for tests and single-process targets.
//! - [`format`](mod@format): the file format (header with type fingerprint and checksum), atomic
//!   writes, verified reads.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod format;
mod local;
mod memory;
mod serializers;

pub use local::LocalResult;
pub use memory::MemoryResult;
#[cfg(feature = "zstd")]
pub use serializers::Zstd;
pub use serializers::{BincodeSerializer, JsonSerializer};
pub use taskcache_core::result::{Location, LocationError, ResultBackend, ResultError, Serializer};
