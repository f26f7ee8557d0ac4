//! The `#[task]` and `#[flow]` attribute macros of taskcache.
//!
//! Use them through the `taskcache` crate (`use taskcache::prelude::*;`), whose
//! documentation tells the whole story; the documentation of [`macro@task`] and
//! [`macro@flow`] describes every argument, each with an example.
//!
//! Each macro parses its arguments (`attr.rs`), reads the function (`model.rs`), checks
//! the two against each other (`valid.rs`) and only then emits code (`expand.rs`).
//! Every mistake is a compile error at the token that caused it.

#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use syn::parse_macro_input;

mod attr;
mod duration;
mod expand;
mod model;
// The template parser is shared with the runtime, which renders what this checks: one
// grammar, one implementation. It depends on std and chrono only.
#[path = "../../cache-core/src/template/parse.rs"]
mod template;
mod valid;

/// Makes a function a task: Prefect's output caching with validators, retries that run
/// the body again with the inputs of the failed attempt, checkpointed results and target
/// files, each turned on by an argument.
///
/// ```
/// use taskcache::prelude::*;
///
/// #[task(cache_for = "1h", cache_validator = all_inputs)]
/// fn add(x: i64, y: i64) -> i64 {
///     x + y
/// }
///
/// assert_eq!(add(1, 2), 3); // the body runs
/// let state = add::run(1, 2); // the final state, for callers who want to know more
/// assert!(state.is_cached()); // a valid cached output was used: the body did not run
/// assert_eq!(state.into_output(), 3);
/// ```
///
/// # What the macro generates
///
/// Calling the function returns what the body returns. Next to the function, the macro
/// defines a type of the same name (in the type namespace only):
///
/// - `add::spec()` is the task's settings, a `&'static taskcache::TaskSpec` (`name()`,
///   `cache_key()`, `cache_for()`, `cache_validator()`, `max_retries()`, …);
/// - `add::run(1, 2)` runs the task and returns its final `taskcache::State<i64>`: its
///   kind (`Success`, `Cached` or `Failed`; a run goes through `Running` and, between
///   attempts, `Retrying`), its message, the output or the failure, the history of the
///   run (`history()`), the `Cached` record of a task with `cache_for` (`cached()`), and
///   where the output was read or written (`location()`, `persist_error()`).
///
/// An `async fn` is a task too: calling it and its `run` are awaited, on any executor.
///
/// ```
/// use taskcache::prelude::*;
/// # fn block_on<F: std::future::Future>(future: F) -> F::Output {
/// #     struct Unpark(std::thread::Thread);
/// #     impl std::task::Wake for Unpark {
/// #         fn wake(self: std::sync::Arc<Self>) { self.0.unpark() }
/// #     }
/// #     let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut future = std::pin::pin!(future);
/// #     loop {
/// #         if let std::task::Poll::Ready(v) = future.as_mut().poll(&mut cx) { return v; }
/// #         std::thread::park();
/// #     }
/// # }
///
/// #[task(cache_for = "1h", cache_validator = all_inputs)]
/// async fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// // `block_on` stands for any executor: tokio, async-std, pollster, …
/// block_on(async {
///     assert_eq!(double(4).await, 8);
///     assert!(double::run(4).await.is_cached());
/// });
/// ```
///
/// `cargo expand` shows the generated code. `#[task]` goes on a free function: in an
/// `impl` block the compiler refuses the type the macro defines ("struct is not supported
/// in `trait`s or `impl`s"); write the task beside the block. That type has the
/// function's name, so a module or type of the same name in the same module clashes with
/// it (E0428, "defined multiple times"): rename one.
///
/// # Arguments
///
/// | argument | meaning |
/// |---|---|
/// | `name = "…"` | the task's name (default: the function's name); written out, it is also the cache key, so tasks of one `name` share outputs |
/// | `cache_for = "1h"` | cache successful outputs this long: `"30s"`, `"15m"`, `"1h30m"`, `"2days"` |
/// | `cache_validator = …` | `duration_only` (default), `never_use`, `all_inputs`, `all_parameters`, `partial_inputs_only(a, b)`, `partial_parameters_only(a, b)`, or the path of your own `fn(&Cached, &HashedInputs, &Parameters) -> bool` |
/// | `cache_key = "…"` | store outputs under this key instead of the default (the function's path, `my_crate::module::load`, or the `name` written out); every task naming it shares them |
/// | `max_retries = 3`, `retry_delay = "2s"` | run a failed body again with the same inputs; `max_retries` needs a `retry_delay` (`"0s"` retries at once), as in Prefect |
/// | `result = LocalResult::new("~/.taskcache")` | where outputs are persisted (any expression of a `ResultBackend` type, evaluated once) |
/// | `checkpoint` / `checkpoint = false` | write every successful output through the `result` |
/// | `target = "{date:%A}/{task_name}.bin"` | skip the body when the result holds a valid file there; needs `result` and `checkpoint` |
/// | `trigger = manual_only` | when the task may run: `all_successful` (default), `all_finished` / `always_run`, `any_failed` (only after an earlier task run of the flow run failed), `manual_only` (never on its own: the call ends `Paused` with its inputs persisted, and unwinds its flow run until `taskcache::resume(run_id).approve("task")`; its owned arguments must be `Serialize + Deserialize`) |
///
/// Arguments are separated by commas, in any order. Every mistake is a compile error at
/// the offending token: an unknown or repeated argument, a value of the wrong kind
/// (`cache_for = 3600`, `name = my_task`, `checkpoint = yes`: the message shows what to
/// write), a malformed duration, a validator naming an argument the function lacks,
/// `cache_validator` or `cache_key` without `cache_for`, `max_retries` without
/// `retry_delay` or the other way round, `checkpoint` or `target` without `result`, a
/// malformed template, a `const fn` or `unsafe fn`, a `self` receiver, `&mut`,
/// destructured or `impl Trait` arguments, an `impl Trait` output, an argument that is not
/// `serde::Serialize`, a cached output that is not `Clone + Send + Sync + 'static` (of a
/// `Result<T, E>`, only `T` must be).
///
/// ```compile_fail
/// use taskcache::prelude::*;
///
/// // error: `cache_for` takes a duration as a string, with its unit:
/// // write `cache_for = "3600s"` (3600 seconds), …
/// #[task(cache_for = 3600)]
/// fn slow() -> u32 {
///     1
/// }
/// ```
///
/// ## `name`
///
/// The task's name: the `task_name` of the context and of templates, and the name in flow
/// reports and log events. It defaults to the function's name. A `name` written out is
/// also the cache key (unless `cache_key` says otherwise), so tasks of one name share
/// their outputs.
///
/// ```
/// use taskcache::prelude::*;
///
/// #[task(name = "load_prices", cache_for = "1h")]
/// fn load() -> Vec<f64> {
///     assert_eq!(taskcache::context::current().task_name(), Some("load_prices"));
///     vec![101.5, 99.25]
/// }
///
/// #[task(name = "load_prices", cache_for = "1h")]
/// fn load_again() -> Vec<f64> {
///     unreachable!("served from the output `load` cached under the name")
/// }
///
/// assert_eq!(load::spec().name(), "load_prices");
/// assert_eq!(load::spec().cache_key(), "load_prices");
/// assert_eq!(load(), [101.5, 99.25]);
/// assert_eq!(load_again(), [101.5, 99.25]);
/// ```
///
/// ## `cache_for`
///
/// How long a successful output stays cached, as a string with units (`"30s"`, `"15m"`,
/// `"1h30m"`, `"2days"`), checked at compile time: longer than zero, at most 100 000
/// years. Outputs are kept in process memory under the task's cache key (with a
/// persistent `result` and `checkpoint`, also on disk: see `result`). A later call tries
/// the kept candidates with the task's validator; the first valid one is returned as
/// `Cached` and the body does not run. Expiry is checked by the context's clock before
/// any validator, and expired candidates are pruned.
///
/// Every argument must be `serde::Serialize`: it is hashed with SHA-256 for the
/// validators that compare inputs. The output must be `Clone + Send + Sync + 'static`.
/// Failures are never cached: of a `Result<T, E>` output, the cache keeps the `T` of an
/// `Ok`, so `E` needs nothing.
///
/// ```
/// use std::time::Duration;
/// use taskcache::prelude::*;
///
/// #[task(cache_for = "1h30m")]
/// fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
///     text.parse()
/// }
///
/// let nine = chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z").unwrap();
/// let clock = ManualClock::new(nine.to_utc());
/// Context::current().with_clock(clock.clock()).scope(|| {
///     assert!(parse::run("x").is_failed()); // an `Err` is a failure: never cached
///     assert_eq!(parse("42"), Ok(42)); // a success is cached…
///     clock.advance(Duration::from_secs(89 * 60));
///     // …and, with the default validator `duration_only`, serves any input until it expires
///     assert_eq!(parse("7"), Ok(42));
///     clock.advance(Duration::from_secs(60));
///     assert_eq!(parse("7"), Ok(7)); // 1h30m later: expired, the body runs again
/// });
/// ```
///
/// ## `cache_validator`
///
/// Which unexpired cached output may serve a call. Prefect's validators, by name:
///
/// - `duration_only` (the default): any, whatever the inputs and parameters;
/// - `never_use`: none (the output is still cached, for other tasks sharing the key);
/// - `all_inputs`: one made from equal arguments (compared by their SHA-256 digests);
/// - `all_parameters`: one made in a flow run with equal parameters;
/// - `partial_inputs_only(a, b)`: one made from equal `a` and `b`, whatever the other
///   arguments; the names are checked against the function at compile time;
/// - `partial_parameters_only(a, b)`: one made in a flow run with equal parameters `a`
///   and `b` (a parameter missing on both sides counts as equal);
/// - the path of a function of your own, `fn(&Cached, &HashedInputs<'_>, &Parameters) ->
///   bool` (`taskcache::validators::ValidatorFn`), which sees the candidate's record
///   (`expiration`, `hashed_inputs`, `parameters`, `cache_key`, `created`), the current
///   inputs and the current parameters, and runs in the task's context
///   (`taskcache::context::current()`). Expired candidates never reach it.
///
/// `duration_only` and `never_use`:
///
/// ```
/// use taskcache::prelude::*;
///
/// #[task(cache_for = "1h")] // `cache_validator = duration_only` is the default
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// #[task(cache_for = "1h", cache_validator = never_use)]
/// fn fresh(x: u64) -> u64 {
///     x * x
/// }
///
/// assert_eq!(square(3), 9);
/// assert_eq!(square(4), 9); // any unexpired output serves, as in Prefect
/// assert_eq!(fresh(3), 9);
/// assert!(!fresh::run(3).is_cached()); // the body always runs
/// ```
///
/// `all_inputs` and `partial_inputs_only`:
///
/// ```
/// use taskcache::prelude::*;
///
/// #[task(cache_for = "1h", cache_validator = all_inputs)]
/// fn add(x: i64, y: i64) -> i64 {
///     x + y
/// }
///
/// #[task(cache_for = "1d", cache_validator = partial_inputs_only(x, y))]
/// fn add_fmt(x: i64, y: i64, as_string: bool) -> String {
///     if as_string { format!("{x} + {y} = {}", x + y) } else { (x + y).to_string() }
/// }
///
/// assert_eq!(add(1, 2), 3);
/// assert!(add::run(1, 2).is_cached());
/// assert!(!add::run(2, 1).is_cached()); // other inputs: the body runs
///
/// assert_eq!(add_fmt(1, 2, true), "1 + 2 = 3");
/// assert_eq!(add_fmt(1, 2, false), "1 + 2 = 3"); // `as_string` is not compared
/// ```
///
/// `all_parameters` and `partial_parameters_only`, which compare the parameters of the
/// flow run the task runs in (see `#[flow]`):
///
/// ```
/// use taskcache::prelude::*;
///
/// #[task(cache_for = "1h", cache_validator = all_parameters)]
/// fn by_all() -> u32 {
///     1
/// }
///
/// #[task(cache_for = "1h", cache_validator = partial_parameters_only(nrows))]
/// fn by_nrows() -> u32 {
///     2
/// }
///
/// #[flow]
/// fn daily(nrows: u32, region: String) -> Vec<bool> {
///     vec![by_all::run().is_cached(), by_nrows::run().is_cached()]
/// }
///
/// assert_eq!(daily(10, "eu".into()), [false, false]);
/// assert_eq!(daily(10, "eu".into()), [true, true]); // the same parameters
/// assert_eq!(daily(10, "us".into()), [false, true]); // `region` differs
/// ```
///
/// A validator of your own:
///
/// ```
/// use std::time::Duration;
/// use taskcache::prelude::*;
/// use taskcache::{Cached, HashedInputs, Parameters};
///
/// /// An output serves only on the day it was made.
/// fn same_day(candidate: &Cached, _: &HashedInputs<'_>, _: &Parameters) -> bool {
///     candidate.created.date_naive() == taskcache::context::current().now().date_naive()
/// }
///
/// #[task(cache_for = "7days", cache_validator = same_day)]
/// fn forecast() -> String {
///     taskcache::context::current().today()
/// }
///
/// let nine = chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z").unwrap();
/// let clock = ManualClock::new(nine.to_utc());
/// Context::current().with_clock(clock.clock()).scope(|| {
///     assert_eq!(forecast(), "2026-11-23");
///     clock.advance(Duration::from_secs(6 * 3600));
///     assert!(forecast::run().is_cached()); // 15:00, the same day
///     clock.advance(Duration::from_secs(12 * 3600));
///     assert_eq!(forecast(), "2026-11-24"); // the next day: the body runs again
/// });
/// ```
///
/// ## `cache_key`
///
/// The key outputs are stored under. By default it is the function's path
/// (`my_crate::module::load`, so that two tasks called `load` in two modules never share
/// outputs), or the `name` written out. Every task naming the same `cache_key` shares the
/// outputs, which its validator then judges; the output types must be the same. Needs
/// `cache_for`.
///
/// ```
/// use taskcache::prelude::*;
///
/// #[task(cache_for = "1h", cache_key = "prices")]
/// fn prices() -> Vec<f64> {
///     vec![101.5, 99.25, 100.0] // an expensive download
/// }
///
/// #[task(cache_for = "1h", cache_key = "prices")]
/// fn prices_again() -> Vec<f64> {
///     unreachable!("the key is shared: `prices` filled it")
/// }
///
/// #[task(cache_for = "1h")]
/// fn load() -> u8 {
///     1
/// }
///
/// assert_eq!(prices(), prices_again());
/// assert_eq!(prices::spec().cache_key(), "prices");
/// assert!(load::spec().cache_key().ends_with("::load")); // the function's path
/// ```
///
/// ## `max_retries` and `retry_delay`
///
/// A body fails when it panics or returns `Err`: the return type is a `Result`, whatever it
/// is called (an alias, `io::Result`, a re-export under another name), and the failure's
/// message is the error's `Display` text, else its `Debug` text. With retries left, the
/// run is `Retrying` and the body runs again after `retry_delay` with the same inputs
/// (`taskcache::context::current().task_run_count()` is 1 for the first attempt, 2 for
/// the first retry). The owned arguments are kept encoded between attempts, so they need
/// `Serialize + Deserialize` but not `Clone`; `&T` arguments are passed as they are. Once
/// retries are spent, `run` returns the `Failed` state and calling the task returns the
/// last `Err`, or panics again.
///
/// `max_retries` needs a `retry_delay`, as in Prefect: write `retry_delay = "0s"` to
/// retry at once. The delay is waited inside the call (an async task awaits a timer that
/// needs no particular executor).
///
/// ```
/// use taskcache::prelude::*;
///
/// #[task(max_retries = 3, retry_delay = "10ms")]
/// fn fetch(url: String) -> Result<String, String> {
///     let attempt = taskcache::context::current().task_run_count();
///     if attempt < 3 {
///         Err(format!("{url}: connection reset"))
///     } else {
///         Ok(format!("contents of {url}"))
///     }
/// }
///
/// let state = fetch::run("https://example.com/data.csv".to_string());
/// assert_eq!(state.kind(), StateKind::Success);
/// assert_eq!(state.run_count(), 3);
/// let kinds: Vec<StateKind> = state.history().iter().map(|r| r.kind).collect();
/// use StateKind::{Retrying, Running, Success};
/// assert_eq!(kinds, [Running, Retrying, Running, Retrying, Running, Success]);
///
/// #[task(max_retries = 1, retry_delay = "0s")]
/// fn always_fails() -> Result<u32, String> {
///     Err("no route to host".into())
/// }
///
/// assert_eq!(always_fails(), Err("no route to host".to_string()));
/// let state = always_fails::run();
/// assert!(state.is_failed());
/// assert_eq!(state.message(), "Task run failed after 2 attempts: no route to host");
/// ```
///
/// ## `result`
///
/// Where the task's outputs are persisted: any expression whose type implements
/// `taskcache::results::ResultBackend`, evaluated once, on the task's first run, and kept
/// for the life of the process. It may be written inline, call a function, or clone a
/// `static`:
///
/// - `LocalResult::new("~/.taskcache")` stores each value as a file under the directory
///   (`~` is your home), bincode-encoded; `.with_serializer(JsonSerializer)` writes JSON,
///   `.with_serializer(Zstd::new(BincodeSerializer))` compresses, and
///   `.with_location("{task_name}/{today}.bin")` picks the file name (a template, as
///   `target`); without it each write gets a fresh unique name,
///   `<task>/<UTC timestamp>-<uuid>.bin`;
/// - `MemoryResult::new()` keeps values in process memory (tests, single-process
///   targets); its clones share one storage.
///
/// A `result` alone writes nothing: `checkpoint` (or the global switch) decides. The output
/// type must be `serde::Serialize + serde::Deserialize`. With `cache_for` and
/// `checkpoint` too and a persistent result (`LocalResult`), each cached output's record
/// is stored beside it, so that a later process honours the cache an earlier one made.
///
/// ```
/// use std::sync::LazyLock;
/// use taskcache::prelude::*;
/// use taskcache::results::ResultBackendExt;
///
/// static RESULTS: LazyLock<MemoryResult> = LazyLock::new(MemoryResult::new);
///
/// #[task(checkpoint, result = RESULTS.clone())]
/// fn answer() -> u32 {
///     42
/// }
///
/// let state = answer::run();
/// let at = state.location().expect("checkpointed");
/// assert!(at.as_str().starts_with("answer/")); // `<task>/<UTC timestamp>-<uuid>.bin`
/// assert_eq!(RESULTS.read::<u32>(at).unwrap(), 42);
/// ```
///
/// ## `checkpoint`
///
/// `checkpoint` (or `checkpoint = true`) writes every successful output through the
/// `result`, which it needs; `state.location()` says where. `checkpoint = false` never
/// writes. If a write fails (permission denied, disk full), the error, naming the task and
/// the path, is on the state (`persist_error()`) and in the log, and the computed value
/// is still returned; nothing partial is left behind. A `None` output (of an `Option`) is
/// never written, as in Prefect; a `()` is.
///
/// The global switch decides for every task: `TASKCACHE_CHECKPOINTING=false` in the
/// environment, `taskcache::set_checkpointing(Some(false))`, or
/// `Context::current().with_checkpointing(false)` for a scope, turns all persistence off
/// (checkpoints, targets, persisted caches), say for unit tests; `true` checkpoints every
/// task that has a `result` unless it says `checkpoint = false`; unset, each task's own
/// `checkpoint` decides. Unlike Prefect Core, where `checkpoint=True` is ignored unless
/// the global setting is on, a task that says `checkpoint` is checkpointed unless you turn
/// persistence off.
///
/// ```
/// use std::sync::LazyLock;
/// use taskcache::prelude::*;
///
/// static RESULTS: LazyLock<MemoryResult> = LazyLock::new(MemoryResult::new);
///
/// #[task(checkpoint, result = RESULTS.clone())]
/// fn written() -> u32 {
///     1
/// }
///
/// #[task(result = RESULTS.clone())] // no `checkpoint`: the global switch decides
/// fn maybe_written() -> u32 {
///     2
/// }
///
/// assert!(written::run().location().is_some());
/// assert!(maybe_written::run().location().is_none()); // the switch is unset
/// Context::current().with_checkpointing(false).scope(|| {
///     assert!(written::run().location().is_none()); // all persistence off
/// });
/// Context::current().with_checkpointing(true).scope(|| {
///     assert!(maybe_written::run().location().is_some()); // every task with a result
/// });
/// ```
///
/// ## `target`
///
/// A template for the location of the task's output in its `result`; needs `result` and
/// `checkpoint`. The task first renders it: if the result holds a valid file there, the
/// run is `Cached` with the stored value ("Result found at task target …") and the body
/// does not run, in this process or any later one (with a `LocalResult`). Otherwise the
/// body runs and its output is written there. Concurrent runs (threads or processes)
/// asking for the same missing target take a lock on it, so the body runs once and the
/// others read its file. A `None` output does not satisfy a target: the body runs again
/// next time.
///
/// Placeholders are `{name}` or `<name>`, with a strftime format for dates (`{date:%A}`,
/// `<date:%Y/%m/%d>`); doubled delimiters are literal. Names are the context keys
/// (`date`, `today`, `yesterday`, `tomorrow` and their `_nodash` forms, `flow_name`,
/// `flow_run_id`, `scheduled_start_time`, `task_name`, `task_full_name`,
/// `task_run_count`, `map_index`; `date` and `scheduled_start_time` take a strftime
/// format), the flow's parameters and the task's own arguments, which win over a context
/// key or parameter of the same name. An argument named in a template written inside
/// `#[task(...)]` must implement `Display` (checked at compile time) and renders with it.
/// A malformed template or strftime format is a compile error; an unknown name is a
/// runtime error that lists the names available. A rendered path stays inside the
/// result's directory: `..`, an absolute path, a NUL byte, or an argument that would leave
/// an empty, `.` or `..` path component is an error, never a read or write outside.
///
/// ```
/// use std::sync::LazyLock;
/// use taskcache::prelude::*;
///
/// static RESULTS: LazyLock<MemoryResult> = LazyLock::new(MemoryResult::new);
///
/// #[task(target = "{date:%A}/{task_name}-<region>.bin", checkpoint, result = RESULTS.clone())]
/// fn report(region: String) -> Vec<String> {
///     vec![format!("{region}: all good")]
/// }
///
/// let monday = chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z").unwrap();
/// Context::current().with_date(monday.to_utc()).scope(|| {
///     let first = report::run("emea".into());
///     assert_eq!(first.kind(), StateKind::Success);
///     assert_eq!(first.location().unwrap().as_str(), "Monday/report-emea.bin");
///
///     let again = report::run("emea".into());
///     assert!(again.is_cached()); // the target exists: the body did not run
///     assert_eq!(again.message(), "Result found at task target Monday/report-emea.bin.");
///     assert!(!report::run("apac".into()).is_cached()); // another target
/// });
/// ```
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as syn::ItemFn);
    let parsed = syn::parse::<attr::TaskArgs>(args);
    let func = model::Function::from_item(item.clone(), "task");
    let result = match (parsed, func) {
        (Ok(args), Ok(func)) => {
            valid::check_task(&args, &func).map(|()| expand::task(&args, &func))
        }
        (Err(mut a), Err(b)) => {
            a.combine(b);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match result {
        Ok(tokens) => tokens.into(),
        Err(e) => with_item(e, &item),
    }
}

/// Makes a function a flow: a named run of the tasks it calls, whose arguments are the
/// flow's parameters.
///
/// Calling the function starts a flow run and returns what the body returns (a panic in
/// the body is raised again). Inside the run:
///
/// - each argument is a parameter, kept as a JSON value (so every argument must be
///   `serde::Serialize`): `taskcache::context::current().parameters()` reads it back,
///   the validators `all_parameters` and `partial_parameters_only(a, b)` compare it, and
///   templates name it as `{nrows}`;
/// - the context has the flow's keys: `flow_name`, `flow_run_id` (a fresh UUID v4 per
///   run), `scheduled_start_time` and `date` (both the run's start unless pinned);
/// - every task called in the body reports its final state to the run, also from an
///   awaited future and from a thread started with `taskcache::context::spawn`.
///
/// Next to the function, the macro defines a type of the same name: `daily::run(…)` takes
/// the same arguments and returns a `taskcache::FlowRun`: the run's own final state
/// (`state()`: `Success` with the body's output, or `Failed` if it panicked), the final
/// state of every task run in the order they finished (`task_runs()`, `task_runs_of(name)`:
/// task name, kind, message, run count, timestamp), `run_id()`, `parameters()` and
/// `into_output()`.
///
/// The arguments are `name = "…"`, the flow's name (default: the function's name), and
/// `state = <path>`, the file of the embedded state store the run records its states in
/// (any `AsRef<Path>` expression; default: the file `TASKCACHE_STATE` names, if set), so
/// that `taskcache::resume(run_id)` can pick the run up after its process died.
/// Like `#[task]`, `#[flow]` goes on a free function, sync or `async`.
///
/// ```
/// use taskcache::prelude::*;
///
/// #[task(cache_for = "1h", cache_validator = all_inputs)]
/// fn add(x: i64, y: i64) -> i64 {
///     x + y
/// }
///
/// #[flow(name = "daily-report")]
/// fn daily(nrows: u32, runtime: String) -> i64 {
///     let ctx = taskcache::context::current();
///     assert_eq!(ctx.flow_name(), Some("daily-report"));
///     assert_eq!(ctx.parameters().value::<u32>("nrows"), Some(nrows));
///     assert_eq!(ctx.get("runtime").as_deref(), Some(runtime.as_str()));
///     add(i64::from(nrows), 1) + add(i64::from(nrows), 1)
/// }
///
/// assert_eq!(daily(10, "fast".into()), 22); // calling the flow returns its output
///
/// let run = daily::run(10, "slow".into());
/// assert!(run.state().is_successful());
/// assert_eq!(run.parameters().value::<String>("runtime").as_deref(), Some("slow"));
/// let kinds: Vec<StateKind> = run.task_runs().iter().map(|r| r.kind).collect();
/// assert_eq!(kinds, [StateKind::Cached, StateKind::Cached]); // cached by the first run
/// assert_eq!(run.task_runs_of("add").count(), 2);
/// assert_eq!(run.into_output(), 22);
/// ```
///
/// A flow whose body panics ends `Failed`; calling it raises the panic again:
///
/// ```
/// use taskcache::prelude::*;
///
/// #[flow]
/// fn broken(limit: u32) -> u32 {
///     assert!(limit > 0, "limit must be positive");
///     limit
/// }
///
/// let run = broken::run(0);
/// assert!(run.state().is_failed());
/// assert!(run.state().message().contains("limit must be positive"));
/// ```
///
/// `taskcache::Flow` builds the same run without the macro, with parameters of any
/// `Serialize` type and, for a run started late or again for an earlier slot, a pinned
/// `scheduled_start_time`:
///
/// ```
/// use taskcache::prelude::*;
///
/// let slot = chrono::DateTime::parse_from_rfc3339("2026-11-23T07:00:00Z").unwrap().to_utc();
/// let run = Flow::new("daily")
///     .parameter("nrows", &10u32)
///     .scheduled_start_time(slot)
///     .run(|| {
///         let ctx = taskcache::context::current();
///         assert_eq!(ctx.flow_name(), Some("daily"));
///         assert_eq!(ctx.scheduled_start_time(), Some(slot));
///         ctx.parameters().value::<u32>("nrows").unwrap() * 2
///     });
/// assert_eq!(run.into_output(), 20);
/// ```
///
/// An `async fn` flow is awaited, on any executor, and so is its `run`;
/// `Flow::run_async(future)` is the same without the macro:
///
/// ```
/// use taskcache::prelude::*;
/// # fn block_on<F: std::future::Future>(future: F) -> F::Output {
/// #     struct Unpark(std::thread::Thread);
/// #     impl std::task::Wake for Unpark {
/// #         fn wake(self: std::sync::Arc<Self>) { self.0.unpark() }
/// #     }
/// #     let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut future = std::pin::pin!(future);
/// #     loop {
/// #         if let std::task::Poll::Ready(v) = future.as_mut().poll(&mut cx) { return v; }
/// #         std::thread::park();
/// #     }
/// # }
///
/// #[task(cache_for = "1h", cache_validator = all_inputs)]
/// async fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// #[flow]
/// async fn pipeline(x: u64) -> u64 {
///     double(x).await + double(x).await
/// }
///
/// // `block_on` stands for any executor: tokio, async-std, pollster, …
/// block_on(async {
///     let run = pipeline::run(5).await;
///     let kinds: Vec<StateKind> = run.task_runs().iter().map(|r| r.kind).collect();
///     assert_eq!(kinds, [StateKind::Success, StateKind::Cached]);
///     assert_eq!(run.into_output(), 20);
///
///     let run = Flow::new("by hand")
///         .parameter("x", &2u64)
///         .run_async(async { double(2).await })
///         .await;
///     assert_eq!(run.into_output(), 4);
/// });
/// ```
#[proc_macro_attribute]
pub fn flow(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as syn::ItemFn);
    let parsed = syn::parse::<attr::FlowArgs>(args);
    let func = model::Function::from_item(item.clone(), "flow");
    let result = match (parsed, func) {
        (Ok(args), Ok(func)) => Ok(expand::flow(&args, &func)),
        (Err(mut a), Err(b)) => {
            a.combine(b);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match result {
        Ok(tokens) => tokens.into(),
        Err(e) => with_item(e, &item),
    }
}

/// The errors, followed by the function unchanged so that its callers still resolve and
/// the macro's errors are the only ones shown.
fn with_item(e: syn::Error, item: &syn::ItemFn) -> TokenStream {
    let mut tokens = e.to_compile_error();
    tokens.extend(expand::unchanged(item));
    tokens.into()
}
