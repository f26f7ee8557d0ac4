//! The command line, as clap reads it.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::time::Duration;

/// List, verify and prune what taskcache stores: results and persisted cache records,
/// read from their headers and records, never decoded.
///
/// DIR is the directory of a `LocalResult` (the `dir` its results are written under;
/// `~` is your home). Exit codes: 0 when all is well, 1 when `verify` finds damage it
/// did not repair, 2 for bad arguments or a store that cannot be read.
#[derive(Debug, Parser)]
#[command(name = "taskcache", version, about, long_about, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Threads that read and hash files at once (default: the number of CPUs).
    #[arg(short, long, global = true, value_name = "N")]
    pub(crate) jobs: Option<usize>,
    /// No status lines on stderr.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// One row per stored result: task, cache key, location, value type, serializer,
    /// size, age, expiry and code version.
    ///
    /// Read from the files' headers and the cache records, never decoding a value.
    /// TYPE is the 64-bit fingerprint of the stored Rust type, in hex: files do not
    /// store the type's name, only this hash of it (compare it with what
    /// `format!("{:016x}", taskcache::results::format::fingerprint::<T>())` prints).
    /// TASK, KEY, EXPIRES and CODE come from the cache record that points at the result
    /// (the newest one whose digest matches the file); a result without one (a
    /// checkpoint or target of a task that does not cache) shows `-` there.
    Ls(LsArgs),
    /// Checks every result's and cache record's header and SHA-256, with a progress
    /// bar; exits with 1 when anything is damaged.
    ///
    /// With `--repair`, damaged files are removed, with the cache records that point at
    /// damaged results (the tasks recompute them), and the exit code is 0 when all of
    /// them could be removed.
    Verify(VerifyArgs),
    /// Removes what can no longer serve: expired cache records and the results only
    /// they point at, results older than an age, the oldest results beyond a size.
    ///
    /// Give at least one of `--expired`, `--older-than` and `--max-bytes`. The cache
    /// records of every removed result are removed with it.
    Gc(GcArgs),
    /// Removes the cache records of a cache key or a task, and their results (a result
    /// that another, kept, record points at stays).
    Rm(RmArgs),
}

/// The store and the output format, which every command takes.
#[derive(Debug, Args)]
pub(crate) struct Store {
    /// The directory of a `LocalResult` (or, with the `aws`, `gcp` or `azure` feature,
    /// an `s3://bucket/prefix`, `gs://…` or `az://…` URL).
    #[arg(value_name = "DIR")]
    pub(crate) dir: OsString,
    /// Prints JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    #[command(flatten)]
    pub(crate) store: Store,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) store: Store,
    /// Removes damaged files, and the cache records of damaged results.
    #[arg(long)]
    pub(crate) repair: bool,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("what")
        .args(["expired", "older_than", "max_bytes"])
        .multiple(true)
        .required(true)
))]
pub(crate) struct GcArgs {
    #[command(flatten)]
    pub(crate) store: Store,
    /// Removes expired cache records, records whose result is gone, the results that
    /// only expired records point at, and temporary and lock files left for over a
    /// minute by processes that died.
    #[arg(long)]
    pub(crate) expired: bool,
    /// Removes results last written longer ago than this (`30d`, `12h`, `1w 2d`).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub(crate) older_than: Option<Duration>,
    /// Removes the least recently written results until the rest fit in this size
    /// (`10G`, `512M`, `1.5T`, `4096`; K, M, G and T are powers of 1024).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_bytes: Option<u64>,
    /// Says what would be removed, removing nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("which")
        .args(["key", "task"])
        .multiple(true)
        .required(true)
))]
pub(crate) struct RmArgs {
    #[command(flatten)]
    pub(crate) store: Store,
    /// Removes the records under this cache key (repeatable).
    #[arg(long, value_name = "KEY")]
    pub(crate) key: Vec<String>,
    /// Removes the records made by this task, as `ls` shows its name (repeatable;
    /// with `--key`, only records that match both).
    #[arg(long, value_name = "NAME")]
    pub(crate) task: Vec<String>,
    /// Says what would be removed, removing nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// A duration as people write it: `30d`, `12h`, `1w 2d`, `90s`.
fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it as `30d`, `12h` or `1w 2d`")
    })
}

/// A size: a number of bytes, optionally with a fraction and a unit K, M, G, T, P
/// (powers of 1024), followed by an optional `B` or `iB`, in any case (`10G`, `1.5TiB`,
/// `512mb`, `4096`).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let fail = || {
        format!(
            "`{text}` is not a size; write it as a number of bytes with an optional unit: \
             `10G`, `512M`, `1.5T`, `4096` (K, M, G, T are powers of 1024)"
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(fail()),
    };
    if number.is_empty() {
        return Err(fail());
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(1u64 << shift).ok_or_else(fail);
    }
    let value: f64 = number.parse().map_err(|_| fail())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(fail());
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("10gb"), Ok(10 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert_eq!(parse_size("2 T"), Ok(2 << 40));
        assert_eq!(parse_size("7B"), Ok(7));
        for bad in ["", "G", "10X", "-1G", "1.2.3M", "99999999999P", "nan"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_age("soon").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
