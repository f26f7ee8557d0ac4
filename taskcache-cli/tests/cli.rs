//! The `taskcache` binary, run on directories filled by `#[task]`s and `LocalResult`
//! writes: `ls --json` fields, `verify` exit codes before and after damage and after
//! `--repair`, `gc`, `rm`, and clear errors for bad arguments.

use chrono::{TimeZone, Utc};
use serde_json::Value as Json;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};
use taskcache::context::ManualClock;
use taskcache::prelude::*;
use taskcache::results::{format::fingerprint, Location};
use taskcache::OutputCache;

// The `result` is replaced in each test by its own directory (`Context::with_result`).
#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new("~/.taskcache-cli-tests"))]
fn double(x: u64) -> u64 {
    x * 2
}

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new("~/.taskcache-cli-tests"))]
fn greet(name: String) -> String {
    format!("hello {name}")
}

/// Runs the tasks with results under `dir`, at the clock's time when one is given.
fn in_dir<T>(dir: &Path, clock: Option<&ManualClock>, body: impl FnOnce() -> T) -> T {
    let mut ctx = Context::current()
        .with_result(LocalResult::new(dir))
        .with_cache(OutputCache::new());
    if let Some(clock) = clock {
        ctx = ctx.with_clock(clock.clock());
    }
    ctx.scope(body)
}

/// Fills `dir` with two `double` results and one `greet` result, with their records.
fn fill(dir: &Path) {
    in_dir(dir, None, || {
        assert_eq!(double(1), 2);
        assert_eq!(double(2), 4);
        assert_eq!(greet("ada".into()), "hello ada");
    });
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Json {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

fn taskcache<S: AsRef<OsStr>>(args: &[S]) -> Ran {
    let out = Command::new(env!("CARGO_BIN_EXE_taskcache"))
        .args(args)
        .output()
        .expect("the binary runs");
    Ran {
        code: out.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ls(dir: &Path) -> Json {
    let ran = taskcache(&[OsStr::new("ls"), dir.as_os_str(), OsStr::new("--json")]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    ran.json()
}

fn rows(listing: &Json) -> &Vec<Json> {
    listing["results"].as_array().expect("an array of results")
}

fn record_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(keys) = std::fs::read_dir(dir.join(".taskcache-records")) else {
        return files;
    };
    for key in keys {
        for file in std::fs::read_dir(key.unwrap().path()).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files
}

/// Flips the last byte of a file.
fn damage(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    *bytes.last_mut().unwrap() ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

fn set_age(path: &Path, age: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn ls_json_describes_every_result_from_its_header_and_record() {
    let tmp = tempfile::tempdir().unwrap();
    fill(tmp.path());
    // A result without a record: a plain write.
    let plain = Location::new("plain/numbers.bin").unwrap();
    LocalResult::new(tmp.path())
        .write(&vec![1u32, 2, 3], &plain)
        .unwrap();

    let listing = ls(tmp.path());
    let rows = rows(&listing);
    assert_eq!(rows.len(), 4, "{listing:#}");
    assert!(listing["records_without_result"]
        .as_array()
        .unwrap()
        .is_empty());
    let doubles: Vec<&Json> = rows.iter().filter(|r| r["task"] == "double").collect();
    assert_eq!(doubles.len(), 2, "{listing:#}");
    for row in &doubles {
        let location = row["location"].as_str().unwrap();
        let file = tmp.path().join(location);
        assert_eq!(row["size"], std::fs::metadata(&file).unwrap().len());
        assert_eq!(
            row["type_fingerprint"],
            format!("{:016x}", fingerprint::<u64>())
        );
        assert_eq!(row["serializer"], "bincode");
        assert_eq!(row["serializer_id"], 1);
        assert!(row["key"].as_str().unwrap().ends_with("::double"), "{row}");
        assert_eq!(row["records"], 1);
        assert_eq!(row["record_matches"], true);
        assert_eq!(row["expired"], false);
        assert!(!row["code_version"].as_str().unwrap().is_empty());
        let expiration =
            chrono::DateTime::parse_from_rfc3339(row["expiration"].as_str().unwrap()).unwrap();
        let left = expiration.with_timezone(&Utc) - Utc::now();
        assert!(
            left > chrono::Duration::minutes(55) && left <= chrono::Duration::hours(1),
            "{row}"
        );
        assert!(row["age_seconds"].as_i64().unwrap() < 60);
        assert!(row["damaged"].is_null());
    }
    let greet_row = rows.iter().find(|r| r["task"] == "greet").unwrap();
    assert_eq!(
        greet_row["type_fingerprint"],
        format!("{:016x}", fingerprint::<String>())
    );
    let plain_row = rows
        .iter()
        .find(|r| r["location"] == "plain/numbers.bin")
        .unwrap();
    assert!(plain_row["task"].is_null() && plain_row["key"].is_null());
    assert_eq!(
        plain_row["type_fingerprint"],
        format!("{:016x}", fingerprint::<Vec<u32>>())
    );
    assert_eq!(plain_row["records"], 0);

    // The table: a header and one row per result.
    let table = taskcache(&[OsStr::new("ls"), tmp.path().as_os_str()]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", table.stdout);
    assert!(lines[0].starts_with("TASK"), "{}", table.stdout);
    assert!(lines.iter().any(|l| l.starts_with("greet ")));
    assert!(table.stderr.contains("4 results"), "{}", table.stderr);
}

#[test]
fn verify_fails_on_damage_and_repair_removes_it_with_its_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fill(dir);
    let verify = |extra: &[&str]| {
        let mut args = vec![OsStr::new("verify"), dir.as_os_str(), OsStr::new("--json")];
        args.extend(extra.iter().map(OsStr::new));
        taskcache(&args)
    };
    let clean = verify(&[]);
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);
    let report = clean.json();
    assert_eq!(report["results"], 3);
    assert_eq!(report["records"], 3);
    assert!(report["damaged"].as_array().unwrap().is_empty());

    let listing = ls(dir);
    let victim = rows(&listing)
        .iter()
        .find(|r| r["task"] == "greet")
        .unwrap()["location"]
        .as_str()
        .unwrap()
        .to_owned();
    damage(&dir.join(&victim));
    let damaged = verify(&[]);
    assert_eq!(damaged.code, 1, "{}{}", damaged.stdout, damaged.stderr);
    let report = damaged.json();
    let found = report["damaged"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{report:#}");
    assert_eq!(found[0]["kind"], "result");
    assert_eq!(found[0]["name"], victim.as_str());
    assert!(
        found[0]["reason"].as_str().unwrap().contains("checksum"),
        "{report:#}"
    );
    // Without --json: a table naming the file, the exit code the same.
    let table = taskcache(&[OsStr::new("verify"), dir.as_os_str()]);
    assert_eq!(table.code, 1);
    assert!(table.stdout.contains(&victim), "{}", table.stdout);

    let repaired = verify(&["--repair"]);
    assert_eq!(repaired.code, 0, "{}{}", repaired.stdout, repaired.stderr);
    let report = repaired.json();
    assert_eq!(report["removed_results"], 1);
    assert_eq!(report["removed_records"], 1, "its record went with it");
    assert!(!dir.join(&victim).exists());
    let after = verify(&[]);
    assert_eq!(after.code, 0, "{}", after.stdout);
    assert_eq!(after.json()["records"], 2);
    assert!(rows(&ls(dir)).iter().all(|r| r["task"] != "greet"));

    // A damaged record is found and repaired too; the task then recomputes.
    let record = record_files(dir).pop().unwrap();
    damage(&record);
    let damaged = verify(&[]);
    assert_eq!(damaged.code, 1);
    assert_eq!(damaged.json()["damaged"][0]["kind"], "record");
    assert_eq!(verify(&["--repair"]).code, 0);
    assert!(!record.exists());
    assert_eq!(verify(&[]).code, 0);
}

#[cfg(unix)]
#[test]
fn odd_files_are_reported_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fill(dir);
    // A FIFO where a result could be, a name that is not UTF-8, a short file, an empty
    // directory.
    let fifo = dir.join("fifo.bin");
    let made = Command::new("mkfifo").arg(&fifo).status();
    std::fs::write(dir.join("short.bin"), b"TASKC").unwrap();
    {
        use std::os::unix::ffi::OsStrExt;
        std::fs::write(dir.join(OsStr::from_bytes(b"caf\xe9.bin")), b"x").unwrap();
    }
    std::fs::create_dir(dir.join("empty")).unwrap();
    let ran = taskcache(&[OsStr::new("verify"), dir.as_os_str(), OsStr::new("--json")]);
    assert_eq!(ran.code, 1, "{}{}", ran.stdout, ran.stderr);
    let report = ran.json();
    let names: Vec<&str> = report["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"short.bin"), "{report:#}");
    if made.is_ok_and(|s| s.success()) {
        assert!(names.contains(&"fifo.bin"), "{report:#}");
    }
    let listed = taskcache(&[OsStr::new("ls"), dir.as_os_str()]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(listed.stdout.contains("damaged"), "{}", listed.stdout);
    assert_eq!(
        taskcache(&[
            OsStr::new("verify"),
            dir.as_os_str(),
            OsStr::new("--repair")
        ])
        .code,
        0
    );
    assert!(!dir.join("short.bin").exists());
    assert_eq!(taskcache(&[OsStr::new("verify"), dir.as_os_str()]).code, 0);
}

#[test]
fn gc_expired_removes_expired_records_their_results_and_stale_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Computed in 2020 with `cache_for = "1h"`: long expired.
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap());
    in_dir(dir, Some(&clock), || {
        double(10);
        double(11);
    });
    // Fresh.
    in_dir(dir, None, || greet("bo".into()));
    let listing = ls(dir);
    assert_eq!(rows(&listing).len(), 3);
    assert_eq!(
        rows(&listing)
            .iter()
            .filter(|r| r["expired"] == true)
            .count(),
        2
    );
    // Leftovers of killed processes, a minute old and not locked; and a fresh one.
    let stale_tmp = dir.join("greet").join(".tmp-killed.taskcache");
    std::fs::create_dir_all(stale_tmp.parent().unwrap()).unwrap();
    std::fs::write(&stale_tmp, b"partial").unwrap();
    set_age(&stale_tmp, Duration::from_secs(120));
    let fresh_tmp = dir.join(".tmp-writing.taskcache");
    std::fs::write(&fresh_tmp, b"partial").unwrap();
    std::fs::create_dir_all(dir.join(".locks")).unwrap();
    let stale_lock = dir
        .join(".locks")
        .join("0123456789abcdef0123456789abcdef.lock");
    std::fs::write(&stale_lock, b"").unwrap();
    set_age(&stale_lock, Duration::from_secs(120));

    // A dry run removes nothing.
    let dry = taskcache(&[
        OsStr::new("gc"),
        dir.as_os_str(),
        OsStr::new("--expired"),
        OsStr::new("--dry-run"),
        OsStr::new("--json"),
    ]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json()["results"].as_array().unwrap().len(), 2);
    assert_eq!(rows(&ls(dir)).len(), 3);

    let ran = taskcache(&[
        OsStr::new("gc"),
        dir.as_os_str(),
        OsStr::new("--expired"),
        OsStr::new("--json"),
    ]);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let report = ran.json();
    assert_eq!(report["results"].as_array().unwrap().len(), 2, "{report:#}");
    assert_eq!(report["records"].as_array().unwrap().len(), 2, "{report:#}");
    assert_eq!(report["stale_files"], 2, "{report:#}");
    assert!(!stale_tmp.exists() && !stale_lock.exists());
    assert!(fresh_tmp.exists(), "a temporary file being written is kept");
    let listing = ls(dir);
    let left = rows(&listing);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["task"], "greet");
    assert_eq!(record_files(dir).len(), 1);
    // The fresh output is still served from the store.
    in_dir(dir, None, || assert!(greet::run("bo".into()).is_cached()));
}

#[test]
fn gc_by_age_and_size_removes_the_oldest_results_with_their_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fill(dir);
    let listing = ls(dir);
    let mut locations: Vec<String> = rows(&listing)
        .iter()
        .map(|r| r["location"].as_str().unwrap().to_owned())
        .collect();
    locations.sort();
    // Ages 40, 20 and 1 days.
    for (location, days) in locations.iter().zip([40u64, 20, 1]) {
        set_age(&dir.join(location), Duration::from_secs(days * 86_400));
    }
    let ran = taskcache(&[
        OsStr::new("gc"),
        dir.as_os_str(),
        OsStr::new("--older-than"),
        OsStr::new("30d"),
        OsStr::new("--json"),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.json()["results"][0]["location"], locations[0].as_str());
    assert!(!dir.join(&locations[0]).exists());
    assert_eq!(
        record_files(dir).len(),
        2,
        "the record went with its result"
    );

    // Room for the newest result only.
    let newest = std::fs::metadata(dir.join(&locations[2])).unwrap().len();
    let ran = taskcache(&[
        OsStr::new("gc"),
        dir.as_os_str(),
        OsStr::new("--max-bytes"),
        OsStr::new(&newest.to_string()),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(!dir.join(&locations[1]).exists());
    assert!(dir.join(&locations[2]).exists());
    assert_eq!(record_files(dir).len(), 1);
    assert!(ran.stderr.contains("Removed"), "{}", ran.stderr);
}

#[test]
fn rm_removes_a_tasks_records_and_results() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fill(dir);
    let ran = taskcache(&[
        OsStr::new("rm"),
        dir.as_os_str(),
        OsStr::new("--task"),
        OsStr::new("double"),
        OsStr::new("--json"),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = ran.json();
    assert_eq!(report["records"].as_array().unwrap().len(), 2);
    assert_eq!(report["results"].as_array().unwrap().len(), 2);
    let listing = ls(dir);
    let left = rows(&listing);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["task"], "greet");
    in_dir(dir, None, || {
        assert!(!double::run(1).is_cached(), "recomputed");
        assert!(greet::run("ada".into()).is_cached(), "kept");
    });

    // By key.
    let key = ls(dir)["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task"] == "greet")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let ran = taskcache(&[
        OsStr::new("rm"),
        dir.as_os_str(),
        OsStr::new("--key"),
        OsStr::new(&key),
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(rows(&ls(dir)).iter().all(|r| r["task"] != "greet"));
}

#[test]
fn bad_directories_are_clear_errors_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing-here");
    for command in ["ls", "verify"] {
        let ran = taskcache(&[OsStr::new(command), missing.as_os_str()]);
        assert_eq!(ran.code, 2, "{}", ran.stderr);
        assert!(ran.stderr.contains("no such directory"), "{}", ran.stderr);
        assert!(
            ran.stderr.contains(missing.to_str().unwrap()),
            "{}",
            ran.stderr
        );
        assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    }
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let ran = taskcache(&[OsStr::new("gc"), file.as_os_str(), OsStr::new("--expired")]);
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("not a directory"), "{}", ran.stderr);

    // Bad arguments.
    let dir = tmp.path().as_os_str();
    for args in [
        vec![OsStr::new("gc"), dir],
        vec![
            OsStr::new("gc"),
            dir,
            OsStr::new("--max-bytes"),
            OsStr::new("10X"),
        ],
        vec![
            OsStr::new("gc"),
            dir,
            OsStr::new("--older-than"),
            OsStr::new("soon"),
        ],
        vec![OsStr::new("rm"), dir],
        vec![OsStr::new("frobnicate")],
    ] {
        let ran = taskcache(&args);
        assert_eq!(ran.code, 2, "{args:?}: {}", ran.stderr);
        assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    }
    let size = taskcache(&[
        OsStr::new("gc"),
        dir,
        OsStr::new("--max-bytes"),
        OsStr::new("10X"),
    ]);
    assert!(
        size.stderr.contains("10G"),
        "the fix is named: {}",
        size.stderr
    );
    #[cfg(not(feature = "aws"))]
    {
        let ran = taskcache(&["ls", "s3://bucket/prefix"]);
        assert_eq!(ran.code, 2);
        assert!(ran.stderr.contains("--features aws"), "{}", ran.stderr);
    }
}
