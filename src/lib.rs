//! Prefect Core's ["Caching and Persisting Data"](https://docs-v1.prefect.io/core/concepts/persistence.html)
//! for plain Rust functions.
//!
//! Put [`#[task]`](macro@task) on a function and it gets output caching with validators,
//! retries that reuse the inputs of the failed attempt, and a final state you can inspect;
//! put [`#[flow]`](macro@flow) on a function and its arguments become parameters that
//! validators compare. Outputs can be persisted: checkpointed to files that are written
//! atomically and verified when read, and used as Make-style targets that skip the body
//! when their file exists.
//!
//! # Quick start
//!
//! ```
//! use std::sync::OnceLock;
//! use taskcache::prelude::*;
//!
//! #[task(cache_for = "1h", cache_validator = all_inputs)]
//! fn add(x: i64, y: i64) -> i64 {
//!     x + y
//! }
//!
//! #[task(cache_for = "1d", cache_validator = partial_inputs_only(x, y))]
//! fn add_fmt(x: i64, y: i64, as_string: bool) -> String {
//!     if as_string { format!("{x} + {y} = {}", x + y) } else { (x + y).to_string() }
//! }
//!
//! #[task(cache_for = "1h", cache_key = "prices")] // shared by every task naming it
//! fn prices() -> Vec<f64> {
//!     vec![101.5, 99.25, 100.0]
//! }
//!
//! #[task(max_retries = 3, retry_delay = "10ms")]
//! fn fetch(url: String) -> Result<String, String> {
//!     match taskcache::context::current().task_run_count() {
//!         1 => Err(format!("{url}: connection reset")), // the first attempt fails
//!         _ => Ok(format!("contents of {url}")),        // the retry, with the same `url`
//!     }
//! }
//!
//! #[flow]
//! fn daily(nrows: u32, runtime: String) -> i64 {
//!     add(i64::from(nrows), 1) + add(i64::from(nrows), 1)
//! }
//!
//! // Where outputs are written: `LocalResult::new("~/.taskcache")` in a program of your
//! // own, a temporary directory here.
//! static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
//!
//! // Every output written to a file.
//! #[task(checkpoint, result = LocalResult::new(DIR.get().unwrap()))]
//! fn func_task() -> i32 {
//!     99
//! }
//!
//! #[task(target = "{date:%A}/{task_name}.bin", checkpoint,
//!        result = LocalResult::new(DIR.get().unwrap()))]
//! fn weekly() -> Vec<String> {
//!     vec!["runs only when today's file does not exist yet".into()]
//! }
//!
//! let tmp = tempfile::tempdir().unwrap();
//! DIR.set(tmp.path().to_owned()).unwrap();
//!
//! assert_eq!(add(1, 2), 3);
//! assert!(add::run(1, 2).is_cached()); // the body did not run again
//! assert_eq!(add_fmt(1, 2, true), add_fmt(1, 2, false)); // `as_string` is not compared
//! assert_eq!(prices().len(), 3);
//! assert_eq!(fetch::run("https://example.com".into()).run_count(), 2);
//!
//! let run = daily::run(10, "fast".into());
//! assert_eq!(run.task_runs().len(), 2);
//! assert_eq!(run.into_output(), 22);
//!
//! let state = func_task::run();
//! assert!(tmp.path().join(state.location().unwrap().as_str()).exists());
//! assert!(!weekly::run().is_cached());
//! assert!(weekly::run().is_cached()); // today's file exists
//! ```
//!
//! `cargo run --example quickstart` in the repository runs a longer tour.
//!
//! # Tasks
//!
//! Calling a task returns what its body returns. Next to the function, `#[task]` defines
//! a type of the same name: `add::spec()` is the task's settings (a [`TaskSpec`]) and
//! `add::run(1, 2)` returns the final [`State`] of the run: its [`StateKind`] (Pending,
//! Running, Success, Cached, Failed, Retrying), message, output or [`Failure`], and
//! history. `async fn` tasks work the same way, awaited. `cargo expand` shows the
//! generated code.
//!
//! | `#[task(...)]` argument | meaning |
//! |---|---|
//! | `name = "…"` | the task's name (default: the function's name); written out, it is also the cache key, so tasks of one `name` share outputs |
//! | `cache_for = "1h"` | cache successful outputs this long: `"30s"`, `"15m"`, `"1h30m"`, `"2days"` |
//! | `cache_validator = …` | `duration_only` (default), `never_use`, `all_inputs`, `all_parameters`, `partial_inputs_only(a, b)`, `partial_parameters_only(a, b)`, or the path of your own `fn(&Cached, &HashedInputs, &Parameters) -> bool` |
//! | `cache_key = "…"` | store outputs under this key instead of the default (the function's path, `my_crate::module::load`, or the `name` written out); every task naming it shares them |
//! | `max_retries = 3`, `retry_delay = "2s"` | run a failed body again with the same inputs; `max_retries` needs a `retry_delay` (`"0s"` retries at once), as in Prefect |
//! | `result = LocalResult::new("~/.taskcache")` | where outputs are persisted (any expression of a [`ResultBackend`](results::ResultBackend) type, evaluated once) |
//! | `checkpoint` / `checkpoint = false` | write every successful output through the `result` |
//! | `target = "{date:%A}/{task_name}.bin"` | skip the body when the result holds a valid file there; needs `result` and `checkpoint` |
//!
//! The documentation of [`macro@task`] has a runnable example of each argument.
//!
//! Every mistake is a compile error at the offending token: an unknown or repeated
//! argument, a value of the wrong kind (`cache_for = 3600`, `name = my_task`,
//! `checkpoint = yes`: the message shows what to write), a malformed duration, a validator
//! naming an argument the function lacks, `cache_validator` or `cache_key` without
//! `cache_for`, a `const fn` or `unsafe fn`, a `self` receiver, `&mut`, destructured or
//! `impl Trait` arguments, an `impl Trait` output, an argument that is not
//! `serde::Serialize`, a cached output that is not `Clone + Send + Sync + 'static` (of a
//! `Result<T, E>`, only `T` must be). `#[task]` and `#[flow]` go on free functions: in an
//! `impl` block the compiler refuses the type the macro defines ("struct is not supported
//! in `trait`s or `impl`s"); write the task beside the block. That type has the
//! function's name, so a module or type of the same name in the same module clashes with
//! it (E0428, "defined multiple times"): rename one.
//!
//! # Output caching
//!
//! A successful output of a task with `cache_for` is kept in process memory under its
//! `cache_key`: by default the function's path (`my_crate::module::load`), so that two
//! tasks called `load` in two modules never share outputs, or the `name` written out. A
//! later call tries the kept candidates with the task's validator; the first valid one is
//! returned as `Cached` and the body does not run. Expired candidates are pruned; failures
//! are never cached (of a `Result<T, E>` output, the cache keeps the `T` of an `Ok`, so
//! `E` needs nothing). Concurrent calls with the same key and inputs compute once and the
//! others wait for that result; no global lock is held while a body runs.
//!
//! **Validators** ([`CacheValidator`], [`validators`]) decide which unexpired candidate may
//! serve a call: `duration_only` (the default: any), `never_use` (none), `all_inputs`
//! (equal arguments), `all_parameters` (a flow run with equal parameters),
//! `partial_inputs_only(a, b)` and `partial_parameters_only(a, b)` (only the named ones
//! equal), or a function of your own with the signature
//! [`ValidatorFn`](validators::ValidatorFn), `fn(&Cached, &HashedInputs<'_>, &Parameters)
//! -> bool`. It receives the candidate's [`Cached`] record (`expiration`,
//! `hashed_inputs`, `parameters`, `cache_key`, `created`), the current [`HashedInputs`]
//! and [`Parameters`], and runs in the task's context:
//!
//! ```
//! use taskcache::prelude::*;
//! use taskcache::{hash_input, Cached, HashedInputs, Parameters};
//!
//! /// Valid while the current `threshold` is at most the recorded one.
//! fn not_stricter(candidate: &Cached, inputs: &HashedInputs<'_>, _: &Parameters) -> bool {
//!     // Inputs are digests: compare them with the digest of a value.
//!     let lenient = hash_input(&0u32).unwrap();
//!     inputs.get("threshold") == Some(&lenient) || candidate.hashed_inputs.same_as(inputs)
//! }
//!
//! #[task(cache_for = "1h", cache_validator = not_stricter)]
//! fn outliers(threshold: u32) -> usize {
//!     10usize.saturating_sub(threshold as usize)
//! }
//!
//! assert_eq!(outliers(3), 7);
//! assert_eq!(outliers(3), 7); // the same inputs: valid
//! assert_eq!(outliers(0), 7); // threshold 0 accepts any cached output
//! assert_eq!(outliers(4), 6); // another threshold: computed
//! ```
//!
//! **Expiry and clocks.** The runtime checks the expiration before any validator, by the
//! context's [`Clock`]: the system clock by default, a [`ManualClock`] in tests.
//!
//! ```
//! use std::time::Duration;
//! use taskcache::prelude::*;
//!
//! #[task(cache_for = "1h")]
//! fn report() -> u32 {
//!     42
//! }
//!
//! let start = chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z").unwrap();
//! let clock = ManualClock::new(start.to_utc());
//! Context::current().with_clock(clock.clock()).scope(|| {
//!     assert!(!report::run().is_cached());
//!     clock.advance(Duration::from_secs(3599));
//!     let state = report::run();
//!     assert!(state.is_cached());
//!     let expiration = start.to_utc() + chrono::Duration::hours(1);
//!     assert_eq!(state.cached().unwrap().expiration, Some(expiration));
//!     clock.advance(Duration::from_secs(1));
//!     assert!(!report::run().is_cached()); // expired at exactly `cache_for`
//! });
//! ```
//!
//! **Input hashing.** Each argument is hashed with SHA-256 by streaming its serde
//! serialization into the hasher ([`hash_input`]). The digest depends on the value alone:
//! the same in every process and on every platform, and equal for equal maps whatever
//! their iteration order. A `Cached` state records one digest per argument (what
//! `partial_inputs_only` compares); an `all_inputs` lookup looks all the arguments up
//! together: by their encoding itself when it is short (no SHA-256 on a hit), else by
//! its one digest. Byte arguments (`Vec<u8>`, `[u8]`) are hashed in bulk
//! ([`hash_bytes`], the same digest). A `HashSet` hashes in its iteration order (serde
//! sends sets as sequences): use a `BTreeSet` for a set argument.
//!
//! # Retries
//!
//! A body fails when it panics or returns `Err`: the return type is a `Result`, whatever
//! it is called (an alias, `io::Result`, a re-export under another name), and the
//! failure's message is the error's `Display` text, else its `Debug` text. With retries
//! left, the run is `Retrying` and the body runs again after `retry_delay` with the same
//! inputs, kept encoded, so owned arguments do not need `Clone` (they need `Serialize +
//! Deserialize`; `&T` arguments are passed as they are). Once retries are spent, the call
//! returns the last `Err` or panics again, and `run` returns the `Failed` state.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use taskcache::prelude::*;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Request {
//!     url: String,
//! } // not `Clone`: each attempt gets the request decoded again
//!
//! #[task(max_retries = 2, retry_delay = "0s")]
//! fn send(request: Request) -> Result<usize, std::io::Error> {
//!     let ctx = taskcache::context::current();
//!     if ctx.task_run_count() < 3 {
//!         return Err(std::io::Error::other(format!("{}: timed out", request.url)));
//!     }
//!     Ok(request.url.len())
//! }
//!
//! let state = send::run(Request { url: "https://example.com".into() });
//! assert!(state.is_successful());
//! assert_eq!(state.run_count(), 3);
//! for record in state.history() {
//!     println!("{:?}: {}", record.kind, record.message); // Running, Retrying, …, Success
//! }
//! ```
//!
//! # Flows and the context
//!
//! A [`#[flow]`](macro@flow) function's arguments are its parameters; the tasks it calls
//! see them and report their final states to the [`FlowRun`] its `run` returns.
//! [`Flow`] builds the same run without the macro. [`context::current()`] gives Prefect's
//! context inside a task and inside a custom validator: `date`, `today`, `yesterday`,
//! `tomorrow` and their `_nodash` forms, `flow_name`, `flow_run_id`,
//! `scheduled_start_time`, `parameters`, `task_name`, `task_full_name`,
//! `task_run_count`, `map_index`.
//!
//! ```
//! use taskcache::prelude::*;
//!
//! #[task]
//! fn where_am_i() -> String {
//!     let ctx = taskcache::context::current();
//!     format!("{} in {} on {}", ctx.task_name().unwrap(), ctx.flow_name().unwrap(), ctx.today())
//! }
//!
//! #[flow]
//! fn nightly(region: String) -> String {
//!     let parameters = taskcache::context::current().parameters().clone();
//!     assert_eq!(parameters.value::<String>("region"), Some(region));
//!     where_am_i()
//! }
//!
//! let monday = chrono::DateTime::parse_from_rfc3339("2026-11-23T23:00:00Z").unwrap();
//! let run = Context::current().with_date(monday.to_utc()).scope(|| nightly::run("eu".into()));
//! assert_eq!(run.task_runs()[0].kind, StateKind::Success);
//! assert_eq!(run.into_output(), "where_am_i in nightly on 2026-11-23");
//! ```
//!
//! # Persisting output
//!
//! **Results.** A task's `result` is where its outputs are stored ([`results`]):
//! [`LocalResult::new(dir)`](results::LocalResult) stores values as files under `dir`
//! (`~` is your home), bincode-encoded by default;
//! `.with_serializer(JsonSerializer)` writes JSON,
//! `.with_serializer(Zstd::new(BincodeSerializer))` compresses (feature `zstd`, on by
//! default). `.with_location("{task_name}/{today}.bin")` picks the file name; without it
//! each write gets a fresh unique one, `<task>/<UTC timestamp>-<uuid>.bin`.
//! [`MemoryResult::new()`](results::MemoryResult) keeps results in process memory (tests,
//! single-process targets). The `result` expression is evaluated once, on the task's first
//! run: inline, a function, a `static` or a `const`. The output type must be
//! `Serialize + Deserialize`.
//!
//! **Checkpointing.** A task with `checkpoint` and a `result` writes each successful
//! output ([`State::location`] says where). If the write fails (permission denied, disk
//! full) the error, naming the task and the path, is on the state
//! ([`State::persist_error`]) and in the log, and the computed value is still returned;
//! nothing partial is left behind.
//!
//! ```
//! use std::sync::OnceLock;
//! use taskcache::prelude::*;
//! use taskcache::results::{JsonSerializer, ResultBackendExt};
//!
//! static DIR: OnceLock<std::path::PathBuf> = OnceLock::new(); // `~/.taskcache` in a program
//!
//! fn results() -> LocalResult<JsonSerializer> {
//!     LocalResult::new(DIR.get().unwrap())
//!         .with_location("{task_name}/{today}.json")
//!         .with_serializer(JsonSerializer)
//! }
//!
//! #[task(checkpoint, result = results())]
//! fn regions() -> Vec<String> {
//!     vec!["eu".into(), "us".into()]
//! }
//!
//! let tmp = tempfile::tempdir().unwrap();
//! DIR.set(tmp.path().to_owned()).unwrap();
//! let monday = chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z").unwrap();
//! let state = Context::current().with_date(monday.to_utc()).scope(regions::run);
//! let at = state.location().unwrap();
//! assert_eq!(at.as_str(), "regions/2026-11-23.json");
//! assert!(tmp.path().join("regions/2026-11-23.json").is_file());
//! assert_eq!(results().read::<Vec<String>>(at).unwrap(), ["eu", "us"]);
//! ```
//!
//! **The global switch.** `TASKCACHE_CHECKPOINTING` in the environment (or
//! [`set_checkpointing`] for the process, or [`Context::with_checkpointing`] for a scope)
//! decides for everything: `false` turns all persistence off (checkpoints, targets,
//! persisted caches), say for unit tests; `true` checkpoints every task that has a
//! `result` unless it says `checkpoint = false`; unset, each task's own `checkpoint`
//! decides. **This differs from Prefect Core**, whose global `flows.checkpointing`
//! setting defaults to off and then silently ignores `checkpoint=True` in a local run, a
//! trap many Prefect users have reported: here a task that says `checkpoint` is
//! checkpointed unless you turn persistence off.
//!
//! **Targets.** With a `target`, the task first renders it; if the result holds a valid
//! file there the state is `Cached` with the stored value ("Result found at task target
//! …") and the body does not run, in this process or any later one. Otherwise the body
//! runs and its output is written there. Concurrent runs, threads or processes, asking for
//! the same missing target take a lock on it, so the body runs once and the others read
//! its file.
//!
//! ```
//! use std::sync::OnceLock;
//! use taskcache::prelude::*;
//!
//! static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
//!
//! #[task(target = "{date:%A}/{task_name}.bin", checkpoint,
//!        result = LocalResult::new(DIR.get().unwrap()))]
//! fn weekly() -> Vec<u32> {
//!     vec![1, 2, 3]
//! }
//!
//! let tmp = tempfile::tempdir().unwrap();
//! DIR.set(tmp.path().to_owned()).unwrap();
//! let monday = chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z").unwrap();
//! Context::current().with_date(monday.to_utc()).scope(|| {
//!     assert_eq!(weekly::run().kind(), StateKind::Success);
//!     assert!(tmp.path().join("Monday/weekly.bin").is_file());
//!     let again = weekly::run();
//!     assert!(again.is_cached());
//!     assert_eq!(again.message(), "Result found at task target Monday/weekly.bin.");
//! });
//! ```
//!
//! **Templates.** Placeholders are `{name}` or `<name>`, with a strftime format for dates
//! (`{date:%A}`, `<date:%Y/%m/%d>`); doubled delimiters are literal. Names are the context
//! keys (`date`, `today`, `yesterday`, `tomorrow` and the `_nodash` forms, `flow_name`,
//! `flow_run_id`, `scheduled_start_time`, `task_name`, `task_full_name`, `task_run_count`,
//! `map_index`; `date` and `scheduled_start_time` take a strftime format), the flow's
//! parameters and the task's own arguments, which win over a context key or parameter of
//! the same name. Every argument is available to every template, however the result was
//! built (inline, by a function, in a `static` or a `const`): it renders with `Display`
//! when its type has it, else through serde when it is a scalar (a number, `bool`,
//! `char`, string, unit enum variant, or a newtype or `Some` of one). An argument named in
//! a template written inside `#[task(...)]` must implement `Display`, checked at compile
//! time. A malformed template or strftime format is a compile error at the attribute; a
//! name that is none of these is a runtime error that lists what is available. A rendered
//! path stays inside the result's directory: `..`, an absolute path or a NUL byte is an
//! error, never a read or write outside, and so is an argument whose value would leave an
//! empty, `.` or `..` path component (`""`, `"."`, `"x/"` in `loc/{name}`): the error
//! names the argument.
//!
//! ```
//! use serde::Serialize;
//! use std::sync::OnceLock;
//! use taskcache::prelude::*;
//!
//! static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
//!
//! #[derive(Serialize)]
//! enum Region {
//!     Emea,
//! } // no `Display`: rendered through serde, as a unit variant
//!
//! fn by_region() -> LocalResult {
//!     LocalResult::new(DIR.get().unwrap()).with_location("{region}/{task_name}.bin")
//! }
//!
//! #[task(checkpoint, result = by_region())]
//! fn sales(region: Region) -> u64 {
//!     match region {
//!         Region::Emea => 1_000,
//!     }
//! }
//!
//! #[task(target = "{scheduled_start_time:%Y-%m-%dT%H}/{job}.bin", checkpoint,
//!        result = LocalResult::new(DIR.get().unwrap()))]
//! fn hourly(job: String) -> u64 {
//!     job.len() as u64
//! }
//!
//! let tmp = tempfile::tempdir().unwrap();
//! DIR.set(tmp.path().to_owned()).unwrap();
//! assert_eq!(sales::run(Region::Emea).location().unwrap().as_str(), "Emea/sales.bin");
//!
//! let slot = chrono::DateTime::parse_from_rfc3339("2026-11-23T07:00:00Z").unwrap().to_utc();
//! let run = Flow::new("hourly").scheduled_start_time(slot).run(|| hourly::run("load".into()));
//! assert_eq!(run.into_output().location().unwrap().as_str(), "2026-11-23T07/load.bin");
//!
//! // A value that would leave the directory is refused, naming the argument.
//! let escape = || hourly::run("../../etc/passwd".into());
//! let state = Flow::new("hourly").scheduled_start_time(slot).run(escape).into_output();
//! assert!(state.is_failed());
//! assert!(state.message().contains("`job`"), "{}", state.message());
//! ```
//!
//! **`None` is never stored**, as in Prefect: a task whose output is an `Option` that is
//! `None` writes no checkpoint, and a `None` does not satisfy its target, so the body runs
//! again next time. (A `()` output is a value and is stored.)
//!
//! ```
//! use std::sync::LazyLock;
//! use taskcache::prelude::*;
//!
//! static RESULTS: LazyLock<MemoryResult> = LazyLock::new(MemoryResult::new);
//!
//! #[task(target = "latest.bin", checkpoint, result = RESULTS.clone())]
//! fn latest() -> Option<u32> {
//!     None // nothing yet
//! }
//!
//! let state = latest::run();
//! assert_eq!(state.value(), Some(&None));
//! assert_eq!(state.location(), None); // nothing written
//! assert!(!latest::run().is_cached()); // so the body runs again
//! ```
//!
//! **Output caches across processes.** With `cache_for`, `checkpoint` and a persistent
//! result (a `LocalResult`), the `Cached` record (expiration, hashed inputs and
//! parameters, the result's location and the SHA-256 of the payload stored there) is
//! stored beside the result, so a fresh process honours a cache an earlier one made, and
//! `cache_key` sharing works across processes too. Processes racing on the same inputs
//! run the body once: the one computing holds a lock on the record to be, and the others
//! wait for it and read it.
//!
//! ```
//! use std::sync::OnceLock;
//! use taskcache::prelude::*;
//! use taskcache::OutputCache;
//!
//! static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
//!
//! #[task(cache_for = "1h", cache_validator = all_inputs, checkpoint,
//!        result = LocalResult::new(DIR.get().unwrap()))]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let tmp = tempfile::tempdir().unwrap();
//! DIR.set(tmp.path().to_owned()).unwrap();
//! assert!(!square::run(3).is_cached());
//! // An empty in-memory cache, as in a new process: the record on disk serves the call.
//! Context::current().with_cache(OutputCache::new()).scope(|| {
//!     assert!(square::run(3).is_cached());
//!     assert!(!square::run(4).is_cached());
//! });
//! ```
//!
//! # Async
//!
//! `async fn` tasks and flows work the same way, on any executor: their futures are `Send`
//! whenever their inputs and output are, so `tokio::spawn` takes them. The context is per
//! thread; [`Context::scope_async`] installs one for every poll of a future (an async
//! test's isolated cache or pinned date).
//!
//! ```
//! use taskcache::prelude::*;
//! use taskcache::OutputCache;
//!
//! #[task(cache_for = "1h")]
//! async fn today() -> String {
//!     taskcache::context::current().today()
//! }
//!
//! let monday = chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z").unwrap();
//! let scoped = Context::current()
//!     .with_cache(OutputCache::new())
//!     .with_date(monday.to_utc())
//!     .scope_async(async { today().await });
//! assert_eq!(pollster::block_on(scoped), "2026-11-23");
//! ```
//!
//! # Threads
//!
//! A new thread starts with the default context; [`context::spawn`] starts one in the
//! caller's, so that tasks in it see the flow and report to it.
//!
//! ```
//! use taskcache::prelude::*;
//!
//! #[task]
//! fn work(part: u32) -> u32 {
//!     part * 10
//! }
//!
//! let run = Flow::new("parallel").run(|| {
//!     let handles: Vec<_> = (0..3).map(|i| taskcache::context::spawn(move || work(i))).collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum::<u32>()
//! });
//! assert_eq!(run.task_runs().len(), 3); // every thread's task reported to the flow
//! assert_eq!(run.into_output(), 30);
//! ```
//!
//! # Testing
//!
//! Tests share the process: give each one an isolated [`OutputCache`], a [`ManualClock`]
//! to move time, `Context::with_checkpointing(false)` to turn persistence off (or a
//! temporary directory for the results a test means to write), all for one scope.
//!
//! ```
//! use std::time::Duration;
//! use taskcache::prelude::*;
//! use taskcache::OutputCache;
//!
//! #[task(cache_for = "1h", checkpoint, result = LocalResult::new("~/.taskcache"))]
//! fn load() -> u32 {
//!     7
//! }
//!
//! let start = chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z").unwrap();
//! let clock = ManualClock::new(start.to_utc());
//! Context::current()
//!     .with_cache(OutputCache::new()) // sees no other test's outputs
//!     .with_clock(clock.clock()) // expiry under control
//!     .with_checkpointing(false) // nothing written to ~/.taskcache
//!     .scope(|| {
//!         let state = load::run();
//!         assert_eq!(state.location(), None);
//!         assert!(load::run().is_cached());
//!         clock.advance(Duration::from_secs(3600));
//!         assert!(!load::run().is_cached());
//!     });
//! ```
//!
//! # Logging
//!
//! One `tracing` event per task run with its final state and why (a hit; a miss and why
//! the cache was invalid; retry n of m). Install any `tracing` subscriber to see them.
//!
//! # What taskcache guarantees about its files
//!
//! What SQLite and redb promise about theirs: no wrong answer, whatever happens to the
//! process or the bytes.
//!
//! - **Crash safety.** Every file starts with a header (magic, format version, serializer
//!   id, a fingerprint of the Rust type, the payload length and its SHA-256) and is
//!   written to a temporary file in the same directory, synced, renamed into place and
//!   the directory synced: a process killed at any moment leaves each location with its
//!   old value or its new one, never part of one. A killed writer's temporary file is
//!   removed by the next process that writes into that directory.
//! - **Verified reads.** Every result and every cache record is checked (header, length,
//!   SHA-256) before it is decoded. A damaged, truncated, extended or foreign file is a
//!   miss with a warning: the task recomputes and overwrites it. A record is used only if
//!   the file it names still holds the very payload it describes.
//! - **Bounded decoding.** A crafted length never allocates what it claims, and a value
//!   nested deeper than 128 levels is refused rather than overflowing the stack.
//! - **No hangs.** Only regular files are read, and every file is opened without
//!   blocking; a task called from the body of a task that holds its single-flight slot or
//!   lock runs without it instead of waiting for its own caller.
//! - **Single-flight.** Threads and processes asking for the same missing target, or the
//!   same inputs of a persisted `cache_for` task, run the body once.
//! - **Faults.** A full disk or a read-only directory ends the run in `Success` with the
//!   value and `persist_error()` set; nothing partial is left behind.
//! - **No panics on user values.** Any argument value renders into a path or is refused
//!   with an error naming it; durations are capped at compile time (100 000 years) and
//!   every date computation saturates.
//!
//! Symbolic links inside a result directory are followed, also out of it: the directory
//! is trusted to be yours. Do not point a result at a directory others can write to.
//!
//! # Where taskcache differs from Prefect Core
//!
//! In short (the README has the full list): a fresh successful run of a task with
//! `cache_for` is `Success`, and only a run served from the cache is `Cached`, so
//! `is_cached()` always means the body did not run; cached outputs are visible as soon as
//! a task run ends, and tasks work outside any flow; concurrent runs with the same inputs
//! compute once; expiry is checked before any validator; `checkpoint` is honoured unless
//! persistence is turned off globally; a failed checkpoint write leaves the run in
//! `Success` with `persist_error()` set; retries wait inside the call instead of being
//! scheduled by a flow runner, and a failed attempt goes straight to `Retrying`; result
//! files are written atomically, verified when read, and must stay inside the result's
//! directory; a damaged target or checkpoint is recomputed; a large file already
//! verified is not hashed again while unchanged; expiry is read from the coarse realtime
//! clock (an output may be served a few milliseconds past its expiration); durations are
//! at most 100 000 years; only `Option::None` counts as `None`; default locations are
//! `<task>/<UTC timestamp>-<uuid>.bin` and values are bincode-encoded (Prefect: pickle);
//! the context has no `flow_run_name`, `task_slug` or `task_tags`, and each parameter is
//! a key of its own.
//!
//! # Crates
//!
//! This crate re-exports the runtime (`taskcache-core`: states, context, flows,
//! validators, hashing, the output cache), the result backends (`taskcache-results`, as
//! [`results`]) and the macros (`taskcache-macros`). Use them through `taskcache::…`
//! paths; [`prelude`] holds the names most programs need.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use taskcache_macros::{flow, task};

pub use taskcache_core::builder::{self, BuildError, BuiltTask, Task, TaskBuilder};
pub use taskcache_core::context::{self, Clock, Context, ManualClock};
pub use taskcache_core::flow::{resume, Flow, FlowRun, Resume, TaskRunReport, STATE_ENV};
pub use taskcache_core::hash::{hash_bytes, hash_input, HashError, InputDigest};
pub use taskcache_core::parameters::{Parameter, ParameterError, Parameters};
pub use taskcache_core::state::{
    Cached, Failure, HashedInputs, PauseSignal, State, StateKind, StateRecord,
};
pub use taskcache_core::state_store;

/// Drops every output cached in memory: the process-wide cache's, and the current
/// context's if a scope set another. Persisted records and result files stay (use a
/// task's `invalidate()`, or the `taskcache` command, for those).
pub fn clear() {
    OutputCache::global().clear();
    Context::current().cache().clear();
}
pub use taskcache_core::store::{
    memory_budget, set_memory_budget, MemoryBudget, MissReason, OutputCache, MEMORY_BUDGET_ENV,
};
pub use taskcache_core::task::{TaskSpec, Trigger};
pub use taskcache_core::validators::{self, CacheValidator};

pub use taskcache_core::persist::{checkpointing, set_checkpointing, CHECKPOINTING_ENV};

/// Result backends and serializers: where checkpointed outputs and targets are stored.
pub mod results {
    pub use taskcache_results::*;
}

/// The names most programs need: `use taskcache::prelude::*;`.
pub mod prelude {
    pub use crate::context::{Clock, Context, ManualClock};
    pub use crate::results::{LocalResult, MemoryResult, ResultBackend, ResultBackendExt};
    pub use crate::{flow, task, CacheValidator, Flow, FlowRun, State, StateKind};
}

/// What the code generated by `#[task]` and `#[flow]` calls. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use taskcache_core::runtime::invalidate;
    pub use taskcache_core::runtime::{
        result, template_input, ArgumentText, Ended, Ending, RenderWithDisplay, RenderWithNothing,
        RenderWithSerde, ResultCell, TaskRun,
    };
    pub use taskcache_core::task::{
        CachedAsSuccess, CachedWhole, FailsWithDebug, FailsWithDisplay, FailsWithoutText,
        NeverFails, OutputType, PersistedAsSuccess, PersistedWhole,
    };

    use serde::Serialize;
    use taskcache_core::hash::{HashError, InputHasher};

    /// The bound on every argument of a task that caches its output.
    #[diagnostic::on_unimplemented(
        message = "task argument `{Self}` does not implement `serde::Serialize`",
        label = "this argument is hashed to key the task's cache",
        note = "derive `serde::Serialize` for the type, or take the argument by reference to a type that has it"
    )]
    pub trait TaskInput {
        /// Hands the argument to the hasher.
        fn hash_into(&self, hasher: &mut InputHasher) -> Result<(), HashError>;
    }

    impl<T: Serialize + ?Sized> TaskInput for T {
        #[inline]
        fn hash_into(&self, hasher: &mut InputHasher) -> Result<(), HashError> {
            hasher.input(self)
        }
    }

    /// A task argument on its way to the hasher: `(&&Arg(x)).hash_arg(hasher)` picks
    /// [`HashAsBytes`] for a run of bytes, else [`HashWithSerde`].
    pub struct Arg<'a, T: ?Sized>(pub &'a T);

    /// Runs of bytes (`Vec<u8>`, `[u8]`, `Box<[u8]>`) are hashed in bulk, to the same
    /// digest as serde's byte-at-a-time encoding gives.
    pub trait HashAsBytes {
        /// Hands the argument to the hasher.
        fn hash_arg(self, hasher: &mut InputHasher) -> Result<(), HashError>;
    }

    macro_rules! bytes_in_bulk {
        ($($ty:ty),*) => {$(
            impl HashAsBytes for &&Arg<'_, $ty> {
                #[inline]
                fn hash_arg(self, hasher: &mut InputHasher) -> Result<(), HashError> {
                    hasher.input_bytes(self.0);
                    Ok(())
                }
            }
        )*};
    }
    bytes_in_bulk!(Vec<u8>, [u8], Box<[u8]>);

    /// Any other argument is hashed through serde.
    pub trait HashWithSerde {
        /// The argument's type.
        type Input: ?Sized;
        /// Hands the argument to the hasher.
        fn hash_arg(self, hasher: &mut InputHasher) -> Result<(), HashError>
        where
            Self::Input: TaskInput;
    }

    impl<T: ?Sized> HashWithSerde for &Arg<'_, T> {
        type Input = T;
        #[inline]
        fn hash_arg(self, hasher: &mut InputHasher) -> Result<(), HashError>
        where
            T: TaskInput,
        {
            hash_input(hasher, self.0)
        }
    }

    /// Hashes one task argument.
    #[inline]
    pub fn hash_input<T: TaskInput + ?Sized>(
        hasher: &mut InputHasher,
        value: &T,
    ) -> Result<(), HashError> {
        value.hash_into(hasher)
    }

    /// The bound on every argument of a flow.
    #[diagnostic::on_unimplemented(
        message = "flow parameter `{Self}` does not implement `serde::Serialize`",
        label = "the arguments of a flow are its parameters, which validators compare and templates read",
        note = "derive `serde::Serialize` for the type"
    )]
    pub trait FlowParameter: Serialize {}

    impl<T: Serialize + ?Sized> FlowParameter for T {}

    /// Passes a flow argument on as a parameter.
    #[inline]
    pub fn parameter<T: FlowParameter + ?Sized>(value: &T) -> &T {
        value
    }
}
