//! Persistence in a task run: the global checkpointing switch, rendering targets and
//! result locations, reading stored results without trusting damaged ones, and the
//! cached-state records that let an output cache outlive the process.
//!
//! The switch is public ([`set_checkpointing`], [`checkpointing`],
//! `TASKCACHE_CHECKPOINTING`); the rest is what the runner calls: render the target and
//! read it, look for a persisted cached output, and after a success write the output and
//! its record.

use crate::context::Context;
use crate::hash::{to_hex as hex, InputDigest};
use crate::parameters::{Parameter, Parameters};
use crate::result::{
    AsyncResultBackend, BoxFuture, Encoded, Fetched, Location, LocationLock, PayloadDigest,
    ResultBackend, ResultBackendExt, ResultError, TypedSlot, Value, ValueType,
};
use crate::state::{Cached, HashedInputs};
use crate::task::TaskSpec;
use crate::template::{RenderError, Template, TemplateError, TemplateValue, TemplateValues};
use crate::validators::CacheValidator;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};

/// A task's result backend, with the typed operations its output type needs: the
/// runtime holds one without knowing either the backend's type (it may be chosen at run
/// time, see `Context::with_result`) or needing bounds on the output type, which were
/// checked where the [`PersistOps`] were made.
pub(crate) struct Backend<'a, T> {
    pub(crate) backend: BackendRef<'a>,
    pub(crate) ops: PersistOps<T>,
}

/// A task's own result (borrowed from its `static`), or one set on the context in its
/// place (with the task's own, whose location template serves when the context's has
/// none).
pub(crate) enum BackendRef<'a> {
    Static(&'a dyn ResultBackend),
    Scoped(std::sync::Arc<dyn ResultBackend>, &'a dyn ResultBackend),
}

impl std::ops::Deref for BackendRef<'_> {
    type Target = dyn ResultBackend;
    fn deref(&self) -> &(dyn ResultBackend + 'static) {
        match self {
            BackendRef::Static(b) => *b,
            BackendRef::Scoped(b, _) => &**b,
        }
    }
}

/// What persistence does with a task's outputs of type `T`, made where `T`'s bounds are
/// known: the whole value, or the `T` of a `Result<T, E>` (see `task::PersistedAsSuccess`).
pub struct PersistOps<T> {
    read: fn(&dyn ResultBackend, &Location, Option<&PayloadDigest>) -> Result<T, ResultError>,
    write: fn(&dyn ResultBackend, &T, &Location) -> Result<PayloadDigest, ResultError>,
    is_none: fn(&T) -> bool,
    /// The stored type (`T`, or the `T` of a `Result<T, E>`), for a fetch.
    stored: fn() -> ValueType,
    /// Decodes what an async backend fetched.
    decode: fn(&dyn AsyncResultBackend, Fetched, &Location) -> Result<T, ResultError>,
    /// Encodes a value for an async backend to store.
    encode: fn(&dyn AsyncResultBackend, &T, &Location) -> Result<Encoded, ResultError>,
}

impl<T> Clone for PersistOps<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for PersistOps<T> {}

impl<T: Serialize + DeserializeOwned + 'static> PersistOps<T> {
    /// The whole value is stored.
    pub(crate) fn new() -> Self {
        PersistOps {
            read: |b, l, p| b.read_pinned::<T>(l, p),
            write: |b, v, l| b.write(v, l),
            is_none: is_none::<T>,
            stored: ValueType::of::<T>,
            decode: decode_fetched::<T>,
            encode: |b, v, l| b.encode(Value::of(v), l),
        }
    }
}

impl<T: Serialize + DeserializeOwned + 'static, E> PersistOps<Result<T, E>> {
    /// Only the `T` of an `Ok(T)` is stored, and read back as `Ok(t)`: the file is what
    /// a task returning `T` would write, and `E` needs no serde. (An `Err` is a failure
    /// and never reaches the result.)
    pub(crate) fn success_of() -> Self {
        PersistOps {
            read: |b, l, p| b.read_pinned::<T>(l, p).map(Ok),
            write: |b, v, l| match v {
                Ok(t) => b.write(t, l),
                Err(_) => Err(err_never_written(l)),
            },
            is_none: |v| v.as_ref().is_ok_and(is_none::<T>),
            stored: ValueType::of::<T>,
            decode: |b, f, l| decode_fetched::<T>(b, f, l).map(Ok),
            encode: |b, v, l| match v {
                Ok(t) => b.encode(Value::of(t), l),
                Err(_) => Err(err_never_written(l)),
            },
        }
    }
}

/// The error of writing an `Err`, which is a failure and never written.
fn err_never_written(l: &Location) -> ResultError {
    ResultError::Serialize {
        path: std::path::PathBuf::from(l.as_str()),
        serializer: "taskcache",
        source: crate::result::SerializeError("an `Err` is a failure and is never written".into()),
    }
}

/// Decodes a `T` an async backend fetched.
fn decode_fetched<T: DeserializeOwned + 'static>(
    backend: &dyn AsyncResultBackend,
    fetched: Fetched,
    location: &Location,
) -> Result<T, ResultError> {
    let mut slot = TypedSlot::<T>(None);
    backend.decode(fetched, &mut slot)?;
    slot.0.ok_or_else(|| ResultError::Corrupt {
        path: std::path::PathBuf::from(location.as_str()),
        reason: "the backend produced no value".into(),
    })
}

/// How a task run does its result I/O: blocking calls (a sync task, or a backend whose
/// calls are local), or, for an async task, the futures of a backend whose calls wait
/// on a network ([`ResultBackend::as_async`]), so that its executor is never blocked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Io {
    Blocking,
    Async,
}

impl<T> Backend<'_, T> {
    pub(crate) fn describe(&self) -> String {
        self.backend.describe()
    }
    pub(crate) fn is_persistent(&self) -> bool {
        self.backend.is_persistent()
    }
    pub(crate) fn location_template(&self) -> Option<&str> {
        match &self.backend {
            BackendRef::Static(b) => b.location_template(),
            BackendRef::Scoped(b, own) => b.location_template().or_else(|| own.location_template()),
        }
    }
    pub(crate) fn default_location(&self, task_name: &str) -> Location {
        self.backend.default_location(task_name)
    }
    pub(crate) fn read_pinned(
        &self,
        location: &Location,
        pinned: Option<&PayloadDigest>,
    ) -> Result<T, ResultError> {
        (self.ops.read)(&*self.backend, location, pinned)
    }
    pub(crate) fn write(
        &self,
        value: &T,
        location: &Location,
    ) -> Result<PayloadDigest, ResultError> {
        (self.ops.write)(&*self.backend, value, location)
    }
    pub(crate) fn lock(&self, location: &Location) -> Result<LocationLock, ResultError> {
        self.backend.lock(location)
    }
    pub(crate) fn lock_id(&self, location: &Location) -> String {
        self.backend.lock_id(location)
    }
    pub(crate) fn remove_record(&self, key: &str, id: &str) -> Result<(), ResultError> {
        self.backend.remove_record(key, id)
    }
    pub(crate) fn put_record(&self, key: &str, id: &str, bytes: &[u8]) -> Result<(), ResultError> {
        self.backend.put_record(key, id, bytes)
    }
    pub(crate) fn get_record(&self, key: &str, id: &str) -> Result<Option<Vec<u8>>, ResultError> {
        self.backend.get_record(key, id)
    }
    pub(crate) fn list_records(&self, key: &str) -> Result<Vec<String>, ResultError> {
        self.backend.list_records(key)
    }
    /// Whether `value` is `None`, which is never stored (see [`is_none`]).
    pub(crate) fn is_none(&self, value: &T) -> bool {
        (self.ops.is_none)(value)
    }

    /// The backend's futures, when `io` asks for them and it has them.
    fn nonblocking(&self, io: Io) -> Option<&dyn AsyncResultBackend> {
        match io {
            Io::Blocking => None,
            Io::Async => self.backend.as_async(),
        }
    }

    /// [`read_pinned`](Self::read_pinned), the `io` way.
    pub(crate) async fn read_io(
        &self,
        io: Io,
        location: &Location,
        pinned: Option<&PayloadDigest>,
    ) -> Result<T, ResultError> {
        match self.nonblocking(io) {
            None => self.read_pinned(location, pinned),
            Some(b) => {
                let fetched = b.fetch(location, pinned, (self.ops.stored)()).await?;
                (self.ops.decode)(b, fetched, location)
            }
        }
    }

    /// [`write`](Self::write), the `io` way: the value is encoded (or written, the
    /// blocking way) before this returns, so that the future does not hold it.
    pub(crate) fn write_io(
        &self,
        io: Io,
        value: &T,
        location: &Location,
    ) -> BoxFuture<'static, Result<PayloadDigest, ResultError>> {
        match self.nonblocking(io) {
            None => Box::pin(std::future::ready(self.write(value, location))),
            Some(b) => match (self.ops.encode)(b, value, location) {
                Ok(encoded) => b.store(encoded, location),
                Err(e) => Box::pin(std::future::ready(Err(e))),
            },
        }
    }

    /// [`lock`](Self::lock), the `io` way.
    pub(crate) async fn lock_io(
        &self,
        io: Io,
        location: &Location,
    ) -> Result<LocationLock, ResultError> {
        match self.nonblocking(io) {
            None => self.lock(location),
            Some(b) => b.lock(location).await,
        }
    }

    async fn remove_record_io(&self, io: Io, key: &str, id: &str) -> Result<(), ResultError> {
        match self.nonblocking(io) {
            None => self.remove_record(key, id),
            Some(b) => b.remove_record(key, id).await,
        }
    }

    async fn put_record_io(
        &self,
        io: Io,
        key: &str,
        id: &str,
        bytes: Vec<u8>,
    ) -> Result<(), ResultError> {
        match self.nonblocking(io) {
            None => self.put_record(key, id, &bytes),
            Some(b) => b.put_record(key, id, bytes).await,
        }
    }

    async fn get_record_io(
        &self,
        io: Io,
        key: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>, ResultError> {
        match self.nonblocking(io) {
            None => self.get_record(key, id),
            Some(b) => b.get_record(key, id).await,
        }
    }

    async fn list_records_io(&self, io: Io, key: &str) -> Result<Vec<String>, ResultError> {
        match self.nonblocking(io) {
            None => self.list_records(key),
            Some(b) => b.list_records(key).await,
        }
    }
}

/// The process-wide checkpointing switch: 0 unset, 1 off, 2 on; `u8::MAX` not read yet.
static CHECKPOINTING: AtomicU8 = AtomicU8::new(u8::MAX);

/// The environment variable of the global checkpointing switch.
pub const CHECKPOINTING_ENV: &str = "TASKCACHE_CHECKPOINTING";

/// Sets the process-wide checkpointing switch, overriding `TASKCACHE_CHECKPOINTING`:
/// `Some(false)` turns all persistence off (targets, checkpoints, persisted caches),
/// `Some(true)` checkpoints every task that has a `result` unless it says
/// `checkpoint = false`, `None` lets each task's own `checkpoint` decide.
pub fn set_checkpointing(on: Option<bool>) {
    CHECKPOINTING.store(encode_switch(on), Ordering::Relaxed);
}

/// The process-wide checkpointing switch: set with [`set_checkpointing`], else read once
/// from `TASKCACHE_CHECKPOINTING` (`true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`).
pub fn checkpointing() -> Option<bool> {
    match CHECKPOINTING.load(Ordering::Relaxed) {
        u8::MAX => {
            let from_env = std::env::var(CHECKPOINTING_ENV).ok().and_then(|v| {
                match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Some(true),
                    "0" | "false" | "no" | "off" => Some(false),
                    "" => None,
                    other => {
                        tracing::warn!(
                            "{CHECKPOINTING_ENV}={other:?} is neither true nor false; it is ignored"
                        );
                        None
                    }
                }
            });
            // Keep a value set concurrently by `set_checkpointing`.
            let _ = CHECKPOINTING.compare_exchange(
                u8::MAX,
                encode_switch(from_env),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            decode_switch(CHECKPOINTING.load(Ordering::Relaxed))
        }
        v => decode_switch(v),
    }
}

fn encode_switch(on: Option<bool>) -> u8 {
    match on {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    }
}

fn decode_switch(v: u8) -> Option<bool> {
    match v {
        1 => Some(false),
        2 => Some(true),
        _ => None,
    }
}

/// Whether a task with `checkpoint` (as written, or not written) persists in `ctx`.
pub(crate) fn enabled(task_checkpoint: Option<bool>, ctx: &Context) -> bool {
    match ctx.checkpointing.or_else(checkpointing) {
        Some(false) => false,
        Some(true) => task_checkpoint != Some(false),
        None => task_checkpoint == Some(true),
    }
}

/// The task's arguments that its templates name, rendered (or why one cannot be):
/// `(name, text)` pairs.
pub(crate) type RenderedInputs = Vec<(&'static str, Result<String, RenderError>)>;

/// The values a template is rendered with, in Prefect's order of priority: the task's
/// own arguments, then the context, then the flow's parameters.
pub(crate) struct RenderValues<'a> {
    ctx: &'a Context,
    /// The arguments the templates name, rendered.
    inputs: &'a [(&'static str, Result<String, RenderError>)],
    /// Every argument of the task, for the message about an unknown name.
    arguments: &'static [&'static str],
    /// The index in `inputs` of the first argument asked for that has no text.
    failed: Cell<Option<usize>>,
}

impl<'a> RenderValues<'a> {
    pub(crate) fn new(
        ctx: &'a Context,
        inputs: &'a [(&'static str, Result<String, RenderError>)],
        arguments: &'static [&'static str],
    ) -> Self {
        RenderValues {
            ctx,
            inputs,
            arguments,
            failed: Cell::new(None),
        }
    }

    /// Renders `template` for `task` into a location; an argument it names that has no
    /// text form is a [`TemplateError::Argument`].
    pub(crate) fn render(
        &self,
        task: &'static str,
        template: &str,
    ) -> Result<Location, PersistError> {
        self.failed.set(None);
        let location = render(task, template, self);
        match self.failed.take() {
            Some(i) => {
                let (name, text) = &self.inputs[i];
                let reason = match text {
                    Err(e) => e.to_string(),
                    Ok(_) => unreachable!("only an argument without text is recorded"),
                };
                Err(PersistError::Template {
                    task,
                    source: TemplateError::Argument {
                        template: template.to_owned(),
                        name: (*name).to_owned(),
                        reason,
                    },
                })
            }
            None => location,
        }
    }
}

impl TemplateValues for RenderValues<'_> {
    fn value(&self, name: &str) -> Option<TemplateValue<'_>> {
        if let Some(i) = self.inputs.iter().position(|(n, _)| *n == name) {
            return match &self.inputs[i].1 {
                Ok(v) => Some(TemplateValue::Text(Cow::Borrowed(v))),
                Err(_) => {
                    if self.failed.get().is_none() {
                        self.failed.set(Some(i));
                    }
                    // Any text: `render` reports the argument instead of the outcome.
                    Some(TemplateValue::Text(Cow::Borrowed("_")))
                }
            };
        }
        if let Some(at) = self.ctx.date_value(name) {
            return Some(TemplateValue::Date(at));
        }
        self.ctx
            .get(name)
            .map(|v| TemplateValue::Text(Cow::Owned(v)))
    }

    fn names(&self) -> Vec<String> {
        let mut names = self.ctx.keys();
        names.extend(self.arguments.iter().map(|n| n.to_string()));
        names.sort();
        names.dedup();
        names
    }
}

/// Why persistence could not serve or record a run: shown on the state and logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// A template could not be rendered.
    #[error("task `{task}`: {source}")]
    Template {
        /// The task.
        task: &'static str,
        /// Why.
        source: crate::template::TemplateError,
    },
    /// A rendered template is not a location inside the result's directory.
    #[error("task `{task}`: {source}")]
    Location {
        /// The task.
        task: &'static str,
        /// Why.
        source: crate::result::LocationError,
    },
    /// The backend failed.
    #[error("task `{task}`: {backend}: {source}")]
    Backend {
        /// The task.
        task: &'static str,
        /// The backend's description.
        backend: String,
        /// Why.
        source: ResultError,
    },
}

/// The parsed `template`: parsed once per thread (a target is rendered on every call),
/// the last few kept.
fn parsed(template: &str) -> Result<std::rc::Rc<Template>, TemplateError> {
    /// How many parsed templates a thread keeps.
    const KEPT: usize = 16;
    thread_local! {
        static PARSED: std::cell::RefCell<Vec<std::rc::Rc<Template>>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let kept = PARSED.with_borrow(|kept| kept.iter().find(|t| t.as_str() == template).cloned());
    if let Some(parsed) = kept {
        return Ok(parsed);
    }
    let parsed = std::rc::Rc::new(Template::parse(template)?);
    PARSED.with_borrow_mut(|kept| {
        if kept.len() == KEPT {
            kept.remove(0);
        }
        kept.push(std::rc::Rc::clone(&parsed));
    });
    Ok(parsed)
}

/// Renders `template` for a task run into a location.
pub(crate) fn render(
    task: &'static str,
    template: &str,
    values: &RenderValues<'_>,
) -> Result<Location, PersistError> {
    let parsed = parsed(template).map_err(|source| PersistError::Template { task, source })?;
    let rendered = parsed
        .render(values)
        .map_err(|source| PersistError::Template { task, source })?;
    Location::new(rendered).map_err(|source| PersistError::Location { task, source })
}

/// Reads a value at `location` (only the payload `pinned`, when given), treating a
/// damaged, foreign or replaced file as absent (with a warning): the task then
/// recomputes and overwrites it.
pub(crate) async fn read_valid<T>(
    io: Io,
    backend: &Backend<'_, T>,
    task: &'static str,
    location: &Location,
    pinned: Option<&PayloadDigest>,
) -> Option<T> {
    match backend.read_io(io, location, pinned).await {
        Ok(v) => Some(v),
        Err(ResultError::NotFound { .. }) => None,
        Err(e) => {
            tracing::warn!(
                task,
                location = %location,
                error = %e,
                "the stored result cannot be used; the task runs and overwrites it"
            );
            None
        }
    }
}

/// Takes the backend's lock on `location`, or logs why it could not.
pub(crate) async fn lock<T>(
    io: Io,
    backend: &Backend<'_, T>,
    task: &'static str,
    location: &Location,
) -> Option<LocationLock> {
    match backend.lock_io(io, location).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(task, location = %location, error = %e, "cannot lock the target; running without the lock");
            None
        }
    }
}

/// The persisted form of a [`Cached`] record, stored beside the result it describes.
///
/// Every field is required (an `Option` too: `null` must be written out), and unknown
/// fields are refused, so that a damaged record cannot read as a different valid one;
/// the backend stores it in the checked file format besides. `result` pins the payload
/// the record describes: a file at `location` with another payload is not this output.
/// `cache_key` is the key it was stored under: a record copied under another key (say
/// into another task's directory) is not that key's.
///
/// Its text borrows from the bytes it is read from where it can (a hit compares most of
/// it and keeps only the location).
#[derive(Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
#[serde(deny_unknown_fields)]
struct Record<'a> {
    version: u32,
    #[serde(borrow)]
    task: Cow<'a, str>,
    #[serde(borrow)]
    cache_key: Cow<'a, str>,
    #[serde(borrow)]
    location: Cow<'a, str>,
    result: Digest,
    /// The version of the task's code that made it (its fingerprint, or `cache_version`).
    #[serde(borrow)]
    code_version: Cow<'a, str>,
    #[serde(deserialize_with = "Option::deserialize")]
    expiration: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
    inputs: Vec<(Cow<'a, str>, Digest)>,
    parameters: BTreeMap<String, (serde_json::Value, Digest)>,
}

/// Version 2 pins the result's payload digest; version 3 adds the code's version;
/// version 4 writes digests as hex text. Records of version 3 are read as well (their
/// digests are arrays of numbers); earlier ones are ignored (a miss).
const RECORD_VERSION: u32 = 4;

/// Whether a record of `version` is one this build reads.
fn readable(version: u32) -> bool {
    version == RECORD_VERSION || version == 3
}

/// A SHA-256 digest in a record: written as 64 lowercase hex digits, read from those or
/// (as version 3 wrote it) from a JSON array of 32 numbers.
#[derive(Clone, Copy)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Digest([u8; 32]);

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Digest;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 lowercase hex digits, or an array of 32 bytes")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Digest, E> {
                unhex(text.as_bytes())
                    .map(Digest)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(text), &self))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Digest, A::Error> {
                <[u8; 32]>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Digest)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The 32 bytes that exactly 64 lowercase hex digits spell, else `None`.
fn unhex(text: &[u8]) -> Option<[u8; 32]> {
    /// Each byte's value as a hex digit, 16 for the bytes that are not one.
    const VALUES: [u8; 256] = {
        let mut values = [16u8; 256];
        let mut i = 0;
        while i < 10 {
            values[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            values[b'a' as usize + i] = 10 + i as u8;
            i += 1;
        }
        values
    };
    let text: &[u8; 64] = text.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (VALUES[usize::from(pair[0])], VALUES[usize::from(pair[1])]);
        bad |= high | low;
        *byte = high << 4 | (low & 0xf);
    }
    (bad < 16).then_some(out)
}

impl<'a> Record<'a> {
    /// Reads a record from its JSON, `None` for bytes that are not one.
    ///
    /// A record as `serde_json` writes it (compact, its fields in order, no escapes in
    /// its text, no parameters) is read by [`Record::parse_canonical`], a few times
    /// faster than `serde_json` (a persisted hit in a fresh process reads one); any
    /// other bytes by `serde_json`, which decides.
    fn parse(bytes: &'a [u8]) -> Option<Record<'a>> {
        Record::parse_canonical(bytes).or_else(|| serde_json::from_slice(bytes).ok())
    }

    /// Reads the bytes of a record exactly as `serde_json::to_vec` writes one without
    /// parameters (or as version 3 wrote one), else `None` (which says nothing of
    /// whether they are a record). Whatever it reads, `serde_json` reads as the same
    /// record: it accepts only the one way of writing each value that `serde_json`
    /// writes (no whitespace, no escapes, no leading zeros, the fields in their order).
    fn parse_canonical(bytes: &'a [u8]) -> Option<Record<'a>> {
        let mut r = Canonical(bytes);
        r.token(b"{\"version\":")?;
        let version = r.number(u32::MAX)?;
        r.token(b",\"task\":")?;
        let task = r.string()?;
        r.token(b",\"cache_key\":")?;
        let cache_key = r.string()?;
        r.token(b",\"location\":")?;
        let location = r.string()?;
        r.token(b",\"result\":")?;
        let result = r.digest()?;
        r.token(b",\"code_version\":")?;
        let code_version = r.string()?;
        r.token(b",\"expiration\":")?;
        let expiration = if r.token(b"null").is_some() {
            None
        } else {
            Some(r.date()?)
        };
        r.token(b",\"created\":")?;
        let created = r.date()?;
        r.token(b",\"inputs\":[")?;
        let mut inputs = Vec::new();
        if r.token(b"]").is_none() {
            loop {
                r.token(b"[")?;
                let name = r.string()?;
                r.token(b",")?;
                inputs.push((Cow::Borrowed(name), r.digest()?));
                r.token(b"]")?;
                if r.token(b",").is_none() {
                    r.token(b"]")?;
                    break;
                }
            }
        }
        r.token(b",\"parameters\":{}}")?;
        r.0.is_empty().then_some(Record {
            version,
            task: Cow::Borrowed(task),
            cache_key: Cow::Borrowed(cache_key),
            location: Cow::Borrowed(location),
            result,
            code_version: Cow::Borrowed(code_version),
            expiration,
            created,
            inputs,
            parameters: BTreeMap::new(),
        })
    }
}

/// What is left of a record's JSON to read, for [`Record::parse_canonical`].
struct Canonical<'a>(&'a [u8]);

impl<'a> Canonical<'a> {
    /// Takes `expected` if the rest starts with it.
    fn token(&mut self, expected: &[u8]) -> Option<()> {
        self.0 = self.0.strip_prefix(expected)?;
        Some(())
    }

    /// A non-negative integer of at most `max` (below 2^32), written without a leading
    /// zero.
    fn number(&mut self, max: u32) -> Option<u32> {
        let (&first, _) = self.0.split_first()?;
        if !first.is_ascii_digit() {
            return None;
        }
        let mut n = u64::from(first - b'0');
        let mut len = 1;
        while let Some(&b) = self.0.get(len) {
            if !b.is_ascii_digit() {
                break;
            }
            // A leading zero, or more digits than any `u32` has.
            if first == b'0' || len == 10 {
                return None;
            }
            n = n * 10 + u64::from(b - b'0');
            len += 1;
        }
        // A number goes on with a fraction or an exponent, which these never have.
        if n > u64::from(max) || matches!(self.0.get(len), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.0 = &self.0[len..];
        Some(n as u32)
    }

    /// A string without escapes or control characters, as it is.
    fn string(&mut self) -> Option<&'a str> {
        let rest = self.0.strip_prefix(b"\"")?;
        let end = string_end(rest)?;
        if rest[end] != b'"' {
            return None;
        }
        let text = std::str::from_utf8(&rest[..end]).ok()?;
        self.0 = &rest[end + 1..];
        Some(text)
    }

    /// A digest: 64 lowercase hex digits in a string, or (as version 3 wrote one) an
    /// array of numbers.
    fn digest(&mut self) -> Option<Digest> {
        if let Some(rest) = self.0.strip_prefix(b"\"") {
            let (text, rest) = rest.split_first_chunk::<64>()?;
            let digest = unhex(text)?;
            self.0 = rest.strip_prefix(b"\"")?;
            return Some(Digest(digest));
        }
        self.digest_array().map(Digest)
    }

    /// 32 bytes as a JSON array of numbers (each as [`number`](Self::number) reads
    /// it, at most 255).
    fn digest_array(&mut self) -> Option<[u8; 32]> {
        let mut rest = self.0.strip_prefix(b"[")?;
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            if i > 0 {
                rest = rest.strip_prefix(b",")?;
            }
            let (&first, tail) = rest.split_first()?;
            let mut value = u32::from(first.wrapping_sub(b'0'));
            if value > 9 {
                return None;
            }
            rest = tail;
            // Up to two more digits, unless the first was a zero. A digit left over (a
            // leading zero, a fourth digit), or anything else, fails the `,` or `]`
            // that must follow.
            if value != 0 {
                for _ in 0..2 {
                    match rest.split_first() {
                        Some((&d, tail)) if d.is_ascii_digit() => {
                            value = value * 10 + u32::from(d - b'0');
                            rest = tail;
                        }
                        _ => break,
                    }
                }
            }
            *byte = u8::try_from(value).ok()?;
        }
        self.0 = rest.strip_prefix(b"]")?;
        Some(digest)
    }

    /// A date and time as chrono's serde reads one (RFC 3339, to UTC), written as it
    /// writes a `DateTime<Utc>`: `2026-11-27T23:26:40.592846196Z`.
    fn date(&mut self) -> Option<DateTime<Utc>> {
        let text = self.string()?.as_bytes();
        // `YYYY-MM-DDTHH:MM:SS`, then a fraction of 1 to 9 digits or none, then `Z`.
        let (head, rest) = text.split_first_chunk::<19>()?;
        let digits = |at: usize, n: usize| -> Option<u32> {
            head[at..at + n].iter().try_fold(0u32, |v, &b| {
                b.is_ascii_digit().then(|| v * 10 + u32::from(b - b'0'))
            })
        };
        let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
        if separators.iter().any(|&(at, c)| head[at] != c) {
            return None;
        }
        let nanos = match rest {
            [b'Z'] => 0,
            [b'.', fraction @ .., b'Z'] if (1..=9).contains(&fraction.len()) => {
                let value = fraction.iter().try_fold(0u32, |v, &b| {
                    b.is_ascii_digit().then(|| v * 10 + u32::from(b - b'0'))
                })?;
                value * 10u32.pow(9 - fraction.len() as u32)
            }
            _ => return None,
        };
        // Out of range (a leap second too): not a date this reads; `serde_json` decides.
        let date = chrono::NaiveDate::from_ymd_opt(
            i32::try_from(digits(0, 4)?).ok()?,
            digits(5, 2)?,
            digits(8, 2)?,
        )?;
        let time = chrono::NaiveTime::from_hms_nano_opt(
            digits(11, 2)?,
            digits(14, 2)?,
            digits(17, 2)?,
            nanos,
        )?;
        Some(DateTime::from_naive_utc_and_offset(
            chrono::NaiveDateTime::new(date, time),
            Utc,
        ))
    }
}

/// The index of the first `"`, `\\` or control character in `text`: a record's text
/// runs to its closing quote and, as `serde_json` writes it, has no escapes. (The quote
/// is found with `memchr`'s vector search, and the text before it checked in one pass
/// without an early exit, which the compiler also makes into vector compares: five
/// times faster than a loop that stops at the first of the three, on a record's
/// longest strings.)
fn string_end(text: &[u8]) -> Option<usize> {
    let stops = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
    match memchr::memchr(b'"', text) {
        Some(end) if !text[..end].iter().fold(false, |any, &b| any | stops(b)) => Some(end),
        _ => text.iter().position(|&b| stops(b)),
    }
}

/// The record id of a run's inputs: the hex of the digest of all of them together,
/// what `all_inputs` looks up.
pub(crate) fn record_id(all_inputs: &InputDigest) -> String {
    hex(&all_inputs.0)
}

/// The location whose lock guards the record `all_inputs` will get under `key`: taken
/// by the run that computes it, so that other processes wait for the record instead of
/// computing the same output. (Only locked, never written: a backend names its lock
/// after the location.)
pub(crate) fn record_lock_location(key: &str, all_inputs: &InputDigest) -> Location {
    use sha2::Digest;
    let key = hex(&sha2::Sha256::digest(key.as_bytes())[..16]);
    Location::new(format!("records/{key}/{}", record_id(all_inputs)))
        .expect("hex digits make a valid location")
}

/// Removes every persisted cache record under `spec`'s key (a refresh under a validator
/// that accepts other inputs' outputs: the refreshed output must be the one served).
pub(crate) async fn remove_records<T>(io: Io, backend: &Backend<'_, T>, spec: &TaskSpec) {
    let key = spec.cache_key();
    let ids = match backend.list_records_io(io, key).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(task = spec.name(), error = %e, "cannot list the persisted cache records to replace them");
            return;
        }
    };
    for id in ids {
        if let Err(e) = backend.remove_record_io(io, key, &id).await {
            tracing::warn!(task = spec.name(), record = %id, error = %e, "cannot remove a persisted cache record");
        }
    }
}

/// Writes the record of a cached output at `location`.
pub(crate) async fn put_record<T>(
    io: Io,
    backend: &Backend<'_, T>,
    spec: &TaskSpec,
    cached: &Cached,
    all_inputs: &InputDigest,
    location: &Location,
    result: PayloadDigest,
) -> Result<(), PersistError> {
    let task = spec.name();
    let record = Record {
        version: RECORD_VERSION,
        task: Cow::Borrowed(task),
        cache_key: Cow::Borrowed(&cached.cache_key),
        location: Cow::Borrowed(location.as_str()),
        result: Digest(result.0),
        code_version: Cow::Borrowed(spec.code_version()),
        expiration: cached.expiration,
        created: cached.created,
        inputs: cached
            .hashed_inputs
            .iter()
            .map(|(n, d)| (Cow::Borrowed(n), Digest(d.0)))
            .collect(),
        parameters: cached
            .parameters
            .iter()
            .map(|(n, p)| (n.to_owned(), (p.value().clone(), Digest(p.digest().0))))
            .collect(),
    };
    let bytes = serde_json::to_vec(&record).expect("a record is plain data");
    backend
        .put_record_io(io, &cached.cache_key, &record_id(all_inputs), bytes)
        .await
        .map_err(|source| PersistError::Backend {
            task,
            backend: backend.describe(),
            source,
        })
}

/// A persisted cached output that the validator accepts.
pub(crate) struct RecordHit<T> {
    pub(crate) value: T,
    pub(crate) cached: Cached,
    pub(crate) location: Location,
}

/// Looks for a valid persisted cached output under `key`: the record of these inputs
/// (by id), then, when the validator accepts other inputs' outputs, the key's other
/// records.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_hit<T>(
    io: Io,
    backend: &Backend<'_, T>,
    spec: &TaskSpec,
    validator: &CacheValidator,
    digests: &[InputDigest],
    all_inputs: &InputDigest,
    parameters: &Parameters,
    now: DateTime<Utc>,
) -> Option<RecordHit<T>> {
    let inputs = HashedInputs::new(spec.inputs(), digests);
    let lookup = RecordLookup {
        io,
        backend,
        spec,
        validator,
        inputs: &inputs,
        parameters,
        now,
    };
    // The record of these very inputs first: under `all_inputs` the only candidate;
    // under any other validator the likeliest valid one, found without listing the
    // key's records (a directory listing costs more than the lookup itself).
    let own = record_id(all_inputs);
    if let Some(hit) = lookup.try_record(&own).await {
        return Some(hit);
    }
    if validator.requires_equal_inputs() {
        return None;
    }
    let key = spec.cache_key();
    let ids = match backend.list_records_io(io, key).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(task = spec.name(), cache_key = key, error = %e, "cannot list persisted cache records");
            return None;
        }
    };
    for id in ids.iter().filter(|id| **id != own) {
        if let Some(hit) = lookup.try_record(id).await {
            return Some(hit);
        }
    }
    None
}

/// What one lookup of persisted records compares them with.
struct RecordLookup<'a, 'b, T> {
    io: Io,
    backend: &'a Backend<'b, T>,
    spec: &'a TaskSpec,
    validator: &'a CacheValidator,
    inputs: &'a HashedInputs<'a>,
    parameters: &'a Parameters,
    now: DateTime<Utc>,
}

impl<T> RecordLookup<'_, '_, T> {
    /// Removes a record that can never serve again (damaged, of another version or
    /// key, expired), so that records do not pile up and later lookups do not read it
    /// again. (Removing one that another process has just replaced loses that entry: a
    /// miss later, never a wrong value.)
    async fn discard(&self, id: &str) {
        let key = self.spec.cache_key();
        if let Err(e) = self.backend.remove_record_io(self.io, key, id).await {
            tracing::debug!(task = self.spec.name(), cache_key = key, record = %id, error = %e, "cannot remove a spent cache record");
        }
    }

    /// The output the record `id` describes, when the validator accepts the record and
    /// the output reads back as the one recorded.
    async fn try_record(&self, id: &str) -> Option<RecordHit<T>> {
        let (task, key) = (self.spec.name(), self.spec.cache_key());
        let bytes = match self.backend.get_record_io(self.io, key, id).await {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(task, cache_key = key, record = %id, error = %e, "cannot read a persisted cache record");
                if matches!(e, ResultError::Corrupt { .. }) {
                    self.discard(id).await;
                }
                return None;
            }
        };
        let Some(Decoded {
            cached,
            location,
            pinned,
            other_version,
        }) = decode_record(&bytes, self.spec)
        else {
            tracing::warn!(task, cache_key = key, record = %id, "a persisted cache record is damaged or from another version; it is removed");
            self.discard(id).await;
            return None;
        };
        if other_version {
            tracing::debug!(
                task,
                cache_key = key,
                record = %id,
                "a persisted cache record was made by another version of the task: the \
                 task's code changed (or its cache_version did); it is not used"
            );
            return None;
        }
        if cached.is_expired(self.now) {
            self.discard(id).await;
            return None;
        }
        if !self
            .validator
            .is_valid(&cached, self.inputs, self.parameters, self.now)
        {
            return None;
        }
        let value = read_valid(self.io, self.backend, task, &location, Some(&pinned)).await?;
        Some(RecordHit {
            value,
            cached,
            location,
        })
    }
}

/// What a record read for a lookup says: the cached output it describes, where, its
/// payload's digest, and whether another version of this very task made it.
struct Decoded {
    cached: Cached,
    location: Location,
    pinned: PayloadDigest,
    other_version: bool,
}

/// Reads the record `bytes` for `spec`'s lookups, `None` when they are not a record of
/// its key that this build reads.
fn decode_record(bytes: &[u8], spec: &TaskSpec) -> Option<Decoded> {
    let (names, key) = (spec.inputs(), spec.cache_key());
    let record = Record::parse(bytes)?;
    if !readable(record.version) || record.cache_key != key {
        return None;
    }
    // Records are only compared with runs of tasks under the same key; a record made by
    // a task with other argument names keeps its digests under the current names only
    // when the names agree, else it cannot match on inputs.
    let same_names = record.inputs.len() == names.len()
        && record.inputs.iter().zip(names).all(|((a, _), b)| a == b);
    // (Gathered on the stack: a record of up to two arguments keeps them inline.)
    let digests: smallvec::SmallVec<[InputDigest; 4]> = if same_names {
        record
            .inputs
            .iter()
            .map(|(_, d)| InputDigest(d.0))
            .collect()
    } else {
        smallvec::smallvec![InputDigest([0; 32]); names.len()]
    };
    let parameters = Parameters::from_map(
        record
            .parameters
            .into_iter()
            .map(|(n, (v, d))| (n, Parameter::from_parts(v, InputDigest(d.0))))
            .collect(),
    );
    // Another version of this very task: its code changed. (A record another task made
    // under a shared `cache_key` is shared on purpose, whatever its code.)
    let other_version = record.task == spec.name() && record.code_version != spec.code_version();
    Some(Decoded {
        cached: Cached {
            expiration: record.expiration,
            hashed_inputs: HashedInputs::copied(names, &digests),
            parameters,
            cache_key: Cow::Borrowed(key),
            created: record.created,
        },
        location: Location::new(record.location.into_owned()).ok()?,
        pinned: PayloadDigest(record.result.0),
        other_version,
    })
}

/// What a persisted cache record says, for tools that list and prune caches (the
/// `taskcache` command): read from the record's bytes (as a backend's `get_record`
/// returns them) without touching the result it describes.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordInfo {
    /// The task that made it.
    pub task: String,
    /// The cache key it is stored under.
    pub cache_key: String,
    /// The location of the result it describes.
    pub location: String,
    /// The SHA-256 of that result's payload.
    pub result: PayloadDigest,
    /// The version of the task's code that made it.
    pub code_version: String,
    /// When it stops being valid (`None`: never).
    pub expiration: Option<DateTime<Utc>>,
    /// When the output was computed.
    pub created: DateTime<Utc>,
}

impl RecordInfo {
    /// Reads a record; `None` for bytes that are not a record this version reads.
    pub fn parse(bytes: &[u8]) -> Option<RecordInfo> {
        let record = Record::parse(bytes)?;
        readable(record.version).then(|| RecordInfo {
            task: record.task.into_owned(),
            cache_key: record.cache_key.into_owned(),
            location: record.location.into_owned(),
            result: PayloadDigest(record.result.0),
            code_version: record.code_version.into_owned(),
            expiration: record.expiration,
            created: record.created,
        })
    }
}

/// Whether `value` is `None` (an `Option` output that holds nothing): such an output is
/// never checkpointed and does not satisfy a target, as in Prefect, where a result is
/// written only when the value is not `None`. Only the outermost value is looked at, and
/// serialization stops at its first call.
pub(crate) fn is_none<T: Serialize + ?Sized>(value: &T) -> bool {
    value.serialize(NoneProbe).is_ok()
}

/// A serializer that succeeds for `None` and fails at once for anything else.
struct NoneProbe;

/// What [`NoneProbe`] answers for anything but `None`.
#[derive(Debug)]
struct NotNone;

impl std::fmt::Display for NotNone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not None")
    }
}

impl std::error::Error for NotNone {}

impl serde::ser::Error for NotNone {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        NotNone
    }
}

/// The methods of [`NoneProbe`] that fail, by name and argument types.
macro_rules! not_none {
    ($($method:ident($($arg:ty),*) -> $ok:ty;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<$ok, NotNone> { Err(NotNone) })*
    };
}

impl serde::Serializer for NoneProbe {
    type Ok = ();
    type Error = NotNone;
    type SerializeSeq = serde::ser::Impossible<(), NotNone>;
    type SerializeTuple = serde::ser::Impossible<(), NotNone>;
    type SerializeTupleStruct = serde::ser::Impossible<(), NotNone>;
    type SerializeTupleVariant = serde::ser::Impossible<(), NotNone>;
    type SerializeMap = serde::ser::Impossible<(), NotNone>;
    type SerializeStruct = serde::ser::Impossible<(), NotNone>;
    type SerializeStructVariant = serde::ser::Impossible<(), NotNone>;

    fn serialize_none(self) -> Result<(), NotNone> {
        Ok(())
    }

    fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> Result<(), NotNone> {
        Err(NotNone)
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &V,
    ) -> Result<(), NotNone> {
        Err(NotNone)
    }

    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<(), NotNone> {
        Err(NotNone)
    }

    not_none! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_i128(i128) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_u128(u128) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_str(&str) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
}

#[cfg(test)]
mod none_tests {
    use super::is_none;

    #[test]
    fn only_a_none_is_none() {
        assert!(is_none(&None::<u32>));
        assert!(is_none(&None::<Vec<String>>));
        assert!(!is_none(&Some(0u32)));
        assert!(!is_none(&Some(None::<u32>)), "Some(None) holds something");
        assert!(!is_none(&()));
        assert!(!is_none(&0u8));
        assert!(!is_none(&"".to_owned()));
        assert!(!is_none(&Vec::<u8>::new()));
        assert!(!is_none(&Ok::<Option<u8>, String>(None)));
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use proptest::prelude::*;

    fn record(
        text: [String; 4],
        digests: Vec<[u8; 32]>,
        times: (i64, Option<i64>),
        version: u32,
    ) -> Record<'static> {
        let [task, cache_key, location, code_version] = text.map(Cow::Owned);
        let at = |nanos: i64| DateTime::<Utc>::from_timestamp_nanos(nanos);
        Record {
            version,
            task,
            cache_key,
            location,
            result: Digest(digests.first().copied().unwrap_or([7; 32])),
            code_version,
            expiration: times.1.map(at),
            created: at(times.0),
            inputs: digests
                .iter()
                .enumerate()
                .map(|(i, d)| (Cow::Owned(format!("arg{i}")), Digest(*d)))
                .collect(),
            parameters: BTreeMap::new(),
        }
    }

    /// `r` as `serde_json` writes it, or with `v3`, as version 3 wrote it: its digests
    /// as arrays of numbers instead of hex text.
    fn written(r: &Record, v3: bool) -> Vec<u8> {
        let mut text = String::from_utf8(serde_json::to_vec(r).unwrap()).unwrap();
        if v3 {
            let digests = std::iter::once(r.result)
                .chain(r.inputs.iter().map(|(_, d)| *d))
                .chain(r.parameters.values().map(|(_, d)| *d));
            for d in digests {
                let numbers: Vec<String> = d.0.iter().map(u8::to_string).collect();
                text = text.replace(
                    &format!("\"{}\"", hex(&d.0)),
                    &format!("[{}]", numbers.join(",")),
                );
            }
        }
        text.into_bytes()
    }

    fn strategy() -> impl Strategy<Value = (Record<'static>, bool)> {
        (
            proptest::array::uniform4(".{0,12}"),
            proptest::collection::vec(proptest::array::uniform32(any::<u8>()), 0..3),
            (any::<i64>(), proptest::option::of(any::<i64>())),
            any::<u32>(),
            any::<bool>(),
        )
            .prop_map(|(text, digests, times, version, v3)| {
                (record(text, digests, times, version), v3)
            })
    }

    proptest! {
        /// The search for a string's end stops where a scan byte by byte does.
        #[test]
        fn a_string_ends_at_its_first_quote_escape_or_control(
            bytes in prop::collection::vec(prop_oneof![30 => b'a'..=b'z', 1 => any::<u8>()], 0..100),
        ) {
            let plain = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(string_end(&bytes), plain);
        }

        /// Every record `serde_json` writes is read the same by the fast reader (when it
        /// has no escapes) as by `serde_json`.
        #[test]
        fn the_fast_reader_reads_what_serde_json_writes((r, v3) in strategy()) {
            let bytes = written(&r, v3);
            let escapes = bytes.contains(&b'\\');
            let fast = Record::parse_canonical(&bytes);
            prop_assert_eq!(fast.is_some(), !escapes);
            if let Some(fast) = fast {
                prop_assert_eq!(&fast, &r);
            }
            let read = Record::parse(&bytes);
            prop_assert_eq!(read.as_ref(), Some(&r));
        }

        /// Whatever bytes the fast reader accepts, `serde_json` reads as the same record:
        /// records changed at a byte, cut short, or with bytes inserted.
        #[test]
        fn the_fast_reader_accepts_nothing_serde_json_reads_otherwise(
            (r, v3) in strategy(),
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"0123456789abcdefABF-+.eE,:[]{}\" \\nullZT\x00\xff".to_vec()),
            how in 0..3u8,
        ) {
            let mut bytes = written(&r, v3);
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
            if let Some(fast) = Record::parse_canonical(&bytes) {
                let slow: Result<Record, _> = serde_json::from_slice(&bytes);
                prop_assert!(slow.is_ok(), "{:?}", slow.err());
                prop_assert_eq!(&fast, &slow.unwrap());
            }
        }
    }

    #[test]
    fn a_record_with_parameters_or_spaces_is_read_by_serde_json() {
        let mut r = record(
            ["t".into(), "k".into(), "l.bin".into(), "v".into()],
            vec![[1; 32]],
            (5, None),
            RECORD_VERSION,
        );
        r.parameters.insert(
            "n".into(),
            (serde_json::json!({"a": [1, 2]}), Digest([3; 32])),
        );
        let bytes = serde_json::to_vec(&r).unwrap();
        assert!(Record::parse_canonical(&bytes).is_none());
        assert_eq!(Record::parse(&bytes), Some(r));
        let spaced = serde_json::to_vec_pretty(&record(
            ["t".into(), "k".into(), "l.bin".into(), "v".into()],
            vec![],
            (5, Some(6)),
            RECORD_VERSION,
        ))
        .unwrap();
        assert!(Record::parse_canonical(&spaced).is_none());
        assert!(Record::parse(&spaced).is_some());
        // Leading zeros, and numbers out of range, are not JSON a record has.
        let zeros = record(
            ["t".into(), "k".into(), "l.bin".into(), "v".into()],
            vec![[0; 32]],
            (5, None),
            3,
        );
        let text = String::from_utf8(written(&zeros, true)).unwrap();
        assert_eq!(
            Record::parse_canonical(text.as_bytes()).as_ref(),
            Some(&zeros)
        );
        assert!(
            RecordInfo::parse(text.as_bytes()).is_some(),
            "version 3 is read"
        );
        for bad in [
            text.replacen("[0,", "[00,", 1),
            text.replacen("[0,", "[256,", 1),
            text.replacen("[0,", "[0.0,", 1),
            text.replacen("[0,", "[-0,", 1),
        ] {
            assert!(Record::parse_canonical(bad.as_bytes()).is_none(), "{bad}");
            assert!(Record::parse(bad.as_bytes()).is_none(), "{bad}");
        }
        // JSON, but not as `serde_json` writes it: left to `serde_json`, which reads it.
        let spaced = text.replacen("[0,", "[0 ,", 1);
        assert!(Record::parse_canonical(spaced.as_bytes()).is_none());
        assert!(Record::parse(spaced.as_bytes()).is_some());
    }

    #[test]
    fn a_digest_is_64_lowercase_hex_digits_and_nothing_else() {
        let r = record(
            ["t".into(), "k".into(), "l.bin".into(), "v".into()],
            vec![[0xab; 32]],
            (5, None),
            RECORD_VERSION,
        );
        let text = String::from_utf8(written(&r, false)).unwrap();
        let digits = "ab".repeat(32);
        assert!(text.contains(&format!("\"{digits}\"")), "{text}");
        assert_eq!(Record::parse_canonical(text.as_bytes()).as_ref(), Some(&r));
        for bad in [
            text.replacen(&digits, &"AB".repeat(32), 1),
            text.replacen(&digits, &digits[1..], 1),
            text.replacen(&digits, &format!("{digits}a"), 1),
            text.replacen(&digits, &format!("g{}", &digits[1..]), 1),
            text.replacen(&digits, &format!("{} ", &digits[1..]), 1),
        ] {
            assert!(Record::parse_canonical(bad.as_bytes()).is_none(), "{bad}");
            assert!(Record::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
