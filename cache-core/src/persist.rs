//! Persistence in a task run: the global checkpointing switch, rendering targets and
//! result locations, reading stored results without trusting damaged ones, and the
//! cached-state records that let an output cache outlive the process.
//!
//! The switch is public ([`set_checkpointing`], [`checkpointing`],
//! `TASKCACHE_CHECKPOINTING`); the rest is what the runner calls: render the target and
//! read it, look for a persisted cached output, and after a success write the output and
//! its record.

use crate::context::Context;
use crate::hash::InputDigest;
use crate::parameters::{Parameter, Parameters};
use crate::result::{
    Location, LocationLock, PayloadDigest, ResultBackend, ResultBackendExt, ResultError,
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
                Err(_) => Err(ResultError::Serialize {
                    path: std::path::PathBuf::from(l.as_str()),
                    serializer: "taskcache",
                    source: crate::result::SerializeError(
                        "an `Err` is a failure and is never written".into(),
                    ),
                }),
            },
            is_none: |v| v.as_ref().is_ok_and(is_none::<T>),
        }
    }
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

/// Renders `template` for a task run into a location.
pub(crate) fn render(
    task: &'static str,
    template: &str,
    values: &RenderValues<'_>,
) -> Result<Location, PersistError> {
    let parsed =
        Template::parse(template).map_err(|source| PersistError::Template { task, source })?;
    let rendered = parsed
        .render(values)
        .map_err(|source| PersistError::Template { task, source })?;
    Location::new(rendered).map_err(|source| PersistError::Location { task, source })
}

/// Reads a value at `location` (only the payload `pinned`, when given), treating a
/// damaged, foreign or replaced file as absent (with a warning): the task then
/// recomputes and overwrites it.
pub(crate) fn read_valid<T>(
    backend: &Backend<'_, T>,
    task: &'static str,
    location: &Location,
    pinned: Option<&PayloadDigest>,
) -> Option<T> {
    match backend.read_pinned(location, pinned) {
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
pub(crate) fn lock<T>(
    backend: &Backend<'_, T>,
    task: &'static str,
    location: &Location,
) -> Option<LocationLock> {
    match backend.lock(location) {
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
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    version: u32,
    task: String,
    cache_key: String,
    location: String,
    result: PayloadDigest,
    /// The version of the task's code that made it (its fingerprint, or `cache_version`).
    code_version: String,
    #[serde(deserialize_with = "Option::deserialize")]
    expiration: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
    inputs: Vec<(String, InputDigest)>,
    parameters: BTreeMap<String, (serde_json::Value, InputDigest)>,
}

/// Version 2 pins the result's payload digest; version 3 adds the code's version.
/// Records of earlier versions are ignored (a miss).
const RECORD_VERSION: u32 = 3;

/// The record id of a run's inputs: the hex of the digest of all of them together,
/// what `all_inputs` looks up.
pub(crate) fn record_id(all_inputs: &InputDigest) -> String {
    all_inputs.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// The location whose lock guards the record `all_inputs` will get under `key`: taken
/// by the run that computes it, so that other processes wait for the record instead of
/// computing the same output. (Only locked, never written: a backend names its lock
/// after the location.)
pub(crate) fn record_lock_location(key: &str, all_inputs: &InputDigest) -> Location {
    use sha2::Digest;
    let key: String = sha2::Sha256::digest(key.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Location::new(format!("records/{key}/{}", record_id(all_inputs)))
        .expect("hex digits make a valid location")
}

/// Removes every persisted cache record under `spec`'s key (a refresh under a validator
/// that accepts other inputs' outputs: the refreshed output must be the one served).
pub(crate) fn remove_records<T>(backend: &Backend<'_, T>, spec: &TaskSpec) {
    let key = spec.cache_key();
    let ids = match backend.list_records(key) {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(task = spec.name(), error = %e, "cannot list the persisted cache records to replace them");
            return;
        }
    };
    for id in ids {
        if let Err(e) = backend.remove_record(key, &id) {
            tracing::warn!(task = spec.name(), record = %id, error = %e, "cannot remove a persisted cache record");
        }
    }
}

/// Writes the record of a cached output at `location`.
pub(crate) fn put_record<T>(
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
        task: task.to_owned(),
        cache_key: cached.cache_key.to_string(),
        location: location.as_str().to_owned(),
        result,
        code_version: spec.code_version().to_owned(),
        expiration: cached.expiration,
        created: cached.created,
        inputs: cached
            .hashed_inputs
            .iter()
            .map(|(n, d)| (n.to_owned(), *d))
            .collect(),
        parameters: cached
            .parameters
            .iter()
            .map(|(n, p)| (n.to_owned(), (p.value().clone(), *p.digest())))
            .collect(),
    };
    let bytes = serde_json::to_vec(&record).expect("a record is plain data");
    backend
        .put_record(&cached.cache_key, &record_id(all_inputs), &bytes)
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

/// Looks for a valid persisted cached output under `key`: by id when the validator
/// needs equal inputs, else among all the key's records.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_hit<T>(
    backend: &Backend<'_, T>,
    spec: &TaskSpec,
    validator: &CacheValidator,
    digests: &[InputDigest],
    all_inputs: &InputDigest,
    parameters: &Parameters,
    now: DateTime<Utc>,
) -> Option<RecordHit<T>> {
    let (task, key, names) = (spec.name(), spec.cache_key(), spec.inputs());
    let ids = if validator.requires_equal_inputs() {
        vec![record_id(all_inputs)]
    } else {
        match backend.list_records(key) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(task, cache_key = key, error = %e, "cannot list persisted cache records");
                return None;
            }
        }
    };
    let inputs = HashedInputs::new(names, digests);
    // A record that can never serve again (damaged, of another version or key, expired)
    // is removed, so that records do not pile up and later lookups do not read it again.
    // (Removing one that another process has just replaced loses that entry: a miss
    // later, never a wrong value.)
    let discard = |id: &str| {
        if let Err(e) = backend.remove_record(key, id) {
            tracing::debug!(task, cache_key = key, record = %id, error = %e, "cannot remove a spent cache record");
        }
    };
    for id in ids {
        let bytes = match backend.get_record(key, &id) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(task, cache_key = key, record = %id, error = %e, "cannot read a persisted cache record");
                if matches!(e, ResultError::Corrupt { .. }) {
                    discard(&id);
                }
                continue;
            }
        };
        let Some(cached_and_location) = decode_record(&bytes, names, key) else {
            tracing::warn!(task, cache_key = key, record = %id, "a persisted cache record is damaged or from another version; it is removed");
            discard(&id);
            continue;
        };
        let (cached, location, pinned, (made_by, code_version)) = cached_and_location;
        // Another version of this very task: its code changed. (A record another task
        // made under a shared `cache_key` is shared on purpose, whatever its code.)
        if made_by == task && code_version != spec.code_version() {
            tracing::debug!(
                task,
                cache_key = key,
                record = %id,
                "a persisted cache record was made by another version of the task: the \
                 task's code changed (or its cache_version did); it is not used"
            );
            continue;
        }
        if cached.is_expired(now) {
            discard(&id);
            continue;
        }
        if !validator.is_valid(&cached, &inputs, parameters, now) {
            continue;
        }
        if let Some(value) = read_valid(backend, task, &location, Some(&pinned)) {
            return Some(RecordHit {
                value,
                cached,
                location,
            });
        }
    }
    None
}

fn decode_record(
    bytes: &[u8],
    names: &'static [&'static str],
    key: &'static str,
) -> Option<(Cached, Location, PayloadDigest, (String, String))> {
    let record: Record = serde_json::from_slice(bytes).ok()?;
    if record.version != RECORD_VERSION || record.cache_key != key {
        return None;
    }
    // Records are only compared with runs of tasks under the same key; a record made by
    // a task with other argument names keeps its digests under the current names only
    // when the names agree, else it cannot match on inputs.
    let same_names = record.inputs.len() == names.len()
        && record.inputs.iter().zip(names).all(|((a, _), b)| a == b);
    let digests: Vec<InputDigest> = if same_names {
        record.inputs.iter().map(|(_, d)| *d).collect()
    } else {
        vec![InputDigest([0; 32]); names.len()]
    };
    let parameters = Parameters::from_map(
        record
            .parameters
            .into_iter()
            .map(|(n, (v, d))| (n, Parameter::from_parts(v, d)))
            .collect(),
    );
    let location = Location::new(record.location).ok()?;
    Some((
        Cached {
            expiration: record.expiration,
            hashed_inputs: HashedInputs::new(names, digests),
            parameters,
            cache_key: Cow::Borrowed(key),
            created: record.created,
        },
        location,
        record.result,
        (record.task, record.code_version),
    ))
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
    /// Reads a record; `None` for bytes that are not a record this version writes.
    pub fn parse(bytes: &[u8]) -> Option<RecordInfo> {
        let record: Record = serde_json::from_slice(bytes).ok()?;
        (record.version == RECORD_VERSION).then_some(RecordInfo {
            task: record.task,
            cache_key: record.cache_key,
            location: record.location,
            result: record.result,
            code_version: record.code_version,
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
