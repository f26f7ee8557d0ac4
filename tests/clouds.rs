//! S3Result, AzureResult and GcsResult against real emulators: moto (S3), Azurite
//! (Azure Blob Storage) and fake-gcs-server (GCS), started by `scripts/emulators.sh`.
//!
//! Run them with `scripts/emulators.sh run -- cargo test --workspace --all-features`
//! (what `.ci/run` does). Without the emulators each test says on the terminal that it
//! was skipped, and why; with `TASKCACHE_REQUIRE_EMULATORS=1` (set by CI) it fails
//! instead.
//!
//! fake-gcs-server answers `object_store`'s GCS uploads (XML API `PUT`, multipart and
//! copy) with HTTP 400, so on GCS the tests read objects uploaded through the JSON
//! API, and check that a failed write is reported on the state with the value kept.

#![cfg(all(feature = "aws", feature = "azure", feature = "gcp"))]

mod common;

use common::append;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use taskcache::prelude::*;
use taskcache::results::{
    AzureResult, GcsResult, Location, ObjectStoreResult, ResultError, S3Result,
};

// ---------------------------------------------------------------- the stores

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    S3,
    Azure,
}

const WRITABLE: [Kind; 2] = [Kind::S3, Kind::Azure];

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set by scripts/emulators.sh"))
}

/// Whether the emulators are running; says why not when they are not.
fn emulators(test: &str) -> bool {
    if std::env::var_os("TASKCACHE_EMULATORS").is_some() {
        return true;
    }
    let why = "the object-store emulators are not running (TASKCACHE_EMULATORS is not set); \
               run `scripts/emulators.sh run -- cargo test --workspace --all-features`";
    assert!(
        std::env::var_os("TASKCACHE_REQUIRE_EMULATORS").is_none(),
        "{test}: {why}"
    );
    // Straight to the terminal: the test harness captures `eprintln!`.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    false
}

/// A prefix no other test run uses.
fn fresh(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("runs/{}-{nanos}/{test}", std::process::id())
}

fn store(kind: Kind, prefix: &str) -> ObjectStoreResult {
    match kind {
        Kind::S3 => S3Result::new(&format!("s3://{}/{prefix}", var("TASKCACHE_S3_BUCKET")))
            .with_option("aws_endpoint", var("TASKCACHE_S3_ENDPOINT"))
            .with_option("aws_allow_http", "true")
            .with_option("aws_region", var("TASKCACHE_S3_REGION"))
            .with_option("aws_access_key_id", var("TASKCACHE_S3_ACCESS_KEY_ID"))
            .with_option(
                "aws_secret_access_key",
                var("TASKCACHE_S3_SECRET_ACCESS_KEY"),
            ),
        Kind::Azure => AzureResult::new(&format!(
            "az://{}/{prefix}",
            var("TASKCACHE_AZURE_CONTAINER")
        ))
        .with_option("azure_storage_account_name", var("TASKCACHE_AZURE_ACCOUNT"))
        .with_option(
            "azure_storage_account_key",
            var("TASKCACHE_AZURE_ACCESS_KEY"),
        )
        .with_option("azure_storage_endpoint", var("TASKCACHE_AZURE_BLOB_URL"))
        .with_option("azure_allow_http", "true"),
    }
}

fn gcs(prefix: &str) -> ObjectStoreResult {
    GcsResult::new(&format!("gs://{}/{prefix}", var("TASKCACHE_GCS_BUCKET"))).with_option(
        "google_service_account",
        var("TASKCACHE_GCS_SERVICE_ACCOUNT"),
    )
}

/// The raw bytes of `location` through the store's own client, bypassing taskcache.
fn raw(kind: Kind, prefix: &str, location: &str) -> Vec<u8> {
    use taskcache::results::object_store::{ObjectStore, ObjectStoreExt};
    let store: std::sync::Arc<dyn ObjectStore> = raw_store(kind);
    let path = taskcache::results::object_store::path::Path::from(format!("{prefix}/{location}"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { store.get(&path).await.unwrap().bytes().await.unwrap() })
        .to_vec()
}

fn raw_put(kind: Kind, prefix: &str, location: &str, bytes: Vec<u8>) {
    use taskcache::results::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
    let store: std::sync::Arc<dyn ObjectStore> = raw_store(kind);
    let path = taskcache::results::object_store::path::Path::from(format!("{prefix}/{location}"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(store.put(&path, PutPayload::from(bytes)))
        .unwrap();
}

fn raw_store(kind: Kind) -> std::sync::Arc<dyn taskcache::results::object_store::ObjectStore> {
    use taskcache::results::object_store::{aws::AmazonS3Builder, azure::MicrosoftAzureBuilder};
    match kind {
        Kind::S3 => std::sync::Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(var("TASKCACHE_S3_BUCKET"))
                .with_endpoint(var("TASKCACHE_S3_ENDPOINT"))
                .with_allow_http(true)
                .with_region(var("TASKCACHE_S3_REGION"))
                .with_access_key_id(var("TASKCACHE_S3_ACCESS_KEY_ID"))
                .with_secret_access_key(var("TASKCACHE_S3_SECRET_ACCESS_KEY"))
                .build()
                .unwrap(),
        ),
        Kind::Azure => std::sync::Arc::new(
            MicrosoftAzureBuilder::new()
                .with_container_name(var("TASKCACHE_AZURE_CONTAINER"))
                .with_account(var("TASKCACHE_AZURE_ACCOUNT"))
                .with_access_key(var("TASKCACHE_AZURE_ACCESS_KEY"))
                .with_endpoint(var("TASKCACHE_AZURE_BLOB_URL"))
                .with_allow_http(true)
                .build()
                .unwrap(),
        ),
    }
}

/// Uploads `bytes` to fake-gcs-server through its JSON API (its XML API, which
/// `object_store` writes with, refuses uploads).
fn gcs_upload(name: &str, bytes: &[u8]) {
    let endpoint = var("TASKCACHE_GCS_ENDPOINT");
    let url = format!(
        "{endpoint}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
        var("TASKCACHE_GCS_BUCKET"),
        name.replace('/', "%2F")
    );
    let mut curl = Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-X",
            "POST",
            "--data-binary",
            "@-",
            "-o",
            "/dev/null",
        ])
        .arg(url)
        .stdin(Stdio::piped())
        .spawn()
        .expect("curl runs");
    curl.stdin.take().unwrap().write_all(bytes).unwrap();
    assert!(
        curl.wait().unwrap().success(),
        "upload of {name} to fake-gcs-server"
    );
}

// ---------------------------------------------------------------- the tasks

/// The store a child process was asked to use.
fn child_store() -> ObjectStoreResult {
    let kind = match var("TC_KIND").as_str() {
        "S3" => Kind::S3,
        _ => Kind::Azure,
    };
    store(kind, &var("TC_PREFIX")).with_lease(Duration::from_secs(1))
}

#[task(checkpoint, target = "race/{trial}.bin", result = LocalResult::new("unused"))]
fn raced(trial: u32, log: &Path, hold: u64) -> u32 {
    append(log, &format!("{trial}"));
    // Tell a parent that waits for it that the lock is held now.
    println!("RUNNING");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_millis(hold));
    trial * 3
}

#[task(checkpoint, result = LocalResult::new("unused"))]
fn class_task() -> i32 {
    42
}

#[task(checkpoint, target = "func_task_target.txt", result = LocalResult::new("unused"))]
fn func_task(log: &Path) -> i32 {
    append(log, "func_task");
    99
}

#[task(checkpoint, target = "{date:%A}/{task_name}.bin", result = LocalResult::new("unused"))]
fn templated(log: &Path) -> String {
    append(log, "templated");
    "weekly".into()
}

#[task(cache_for = "1h", cache_validator = all_inputs, checkpoint, result = LocalResult::new("unused"))]
fn remembered(x: u64, log: &Path) -> u64 {
    append(log, "remembered");
    x + 1
}

#[task(checkpoint, target = "async/{x}.bin", result = LocalResult::new("unused"))]
async fn awaited(x: u64, log: &Path) -> u64 {
    append(log, "awaited");
    x * 5
}

fn lines(log: &Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |s| s.lines().count())
}

/// Starts this test binary again as a child running `test` with `env`.
fn spawn_child(test: &str, env: &[(&str, String)]) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("TASKCACHE_TEST_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command.spawn().unwrap()
}

fn child_env(kind: Kind, prefix: &str, log: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("TC_KIND", format!("{kind:?}")),
        ("TC_PREFIX", prefix.to_owned()),
        ("TC_LOG", log.display().to_string()),
    ]
}

fn finished(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

// ---------------------------------------------------------------- the tests

#[test]
fn the_seeds_persisting_examples_work_on_every_store() {
    if common::child().is_some() {
        // A later process honours the `cache_for` record the parent's first run wrote.
        let log = PathBuf::from(var("TC_LOG"));
        let x: u64 = var("TC_X").parse().unwrap();
        let state = Context::current()
            .with_result(child_store())
            .scope(|| remembered::run(x, &log));
        assert!(state.is_cached(), "{state}");
        assert_eq!(state.value(), Some(&(x + 1)));
        return;
    }
    if !emulators("the_seeds_persisting_examples_work_on_every_store") {
        return;
    }
    for kind in WRITABLE {
        let prefix = fresh("seed");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let ctx = Context::current().with_result(store(kind, &prefix));
        // Persisting output: written to a fresh location, readable from the store.
        let state = ctx.clone().scope(class_task::run);
        assert_eq!(state.value(), Some(&42), "{kind:?}: {state}");
        assert!(state.persist_error().is_none(), "{kind:?}: {state}");
        let at = state.location().unwrap().clone();
        assert_eq!(store(kind, &prefix).read::<i32>(&at).unwrap(), 42);
        // Target caching: the second call finds the target and runs nothing.
        let first = ctx.clone().scope(|| func_task::run(&log));
        let second = ctx.clone().scope(|| func_task::run(&log));
        assert_eq!(second.value(), Some(&99));
        assert!(
            second.is_cached() && !first.is_cached(),
            "{kind:?}: {second}"
        );
        assert_eq!(lines(&log), 1);
        // A templated target, rendered into the object's key.
        let day = chrono::Utc::now().format("%A").to_string();
        let first = ctx.clone().scope(|| templated::run(&log));
        let key = format!("{day}/{}.bin", "templated");
        assert_eq!(first.location().map(Location::as_str), Some(key.as_str()));
        assert!(raw(kind, &prefix, &key).starts_with(b"TASKCCH\0"));
        assert!(ctx.clone().scope(|| templated::run(&log)).is_cached());
        assert_eq!(lines(&log), 2);
        // Output caching persisted: another process honours the record. (Each store
        // gets its own input: this process keeps outputs in memory too.)
        let x = kind as u64 + 10;
        let state = ctx.scope(|| remembered::run(x, &log));
        assert_eq!(state.value(), Some(&(x + 1)));
        let mut env = child_env(kind, &prefix, &log);
        env.push(("TC_X", x.to_string()));
        finished(spawn_child(
            "the_seeds_persisting_examples_work_on_every_store",
            &env,
        ));
        assert_eq!(lines(&log), 3, "{kind:?}: the other process ran the body");
    }
}

#[test]
fn an_async_task_awaits_the_store_on_a_current_thread_runtime() {
    if !emulators("an_async_task_awaits_the_store_on_a_current_thread_runtime") {
        return;
    }
    // (A blocking wait here would have to run on the runtime's only thread; the I/O
    // futures run on taskcache's own runtime and are awaited.)
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for kind in WRITABLE {
        let prefix = fresh("async");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let ctx = Context::current().with_result(store(kind, &prefix));
        let first = runtime.block_on(ctx.clone().scope_async(awaited::run(3, &log)));
        assert_eq!(first.value(), Some(&15), "{kind:?}: {first}");
        assert!(first.persist_error().is_none(), "{kind:?}: {first}");
        assert!(raw(kind, &prefix, "async/3.bin").starts_with(b"TASKCCH\0"));
        let second = runtime.block_on(ctx.scope_async(awaited::run(3, &log)));
        assert!(second.is_cached(), "{kind:?}: {second}");
        assert_eq!(second.value(), Some(&15));
        assert_eq!(lines(&log), 1, "{kind:?}: the hit ran the body");
    }
}

#[test]
fn two_processes_racing_on_one_target_run_the_body_once() {
    if common::child().is_some() {
        let log = PathBuf::from(var("TC_LOG"));
        let trial: u32 = var("TC_TRIAL").parse().unwrap();
        let state = Context::current()
            .with_result(child_store())
            .scope(|| raced::run(trial, &log, 150));
        assert_eq!(state.value(), Some(&(trial * 3)), "{state}");
        return;
    }
    if !emulators("two_processes_racing_on_one_target_run_the_body_once") {
        return;
    }
    for kind in WRITABLE {
        let prefix = fresh("race");
        let dir = tempfile::tempdir().unwrap();
        for trial in 0..20u32 {
            let log = dir.path().join(format!("log-{trial}"));
            let mut env = child_env(kind, &prefix, &log);
            env.push(("TC_TRIAL", trial.to_string()));
            let test = "two_processes_racing_on_one_target_run_the_body_once";
            let (a, b) = (spawn_child(test, &env), spawn_child(test, &env));
            finished(a);
            finished(b);
            assert_eq!(
                lines(&log),
                1,
                "{kind:?}, trial {trial}: the body ran twice"
            );
        }
    }
}

#[test]
fn a_killed_holder_is_taken_over_once_its_lease_ends() {
    if common::child().is_some() {
        let log = PathBuf::from(var("TC_LOG"));
        // Holds the target's lock far longer than the test runs: killed meanwhile.
        Context::current()
            .with_result(child_store())
            .scope(|| raced::run(7, &log, 600_000));
        return;
    }
    if !emulators("a_killed_holder_is_taken_over_once_its_lease_ends") {
        return;
    }
    for kind in WRITABLE {
        let prefix = fresh("killed");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut child = spawn_child(
            "a_killed_holder_is_taken_over_once_its_lease_ends",
            &child_env(kind, &prefix, &log),
        );
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("RUNNING") {
            line.clear();
            let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
            assert!(n > 0, "{kind:?}: the holder ended before its body ran");
        }
        // SIGKILL: no destructor runs, the lock object stays "held".
        child.kill().unwrap();
        child.wait().unwrap();
        let started = Instant::now();
        let state = Context::current()
            .with_result(store(kind, &prefix).with_lease(Duration::from_secs(1)))
            .scope(|| raced::run(7, &log, 0));
        let waited = started.elapsed();
        assert_eq!(state.value(), Some(&21), "{kind:?}: {state}");
        assert_eq!(lines(&log), 2, "{kind:?}: the killed body, then this one");
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(20),
            "{kind:?}: took over after {waited:?}, the lease is 1 s"
        );
    }
}

#[test]
fn corrupt_truncated_and_foreign_objects_are_recomputed() {
    if !emulators("corrupt_truncated_and_foreign_objects_are_recomputed") {
        return;
    }
    for kind in WRITABLE {
        let prefix = fresh("corrupt");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let ctx = Context::current().with_result(store(kind, &prefix));
        ctx.clone().scope(|| func_task::run(&log));
        let good = raw(kind, &prefix, "func_task_target.txt");
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let damaged = [
            flipped,
            good[..good.len() - 1].to_vec(),
            good[..10].to_vec(),
            b"someone else's file".to_vec(),
        ];
        for (i, bytes) in damaged.into_iter().enumerate() {
            raw_put(kind, &prefix, "func_task_target.txt", bytes);
            let state = ctx.clone().scope(|| func_task::run(&log));
            assert_eq!(state.value(), Some(&99), "{kind:?} #{i}: {state}");
            assert!(
                !state.is_cached(),
                "{kind:?} #{i}: a damaged object was trusted"
            );
            assert_eq!(lines(&log), i + 2);
            assert_eq!(
                raw(kind, &prefix, "func_task_target.txt"),
                good,
                "rewritten"
            );
        }
    }
}

#[test]
fn large_values_round_trip_through_multipart_uploads() {
    if !emulators("large_values_round_trip_through_multipart_uploads") {
        return;
    }
    for kind in WRITABLE {
        let result = store(kind, &fresh("large"))
            .with_part_size(5 << 20)
            .with_single_put_max(0);
        let bytes: Vec<u8> = (0..(12u32 << 20) + 5).map(|i| (i % 253) as u8).collect();
        let at = Location::new("big.bin").unwrap();
        result.write(&bytes, &at).unwrap();
        assert_eq!(result.read::<Vec<u8>>(&at).unwrap(), bytes, "{kind:?}");
        let words: Vec<String> = (0..600_000).map(|i| format!("w{i}")).collect();
        result.write(&words, &at).unwrap();
        assert_eq!(result.read::<Vec<String>>(&at).unwrap(), words, "{kind:?}");
    }
}

#[test]
fn credentials_never_appear_in_logs_messages_or_debug_output() {
    const CANARY: &str = "tc-canary-Zq81xVb27Lm";
    if common::child().is_some() {
        // Everything logged goes into this buffer, then to stdout for the parent.
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = std::sync::Arc::clone(&logs);
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Capture(std::sync::Arc::clone(&sink)))
            .init();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut seen = String::new();
        // A bucket that does not exist, a SAS token that is not valid, a secret key
        // given as an option: every failure is logged and put on the state.
        let results = [
            store(Kind::S3, "p")
                .with_option("aws_secret_access_key", CANARY)
                .with_option("aws_session_token", CANARY),
            S3Result::new("s3://no-such-bucket-here/p")
                .with_option("aws_endpoint", var("TASKCACHE_S3_ENDPOINT"))
                .with_option("aws_allow_http", "true")
                .with_option("aws_region", "us-east-1"),
            AzureResult::new(&format!("az://{}/p", var("TASKCACHE_AZURE_CONTAINER")))
                .with_option("azure_storage_account_name", var("TASKCACHE_AZURE_ACCOUNT"))
                .with_option(
                    "azure_storage_sas_key",
                    format!("sv=2021-08-06&ss=b&srt=o&sp=r&sig={CANARY}"),
                )
                .with_option("azure_storage_endpoint", var("TASKCACHE_AZURE_BLOB_URL"))
                .with_option("azure_allow_http", "true"),
        ];
        for result in results {
            seen.push_str(&format!("{result:?}\n"));
            let state = Context::current()
                .with_result(result.clone())
                .scope(|| func_task::run(&log));
            seen.push_str(&format!("{state}\n{:?}\n", state.persist_error()));
            if let Err(e) = result.read::<i32>(&Location::new("x").unwrap()) {
                seen.push_str(&format!("{e}\n{e:?}\n"));
            }
        }
        seen.push_str(&String::from_utf8_lossy(&logs.lock().unwrap()));
        println!("CAPTURED\n{seen}");
        return;
    }
    if !emulators("credentials_never_appear_in_logs_messages_or_debug_output") {
        return;
    }
    let child = spawn_child(
        "credentials_never_appear_in_logs_messages_or_debug_output",
        &[
            ("AWS_SECRET_ACCESS_KEY", CANARY.to_owned()),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_owned()),
            ("RUST_LOG", "trace".to_owned()),
        ],
    );
    let out = finished(child);
    let captured = &out[out.find("CAPTURED").expect("the child reported")..];
    assert!(
        captured.contains("failed") && captured.contains("S3Result"),
        "the failures were reported: {captured}"
    );
    assert!(
        !captured.contains(CANARY),
        "a credential leaked:\n{captured}"
    );
}

/// A `tracing` writer into a shared buffer.
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn gcs_reads_uploaded_results_and_reports_failed_writes() {
    if !emulators("gcs_reads_uploaded_results_and_reports_failed_writes") {
        return;
    }
    let prefix = fresh("gcs");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // A target that LocalResult wrote, uploaded as it is, is a hit.
    let local = dir.path().join("local");
    let state = Context::current()
        .with_result(LocalResult::new(&local))
        .scope(|| func_task::run(&log));
    assert_eq!(state.value(), Some(&99));
    let file = std::fs::read(local.join("func_task_target.txt")).unwrap();
    gcs_upload(&format!("{prefix}/func_task_target.txt"), &file);
    let result = gcs(&prefix);
    assert!(result
        .exists(&Location::new("func_task_target.txt").unwrap())
        .unwrap());
    let ctx = Context::current().with_result(result.clone());
    let hit = ctx.clone().scope(|| func_task::run(&log));
    assert!(hit.is_cached(), "{hit}");
    assert_eq!(lines(&log), 1);
    // A damaged one is recomputed; fake-gcs-server refuses the write that follows,
    // which is reported on the state while the value is still returned.
    let mut damaged = file.clone();
    *damaged.last_mut().unwrap() ^= 1;
    gcs_upload(&format!("{prefix}/func_task_target.txt"), &damaged);
    let state = ctx.scope(|| func_task::run(&log));
    assert_eq!(state.value(), Some(&99));
    assert!(!state.is_cached());
    assert_eq!(lines(&log), 2);
    let error = state
        .persist_error()
        .expect("the refused upload is reported");
    assert!(error.contains("GcsResult"), "{error}");
    // The damaged object is still there, and still refused.
    let err = result.read::<i32>(&Location::new("func_task_target.txt").unwrap());
    assert!(matches!(err, Err(ResultError::Corrupt { .. })), "{err:?}");
}

#[test]
fn an_unreachable_store_is_a_miss_and_a_persist_error() {
    // A port nothing listens on: no emulator needed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = S3Result::new("s3://bucket/prefix")
        .with_option("aws_endpoint", format!("http://127.0.0.1:{port}"))
        .with_option("aws_allow_http", "true")
        .with_option("aws_region", "us-east-1")
        .with_option("aws_access_key_id", "x")
        .with_option("aws_secret_access_key", "y")
        .with_retry(taskcache::results::object_store::RetryConfig {
            max_retries: 1,
            retry_timeout: Duration::from_secs(2),
            ..Default::default()
        });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let started = Instant::now();
    let state = Context::current()
        .with_result(dead)
        .scope(|| func_task::run(&log));
    assert_eq!(state.value(), Some(&99), "{state}");
    assert_eq!(lines(&log), 1);
    let error = state
        .persist_error()
        .expect("the failed write is on the state");
    assert!(error.contains("S3Result(s3://bucket/prefix)"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // A bad URL is an error at first use, never a panic.
    let state = Context::current()
        .with_result(S3Result::new("http://not-s3/x"))
        .scope(|| func_task::run(&log));
    assert_eq!(state.value(), Some(&99));
    let error = state.persist_error().expect("reported");
    assert!(
        error.contains("`http://not-s3/x` is not a URL S3Result can use"),
        "{error}"
    );
}
