//! Task arguments in templates, however the result was built: written inline in
//! `#[task(...)]`, or shared through a function, a `static` or a `const` (issue 7 §1).
//! An argument always renders from the argument, before any context key of the same
//! name.

// The property's tasks take one argument of each kind (and `run` gets no `#[allow]`).
#![allow(clippy::too_many_arguments)]

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex};
use taskcache::prelude::*;
use taskcache::results::LocalResult;
use taskcache_core::result::{
    Location, LocationLock, PayloadDigest, ResultBackend, ResultError, Slot, Value,
};

/// A directory of its own for each task, under one temporary root per test process.
fn dir(task: &str) -> String {
    static ROOT: LazyLock<PathBuf> = LazyLock::new(|| tempfile::tempdir().unwrap().keep());
    ROOT.join(task).to_string_lossy().into_owned()
}

fn exists(task: &str, file: &str) -> bool {
    Path::new(&dir(task)).join(file).is_file()
}

/// Monday 23 November 2026: `today` is `2026-11-23` in the context.
fn in_context<R>(f: impl FnOnce() -> R) -> R {
    let date = Utc.with_ymd_and_hms(2026, 11, 23, 9, 30, 0).unwrap();
    Context::current().with_date(date).scope(f)
}

/// Checks a run of a task whose location template is `{x}.txt` or `{today}.txt`.
fn assert_written<T: fmt::Debug>(task: &str, state: &State<T>, file: &str) {
    assert_eq!(state.persist_error(), None, "{task}");
    assert_eq!(
        state.location().map(|l| l.as_str().to_owned()),
        Some(file.to_owned()),
        "{task}"
    );
    assert!(exists(task, file), "{task}: {file} was not written");
}

// ---- `{x}.txt`: an argument that is no context key ---------------------------------

fn shared_x() -> LocalResult {
    LocalResult::new(dir("fn_x")).with_location("{x}.txt")
}

#[task(checkpoint, result = shared_x())]
fn outside_fn(x: i64) -> i64 {
    x + 1
}

static SHARED_X: LazyLock<LocalResult> =
    LazyLock::new(|| LocalResult::new(dir("static_x")).with_location("{x}.txt"));

#[task(checkpoint, result = SHARED_X.clone())]
fn outside_static(x: i64) -> i64 {
    x + 1
}

const X_LOCATION: &str = "{x}.txt";

#[task(checkpoint, result = LocalResult::new(dir("const_x")).with_location(X_LOCATION))]
fn outside_const(x: i64) -> i64 {
    x + 1
}

#[task(checkpoint, result = LocalResult::new(dir("inline_x")).with_location("{x}.txt"))]
fn outside_inline(x: i64) -> i64 {
    x + 1
}

#[test]
fn an_argument_renders_in_a_result_built_by_a_function() {
    let state = outside_fn::run(2);
    assert_eq!(state.value(), Some(&3));
    assert_written("fn_x", &state, "2.txt");
    assert_written("fn_x", &outside_fn::run(5), "5.txt");
}

#[test]
fn an_argument_renders_in_a_result_kept_in_a_static() {
    assert_written("static_x", &outside_static::run(2), "2.txt");
    assert_written("static_x", &outside_static::run(5), "5.txt");
}

#[test]
fn an_argument_renders_in_a_location_kept_in_a_const() {
    assert_written("const_x", &outside_const::run(2), "2.txt");
    assert_written("const_x", &outside_const::run(5), "5.txt");
}

#[test]
fn an_argument_renders_in_a_result_written_inline() {
    assert_written("inline_x", &outside_inline::run(2), "2.txt");
    assert_written("inline_x", &outside_inline::run(5), "5.txt");
}

// ---- `{today}.txt`: an argument named like a context key ---------------------------

fn shared_today() -> LocalResult {
    LocalResult::new(dir("fn_today")).with_location("{today}.txt")
}

#[task(checkpoint, result = shared_today())]
fn shadowed_fn(today: i64) -> i64 {
    today
}

static SHARED_TODAY: LazyLock<LocalResult> =
    LazyLock::new(|| LocalResult::new(dir("static_today")).with_location("{today}.txt"));

#[task(checkpoint, result = SHARED_TODAY.clone())]
fn shadowed_static(today: i64) -> i64 {
    today
}

const TODAY_LOCATION: &str = "{today}.txt";

#[task(checkpoint, result = LocalResult::new(dir("const_today")).with_location(TODAY_LOCATION))]
fn shadowed_const(today: i64) -> i64 {
    today
}

#[task(checkpoint, result = LocalResult::new(dir("inline_today")).with_location("{today}.txt"))]
fn shadowed_inline(today: i64) -> i64 {
    today
}

#[task(target = "<today>.txt", checkpoint, result = LocalResult::new(dir("target_today")))]
fn shadowed_target(today: i64) -> i64 {
    today
}

/// Each call writes its own file, named after the argument, not after the date.
fn assert_shadowed(task: &str, run: fn(i64) -> State<i64>) {
    let (two, three) = in_context(|| (run(2), run(3)));
    assert_written(task, &two, "2.txt");
    assert_written(task, &three, "3.txt");
    assert!(!exists(task, "2026-11-23.txt"), "{task}");
}

#[test]
fn an_argument_named_like_a_context_key_wins_in_a_result_built_by_a_function() {
    assert_shadowed("fn_today", shadowed_fn::run);
}

#[test]
fn an_argument_named_like_a_context_key_wins_in_a_result_kept_in_a_static() {
    assert_shadowed("static_today", shadowed_static::run);
}

#[test]
fn an_argument_named_like_a_context_key_wins_in_a_location_kept_in_a_const() {
    assert_shadowed("const_today", shadowed_const::run);
}

#[test]
fn an_argument_named_like_a_context_key_wins_in_a_result_written_inline() {
    assert_shadowed("inline_today", shadowed_inline::run);
}

#[test]
fn an_argument_named_like_a_context_key_wins_in_a_target() {
    assert_shadowed("target_today", shadowed_target::run);
    // The target is the argument's file: a second call with 2 is served from it.
    assert!(in_context(|| shadowed_target::run(2)).is_cached());
}

// ---- Errors ------------------------------------------------------------------------

fn shared_typo() -> LocalResult {
    LocalResult::new(dir("typo")).with_location("{regon}/{day}.txt")
}

#[task(checkpoint, result = shared_typo())]
fn typo(region: String, day: u8) -> u8 {
    let _ = region;
    day
}

#[test]
fn an_unknown_name_lists_the_task_arguments_among_what_is_available() {
    let state = typo::run("emea".into(), 1);
    assert_eq!(
        state.value(),
        Some(&1),
        "the value is returned all the same"
    );
    assert_eq!(state.location(), None);
    let error = state
        .persist_error()
        .expect("the location cannot be rendered");
    assert!(error.contains("names `regon`"), "{error}");
    let available = error.split("available: ").nth(1).unwrap();
    let available: Vec<&str> = available.split(", ").collect();
    for name in ["day", "region", "today", "task_name"] {
        assert!(available.contains(&name), "{name} missing: {error}");
    }
}

fn shared_list() -> LocalResult {
    LocalResult::new(dir("list")).with_location("{days}.txt")
}

#[task(checkpoint, result = shared_list())]
fn listed(days: Vec<u8>) -> usize {
    days.len()
}

#[test]
fn a_named_argument_without_a_text_form_is_an_error_naming_it() {
    let state = listed::run(vec![1, 2]);
    assert_eq!(state.value(), Some(&2));
    assert_eq!(state.location(), None);
    let error = state.persist_error().expect("the argument has no text");
    assert_eq!(
        error,
        "task `listed`: template `{days}.txt` names the task argument `days`, which cannot \
         be rendered: its value is a sequence, which has no text form; implement `Display` \
         for its type, or pass a scalar (an integer, float, bool, char, string, unit-like \
         enum variant, or a newtype or `Some` of one)"
    );
    assert!(std::fs::read_dir(dir("list")).map_or(true, |mut d| d.next().is_none()));
}

/// Neither `Display` nor `Serialize`: fine as long as no template names it.
struct Connection;

fn shared_conn() -> LocalResult {
    LocalResult::new(dir("conn")).with_location("{n}.txt")
}

#[task(checkpoint, result = shared_conn())]
fn with_connection(conn: &Connection, n: u8) -> u8 {
    let _ = conn;
    n
}

fn shared_conn_named() -> LocalResult {
    LocalResult::new(dir("conn_named")).with_location("{conn}.txt")
}

#[task(checkpoint, result = shared_conn_named())]
fn naming_connection(conn: Connection) -> u8 {
    let _ = conn;
    1
}

#[test]
fn an_argument_with_no_text_at_all_matters_only_when_named() {
    assert_written("conn", &with_connection::run(&Connection, 4), "4.txt");
    let error = naming_connection::run(Connection)
        .persist_error()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("`conn`, which cannot be rendered: its type implements neither `Display` nor `serde::Serialize`"),
        "{error}"
    );
}

// ---- How arguments render ----------------------------------------------------------

/// Serializes as `"emea"` (a newtype), displays as `region-emea`.
#[derive(Serialize, Deserialize)]
struct Region(String);

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "region-{}", self.0)
    }
}

fn shared_region() -> LocalResult {
    LocalResult::new(dir("region")).with_location("{region}.txt")
}

#[task(checkpoint, result = shared_region())]
fn by_region(region: Region) -> u8 {
    let _ = region;
    1
}

#[task(checkpoint, result = LocalResult::new(dir("region_inline")).with_location("{region}.txt"))]
fn by_region_inline(region: Region) -> u8 {
    let _ = region;
    1
}

#[test]
fn a_display_type_renders_with_display_whether_or_not_the_template_is_inline() {
    let region = || Region("emea".into());
    assert_written("region", &by_region::run(region()), "region-emea.txt");
    assert_written(
        "region_inline",
        &by_region_inline::run(region()),
        "region-emea.txt",
    );
}

fn shared_borrowed() -> LocalResult {
    LocalResult::new(dir("borrowed")).with_location("{label}/{size}.txt")
}

#[derive(Serialize)]
enum Size {
    Small,
}

#[task(checkpoint, result = shared_borrowed())]
fn borrowed(label: &str, size: &Size) -> usize {
    let _ = size;
    label.len()
}

#[test]
fn a_borrowed_argument_renders_too() {
    assert_written(
        "borrowed",
        &borrowed::run("abc", &Size::Small),
        "abc/Small.txt",
    );
}

fn shared_name() -> LocalResult {
    LocalResult::new(dir("name")).with_location("{name}/{make_result}.txt")
}

/// Arguments named like the generated code's own bindings.
#[task(checkpoint, result = shared_name())]
fn named_like_internals(name: String, make_result: u8) -> u8 {
    let _ = name;
    make_result
}

#[test]
fn arguments_named_like_generated_bindings_render_themselves() {
    assert_written("name", &named_like_internals::run("n".into(), 9), "n/9.txt");
}

static RENDERED: AtomicU32 = AtomicU32::new(0);

/// Counts how often it is rendered.
#[derive(Serialize, Deserialize)]
struct Counted(u8);

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        RENDERED.fetch_add(1, Ordering::SeqCst);
        write!(f, "c{}", self.0)
    }
}

fn shared_other() -> LocalResult {
    LocalResult::new(dir("lazy")).with_location("{n}.txt")
}

#[task(checkpoint, result = shared_other())]
fn lazily(counted: Counted, n: u8) -> u8 {
    let _ = counted;
    n
}

fn shared_counted() -> LocalResult {
    LocalResult::new(dir("lazy_named")).with_location("{counted}.txt")
}

#[task(checkpoint, result = shared_counted())]
fn counted_named(counted: Counted) -> u8 {
    counted.0
}

#[test]
fn only_the_arguments_a_template_names_are_rendered_and_only_when_persisting() {
    assert_written("lazy", &lazily::run(Counted(1), 7), "7.txt");
    assert_eq!(RENDERED.load(Ordering::SeqCst), 0);
    let off = Context::current()
        .with_checkpointing(false)
        .scope(|| counted_named::run(Counted(2)));
    assert_eq!(off.location(), None);
    assert_eq!(RENDERED.load(Ordering::SeqCst), 0);
    assert_written("lazy_named", &counted_named::run(Counted(3)), "c3.txt");
    assert_eq!(RENDERED.load(Ordering::SeqCst), 1);
}

fn shared_param() -> LocalResult {
    LocalResult::new(dir("param")).with_location("{n}.txt")
}

#[task(checkpoint, result = shared_param())]
fn inner(n: u32) -> u32 {
    n
}

#[flow]
fn outer(n: u32) -> State<u32> {
    inner::run(n + 1)
}

#[test]
fn an_argument_wins_over_a_flow_parameter_of_the_same_name() {
    assert_written("param", &outer(1), "2.txt");
}

fn shared_async() -> LocalResult {
    LocalResult::new(dir("async")).with_location("{label}-{n}.txt")
}

#[task(checkpoint, result = shared_async())]
async fn fetched(label: &str, n: u8) -> u8 {
    let _ = label;
    n
}

#[task(
    target = "{label}/target.txt",
    checkpoint,
    result = LocalResult::new(dir("async_inline")).with_location("{label}-{n}.txt")
)]
async fn fetched_inline(label: &str, n: u8) -> u8 {
    let _ = label;
    n
}

fn assert_send<F: std::future::Future + Send>(f: F) -> F {
    f
}

#[test]
fn an_async_task_with_templates_inline_or_shared_has_a_send_future() {
    let state = pollster::block_on(assert_send(fetched::run("a", 1)));
    assert_written("async", &state, "a-1.txt");
    assert_eq!(pollster::block_on(assert_send(fetched("b", 2))), 2);
    assert!(exists("async", "b-2.txt"));
    let state = pollster::block_on(assert_send(fetched_inline::run("c", 3)));
    assert_written("async_inline", &state, "c/target.txt");
}

// ---- Property: any argument, any position ------------------------------------------

/// The location template of [`every_kind`], set by the property test before each call
/// (the property runs its cases one after the other).
static TEMPLATE: Mutex<&'static str> = Mutex::new("unset");

/// A [`MemoryResult`] whose location template is the one given, or [`TEMPLATE`].
#[derive(Debug, Default)]
struct Dynamic(MemoryResult, Option<&'static str>);

impl Dynamic {
    fn with_location(template: &'static str) -> Self {
        Dynamic(MemoryResult::new(), Some(template))
    }
}

impl ResultBackend for Dynamic {
    fn describe(&self) -> String {
        "Dynamic".into()
    }
    fn is_persistent(&self) -> bool {
        false
    }
    fn location_template(&self) -> Option<&str> {
        self.1.or_else(|| Some(*TEMPLATE.lock().unwrap()))
    }
    fn default_location(&self, task_name: &str) -> Location {
        self.0.default_location(task_name)
    }
    fn exists(&self, location: &Location) -> Result<bool, ResultError> {
        self.0.exists(location)
    }
    fn read_value(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
        slot: &mut dyn Slot,
    ) -> Result<(), ResultError> {
        self.0.read_value(location, pinned, slot)
    }
    fn write_value(
        &self,
        value: Value<'_>,
        location: &Location,
    ) -> Result<PayloadDigest, ResultError> {
        self.0.write_value(value, location)
    }
    fn lock(&self, location: &Location) -> Result<LocationLock, ResultError> {
        self.0.lock(location)
    }
    fn put_record(&self, key: &str, id: &str, bytes: &[u8]) -> Result<(), ResultError> {
        self.0.put_record(key, id, bytes)
    }
    fn get_record(&self, key: &str, id: &str) -> Result<Option<Vec<u8>>, ResultError> {
        self.0.get_record(key, id)
    }
    fn list_records(&self, key: &str) -> Result<Vec<String>, ResultError> {
        self.0.list_records(key)
    }
    fn remove_record(&self, key: &str, id: &str) -> Result<(), ResultError> {
        self.0.remove_record(key, id)
    }
}

/// A unit-like enum without `Display`: it renders as its serde variant name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
enum Shade {
    Light,
    Dark,
    #[serde(rename = "mid-tone")]
    Mid,
}

impl Shade {
    fn text(self) -> &'static str {
        match self {
            Shade::Light => "Light",
            Shade::Dark => "Dark",
            Shade::Mid => "mid-tone",
        }
    }
}

/// The arguments of [`every_kind`]; `today` and `task_name` shadow context keys.
#[derive(Clone, Debug)]
struct Args {
    n: i64,
    u: u128,
    s: String,
    b: bool,
    c: char,
    f: f64,
    g: f32,
    shade: Shade,
    today: i32,
    task_name: String,
}

impl Args {
    const NAMES: [&'static str; 10] = [
        "n",
        "u",
        "s",
        "b",
        "c",
        "f",
        "g",
        "shade",
        "today",
        "task_name",
    ];

    /// How the argument `name` must render.
    fn text(&self, name: &str) -> String {
        match name {
            "n" => self.n.to_string(),
            "u" => self.u.to_string(),
            "s" => self.s.clone(),
            "b" => self.b.to_string(),
            "c" => self.c.to_string(),
            "f" => self.f.to_string(),
            "g" => self.g.to_string(),
            "shade" => self.shade.text().to_owned(),
            "today" => self.today.to_string(),
            "task_name" => self.task_name.clone(),
            _ => unreachable!(),
        }
    }
}

#[task(checkpoint, result = Dynamic::default())]
fn every_kind(
    n: i64,
    u: u128,
    s: String,
    b: bool,
    c: char,
    f: f64,
    g: f32,
    shade: Shade,
    today: i32,
    task_name: String,
) -> u8 {
    let _ = (n, u, s, b, c, f, g, shade, today, task_name);
    0
}

/// Text that is a valid path component whatever sits around it.
fn name_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_\\-é€ß]{1,12}"
}

fn args() -> impl Strategy<Value = Args> {
    (
        any::<i64>(),
        any::<u128>(),
        name_text(),
        any::<bool>(),
        prop::char::any().prop_filter("a path component", |c| c.is_alphanumeric()),
        any::<f64>(),
        any::<f32>(),
        prop_oneof![Just(Shade::Light), Just(Shade::Dark), Just(Shade::Mid)],
        any::<i32>(),
        name_text(),
    )
        .prop_map(|(n, u, s, b, c, f, g, shade, today, task_name)| Args {
            n,
            u,
            s,
            b,
            c,
            f,
            g,
            shade,
            today,
            task_name,
        })
}

/// A placeholder in one of the two spellings.
fn placeholder(name: &str, angle: bool) -> String {
    if angle {
        format!("<{name}>")
    } else {
        format!("{{{name}}}")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any argument placed anywhere in a template built outside the attribute (alone,
    /// first, last, between literals, between directories, beside another argument,
    /// in either spelling) renders as that argument's value.
    #[test]
    fn any_argument_in_any_position_renders_its_value(
        args in args(),
        first in 0..Args::NAMES.len(),
        second in 0..Args::NAMES.len(),
        angle in any::<bool>(),
        prefix in "([a-z0-9_]{1,6}[/.\\-]){0,2}",
        middle in "[a-z0-9_\\-]{1,4}",
        suffix in "(\\.[a-z]{1,3}|/[a-z0-9]{1,5}){0,2}",
        shape in 0..3usize,
    ) {
        let (a, b) = (Args::NAMES[first], Args::NAMES[second]);
        let (template, expected) = match shape {
            0 => (placeholder(a, angle), args.text(a)),
            1 => (
                format!("{prefix}{}{suffix}", placeholder(a, angle)),
                format!("{prefix}{}{suffix}", args.text(a)),
            ),
            _ => (
                format!("{prefix}{}{middle}{}{suffix}", placeholder(a, angle), placeholder(b, !angle)),
                format!("{prefix}{}{middle}{}{suffix}", args.text(a), args.text(b)),
            ),
        };
        *TEMPLATE.lock().unwrap() = Box::leak(template.clone().into_boxed_str());
        let v = args.clone();
        let state = in_context(|| {
            every_kind::run(v.n, v.u, v.s, v.b, v.c, v.f, v.g, v.shade, v.today, v.task_name)
        });
        prop_assert_eq!(state.persist_error(), None, "{}", template);
        prop_assert_eq!(state.location().unwrap().as_str(), expected.as_str(), "{}", template);
    }

    /// The same values through a template written inline, which renders with `Display`.
    #[test]
    fn inline_templates_render_the_same_values(args in args()) {
        let v = args.clone();
        let state = in_context(|| {
            every_kind_inline::run(v.n, v.u, v.s, v.b, v.c, v.f, v.g, v.today, v.task_name)
        });
        let expected = ["n", "u", "s", "b", "c", "f", "g", "today", "task_name"]
            .map(|n| args.text(n))
            .join("/");
        prop_assert_eq!(state.persist_error(), None);
        prop_assert_eq!(state.location().unwrap().as_str(), expected.as_str());
    }
}

#[task(
    checkpoint,
    result = Dynamic::with_location("{n}/{u}/<s>/{b}/{c}/<f>/{g}/{today}/<task_name>")
)]
fn every_kind_inline(
    n: i64,
    u: u128,
    s: String,
    b: bool,
    c: char,
    f: f64,
    g: f32,
    today: i32,
    task_name: String,
) -> u8 {
    let _ = (n, u, s, b, c, f, g, today, task_name);
    0
}
