//! What can go wrong, in messages that name the path and the fix.

use std::path::PathBuf;
use taskcache::results::ResultError;

/// Why a command could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// DIR does not exist.
    #[error(
        "{}: no such directory; give the directory of a LocalResult (the `dir` its results \
         are written under)",
        path.display()
    )]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// DIR is a file, not a directory.
    #[error(
        "{}: not a directory; give the directory of a LocalResult (the `dir` its results \
         are written under), not one of its files",
        path.display()
    )]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// DIR cannot be looked at.
    #[error("{}: {source}; check that you may read it", path.display())]
    Unreadable {
        /// The path given.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// DIR is a URL of a store this build cannot open.
    #[error(
        "`{url}` is a URL of {store} storage, which this build of taskcache cannot open; \
         install it with `cargo install taskcache-cli --features {feature}`"
    )]
    NoFeature {
        /// The URL given, without user information or query string.
        url: String,
        /// The kind of store.
        store: &'static str,
        /// The cargo feature that opens it.
        feature: &'static str,
    },
    /// The store failed.
    #[error("cannot {operation} in {store}: {source}")]
    Store {
        /// What was being done.
        operation: &'static str,
        /// The store, as its backend describes itself.
        store: String,
        /// The backend's error.
        source: ResultError,
    },
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}
