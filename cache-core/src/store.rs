//! The in-process output cache: cached outputs by cache key, as Prefect keeps them in
//! `prefect.context`.
//!
//! Each cache key (a task's `cache_key`, or else its name) holds candidates: outputs
//! with the [`Cached`] record they were made from. Candidates are grouped by the digest
//! of all their inputs together, so a validator that needs equal inputs (`all_inputs`)
//! finds its candidate with one hash and one lookup, without scanning the others. Each key has its own
//! lock, held only to look up or insert, never while a task body runs.
//!
//! Concurrent runs of the same key with the same inputs compute once: the first becomes
//! the leader of a *flight*, the others wait for it and then look again (single-flight).

use crate::hash::InputKey;
use crate::parameters::Parameters;
use crate::state::{Cached, HashedInputs};
use crate::validators::CacheValidator;
use crossbeam_utils::sync::ShardedLock;
use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::task::{Context as TaskContext, Poll, Waker};

/// The cache of task outputs kept in process memory.
///
/// One process-wide instance ([`OutputCache::global`]) serves every task unless a
/// scope installs its own with [`Context::with_cache`](crate::context::Context::with_cache).
#[derive(Default)]
pub struct OutputCache {
    keys: RwLock<HashMap<Box<str>, Arc<KeyCache>>>,
    /// What the outputs of all keys hold, against the memory budget.
    usage: Arc<Usage>,
}

/// Entries and approximate bytes held by one [`OutputCache`].
#[derive(Default, Debug)]
pub(crate) struct Usage {
    entries: AtomicUsize,
    bytes: AtomicUsize,
}

/// The most an in-memory output cache may hold: entries, and their approximate size in
/// bytes. The budget is process-wide and applies to each [`OutputCache`] on its own (the
/// process-wide one, and any a scope installs). Past either limit, outputs are evicted
/// from the key that holds the most: the least recently used of a sample of its
/// outputs (an approximation of LRU, cheaper than keeping an order).
///
/// The default is 1 000 000 entries and 1 GiB; `TASKCACHE_MEMORY_BUDGET` sets it at
/// start (`"200000"` entries, or `"200000,512MiB"`), [`set_memory_budget`] at run time.
///
/// The bytes are approximate: an entry's bookkeeping (its record, the candidate slot)
/// and the output's own size (`size_of`), not what the output owns on the heap (a
/// `Vec`'s buffer, a `String`'s text). For outputs that own much, budget by entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// The most entries (cached outputs).
    pub max_entries: usize,
    /// The most approximate bytes.
    pub max_bytes: usize,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget {
            max_entries: 1_000_000,
            max_bytes: 1 << 30,
        }
    }
}

/// The environment variable that sets the [`MemoryBudget`] at start.
pub const MEMORY_BUDGET_ENV: &str = "TASKCACHE_MEMORY_BUDGET";

static MAX_ENTRIES: AtomicUsize = AtomicUsize::new(0);
static MAX_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Sets the process-wide budget of the in-memory output caches (see [`MemoryBudget`]).
/// Caches over it shrink at their next insert.
pub fn set_memory_budget(budget: MemoryBudget) {
    budget_once();
    MAX_ENTRIES.store(budget.max_entries.max(1), Ordering::Relaxed);
    MAX_BYTES.store(budget.max_bytes.max(1), Ordering::Relaxed);
}

/// The budget now in force.
pub fn memory_budget() -> MemoryBudget {
    budget_once();
    MemoryBudget {
        max_entries: MAX_ENTRIES.load(Ordering::Relaxed),
        max_bytes: MAX_BYTES.load(Ordering::Relaxed),
    }
}

/// Reads `TASKCACHE_MEMORY_BUDGET` once, or sets the default.
fn budget_once() {
    static READ: OnceLock<()> = OnceLock::new();
    READ.get_or_init(|| {
        let mut budget = MemoryBudget::default();
        if let Ok(text) = std::env::var(MEMORY_BUDGET_ENV) {
            match parse_budget(&text) {
                Some(b) => budget = b,
                None => tracing::warn!(
                    value = %text,
                    "{MEMORY_BUDGET_ENV} is not a budget (write entries, or entries and a size: \
                     \"200000\" or \"200000,512MiB\"); the default is used"
                ),
            }
        }
        MAX_ENTRIES.store(budget.max_entries.max(1), Ordering::Relaxed);
        MAX_BYTES.store(budget.max_bytes.max(1), Ordering::Relaxed);
    });
}

/// `"200000"` or `"200000,512MiB"` (units B, KiB, MiB, GiB, or none for bytes).
fn parse_budget(text: &str) -> Option<MemoryBudget> {
    let mut parts = text.split(',').map(str::trim);
    let entries: usize = parts.next()?.replace('_', "").parse().ok()?;
    let bytes = match parts.next() {
        None => MemoryBudget::default().max_bytes,
        Some(size) => {
            let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let unit = &size[digits.len()..];
            let n: usize = digits.trim().parse().ok()?;
            let scale: usize = match unit.to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kb" | "kib" => 1 << 10,
                "m" | "mb" | "mib" => 1 << 20,
                "g" | "gb" | "gib" => 1 << 30,
                _ => return None,
            };
            n.checked_mul(scale)?
        }
    };
    if parts.next().is_some() {
        return None;
    }
    Some(MemoryBudget {
        max_entries: entries,
        max_bytes: bytes,
    })
}

impl OutputCache {
    /// An empty cache, for a scope of its own (tests, isolated runs).
    pub fn new() -> Arc<Self> {
        Arc::new(OutputCache::default())
    }

    /// The process-wide cache.
    pub fn global() -> &'static Arc<OutputCache> {
        static GLOBAL: OnceLock<Arc<OutputCache>> = OnceLock::new();
        GLOBAL.get_or_init(OutputCache::new)
    }

    /// The candidates under `key`, created empty on first use.
    pub(crate) fn key(&self, key: &str) -> Arc<KeyCache> {
        if let Some(k) = read(&self.keys).get(key) {
            return Arc::clone(k);
        }
        let usage = Arc::clone(&self.usage);
        Arc::clone(
            write_keys(&self.keys)
                .entry(key.into())
                .or_insert_with(|| Arc::new(KeyCache::with_usage(usage))),
        )
    }

    /// Evicts least recently used outputs until this cache is within the memory budget:
    /// from the key that holds the most, each time, and never the output just stored
    /// under `key` (a key with one output is not emptied for the one it just got).
    pub(crate) fn enforce_budget(&self, key: &KeyCache) {
        let budget = memory_budget();
        let over = |u: &Usage| {
            u.entries.load(Ordering::Relaxed) > budget.max_entries
                || u.bytes.load(Ordering::Relaxed) > budget.max_bytes
        };
        while over(&self.usage) {
            let largest = read(&self.keys)
                .values()
                .max_by_key(|k| k.len())
                .map(Arc::clone);
            let Some(largest) = largest else { break };
            let len = largest.len();
            if len == 0 || (len == 1 && std::ptr::eq(&*largest, key)) || !largest.evict_one() {
                break;
            }
        }
    }

    /// Entries and approximate bytes held now.
    pub fn usage(&self) -> (usize, usize) {
        (
            self.usage.entries.load(Ordering::Relaxed),
            self.usage.bytes.load(Ordering::Relaxed),
        )
    }

    /// The number of cached outputs under `key` (expired ones not yet pruned included).
    pub fn len_of(&self, key: &str) -> usize {
        read(&self.keys).get(key).map_or(0, |k| k.len())
    }

    /// Forgets every cached output under `key` (what `my_task::invalidate()` does in
    /// memory, for the task's key).
    pub fn clear_key(&self, key: &str) {
        // Emptied in place: a task keeps its key's candidates at hand after its first
        // call, and must see them gone.
        if let Some(k) = read(&self.keys).get(key) {
            k.clear();
        }
    }

    /// Forgets every cached output (what `taskcache::clear()` does to the process-wide
    /// cache).
    pub fn clear(&self) {
        for k in read(&self.keys).values() {
            k.clear();
        }
    }
}

impl std::fmt::Debug for OutputCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = read(&self.keys);
        f.debug_map()
            .entries(keys.iter().map(|(k, v)| (k, v.len())))
            .finish()
    }
}

/// One cached output.
pub(crate) struct Entry {
    pub(crate) cached: Arc<Cached>,
    pub(crate) value: Box<dyn Any + Send + Sync>,
    /// `cached.expiration` in nanoseconds since the epoch (`i128::MAX`: never).
    expires: i128,
    /// All the inputs together: what `all_inputs` looks up by.
    inputs: InputKey,
    /// Its approximate size (see [`MemoryBudget`]).
    bytes: usize,
    /// When it was last served or stored (nanoseconds, coarse): for eviction.
    used: AtomicI64,
}

/// What an entry costs beyond its output's own size: the entry, its record (with its
/// digests), the candidate slot, the boxes and reference counts, and the allocator's
/// share: about 800 bytes in all, as measured from the resident memory of a process
/// holding 20 000 entries (tests/memory_budget.rs).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + std::mem::size_of::<Cached>() + 480;

impl Entry {
    pub(crate) fn new(
        cached: Arc<Cached>,
        value: Box<dyn Any + Send + Sync>,
        inputs: InputKey,
        value_size: usize,
        now: i128,
    ) -> Self {
        let expires = cached.expiration.map_or(i128::MAX, crate::context::instant);
        let bytes = ENTRY_OVERHEAD + value_size + 64 * cached.hashed_inputs.iter().count();
        Entry {
            cached,
            value,
            expires,
            inputs,
            bytes,
            used: AtomicI64::new(crate::context::saturate(now)),
        }
    }

    fn is_expired(&self, now: i128) -> bool {
        now >= self.expires
    }

    /// Notes a hit, for eviction: written at most once a millisecond, so that threads
    /// hitting one output share its cache line for reading, not writing.
    fn touch(&self, now: i128) {
        let now = crate::context::saturate(now);
        if now.saturating_sub(self.used.load(Ordering::Relaxed)) > 1_000_000 {
            self.used.store(now, Ordering::Relaxed);
        }
    }
}

/// The candidates and flights of one cache key.
///
/// The candidates sit behind a sharded lock: a reader takes only its own thread's
/// shard, so threads hitting one key never write to a shared cache line (a writer
/// takes every shard).
#[derive(Default)]
pub(crate) struct KeyCache {
    candidates: ShardedLock<Candidates>,
    flights: Mutex<HashMap<u64, Arc<Flight>, BuildFingerprint>>,
    usage: Arc<Usage>,
    /// Seeds the fingerprints of exact keys, per key: inputs chosen to collide in one
    /// process collide in no other.
    seed: foldhash::fast::RandomState,
}

#[derive(Default)]
struct Candidates {
    by_inputs: HashMap<u64, Vec<Entry>, BuildFingerprint>,
    /// The fingerprints in the order eviction visits them (a clock): each with the
    /// time it was queued, so that an output served since gets a second chance.
    /// Removed outputs leave theirs behind until a visit skips them or the queue is
    /// rebuilt.
    order: std::collections::VecDeque<(u64, i64)>,
    len: usize,
    sweep_at: usize,
}

/// Why no cached output served a call: what `State::miss_reason` gives and a miss's log
/// event says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MissReason {
    /// The validator that judged the candidates (`all_inputs`, `duration_only`, …).
    pub validator: &'static str,
    /// Candidates that had expired.
    pub expired: usize,
    /// Candidates the validator refused.
    pub refused: usize,
    /// Candidates of another output type (another task under the same key).
    pub other_type: usize,
    /// For the candidates refused, the arguments whose digests differ from this call's
    /// (validators that compare inputs one by one).
    pub changed_inputs: Vec<&'static str>,
    /// For the candidates refused, the flow parameters that differ from this run's.
    pub changed_parameters: Vec<String>,
}

impl MissReason {
    /// The reason in words, as the log says it.
    pub fn describe(&self) -> String {
        let mut text = match (self.refused + self.other_type, self.expired) {
            (0, 0) => "no cached output".to_owned(),
            (0, _) => "the cached output has expired".to_owned(),
            _ if self.other_type > 0 => {
                "the cached output under this key has another type".to_owned()
            }
            _ => format!(
                "{} cached output(s) refused by the validator `{}`",
                self.refused, self.validator
            ),
        };
        if !self.changed_inputs.is_empty() {
            text.push_str(&format!(
                "; changed arguments: {}",
                self.changed_inputs.join(", ")
            ));
        }
        if !self.changed_parameters.is_empty() {
            text.push_str(&format!(
                "; changed parameters: {}",
                self.changed_parameters.join(", ")
            ));
        }
        text
    }

    /// Notes what differs between a refused candidate and this call.
    fn note_changes(
        &mut self,
        cached: &Cached,
        inputs: Option<&HashedInputs<'_>>,
        parameters: &Parameters,
    ) {
        if let Some(inputs) = inputs {
            for ((name, now), (_, then)) in inputs.iter().zip(cached.hashed_inputs.iter()) {
                if now != then && !self.changed_inputs.contains(&name) {
                    self.changed_inputs.push(name);
                }
            }
        }
        if !matches!(
            self.validator,
            "all_parameters" | "partial_parameters_only" | "custom"
        ) {
            return;
        }
        for (name, p) in parameters.iter() {
            let same = cached
                .parameters
                .get(name)
                .is_some_and(|q| q.digest() == p.digest());
            if !same && !self.changed_parameters.iter().any(|n| n == name) {
                self.changed_parameters.push(name.to_owned());
            }
        }
    }
}

/// What a lookup found.
pub(crate) enum Lookup<T> {
    Hit(T, Arc<Cached>),
    Miss(MissReason),
}

impl KeyCache {
    /// The first valid candidate, cloned out. `all_inputs` is the key of all the
    /// current inputs, for a validator that needs them all equal (a lookup, no scan);
    /// `inputs` the digest per input, for a validator that reads some (`None` when the
    /// validator reads none: they were not hashed).
    pub(crate) fn find<T: Clone + 'static>(
        &self,
        validator: &CacheValidator,
        all_inputs: Option<&InputKey>,
        inputs: Option<&HashedInputs<'_>>,
        parameters: &Parameters,
        now: i128,
    ) -> Lookup<T> {
        let found = self.find_in(validator, all_inputs, inputs, parameters, now);
        // An expired output does not outlive the lookup that met it.
        if matches!(&found, Lookup::Miss(r) if r.expired > 0) {
            self.prune_expired(now);
        }
        found
    }

    fn find_in<T: Clone + 'static>(
        &self,
        validator: &CacheValidator,
        all_inputs: Option<&InputKey>,
        inputs: Option<&HashedInputs<'_>>,
        parameters: &Parameters,
        now: i128,
    ) -> Lookup<T> {
        let candidates = read_shard(&self.candidates);
        let mut reason = MissReason {
            validator: validator.name(),
            ..MissReason::default()
        };
        let mut check = |entry: &Entry| -> Option<T> {
            let cached = &entry.cached;
            if entry.is_expired(now) {
                reason.expired += 1;
                return None;
            }
            let valid = match (all_inputs, inputs) {
                (Some(all), _) if validator.requires_equal_inputs() => entry.inputs == *all,
                (_, Some(i)) => validator.accepts(cached, i, parameters),
                // The validator ignores inputs: hand it the candidate's own.
                _ => validator.accepts(cached, &cached.hashed_inputs, parameters),
            };
            if !valid {
                reason.refused += 1;
                // What differs, for the validators that compare inputs or parameters
                // (on a miss only, and from the first few candidates).
                if reason.refused <= 8 {
                    reason.note_changes(cached, inputs, parameters);
                }
                return None;
            }
            match entry.value.downcast_ref::<T>() {
                Some(v) => Some(v.clone()),
                None => {
                    reason.other_type += 1;
                    None
                }
            }
        };
        let hit = |entry: &Entry, v: T| {
            entry.touch(now);
            Lookup::Hit(v, Arc::clone(&entry.cached))
        };
        if let (Some(all), true) = (all_inputs, validator.requires_equal_inputs()) {
            if let Some(bucket) = candidates.by_inputs.get(&self.fingerprint(all)) {
                for entry in bucket {
                    if let Some(v) = check(entry) {
                        return hit(entry, v);
                    }
                }
            }
            return Lookup::Miss(reason);
        }
        for entry in candidates.by_inputs.values().flatten() {
            if let Some(v) = check(entry) {
                return hit(entry, v);
            }
        }
        Lookup::Miss(reason)
    }

    /// The value of the first valid candidate for exactly these inputs under a
    /// validator that needs all of them equal, cloned out: the whole of a hit, and
    /// nothing on a miss (the caller then takes the full path, which says why).
    pub(crate) fn get_exact<T: Clone + 'static>(&self, inputs: &InputKey, now: i128) -> Option<T> {
        let candidates = read_shard(&self.candidates);
        let bucket = candidates.by_inputs.get(&self.fingerprint(inputs))?;
        let entry = bucket
            .iter()
            .find(|e| e.inputs == *inputs && !e.is_expired(now))?;
        let value = entry.value.downcast_ref::<T>()?.clone();
        entry.touch(now);
        Some(value)
    }

    /// The number of candidates (expired ones not yet pruned included).
    pub(crate) fn len(&self) -> usize {
        read_shard(&self.candidates).len
    }

    /// The 64-bit fingerprint that groups candidates: the first bytes of a digest,
    /// or a seeded hash of an exact encoding. Equal fingerprints are always confirmed
    /// by comparing the keys themselves.
    fn fingerprint(&self, key: &InputKey) -> u64 {
        match key {
            InputKey::Digest(d) => {
                let mut word = [0u8; 8];
                word.copy_from_slice(&d.0[..8]);
                u64::from_le_bytes(word)
            }
            InputKey::Exact { .. } => self.seed.hash_one(key.as_bytes()),
        }
    }

    fn with_usage(usage: Arc<Usage>) -> Self {
        KeyCache {
            usage,
            ..KeyCache::default()
        }
    }

    /// Accounts for entries gone.
    fn released<'e>(&self, gone: impl IntoIterator<Item = &'e Entry>) {
        let (mut n, mut bytes) = (0, 0);
        for e in gone {
            n += 1;
            bytes += e.bytes;
        }
        self.usage.entries.fetch_sub(n, Ordering::Relaxed);
        self.usage.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Forgets every candidate.
    pub(crate) fn clear(&self) {
        let mut c = write(&self.candidates);
        let all = std::mem::take(&mut c.by_inputs);
        self.released(all.values().flatten());
        c.order.clear();
        c.len = 0;
    }

    /// Forgets the candidates made from exactly these inputs (a refresh replaces them).
    pub(crate) fn remove_inputs(&self, all_inputs: &InputKey) {
        let fp = self.fingerprint(all_inputs);
        let mut c = write(&self.candidates);
        let mut gone = Vec::new();
        if let Some(bucket) = c.by_inputs.get_mut(&fp) {
            let (keep, drop): (Vec<Entry>, Vec<Entry>) = std::mem::take(bucket)
                .into_iter()
                .partition(|e| e.inputs != *all_inputs);
            *bucket = keep;
            gone = drop;
        }
        c.len -= gone.len();
        self.released(&gone);
    }

    /// Evicts one candidate, the way a clock does: the next fingerprint in the queue
    /// loses its least recently used output, unless that output was served since it
    /// was queued, in which case it goes to the back of the queue with the time of
    /// its last use. False when there is none. A second chance is paid for by the hit
    /// that earned it, so eviction costs a few steps on average whatever the number of
    /// outputs (never more than one round of the queue).
    fn evict_one(&self) -> bool {
        let mut c = write(&self.candidates);
        let second_chances = c.order.len();
        let mut chances = 0;
        loop {
            let Some((fp, queued)) = c.order.pop_front() else {
                if c.len == 0 {
                    return false;
                }
                // Lost track (never, but cheap to mend): queue what there is again.
                let all: Vec<u64> = c.by_inputs.keys().copied().collect();
                c.order.extend(all.into_iter().map(|fp| (fp, i64::MIN)));
                continue;
            };
            let Some(bucket) = c.by_inputs.get_mut(&fp) else {
                continue;
            };
            let Some((i, used)) = bucket
                .iter()
                .enumerate()
                .map(|(i, e)| (i, e.used.load(Ordering::Relaxed)))
                .min_by_key(|(_, used)| *used)
            else {
                c.by_inputs.remove(&fp);
                continue;
            };
            if used > queued && chances < second_chances {
                chances += 1;
                let newest = bucket
                    .iter()
                    .map(|e| e.used.load(Ordering::Relaxed))
                    .max()
                    .unwrap_or(used);
                c.order.push_back((fp, newest));
                continue;
            }
            let gone = bucket.swap_remove(i);
            if bucket.is_empty() {
                c.by_inputs.remove(&fp);
            }
            c.len -= 1;
            self.released([&gone]);
            return true;
        }
    }

    /// Queues `fp` for the clock, and rebuilds the queue when removed outputs have
    /// left it more than twice as long as the outputs it tracks.
    fn enqueue(c: &mut Candidates, fp: u64, now: i64) {
        c.order.push_back((fp, now));
        if c.order.len() > 2 * c.len + 64 {
            let mut seen = std::collections::HashSet::with_capacity(c.by_inputs.len());
            c.order.retain(|(fp, _)| seen.insert(*fp));
            let Candidates {
                order, by_inputs, ..
            } = c;
            order.retain(|(fp, _)| by_inputs.contains_key(fp));
        }
    }

    /// Evicts least recently used candidates until at most `max` are left (a task's
    /// `max_entries`).
    pub(crate) fn trim_to(&self, max: usize) {
        while self.len() > max && self.evict_one() {}
    }

    /// Removes expired candidates (after a lookup that met some).
    fn prune_expired(&self, now: i128) {
        let mut c = write(&self.candidates);
        let mut gone = 0;
        let mut bytes = 0;
        c.by_inputs.retain(|_, bucket| {
            bucket.retain(|e| {
                let keep = !e.is_expired(now);
                if !keep {
                    gone += 1;
                    bytes += e.bytes;
                }
                keep
            });
            !bucket.is_empty()
        });
        c.len -= gone;
        self.usage.entries.fetch_sub(gone, Ordering::Relaxed);
        self.usage.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Keeps an output; prunes expired candidates from time to time, so that the cost
    /// of pruning stays proportional to the number of inserts.
    pub(crate) fn insert(&self, entry: Entry, now: i128) {
        let fp = self.fingerprint(&entry.inputs);
        self.usage.entries.fetch_add(1, Ordering::Relaxed);
        self.usage.bytes.fetch_add(entry.bytes, Ordering::Relaxed);
        let mut c = write(&self.candidates);
        let bucket = c.by_inputs.entry(fp).or_default();
        let (mut expired, mut freed) = (0, 0);
        bucket.retain(|e| {
            let keep = !e.is_expired(now);
            if !keep {
                expired += 1;
                freed += e.bytes;
            }
            keep
        });
        let queued = entry.used.load(Ordering::Relaxed);
        bucket.push(entry);
        Self::enqueue(&mut c, fp, queued);
        c.len = c.len + 1 - expired;
        self.usage.entries.fetch_sub(expired, Ordering::Relaxed);
        self.usage.bytes.fetch_sub(freed, Ordering::Relaxed);
        if c.len >= c.sweep_at {
            drop(c);
            self.prune_expired(now);
            let mut c = write(&self.candidates);
            c.sweep_at = (c.len * 2).max(64);
        }
    }

    /// Joins the flight for these inputs: the first caller leads (and must run the body),
    /// later ones get the flight to wait on.
    pub(crate) fn join_flight(self: &Arc<Self>, all_inputs: &InputKey) -> Join {
        let fp = self.fingerprint(all_inputs);
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = flights.get(&fp) {
            if f.all_inputs == *all_inputs {
                return Join::Wait(Arc::clone(f));
            }
            // A fingerprint collision between different inputs: run independently.
            return Join::Alone;
        }
        let flight = Arc::new(Flight {
            all_inputs: *all_inputs,
            done: Mutex::new(FlightState::default()),
            landed: Condvar::new(),
        });
        flights.insert(fp, Arc::clone(&flight));
        Join::Leader(FlightGuard {
            key: Arc::clone(self),
            fp,
            flight,
        })
    }
}

/// The outcome of [`KeyCache::join_flight`].
pub(crate) enum Join {
    /// Run the body; the guard releases the waiters when dropped.
    Leader(FlightGuard),
    /// Another run with the same inputs is computing: wait, then look again.
    Wait(Arc<Flight>),
    /// Run without single-flight.
    Alone,
}

/// A computation in progress that others may wait for.
pub(crate) struct Flight {
    all_inputs: InputKey,
    done: Mutex<FlightState>,
    landed: Condvar,
}

#[derive(Default)]
struct FlightState {
    done: bool,
    /// Threads blocked in [`Flight::wait`]: without any, landing wakes nobody (and
    /// makes no system call).
    blocked: usize,
    wakers: Vec<Waker>,
}

impl Flight {
    /// Blocks until the leader has finished.
    pub(crate) fn wait(&self) {
        let mut state = self.done.lock().unwrap_or_else(|e| e.into_inner());
        state.blocked += 1;
        while !state.done {
            state = self.landed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.blocked -= 1;
    }

    /// Waits, without blocking the thread, until the leader has finished.
    pub(crate) fn landed(self: Arc<Self>) -> FlightLanded {
        FlightLanded(self)
    }
}

/// The future of [`Flight::landed`].
pub(crate) struct FlightLanded(Arc<Flight>);

impl Future for FlightLanded {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let mut state = self.0.done.lock().unwrap_or_else(|e| e.into_inner());
        if state.done {
            Poll::Ready(())
        } else {
            if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                state.wakers.push(cx.waker().clone());
            }
            Poll::Pending
        }
    }
}

/// Held by a flight's leader; when dropped (after the output is inserted, or when the
/// body failed or panicked) the waiters are released to look again.
pub(crate) struct FlightGuard {
    key: Arc<KeyCache>,
    fp: u64,
    flight: Arc<Flight>,
}

impl FlightGuard {
    /// What this guard holds, as a running task's context records it.
    pub(crate) fn holding(&self) -> crate::context::Holding {
        crate::context::Holding::Flight(Arc::as_ptr(&self.key) as usize, self.flight.all_inputs)
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.key
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.fp);
        let (wakers, blocked) = {
            let mut state = self.flight.done.lock().unwrap_or_else(|e| e.into_inner());
            state.done = true;
            (std::mem::take(&mut state.wakers), state.blocked)
        };
        if blocked > 0 {
            self.flight.landed.notify_all();
        }
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// The fingerprints are already uniformly distributed: hash them as themselves.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type BuildFingerprint = BuildHasherDefault<FingerprintHasher>;

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write_keys<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn read_shard<T>(lock: &ShardedLock<T>) -> crossbeam_utils::sync::ShardedLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &ShardedLock<T>) -> crossbeam_utils::sync::ShardedLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
