//! Reliability (issue 9): what taskcache guarantees when processes die, race, or find
//! damaged files, FIFOs or full disks where their results should be.
//!
//! - **SIGKILL mid-write**: writers of small and large (16 MiB `Vec<u8>`, about 13 MiB
//!   `Vec<String>`) values, through checkpointed tasks and targets at fixed locations,
//!   are killed at random moments; after each kill every location holds nothing or
//!   exactly the value of one round a writer wrote, every cache record is intact, and
//!   once old, the temporary files of killed writers are removed by a fresh writer
//!   (young and locked ones are not).
//! - **Races**: processes × threads call a persisted `cache_for` task (with and without
//!   a location template) and a target task with the same inputs: each body runs once
//!   in all, one call is `Success`, every other `Cached`, all with the value.
//! - **Damaged and forged files**: results of five types in bincode, JSON and zstd,
//!   targets and cache records are damaged one change at a time (header bits, payload
//!   bits, truncations, extensions, forged lengths in header and payload, swapped header
//!   fields, files of other tasks and inputs swapped in); each read returns the task's
//!   value, runs the body exactly when the file was damaged, and leaves a good file;
//!   the reading process's peak memory grows by at most 64 MiB and makes no allocation
//!   over 16 MiB.
//! - **FIFOs** in place of a target, a result, a cache record or lock files are never
//!   waited on: the task returns its value.
//! - **Faults**: a read-only directory and a full disk (a 1 MiB tmpfs) return the value
//!   with `persist_error()` set and leave nothing behind; a later write that fits works.
//!
//! Every task call happens in a child process: this test binary run again for one test
//! (`--exact`), with `TASKCACHE_REL_CHILD` naming the child's role and
//! `TASKCACHE_REL_ROOT` the directory its tasks keep their results under. The parent
//! kills, mutates and checks, and gives each child a deadline, so that a hang fails
//! the test instead of hanging CI. Tests that need what the machine may not offer
//! (`mkfifo`, `mount` as root) print `skipped: …` and pass.
//!
//! `TASKCACHE_RELIABILITY=long` runs the long setting (200 kills of writers of 40 MiB
//! values, 8 processes of 16 threads for 10 rounds, every header bit of every file and
//! many more payload mutations); `TASKCACHE_RELIABILITY_SEED=<n>` replays the random
//! choices of an earlier run (each test prints its seed, shown when it fails);
//! `TASKCACHE_RELIABILITY_KEEP=1` keeps each test's files.

mod reliability_support;

use reliability_support::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use taskcache::prelude::*;
use taskcache::results::{
    format, BincodeSerializer, JsonSerializer, Location, ResultBackend, ResultError, Zstd,
};
use taskcache::OutputCache;

/// The header fingerprint of a persisted cache record (`recordv1` in ASCII).
const RECORD_KIND: u64 = u64::from_be_bytes(*b"recordv1");

/// A deadline for a child that should take a second or two: long enough for a loaded
/// CI machine, short enough that a hang is reported.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// 62 characters to pad strings with.
const PAD: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Runs `f` with an empty in-memory output cache: what a fresh process would see, the
/// files being the same.
fn fresh<R>(f: impl FnOnce() -> R) -> R {
    Context::current().with_cache(OutputCache::new()).scope(f)
}

/// Reads the value at `location` of `backend` directly: `Ok(None)` when there is no file.
fn read_at<T, B>(backend: &B, location: &str) -> Result<Option<T>, ResultError>
where
    T: serde::de::DeserializeOwned + 'static,
    B: ResultBackend,
{
    match backend.read::<T>(&Location::new(location).unwrap()) {
        Ok(v) => Ok(Some(v)),
        Err(ResultError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

// =====================================================================================
// 1. SIGKILL during writes
// =====================================================================================

const KILL_TEST: &str = "a_writer_killed_mid_write_leaves_an_old_or_a_new_value_never_a_torn_one";

/// Slots of the small values.
const SLOTS: u32 = 2;

/// The rounds of writer `k` (from 1) start at `k * ROUND_STRIDE`: every round number
/// is one value, and says which writer wrote it.
const ROUND_STRIDE: u64 = 1_000_000;

/// The large values: a `Vec<u8>` of this many bytes, a `Vec<String>` of this many
/// strings (about 43 bytes each).
fn large_sizes() -> (usize, usize) {
    scaled((16 << 20, 300_000), (40 << 20, 900_000))
}

/// A small value (about 3 KiB), which says which slot and round it is.
fn small_value(slot: u32, round: u64) -> Vec<String> {
    (0..48)
        .map(|i| {
            format!(
                "small slot={slot} round={round} item={i} {}",
                &PAD[..i * 7 % PAD.len()]
            )
        })
        .collect()
}

/// The round of a small value of `slot`, if it is exactly the value of that round.
fn round_of_small(slot: u32, v: &[String]) -> Result<u64, String> {
    let first = v.first().ok_or("an empty vector")?;
    let round = first
        .strip_prefix(&format!("small slot={slot} round="))
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| format!("not a small value of slot {slot}: {first:?}"))?;
    if v == small_value(slot, round) {
        Ok(round)
    } else {
        Err(format!(
            "a small value claiming round {round} that is not that round's ({} items)",
            v.len()
        ))
    }
}

/// A large byte vector: its round and length, then bytes drawn from the round.
fn bytes_value(round: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&round.to_le_bytes());
    out.extend_from_slice(&(len as u64).to_le_bytes());
    let mut rng = Rng::new(round ^ 0x5EED_B17E);
    while out.len() + 8 <= len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    let tail = rng.next_u64().to_le_bytes();
    out.extend_from_slice(&tail[..len - out.len()]);
    out
}

/// The round of a large byte vector, if it is exactly that round's value.
fn round_of_bytes(v: &[u8]) -> Result<u64, String> {
    if v.len() < 16 {
        return Err(format!("{} bytes, too short for a large value", v.len()));
    }
    let round = u64::from_le_bytes(v[..8].try_into().unwrap());
    let len = u64::from_le_bytes(v[8..16].try_into().unwrap());
    if len != v.len() as u64 {
        return Err(format!("claims {len} bytes and holds {}", v.len()));
    }
    let expected = bytes_value(round, v.len());
    if expected == v {
        return Ok(round);
    }
    match expected.iter().zip(v).position(|(a, b)| a != b) {
        None => Ok(round),
        Some(at) => Err(format!(
            "a byte vector claiming round {round} differs from that round's at byte {at} of {len}"
        )),
    }
}

/// One large string of a vector of strings.
fn large_string(round: u64, i: usize) -> String {
    format!("{round}/{i}/{}", &PAD[..i % PAD.len()])
}

/// A large vector of strings: the first says its round and length.
fn strings_value(round: u64, n: usize) -> Vec<String> {
    let mut v = Vec::with_capacity(n);
    v.push(format!("strings round={round} n={n}"));
    v.extend((1..n).map(|i| large_string(round, i)));
    v
}

/// The round of a large vector of strings, if it is exactly that round's value.
fn round_of_strings(v: &[String]) -> Result<u64, String> {
    let first = v.first().ok_or("an empty vector")?;
    let parsed = first.strip_prefix("strings round=").and_then(|rest| {
        let (round, n) = rest.split_once(" n=")?;
        Some((round.parse::<u64>().ok()?, n.parse::<usize>().ok()?))
    });
    let (round, n) = parsed.ok_or_else(|| format!("not a large vector of strings: {first:?}"))?;
    if n != v.len() {
        return Err(format!("claims {n} strings and holds {}", v.len()));
    }
    match (1..n).find(|&i| v[i] != large_string(round, i)) {
        None => Ok(round),
        Some(i) => Err(format!(
            "a vector claiming round {round} differs from that round's at string {i} of {n}"
        )),
    }
}

#[task(checkpoint, result = LocalResult::new(dir("kill")).with_location("small/{slot}.bin"))]
fn kill_small(slot: u32, round: u64) -> Vec<String> {
    small_value(slot, round)
}

#[task(checkpoint, result = LocalResult::new(dir("kill")).with_serializer(JsonSerializer).with_location("small-json/{slot}.json"))]
fn kill_small_json(slot: u32, round: u64) -> Vec<String> {
    small_value(slot, round)
}

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new(dir("kill")).with_location("cached/{slot}.bin"))]
fn kill_cached(slot: u32, round: u64) -> Vec<String> {
    small_value(slot, round)
}

#[task(checkpoint, target = "targets/small-{slot}.bin", result = LocalResult::new(dir("kill")))]
fn kill_target_small(slot: u32, round: u64) -> Vec<String> {
    small_value(slot, round)
}

#[task(checkpoint, result = LocalResult::new(dir("kill")).with_location("large/bytes.bin"))]
fn kill_bytes(round: u64) -> Vec<u8> {
    bytes_value(round, large_sizes().0)
}

#[task(checkpoint, result = LocalResult::new(dir("kill")).with_location("large/strings.bin"))]
fn kill_strings(round: u64) -> Vec<String> {
    strings_value(round, large_sizes().1)
}

#[task(checkpoint, target = "targets/bytes.bin", result = LocalResult::new(dir("kill")))]
fn kill_target_bytes(round: u64) -> Vec<u8> {
    bytes_value(round, large_sizes().0)
}

/// A write the writer expects to succeed.
fn written<T>(what: &str, state: State<T>) {
    assert!(state.is_successful(), "{what}: {state}");
    assert_eq!(state.persist_error(), None, "{what}");
}

/// The writer child: writes small values on one thread and large ones on another, round
/// after round, until it is killed.
fn kill_writer() {
    let base: u64 = child_env("TASKCACHE_REL_ROUND_BASE").parse().unwrap();
    let targets = dir("kill").join("targets");
    let small = {
        let targets = targets.clone();
        std::thread::spawn(move || {
            for round in base.. {
                for slot in 0..SLOTS {
                    written("small", kill_small::run(slot, round));
                    written("small json", kill_small_json::run(slot, round));
                    written("cached", kill_cached::run(slot, round));
                    let _ = std::fs::remove_file(targets.join(format!("small-{slot}.bin")));
                    written("small target", kill_target_small::run(slot, round));
                }
            }
        })
    };
    for round in base.. {
        written("bytes", kill_bytes::run(round));
        written("strings", kill_strings::run(round));
        let _ = std::fs::remove_file(targets.join("bytes.bin"));
        written("bytes target", kill_target_bytes::run(round));
        if small.is_finished() {
            break;
        }
    }
    small.join().unwrap();
}

/// The fresh child after the kills: reads every target through its task (a valid
/// value of some round, or recomputed), then writes every location once (so that each
/// directory is swept of stale temporary files) and checks the writes.
fn kill_sweeper() {
    let last: u64 = child_env("TASKCACHE_REL_ROUND_BASE").parse().unwrap();
    let targets = dir("kill").join("targets");
    for slot in 0..SLOTS {
        let state = kill_target_small::run(slot, last);
        assert!(state.is_successful(), "{state}");
        round_of_small(slot, state.value().unwrap()).unwrap();
        std::fs::remove_file(targets.join(format!("small-{slot}.bin"))).unwrap();
        written("small target", kill_target_small::run(slot, last));
        written("small", kill_small::run(slot, last));
        written("small json", kill_small_json::run(slot, last));
        written("cached", kill_cached::run(slot, last));
    }
    let state = kill_target_bytes::run(last);
    assert!(state.is_successful(), "{state}");
    round_of_bytes(state.value().unwrap()).unwrap();
    std::fs::remove_file(targets.join("bytes.bin")).unwrap();
    written("bytes target", kill_target_bytes::run(last));
    written("bytes", kill_bytes::run(last));
    written("strings", kill_strings::run(last));
}

/// What the checks of the writer's files found: how often each location held a value,
/// and the files already verified (a rename makes a new file, so a file whose stamp is
/// unchanged since it was verified need not be read again).
#[derive(Default)]
struct KillTally {
    present: BTreeMap<String, u32>,
    verified: BTreeMap<PathBuf, Stamp>,
}

/// What identifies one version of a file: device, inode, length, change time.
type Stamp = (u64, u64, u64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.ctime(), m.ctime_nsec()))
}

/// Checks every location the writer writes: absent, or exactly the value of one round a
/// writer wrote (`writers` of them so far); every cache record intact. With `all`,
/// every location must be present.
fn check_kill_files(root: &Path, writers: u64, all: bool, tally: &mut KillTally) {
    let kill = root.join("kill");
    let bincode = LocalResult::new(&kill);
    let json = LocalResult::new(&kill).with_serializer(JsonSerializer);
    let mut check = |location: &str, read: &dyn Fn(&str) -> Result<Option<u64>, String>| {
        let path = kill.join(location);
        let before = stamp(&path);
        if before.is_none() || tally.verified.get(&path) != before.as_ref() {
            match read(location) {
                Ok(Some(round)) => {
                    let writer = round / ROUND_STRIDE;
                    assert!(
                        (1..=writers).contains(&writer),
                        "{location}: round {round} is not one any writer wrote"
                    );
                    tally
                        .verified
                        .insert(path, before.expect("no writer runs now"));
                }
                Ok(None) => {
                    assert!(!all, "{location}: missing after a completed write");
                    return;
                }
                Err(e) => panic!("{location}: {e}"),
            }
        }
        *tally.present.entry(location.to_owned()).or_default() += 1;
    };
    let torn = |e: ResultError| format!("a damaged file at its final location: {e}");
    for slot in 0..SLOTS {
        let small = |v: Option<Vec<String>>| v.map(|v| round_of_small(slot, &v)).transpose();
        check(&format!("small-json/{slot}.json"), &|at| {
            read_at(&json, at).map_err(torn).and_then(small)
        });
        for location in [
            format!("small/{slot}.bin"),
            format!("cached/{slot}.bin"),
            format!("targets/small-{slot}.bin"),
        ] {
            check(&location, &|at| {
                read_at(&bincode, at).map_err(torn).and_then(small)
            });
        }
    }
    for location in ["large/bytes.bin", "targets/bytes.bin"] {
        check(location, &|at| {
            read_at::<Vec<u8>, _>(&bincode, at)
                .map_err(torn)
                .and_then(|v| v.map(|v| round_of_bytes(&v)).transpose())
        });
    }
    check("large/strings.bin", &|at| {
        read_at::<Vec<String>, _>(&bincode, at)
            .map_err(torn)
            .and_then(|v| v.map(|v| round_of_strings(&v)).transpose())
    });
    for record in all_files(&kill.join(".taskcache-records")) {
        let now = stamp(&record);
        if record.extension().is_none_or(|e| e != "rec")
            || tally.verified.get(&record) == now.as_ref()
        {
            continue;
        }
        let bytes = std::fs::read(&record).unwrap();
        if let Err(e) = format::decode_blob(&bytes, RECORD_KIND, &record) {
            panic!("a damaged cache record at its final location: {e}");
        }
        tally.verified.insert(record, now.unwrap());
    }
}

#[test]
fn a_writer_killed_mid_write_leaves_an_old_or_a_new_value_never_a_torn_one() {
    match child_role().as_deref() {
        Some("writer") => return kill_writer(),
        Some("sweeper") => return kill_sweeper(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let root = test_root("sigkill");
    let mut rng = Rng::seeded(KILL_TEST);
    let kills: u64 = scaled(10, 200);
    let mut tally = KillTally::default();
    for k in 1..=kills {
        let stderr = root.path().join(format!("writer-{k}.stderr"));
        let mut child = child_command(KILL_TEST, "writer", root.path())
            .env("TASKCACHE_REL_ROUND_BASE", (k * ROUND_STRIDE).to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        // From the first writes of a fresh process to the second round of large values.
        let delay = Duration::from_millis(rng.in_range(scaled(20..2000, 20..6000)));
        std::thread::sleep(delay);
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "writer {k} ended by itself ({status}) before it was killed:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        check_kill_files(root.path(), k, false, &mut tally);
    }
    println!(
        "{kills} kills; values found per location: {:?}",
        tally.present
    );
    // The small values are written within milliseconds of a writer's start: each was
    // seen, so the writers did write (a large one may never have been completed before a
    // kill on a slow machine; the sweeper below writes and checks every location).
    for slot in 0..SLOTS {
        for location in [
            format!("small/{slot}.bin"),
            format!("small-json/{slot}.json"),
            format!("cached/{slot}.bin"),
            format!("targets/small-{slot}.bin"),
        ] {
            assert!(
                tally.present.contains_key(&location),
                "no writer completed a write of {location}: {:?}",
                tally.present
            );
        }
    }

    // Temporary files of killed writers: once old, a fresh writer removes them. Besides
    // the real ones, an old one in each directory the writers use (the kills may have
    // left none); and two that must stay: a young one (its writer may not have locked
    // it yet) and an old one a live writer holds locked.
    let kill = root.path().join("kill");
    let leftovers = temp_files(root.path());
    println!("{} temporary files left by the kills", leftovers.len());
    let mut planted = Vec::new();
    for sub in ["small", "small-json", "cached", "targets", "large"] {
        planted.push(kill.join(sub).join(".tmp-reliability-old.taskcache"));
    }
    for records in std::fs::read_dir(kill.join(".taskcache-records")).unwrap() {
        planted.push(
            records
                .unwrap()
                .path()
                .join(".tmp-reliability-old.taskcache"),
        );
    }
    for path in &planted {
        std::fs::write(path, b"left by a writer that died").unwrap();
    }
    for path in leftovers.iter().chain(&planted) {
        age(path);
    }
    let young = kill.join("large/.tmp-reliability-young.taskcache");
    std::fs::write(&young, b"being written").unwrap();
    let locked = kill.join("large/.tmp-reliability-locked.taskcache");
    std::fs::write(&locked, b"being written").unwrap();
    age(&locked);
    let held = std::fs::File::open(&locked).unwrap();
    held.lock().unwrap();
    let last = (kills + 1) * ROUND_STRIDE;
    let mut sweeper = child_command(KILL_TEST, "sweeper", root.path());
    sweeper.env("TASKCACHE_REL_ROUND_BASE", last.to_string());
    run_child(sweeper, "the writer after the kills", CHILD_DEADLINE);
    assert!(young.exists(), "a young temporary file was removed");
    assert!(
        locked.exists(),
        "a temporary file a writer holds locked was removed"
    );
    drop(held);
    std::fs::remove_file(&young).unwrap();
    std::fs::remove_file(&locked).unwrap();
    let left = temp_files(root.path());
    assert!(
        left.is_empty(),
        "stale temporary files survive a fresh writer: {left:?}"
    );
    check_kill_files(root.path(), kills + 1, true, &mut tally);
}

// =====================================================================================
// 2. Races: processes × threads on one task, each body once
// =====================================================================================

const RACE_TEST: &str = "racing_processes_and_threads_run_each_body_once";

/// Notes a body run in `race/runs.log`: one line, one `write` on a file opened with
/// `O_APPEND`, so lines of processes writing at once never mix. The body then dawdles
/// so that the other callers arrive while it runs.
fn race_body(task: &str, round: u64, x: u64) -> String {
    use std::io::Write;
    let line = format!("{task} {round} {x} {}\n", std::process::id());
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir("race").join("runs.log"))
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    format!("{task} of round {round} and {x}")
}

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new(dir("race")).with_location("cached/{round}-{x}.bin"))]
fn race_cached(round: u64, x: u64) -> String {
    race_body("race_cached", round, x)
}

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new(dir("race")))]
fn race_unique(round: u64, x: u64) -> String {
    race_body("race_unique", round, x)
}

#[task(checkpoint, target = "targets/{round}-{x}.bin", result = LocalResult::new(dir("race")))]
fn race_target(round: u64, x: u64) -> String {
    race_body("race_target", round, x)
}

/// A racing child: announces itself, waits for the parent's go, then calls the three
/// tasks with the same inputs from each of its threads (in rotated orders), and reports
/// each call's state and value.
fn racer() {
    let round: u64 = child_env("TASKCACHE_REL_ROUND").parse().unwrap();
    let x: u64 = child_env("TASKCACHE_REL_X").parse().unwrap();
    let index = child_env("TASKCACHE_REL_INDEX");
    let threads: usize = child_env("TASKCACHE_REL_THREADS").parse().unwrap();
    let race = dir("race");
    std::fs::create_dir_all(&race).unwrap();
    std::fs::write(race.join(format!("ready-{round}-{index}")), b"").unwrap();
    wait_for_file(&race.join(format!("go-{round}")), Duration::from_secs(60));
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut lines = Vec::new();
                for call in 0..3 {
                    let state = match (t + call) % 3 {
                        0 => race_cached::run(round, x),
                        1 => race_unique::run(round, x),
                        _ => race_target::run(round, x),
                    };
                    assert_eq!(state.persist_error(), None, "{state}");
                    let task = ["race_cached", "race_unique", "race_target"][(t + call) % 3];
                    lines.push(format!(
                        "{task} {:?} {}",
                        state.kind(),
                        state.value().map_or("<none>", String::as_str)
                    ));
                }
                lines
            })
        })
        .collect();
    for h in handles {
        for line in h.join().unwrap() {
            report(line);
        }
    }
}

#[test]
fn racing_processes_and_threads_run_each_body_once() {
    match child_role().as_deref() {
        Some("racer") => return racer(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let root = test_root("race");
    let mut rng = Rng::seeded(RACE_TEST);
    let (processes, threads) = scaled((4, 4), (8, 16));
    let rounds = scaled(3, 10);
    let race = root.path().join("race");
    std::fs::create_dir_all(&race).unwrap();
    for round in 0..rounds {
        // Fresh inputs each round: nothing is cached yet.
        let x = rng.next_u64() >> 16;
        let racers: Vec<Running> = (0..processes)
            .map(|i| {
                let mut c = child_command(RACE_TEST, "racer", root.path());
                c.env("TASKCACHE_REL_ROUND", round.to_string())
                    .env("TASKCACHE_REL_X", x.to_string())
                    .env("TASKCACHE_REL_INDEX", i.to_string())
                    .env("TASKCACHE_REL_THREADS", threads.to_string());
                start(c, &format!("racer {i} of round {round}"))
            })
            .collect();
        for i in 0..processes {
            wait_for_file(
                &race.join(format!("ready-{round}-{i}")),
                Duration::from_secs(60),
            );
        }
        std::fs::write(race.join(format!("go-{round}")), b"").unwrap();
        let lines: Vec<String> = racers
            .into_iter()
            .flat_map(|r| r.finish(CHILD_DEADLINE))
            .collect();
        let log = std::fs::read_to_string(race.join("runs.log")).unwrap_or_default();
        for task in ["race_cached", "race_unique", "race_target"] {
            let value = format!("{task} of round {round} and {x}");
            let runs = log
                .lines()
                .filter(|l| l.starts_with(&format!("{task} {round} {x} ")))
                .count();
            assert_eq!(
                runs, 1,
                "round {round}: the body of {task} ran {runs} times across {processes} \
                 processes of {threads} threads:\n{log}"
            );
            let calls: Vec<&String> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("{task} ")))
                .collect();
            assert_eq!(calls.len(), processes * threads, "{lines:?}");
            let successes = calls.iter().filter(|l| l.contains(" Success ")).count();
            let hits = calls.iter().filter(|l| l.contains(" Cached ")).count();
            assert_eq!(
                (successes, hits),
                (1, processes * threads - 1),
                "round {round}, {task}: one run computes, every other is served: {calls:?}"
            );
            assert!(
                calls.iter().all(|l| l.ends_with(&value)),
                "round {round}, {task}: every call returns {value:?}: {calls:?}"
            );
        }
    }
}

// =====================================================================================
// 3. A corpus of damaged and forged files
// =====================================================================================

const CORPUS_TEST: &str = "damaged_and_forged_files_are_misses_never_wrong_values";

/// The most the mutation child's peak resident memory may grow over its start.
const CORPUS_MEMORY_BOUND: u64 = 64 << 20;

/// No single allocation made while reading damaged files may be larger (the largest
/// legitimate ones are I/O buffers and the corpus's 1 MiB values).
const CORPUS_LARGEST_ALLOCATION: u64 = 16 << 20;

/// A deadline for one read of a damaged file (a hang detector, not a speed limit).
const READ_DEADLINE: Duration = Duration::from_secs(30);

/// Body runs of the corpus's tasks, by task.
static CORPUS_RUNS: Mutex<BTreeMap<&'static str, u32>> = Mutex::new(BTreeMap::new());

fn corpus_body(task: &'static str) {
    *CORPUS_RUNS.lock().unwrap().entry(task).or_default() += 1;
}

fn corpus_runs(task: &str) -> u32 {
    CORPUS_RUNS.lock().unwrap().get(task).copied().unwrap_or(0)
}

/// A struct output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Report {
    id: u64,
    name: String,
    tags: Vec<String>,
    ratio: f64,
    parent: Option<u32>,
    rows: Vec<(u32, i64)>,
}

fn make_u64(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xABCD
}

fn make_string(x: u64) -> String {
    format!("value {x}; ").repeat(90)
}

fn make_strings(x: u64) -> Vec<String> {
    (0..40)
        .map(|i| format!("row {i} of {x}: {}", &PAD[..i]))
        .collect()
}

fn make_report(x: u64) -> Report {
    Report {
        id: x,
        name: format!("report {x}"),
        tags: (0..8).map(|i| format!("tag {i}")).collect(),
        ratio: x as f64 / 4.0,
        parent: Some(x as u32 + 1),
        rows: (0..50).map(|i| (i, -i64::from(i) * x as i64)).collect(),
    }
}

fn make_bytes(x: u64) -> Vec<u8> {
    (0..3000u64)
        .map(|i| (i.wrapping_mul(31) ^ x) as u8)
        .collect()
}

/// Over 64 KiB: read straight into its vector, hashed on the way.
fn make_big_bytes(x: u64) -> Vec<u8> {
    (0..(160u64 << 10))
        .map(|i| (i.wrapping_mul(131) ^ (i >> 9) ^ x) as u8)
        .collect()
}

/// Over 1 MiB encoded: hashed in a first pass, decoded while streaming in a second.
fn make_big_strings(x: u64) -> Vec<String> {
    (0..13_000)
        .map(|i| format!("big row {i} of {x}: {PAD}"))
        .collect()
}

/// Where a bincode payload of a type holds lengths: `(offset, whether the value ends
/// with what the length counts)`. Forging a length of the first kind to anything else
/// leaves bytes over or runs out; a length of the second kind is forged only to more
/// than the payload holds.
type Lengths = fn(&[u8]) -> Vec<(usize, bool)>;

fn no_lengths(_: &[u8]) -> Vec<(usize, bool)> {
    Vec::new()
}

fn leading_length(_: &[u8]) -> Vec<(usize, bool)> {
    vec![(0, true)]
}

fn strings_lengths(payload: &[u8]) -> Vec<(usize, bool)> {
    let (_, size) = read_bincode_len(payload, 0);
    vec![(0, true), (size, false)]
}

fn report_lengths(payload: &[u8]) -> Vec<(usize, bool)> {
    let (_, id_size) = read_bincode_len(payload, 0);
    vec![(id_size, false)]
}

/// What a read of a corpus task returned.
struct Outcome {
    kind: StateKind,
    correct: bool,
    persist_error: Option<String>,
    shown: String,
}

fn outcome<T: PartialEq + std::fmt::Debug>(state: State<T>, expected: &T) -> Outcome {
    let shown = match state.value() {
        Some(v) => {
            let mut s = format!("{v:?}");
            s.truncate(120);
            s
        }
        None => state.to_string(),
    };
    Outcome {
        kind: state.kind(),
        correct: state.value() == Some(expected),
        persist_error: state.persist_error().map(str::to_owned),
        shown,
    }
}

/// One task of the corpus.
struct Subject {
    task: &'static str,
    /// Its cache key (what its records are filed under).
    key: &'static str,
    /// A target task (else a `cache_for` task with a persisted record).
    target: bool,
    /// Its output type and serializer, as written.
    output: &'static str,
    lengths: Lengths,
    /// A large file: fewer mutations in the default setting.
    heavy: bool,
    /// Calls the task with an empty in-memory cache.
    read: fn(u64) -> Outcome,
}

impl Subject {
    fn result_path(&self, root: &Path, x: u64) -> PathBuf {
        if self.target {
            root.join(format!("targets/{}/{x}.bin", self.task))
        } else {
            root.join(format!("{}/{x}.bin", self.task))
        }
    }

    fn records(&self, root: &Path) -> Vec<PathBuf> {
        all_files(&records_dir(root, self.key))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "rec"))
            .collect()
    }
}

macro_rules! corpus {
    ($($cached:ident, $target:ident: $ty:ty = $make:ident, $ser:expr, $lengths:ident, $heavy:literal;)*) => {
        $(
            #[allow(dead_code)] // called through `run`
            #[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new(dir("corpus")).with_serializer($ser).with_location("{task_name}/{x}.bin"))]
            fn $cached(x: u64) -> $ty {
                corpus_body(stringify!($cached));
                $make(x)
            }

            #[allow(dead_code)]
            #[task(checkpoint, target = "targets/{task_name}/{x}.bin", result = LocalResult::new(dir("corpus")).with_serializer($ser))]
            fn $target(x: u64) -> $ty {
                corpus_body(stringify!($target));
                $make(x)
            }
        )*

        /// Every task of the corpus.
        fn corpus_subjects() -> Vec<Subject> {
            vec![$(
                Subject {
                    task: stringify!($cached),
                    key: $cached::spec().cache_key(),
                    target: false,
                    output: concat!(stringify!($ty), " ", stringify!($ser)),
                    lengths: $lengths,
                    heavy: $heavy,
                    read: |x| outcome(fresh(|| $cached::run(x)), &$make(x)),
                },
                Subject {
                    task: stringify!($target),
                    key: $target::spec().cache_key(),
                    target: true,
                    output: concat!(stringify!($ty), " ", stringify!($ser)),
                    lengths: $lengths,
                    heavy: $heavy,
                    read: |x| outcome(fresh(|| $target::run(x)), &$make(x)),
                },
            )*]
        }
    };
}

corpus! {
    c_u64_bin, t_u64_bin: u64 = make_u64, BincodeSerializer, no_lengths, false;
    c_u64_json, t_u64_json: u64 = make_u64, JsonSerializer, no_lengths, false;
    c_u64_zstd, t_u64_zstd: u64 = make_u64, Zstd::new(BincodeSerializer), no_lengths, false;
    c_string_bin, t_string_bin: String = make_string, BincodeSerializer, leading_length, false;
    c_string_json, t_string_json: String = make_string, JsonSerializer, no_lengths, false;
    c_string_zstd, t_string_zstd: String = make_string, Zstd::new(BincodeSerializer), no_lengths, false;
    c_strings_bin, t_strings_bin: Vec<String> = make_strings, BincodeSerializer, strings_lengths, false;
    c_strings_json, t_strings_json: Vec<String> = make_strings, JsonSerializer, no_lengths, false;
    c_strings_zstd, t_strings_zstd: Vec<String> = make_strings, Zstd::new(JsonSerializer), no_lengths, false;
    c_report_bin, t_report_bin: Report = make_report, BincodeSerializer, report_lengths, false;
    c_report_json, t_report_json: Report = make_report, JsonSerializer, no_lengths, false;
    c_report_zstd, t_report_zstd: Report = make_report, Zstd::new(BincodeSerializer), no_lengths, false;
    c_bytes_bin, t_bytes_bin: Vec<u8> = make_bytes, BincodeSerializer, leading_length, false;
    c_bytes_json, t_bytes_json: Vec<u8> = make_bytes, JsonSerializer, no_lengths, false;
    c_bytes_zstd, t_bytes_zstd: Vec<u8> = make_bytes, Zstd::new(BincodeSerializer), no_lengths, false;
    c_big_bytes_bin, t_big_bytes_bin: Vec<u8> = make_big_bytes, BincodeSerializer, leading_length, true;
    c_big_strings_bin, t_big_strings_bin: Vec<String> = make_big_strings, BincodeSerializer, strings_lengths, true;
    c_big_strings_zstd, t_big_strings_zstd: Vec<String> = make_big_strings, Zstd::new(BincodeSerializer), no_lengths, true;
}

/// One way of damaging or forging a file; [`Change::apply`] makes the bytes from the
/// original's.
enum Change {
    Unchanged,
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
    AppendCopy,
    /// Bytes after the payload, the header's length and checksum made to agree.
    ResealedTail(Vec<u8>),
    /// The header's payload length field.
    HeaderLen(u64),
    /// Two header fields of one size exchanged.
    SwapFields(std::ops::Range<usize>, std::ops::Range<usize>),
    /// A bincode length in the payload forged, the header made to agree.
    PayloadLen(usize, u64),
    /// The decompressed size a zstd frame records forged, the header made to agree.
    ZstdSize(u64),
    /// Another file in its place.
    Replace(String, std::sync::Arc<Vec<u8>>),
}

impl Change {
    fn describe(&self) -> String {
        match self {
            Change::Unchanged => "unchanged".into(),
            Change::FlipBit(at, bit) => format!("bit {bit} of byte {at} flipped"),
            Change::SetByte(at, v) => format!("byte {at} set to {v:#04x}"),
            Change::Truncate(len) => format!("truncated to {len} bytes"),
            Change::Append(tail) => format!("{} bytes appended", tail.len()),
            Change::AppendCopy => "its own bytes appended".into(),
            Change::ResealedTail(tail) => {
                format!(
                    "{} bytes appended to the payload, header resealed",
                    tail.len()
                )
            }
            Change::HeaderLen(len) => format!("header length forged to {len}"),
            Change::SwapFields(a, b) => format!("header bytes {a:?} and {b:?} swapped"),
            Change::PayloadLen(at, v) => {
                format!("payload length at {at} forged to {v}, header resealed")
            }
            Change::ZstdSize(v) => format!("zstd content size forged to {v}, header resealed"),
            Change::Replace(what, _) => format!("replaced by {what}"),
        }
    }

    fn apply(&self, original: &[u8]) -> Vec<u8> {
        let mut bytes = original.to_vec();
        let payload = &original[HEADER_LEN.min(original.len())..];
        match self {
            Change::Unchanged => {}
            Change::FlipBit(at, bit) => bytes[*at] ^= 1 << bit,
            Change::SetByte(at, v) => bytes[*at] = *v,
            Change::Truncate(len) => bytes.truncate(*len),
            Change::Append(tail) => bytes.extend_from_slice(tail),
            Change::AppendCopy => bytes.extend_from_slice(original),
            Change::ResealedTail(tail) => {
                let mut p = payload.to_vec();
                p.extend_from_slice(tail);
                bytes = resealed(original, &p);
            }
            Change::HeaderLen(len) => bytes[LEN_FIELD].copy_from_slice(&len.to_le_bytes()),
            Change::SwapFields(a, b) => {
                let (first, second) = (original[a.clone()].to_vec(), original[b.clone()].to_vec());
                bytes[a.clone()].copy_from_slice(&second);
                bytes[b.clone()].copy_from_slice(&first);
            }
            Change::PayloadLen(at, v) => {
                bytes = resealed(original, &with_bincode_len(payload, *at, *v));
            }
            Change::ZstdSize(v) => {
                bytes = resealed(original, &with_zstd_content_size(payload, *v));
            }
            Change::Replace(_, other) => bytes = other.to_vec(),
        }
        bytes
    }
}

/// How many changes to try on one file.
struct Plan {
    /// Every bit of the header (else one random bit of every `header_step`th byte).
    all_header_bits: bool,
    header_step: usize,
    /// Random bit flips and byte changes in the payload.
    flips: usize,
    sets: usize,
    /// Random truncation lengths, besides the ones around the header and the end.
    cuts: usize,
    /// A few of the forged header lengths and swapped fields only.
    light: bool,
    /// At most this many of the files swapped in (those marked essential always are).
    swaps: usize,
    /// Check that every `reread`th damaged file was overwritten with a good one.
    reread: u32,
}

impl Plan {
    /// The plan for a file of a task, `index` its place in the corpus.
    fn for_file(heavy: bool, index: usize) -> Plan {
        if long() {
            return Plan {
                all_header_bits: true,
                header_step: 1,
                flips: 128,
                sets: 32,
                cuts: 64,
                light: false,
                swaps: usize::MAX,
                reread: 1,
            };
        }
        if heavy {
            // A large file costs a few large writes per read: a sample of each kind.
            return Plan {
                all_header_bits: false,
                header_step: 6,
                flips: 3,
                sets: 1,
                cuts: 2,
                light: true,
                swaps: 2,
                reread: 4,
            };
        }
        Plan {
            // Every header bit of one file in five, one bit of each byte of the others.
            all_header_bits: index.is_multiple_of(5),
            header_step: 1,
            flips: 16,
            sets: 4,
            cuts: 8,
            light: false,
            swaps: usize::MAX,
            reread: 1,
        }
    }
}

/// A file swapped in for the one damaged: what it is, whether every plan tries it, its
/// bytes.
type Swap = (String, bool, std::sync::Arc<Vec<u8>>);

/// The changes tried on one file: `others` are the files swapped in.
fn changes(
    original: &[u8],
    lengths: Option<Lengths>,
    plan: &Plan,
    rng: &mut Rng,
    mut others: Vec<Swap>,
) -> Vec<Change> {
    let len = original.len();
    let payload = &original[HEADER_LEN..];
    let mut out = vec![Change::Unchanged];
    // Every bit of the header, or one random bit of some of its bytes.
    for at in (0..HEADER_LEN).step_by(plan.header_step) {
        if plan.all_header_bits {
            out.extend((0..8).map(|bit| Change::FlipBit(at, bit)));
        } else {
            let at = at + rng.below(plan.header_step as u64) as usize;
            out.push(Change::FlipBit(at.min(HEADER_LEN - 1), rng.below(8) as u8));
        }
    }
    // Random bits and bytes of the payload.
    if !payload.is_empty() {
        for _ in 0..plan.flips {
            let at = HEADER_LEN + rng.below(payload.len() as u64) as usize;
            out.push(Change::FlipBit(at, rng.below(8) as u8));
        }
        for _ in 0..plan.sets {
            let at = HEADER_LEN + rng.below(payload.len() as u64) as usize;
            let v = (original[at] as u64 + 1 + rng.below(255)) as u8;
            out.push(Change::SetByte(at, v));
        }
    }
    // Truncations: around the header, the middle, the last byte, and random lengths
    // (every length of a small file in the long setting).
    let mut cuts: Vec<usize> = vec![0, 1, 8, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 1];
    cuts.extend([len / 2, len - 1]);
    if long() && len <= 4096 {
        cuts.extend(0..len);
    } else {
        cuts.extend((0..plan.cuts).map(|_| rng.below(len as u64) as usize));
    }
    cuts.sort_unstable();
    cuts.dedup();
    out.extend(cuts.into_iter().filter(|&c| c < len).map(Change::Truncate));
    // Extensions.
    out.push(Change::Append(vec![0]));
    out.push(Change::Append(vec![rng.below(256) as u8]));
    out.push(Change::Append(vec![0; 4096]));
    out.push(Change::AppendCopy);
    out.push(Change::ResealedTail(b"x!".to_vec()));
    // Forged header lengths.
    let plen = payload.len() as u64;
    let forged_lengths = [
        plen + 1,
        1 << 62,
        0,
        plen.saturating_sub(1),
        1 << 32,
        u64::MAX,
    ];
    let n = if plan.light { 2 } else { forged_lengths.len() };
    out.extend(forged_lengths[..n].iter().map(|&l| Change::HeaderLen(l)));
    // Header fields swapped: fingerprint, length, digest, magic, version, serializer, flags.
    let fields = [
        (12..20, 20..28),
        (20..28, 28..36),
        (10..11, 11..12),
        (12..20, 28..36),
        (0..8, 12..20),
        (8..10, 10..12),
        (28..44, 44..60),
    ];
    let n = if plan.light { 3 } else { fields.len() };
    out.extend(
        fields[..n]
            .iter()
            .map(|(a, b)| Change::SwapFields(a.clone(), b.clone())),
    );
    // Forged lengths inside a bincode payload.
    if let Some(lengths) = lengths {
        for (at, ends_value) in lengths(payload) {
            let (was, _) = read_bincode_len(payload, at);
            let mut forged = vec![1 << 62, u64::MAX >> 1, u64::from(u32::MAX), plen * 2 + 1000];
            if ends_value {
                forged.extend([was + 1, was.saturating_sub(1), 0]);
            }
            forged.retain(|&v| v != was);
            out.extend(forged.into_iter().map(|v| Change::PayloadLen(at, v)));
        }
    }
    // The decompressed size a zstd frame records.
    if original[SERIALIZER_AT] & 0x80 != 0 {
        if let Some((_, _, size)) = zstd_content_size(payload) {
            for forged in [size + 1, size - 1, 0, size * 2, 1 << 40, u64::MAX] {
                if with_zstd_content_size(payload, forged) != payload {
                    out.push(Change::ZstdSize(forged));
                }
            }
        }
    }
    // Files swapped in: the essential ones, and a random sample of the others.
    let mut optional = Vec::new();
    for (what, essential, bytes) in others.drain(..) {
        if essential {
            out.push(Change::Replace(what, bytes));
        } else {
            optional.push(Change::Replace(what, bytes));
        }
    }
    for _ in 0..optional.len().min(plan.swaps) {
        let i = rng.below(optional.len() as u64) as usize;
        out.push(optional.swap_remove(i));
    }
    out
}

/// The files of one corpus task, as first written: its result (or target) and record
/// for the inputs 1 and 2.
struct Originals {
    result: [std::sync::Arc<Vec<u8>>; 2],
    record: Option<[(PathBuf, std::sync::Arc<Vec<u8>>); 2]>,
}

/// A file of a corpus task to damage: its role, path, original bytes, where its bincode
/// payload holds lengths, and the files to swap in for it.
type FileToDamage = (
    &'static str,
    PathBuf,
    std::sync::Arc<Vec<u8>>,
    Option<Lengths>,
    Vec<Swap>,
);

/// The files of task `s` (input 1) to damage: its result or target, and its record.
fn files_to_damage(
    s: &Subject,
    orig: &Originals,
    subjects: &[Subject],
    originals: &[Originals],
    root: &Path,
) -> Vec<FileToDamage> {
    let others = || {
        subjects
            .iter()
            .zip(originals)
            .filter(|(o, _)| o.task != s.task)
    };
    let bincode = orig.result[0][SERIALIZER_AT] == 1;
    let mut swaps: Vec<Swap> = Vec::new();
    if s.target {
        // A target holds whatever valid file of its type is there (Make's rule): only
        // files of another type or serializer are swapped in.
        for (other, o) in others().filter(|(o, _)| o.target && o.output != s.output) {
            let what = format!("the target of {} ({})", other.task, other.output);
            swaps.push((what, false, o.result[0].clone()));
        }
    } else {
        let what = "the result of another input".to_owned();
        swaps.push((what, true, orig.result[1].clone()));
        for (other, o) in others().filter(|(o, _)| !o.target) {
            let same = other.output == s.output;
            let what = format!("the result of {} ({})", other.task, other.output);
            swaps.push((what, same, o.result[0].clone()));
        }
        let record = &orig.record.as_ref().unwrap()[0].1;
        swaps.push(("its cache record".into(), true, record.clone()));
    }
    let result = s.result_path(root, 1);
    let lengths = bincode.then_some(s.lengths);
    let mut files = vec![("result", result, orig.result[0].clone(), lengths, swaps)];
    if let Some([(path, bytes), (_, other_input)]) = &orig.record {
        let what = "the record of another input".to_owned();
        let mut swaps: Vec<Swap> = vec![(what, true, other_input.clone())];
        for (other, o) in others() {
            if let Some([(_, record), _]) = &o.record {
                let same = other.output == s.output;
                let how = if same { "the same" } else { "another" };
                let what = format!("the record of {} ({how} output type)", other.task);
                swaps.push((what, same, record.clone()));
            }
        }
        swaps.push(("its result".into(), true, orig.result[0].clone()));
        files.push(("record", path.clone(), bytes.clone(), None, swaps));
    }
    files
}

/// The mutation child: writes every corpus task's files, then damages them one change
/// at a time and reads through the task with an empty in-memory cache.
fn mutator() {
    let mut start_peak = peak_rss();
    let root = dir("corpus");
    let mut rng = Rng::new(child_env(SEED_ENV).parse().unwrap());
    let subjects = corpus_subjects();
    let read = |s: &Subject, x: u64, what: &str| {
        let f = s.read;
        within(&format!("{}: {what}", s.task), READ_DEADLINE, move || f(x))
    };

    // The originals: each task's first run writes them.
    let mut originals = Vec::new();
    for s in &subjects {
        let mut records = Vec::new();
        for x in [1, 2] {
            let before = s.records(&root);
            let o = read(s, x, "first run");
            assert!(
                o.kind == StateKind::Success && o.correct && o.persist_error.is_none(),
                "{}: first run: {:?} {} {:?}",
                s.task,
                o.kind,
                o.shown,
                o.persist_error
            );
            if !s.target {
                let new: Vec<PathBuf> = s
                    .records(&root)
                    .into_iter()
                    .filter(|p| !before.contains(p))
                    .collect();
                assert_eq!(new.len(), 1, "{}: one record per input: {new:?}", s.task);
                let bytes = std::fs::read(&new[0]).unwrap();
                records.push((new[0].clone(), std::sync::Arc::new(bytes)));
            }
        }
        let result =
            [1, 2].map(|x| std::sync::Arc::new(std::fs::read(s.result_path(&root, x)).unwrap()));
        let record = (!s.target).then(|| records.try_into().unwrap());
        originals.push(Originals { result, record });
    }

    // From here on only damaged files are read: count what that allocates (having
    // checked that the count sees an allocation whose pages are never touched).
    reset_heap_stats();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(
        CORPUS_LARGEST_ALLOCATION as usize + 1,
    )));
    assert!(heap_stats().0 > CORPUS_LARGEST_ALLOCATION as usize);
    reset_heap_stats();
    if reset_peak_rss() {
        start_peak = peak_rss();
    }
    let (_, start_heap) = heap_stats();
    let mut failures: Vec<String> = Vec::new();
    let (mut reads, mut damaged_reads) = (0u32, 0u32);
    for (index, (s, orig)) in subjects.iter().zip(&originals).enumerate() {
        let restore = || {
            std::fs::write(s.result_path(&root, 1), &*orig.result[0]).unwrap();
            if let Some([(path, bytes), _]) = &orig.record {
                std::fs::write(path, &**bytes).unwrap();
            }
        };
        for (role, path, original, lengths, swaps) in
            files_to_damage(s, orig, &subjects, &originals, &root)
        {
            let plan = Plan::for_file(s.heavy, index);
            let mut damaged_here = 0;
            for change in changes(&original, lengths, &plan, &mut rng, swaps) {
                restore();
                let bytes = change.apply(&original);
                std::fs::write(&path, &bytes).unwrap();
                let damaged = bytes != *original;
                drop(bytes);
                let what = format!("{role}, {}", change.describe());
                let before = corpus_runs(s.task);
                let o = read(s, 1, &what);
                let ran = corpus_runs(s.task) - before;
                reads += 1;
                let expected = if damaged {
                    (StateKind::Success, 1)
                } else {
                    (StateKind::Cached, 0)
                };
                let mut fail = |why: String| {
                    failures.push(format!("{} ({}): {what}: {why}", s.task, s.output))
                };
                if o.kind == StateKind::Failed {
                    fail(format!("the run failed: {}", o.shown));
                } else if !o.correct {
                    fail(format!("a WRONG VALUE: {} ({:?})", o.shown, o.kind));
                } else if (o.kind, ran) != expected {
                    fail(format!(
                        "{:?} with {ran} body runs, expected {expected:?}",
                        o.kind
                    ));
                } else if let Some(e) = &o.persist_error {
                    fail(format!("the rewrite failed: {e}"));
                } else if damaged {
                    damaged_reads += 1;
                    damaged_here += 1;
                    if damaged_here % plan.reread == 0 {
                        // Recomputed and overwritten: the next reader is served.
                        let again = read(s, 1, &format!("{what}, read again"));
                        if !(again.correct && again.kind == StateKind::Cached) {
                            fail(format!(
                                "not overwritten with a good file: then {:?} {}",
                                again.kind, again.shown
                            ));
                        }
                    }
                }
            }
        }
        restore();
    }
    let end_peak = peak_rss();
    let (largest, end_heap) = heap_stats();
    report(format!(
        "reads={reads} damaged={damaged_reads} start_peak={start_peak} end_peak={end_peak} \
         start_heap={start_heap} end_heap={end_heap} largest={largest}"
    ));
    if !failures.is_empty() {
        let n = failures.len();
        failures.truncate(40);
        panic!("{n} of {reads} reads went wrong:\n{}", failures.join("\n"));
    }
}

#[test]
fn damaged_and_forged_files_are_misses_never_wrong_values() {
    match child_role().as_deref() {
        Some("mutator") => return mutator(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let root = memory_test_root("corpus");
    let mut rng = Rng::seeded(CORPUS_TEST);
    let mut child = child_command(CORPUS_TEST, "mutator", root.path());
    child.env(SEED_ENV, rng.fork().to_string());
    let lines = run_child(
        child,
        "the mutation child",
        scaled(Duration::from_secs(900), Duration::from_secs(3600)),
    );
    let line = lines
        .iter()
        .find(|l| l.starts_with("reads="))
        .expect("the child reports");
    println!("{line}");
    let field = |name: &str| -> u64 {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    assert!(
        field("damaged") > 1000,
        "the corpus damaged too few files: {line}"
    );
    let grown = field("end_peak").saturating_sub(field("start_peak"));
    assert!(
        grown <= CORPUS_MEMORY_BOUND,
        "the mutation child's peak resident memory grew by {} MiB (bound {} MiB)",
        grown >> 20,
        CORPUS_MEMORY_BOUND >> 20
    );
    let heap = field("end_heap").saturating_sub(field("start_heap"));
    assert!(
        heap <= CORPUS_MEMORY_BOUND,
        "reading damaged files raised the peak of live heap by {} MiB (bound {} MiB)",
        heap >> 20,
        CORPUS_MEMORY_BOUND >> 20
    );
    assert!(
        field("largest") <= CORPUS_LARGEST_ALLOCATION,
        "reading damaged files made an allocation of {} bytes (bound {}): a length \
         read from a file was trusted",
        field("largest"),
        CORPUS_LARGEST_ALLOCATION
    );
}

// =====================================================================================
// 4. FIFOs where files should be
// =====================================================================================

const FIFO_TEST: &str = "a_fifo_in_place_of_a_result_record_or_lock_is_never_waited_on";

/// The input every FIFO case calls its tasks with.
const FIFO_X: u64 = 7;

/// A body that, in the probe (`TASKCACHE_REL_GATE` set), says it is running and waits
/// for the parent's leave, so that the parent sees the lock files a run holds.
fn fifo_body(task: &str, x: u64) -> String {
    if let Ok(gate) = std::env::var("TASKCACHE_REL_GATE") {
        let gate = PathBuf::from(gate);
        std::fs::write(gate.join(format!("in-{task}")), b"").unwrap();
        wait_for_file(&gate.join(format!("out-{task}")), Duration::from_secs(60));
    }
    format!("{task} {x}")
}

#[task(checkpoint, target = "t/{x}.bin", result = LocalResult::new(dir("fifo")))]
fn fifo_target(x: u64) -> String {
    fifo_body("target", x)
}

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new(dir("fifo")).with_location("c/{x}.bin"))]
fn fifo_cached(x: u64) -> String {
    fifo_body("cached", x)
}

/// A child calling the tasks `TASKCACHE_REL_CALLS` names and reporting each state.
fn fifo_caller() {
    for task in child_env("TASKCACHE_REL_CALLS").split(',') {
        let (kind, value, error) = match task {
            "target" => {
                let s = fifo_target::run(FIFO_X);
                (
                    s.kind(),
                    s.value().cloned(),
                    s.persist_error().map(str::to_owned),
                )
            }
            _ => {
                let s = fifo_cached::run(FIFO_X);
                (
                    s.kind(),
                    s.value().cloned(),
                    s.persist_error().map(str::to_owned),
                )
            }
        };
        report(format!("{task} {kind:?} {value:?} {error:?}"));
    }
}

/// Calls `calls` in a fresh process on the files under `root`; a child still waiting
/// after the deadline fails the test.
fn call_fifo_tasks(root: &Path, calls: &str, case: &str) -> Vec<String> {
    let mut c = child_command(FIFO_TEST, "caller", root);
    c.env("TASKCACHE_REL_CALLS", calls);
    run_child(c, &format!("{case}: the call"), Duration::from_secs(60))
}

/// What a run of each task holds, seen while its body waits: the target's lock file
/// and the cache record's; and the record's id, from the record the run leaves.
fn probe_fifo_locks() -> (String, String, String) {
    let root = test_root("fifo-probe");
    let gate = root.path().join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    let locks = root.path().join("fifo/.locks");
    let mut c = child_command(FIFO_TEST, "caller", root.path());
    c.env("TASKCACHE_REL_CALLS", "target,cached")
        .env("TASKCACHE_REL_GATE", &gate);
    let child = start(c, "the probe");
    let mut held = Vec::new();
    for task in ["target", "cached"] {
        wait_for_file(&gate.join(format!("in-{task}")), Duration::from_secs(60));
        let names: Vec<String> = all_files(&locks)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        held.push(names);
        std::fs::write(gate.join(format!("out-{task}")), b"").unwrap();
    }
    child.finish(CHILD_DEADLINE);
    let target_lock = lock_file_name(&format!("t/{FIFO_X}.bin"));
    assert_eq!(held[0], [target_lock.as_str()], "the target's lock file");
    let key = fifo_cached::spec().cache_key();
    let records = all_files(&records_dir(&root.path().join("fifo"), key));
    assert_eq!(records.len(), 1, "{records:?}");
    let id = records[0]
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let record_lock = lock_file_name(&record_lock_location(key, &id));
    assert_eq!(
        held[1],
        [record_lock.as_str()],
        "the cache record's lock file"
    );
    (target_lock, record_lock, id)
}

#[test]
fn a_fifo_in_place_of_a_result_record_or_lock_is_never_waited_on() {
    match child_role().as_deref() {
        Some("caller") => return fifo_caller(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    if std::process::Command::new("mkfifo")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        println!("skipped: the `mkfifo` command is not installed");
        return;
    }
    let (target_lock, record_lock, record_id) = probe_fifo_locks();
    let target = format!("fifo/t/{FIFO_X}.bin");
    let result = format!("fifo/c/{FIFO_X}.bin");
    let records = records_dir(Path::new("fifo"), fifo_cached::spec().cache_key());
    let record = records
        .join(format!("{record_id}.rec"))
        .to_string_lossy()
        .into_owned();
    let locks = [
        format!("fifo/.locks/{target_lock}"),
        format!("fifo/.locks/{record_lock}"),
    ];
    // (case, whether a first run writes the files, the FIFOs, how the target task ends)
    let cases: Vec<(&str, bool, Vec<String>, &str)> = vec![
        (
            "a FIFO at the target",
            false,
            vec![target.clone()],
            "Success",
        ),
        (
            "a FIFO at a recorded result",
            true,
            vec![result.clone()],
            "Cached",
        ),
        (
            "a FIFO at the cache record",
            true,
            vec![record.clone()],
            "Cached",
        ),
        ("FIFOs at both lock files", false, locks.to_vec(), "Success"),
        (
            "FIFOs at the target, result, record and locks",
            false,
            [target, result, record].into_iter().chain(locks).collect(),
            "Success",
        ),
    ];
    for (case, first_run, fifos, target_ends) in cases {
        let root = test_root("fifo");
        if first_run {
            call_fifo_tasks(root.path(), "target,cached", &format!("{case}, first run"));
        }
        for fifo in &fifos {
            let path = root.path().join(fifo);
            let _ = std::fs::remove_file(&path);
            assert!(mkfifo(&path), "mkfifo disappeared");
        }
        let lines = call_fifo_tasks(root.path(), "target,cached", case);
        assert_eq!(
            lines,
            [
                format!("target {target_ends} Some(\"target {FIFO_X}\") None"),
                format!("cached Success Some(\"cached {FIFO_X}\") None"),
            ],
            "{case}: each task returns its value; a FIFO is a miss, never waited on"
        );
        for fifo in fifos.iter().filter(|f| !f.contains("/.locks/")) {
            let path = root.path().join(fifo);
            assert!(
                !is_fifo(&path) && path.is_file(),
                "{case}: the FIFO at {fifo} is replaced by the rewritten file"
            );
        }
    }
}

// =====================================================================================
// 5. Faults: a read-only directory, a full disk
// =====================================================================================

const READ_ONLY_TEST: &str = "a_read_only_result_directory_returns_the_value_with_a_persist_error";
const FULL_DISK_TEST: &str =
    "a_full_disk_returns_the_value_with_a_persist_error_and_leaves_nothing_behind";

/// A tmpfs mounted for a test, unmounted when dropped (also when the test fails).
struct Mount(PathBuf);

impl Mount {
    /// Mounts a tmpfs with `options` at `at`, or says why it cannot.
    fn tmpfs(at: &Path, options: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("`mount` cannot be run: {e}"))?;
        if out.status.success() {
            Ok(Mount(at.to_path_buf()))
        } else {
            Err(format!(
                "`mount -t tmpfs -o {options}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmounted = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a child still running after a failure): detach it.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

/// Restores a directory's permissions when dropped, so that it can be removed.
struct Permissions(PathBuf, std::fs::Permissions);

impl Drop for Permissions {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.0, self.1.clone());
    }
}

/// Whether a file can be created in `dir` (it is removed again).
fn writable(dir: &Path) -> bool {
    let probe = dir.join("probe");
    let ok = std::fs::File::create(&probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

#[task(checkpoint, result = LocalResult::new(dir("ro")).with_location("{x}.bin"))]
fn read_only(x: u64) -> Vec<String> {
    small_value(0, x)
}

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new(dir("ro")).with_location("cached/{x}.bin"))]
fn read_only_cached(x: u64) -> Vec<String> {
    small_value(1, x)
}

/// The child of the read-only test: both tasks return their values, with the write's
/// error on the state.
fn read_only_caller() {
    let a = read_only::run(3);
    let b = read_only_cached::run(3);
    for (name, state, expected) in [
        ("read_only", &a, small_value(0, 3)),
        ("read_only_cached", &b, small_value(1, 3)),
    ] {
        assert_eq!(state.kind(), StateKind::Success, "{name}: {state}");
        assert_eq!(state.value(), Some(&expected), "{name}");
        let error = state
            .persist_error()
            .unwrap_or_else(|| panic!("{name}: no persist error"));
        assert!(
            error.contains(name),
            "{name}: the error names the task: {error}"
        );
        report(format!("{name}: {error}"));
    }
    // Again in the same process: still the value (the output cache may serve it).
    assert_eq!(read_only(3), small_value(0, 3));
    assert_eq!(read_only_cached(3), small_value(1, 3));
}

#[test]
fn a_read_only_result_directory_returns_the_value_with_a_persist_error() {
    match child_role().as_deref() {
        Some("caller") => return read_only_caller(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    use std::os::unix::fs::PermissionsExt;
    let root = test_root("read-only");
    let ro = root.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    let before = std::fs::metadata(&ro).unwrap().permissions();
    let _restore = Permissions(ro.clone(), before);
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores permissions; a read-only mount stops root too, where one can be made.
    let mut _mount = None;
    if writable(&ro) {
        match Mount::tmpfs(&ro, "ro,size=1m") {
            Ok(m) if !writable(&ro) => _mount = Some(m),
            Ok(_) => {
                println!("skipped: running as root, a read-only directory is writable (even a read-only mount)");
                return;
            }
            Err(why) => {
                println!("skipped: running as root, a read-only directory is writable, and no read-only mount: {why}");
                return;
            }
        }
    }
    let lines = run_child(
        child_command(READ_ONLY_TEST, "caller", root.path()),
        "the call",
        CHILD_DEADLINE,
    );
    println!("{lines:?}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        all_files(&ro).is_empty(),
        "nothing written: {:?}",
        all_files(&ro)
    );
}

#[task(checkpoint, result = LocalResult::new(dir("full")).with_location("{name}.bin"))]
fn fill(name: String, size: usize) -> Vec<u8> {
    let _ = name;
    bytes_value(size as u64, size)
}

/// The child of the full-disk test.
fn filler() {
    let full = dir("full");
    let big = fill::run("big".into(), 3 << 20);
    assert_eq!(big.kind(), StateKind::Success, "{big}");
    assert_eq!(big.value(), Some(&bytes_value(3 << 20, 3 << 20)));
    let error = big
        .persist_error()
        .expect("a 3 MiB write to a 1 MiB disk fails");
    report(format!("big: {error}"));
    assert!(error.contains("fill"), "the error names the task: {error}");
    assert!(!full.join("big.bin").exists(), "nothing at the location");
    let left = temp_files(&full);
    assert!(left.is_empty(), "temporary files left behind: {left:?}");

    let small = fill::run("small".into(), 100 << 10);
    assert_eq!(small.kind(), StateKind::Success, "{small}");
    assert_eq!(small.persist_error(), None, "a write that fits succeeds");
    let back: Vec<u8> = LocalResult::new(&full)
        .read(&Location::new("small.bin").unwrap())
        .unwrap();
    assert_eq!(back, bytes_value(100 << 10, 100 << 10));
    report("small: written");
}

#[test]
fn a_full_disk_returns_the_value_with_a_persist_error_and_leaves_nothing_behind() {
    match child_role().as_deref() {
        Some("filler") => return filler(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let root = test_root("full-disk");
    let full = root.path().join("full");
    let _mount = match Mount::tmpfs(&full, "size=1m") {
        Ok(m) => m,
        Err(why) => {
            println!(
                "skipped: a full disk needs a 1 MiB tmpfs, which cannot be mounted here: {why}"
            );
            return;
        }
    };
    let lines = run_child(
        child_command(FULL_DISK_TEST, "filler", root.path()),
        "the writes",
        CHILD_DEADLINE,
    );
    println!("{lines:?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("small: written"),
        "{lines:?}"
    );
    let files: Vec<PathBuf> = all_files(&full);
    assert_eq!(files, [full.join("small.bin")], "only the write that fit");
}
