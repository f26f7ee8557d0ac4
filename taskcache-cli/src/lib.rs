//! The `taskcache` command: lists, verifies, garbage-collects and removes what a
//! taskcache store holds (results and persisted cache records), from their headers and
//! records alone, never decoding a value.
//!
//! ```text
//! taskcache ls DIR                      one row per stored result
//! taskcache verify DIR [--repair]       header and checksum of every file
//! taskcache gc DIR --expired            expired records, their results, stale leftovers
//! taskcache gc DIR --older-than 30d --max-bytes 10G
//! taskcache rm DIR --task NAME          records of a task, and their results
//! ```
//!
//! Every command goes through the store's [`ResultBackend`](taskcache::results::ResultBackend)
//! (a `Box<dyn ResultBackend>`), so it works on any backend that implements the
//! byte-level methods: a `LocalResult` directory, and with the cargo features `aws`,
//! `gcp` or `azure` an `s3://`, `gs://` or `az://` URL.
//!
//! The binary is a thin wrapper around [`run`], which the tests and benchmarks call
//! too.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod catalog;
mod cli;
mod commands;
mod error;
mod output;

pub use error::CliError;

use clap::Parser;
use std::ffi::OsString;
use std::io::Write;

/// The exit code when everything went well.
pub const EXIT_OK: i32 = 0;
/// The exit code of `verify` when something is damaged (and was not all removed by
/// `--repair`).
pub const EXIT_DAMAGED: i32 = 1;
/// The exit code for bad arguments, a DIR that is not a directory, and a store that
/// cannot be read.
pub const EXIT_ERROR: i32 = 2;

/// Where a run writes, and whether it may draw progress bars.
pub struct Io<'a> {
    /// The command's output: tables, or JSON with `--json`.
    pub out: &'a mut dyn Write,
    /// Status lines and error messages.
    pub err: &'a mut dyn Write,
    /// Whether progress bars are drawn (on stderr). The binary draws them when stdout is
    /// a terminal.
    pub progress: bool,
}

/// Runs the command line `args` (the program's name first, as `std::env::args_os`
/// gives it) and returns the process's exit code: [`EXIT_OK`], [`EXIT_DAMAGED`] or
/// [`EXIT_ERROR`].
pub fn run<I, T>(args: I, io: Io<'_>) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            let to = if e.use_stderr() { io.err } else { io.out };
            let _ = to.write_all(text.as_bytes());
            return e.exit_code();
        }
    };
    let Io { out, err, progress } = io;
    let ran = commands::run(&cli, out, err, progress)
        .and_then(|code| out.flush().map(|()| code).map_err(CliError::Output));
    match ran {
        Ok(code) => code,
        // `taskcache ls DIR | head`: the reader has gone; nothing more to say.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            EXIT_ERROR
        }
    }
}
