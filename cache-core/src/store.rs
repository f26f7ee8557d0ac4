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

use crate::hash::{InputKey, Starts};
use crate::parameters::Parameters;
use crate::sharded::{ReadGuard, ShardedRw, WriteGuard};
use crate::state::{Cached, HashedInputs};
use crate::validators::CacheValidator;
use chrono::{DateTime, Utc};
use hashbrown::HashTable;
use std::any::Any;
use std::borrow::Cow;
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
    /// (Hashed with foldhash: a key is a task's `cache_key`, text of the program's own,
    /// and a fresh process's first hit looks its key up twice.)
    keys: RwLock<HashMap<Box<str>, Arc<KeyCache>, foldhash::fast::RandomState>>,
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
/// from the key that holds the most, by a clock over its outputs: an output served since
/// the clock's hand last passed it gets a second chance (an approximation of LRU that
/// costs a hit nothing but a timestamp).
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
    /// from the key that holds the most, each time (a key with one output is not
    /// emptied for the one it just got; the output just stored is the clock's last
    /// choice, as the newest output).
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
    record: EntryRecord,
    pub(crate) value: Box<dyn Any + Send + Sync>,
    /// The record's expiration in nanoseconds since the epoch (`i64::MAX`: never, or
    /// past 2262, which the record says).
    expires: i64,
    /// All the inputs together: what `all_inputs` looks up by.
    inputs: InputKey,
    /// Its approximate size (see [`MemoryBudget`]).
    bytes: usize,
    /// When it was last served or stored (nanoseconds, coarse): for eviction.
    used: AtomicI64,
    /// `used` when the clock's hand last passed it (or when it was stored): served
    /// since, it gets a second chance.
    seen: i64,
}

/// An output's record: kept as made, or remade when a state or a validator asks.
enum EntryRecord {
    Made(Arc<Cached>),
    /// The output of a call keyed by its inputs' exact encoding, outside flow
    /// parameters: each input's digest is remade from that key, the input names and
    /// the cache key come from its maker (see `Candidates::makers`), and the
    /// expiration from the entry. (A record made for every output cost it a 190-byte
    /// allocation and a SHA-256 of each argument; most are never asked for.)
    Remade {
        /// When the output was computed, in nanoseconds since the epoch (never the
        /// epoch itself: the zero tells the variants apart, so that an entry is 128
        /// bytes).
        created: std::num::NonZeroI64,
        maker: u8,
        starts: Starts,
    },
}

/// The maker of remade records: its input names and its cache key.
type Maker = (&'static [&'static str], &'static str);

/// What a remade record is remade from, besides the entry's key (see
/// [`Entry::remade`]).
pub(crate) struct Remade {
    pub(crate) inputs: InputKey,
    pub(crate) starts: Starts,
    pub(crate) maker: Maker,
    pub(crate) created: DateTime<Utc>,
    pub(crate) expiration: Option<DateTime<Utc>>,
}

/// What an entry costs beyond its output's own size: the slab slot, the table slot,
/// the value's box and the allocator's share (about 180 bytes in all for a `u64`
/// output, as a fresh process holding 1 000 000 of them measures it: `compare`'s
/// memory row); a record made when stored adds its own size and 64 bytes a digest.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 40;

impl Entry {
    pub(crate) fn new(
        cached: Arc<Cached>,
        value: Box<dyn Any + Send + Sync>,
        inputs: InputKey,
        value_size: usize,
        now: i128,
    ) -> Self {
        let expires = cached.expiration.map_or(i64::MAX, |e| {
            crate::context::saturate(crate::context::instant(e))
        });
        let bytes = ENTRY_OVERHEAD
            + std::mem::size_of::<Cached>()
            + value_size
            + 64 * cached.hashed_inputs.iter().count();
        Entry::with_record(
            EntryRecord::Made(cached),
            value,
            expires,
            inputs,
            bytes,
            now,
        )
    }

    /// An output whose record is remade on demand (see [`EntryRecord::Remade`]), to be
    /// stored by [`KeyCache::insert_remade`] with `made`'s maker (which numbers it).
    /// The value back when the record cannot be remade (a key that is a digest, a count
    /// of input names that is not the key's, a time past 2262 or inside a leap second):
    /// the caller makes the record instead.
    pub(crate) fn remade(
        made: &Remade,
        value: Box<dyn Any + Send + Sync>,
        value_size: usize,
        now: i128,
    ) -> Result<Self, Box<dyn Any + Send + Sync>> {
        use chrono::Timelike;
        // Nanoseconds since the epoch, for a time they give back as it is (not past
        // 2262, not inside a leap second).
        let fits = |t: DateTime<Utc>| {
            i64::try_from(crate::context::instant(t))
                .ok()
                .filter(|&n| n != i64::MAX && t.nanosecond() < 1_000_000_000)
        };
        let expires = match made.expiration {
            None => Some(i64::MAX),
            Some(e) => fits(e),
        };
        let (Some(expires), Some(created), true) = (
            expires,
            fits(made.created).and_then(std::num::NonZeroI64::new),
            made.inputs.fits(&made.starts, made.maker.0.len()),
        ) else {
            return Err(value);
        };
        let record = EntryRecord::Remade {
            created,
            // (Set by the insert, which finds the maker's number.)
            maker: 0,
            starts: made.starts,
        };
        let bytes = ENTRY_OVERHEAD + value_size;
        Ok(Entry::with_record(
            record,
            value,
            expires,
            made.inputs,
            bytes,
            now,
        ))
    }

    fn with_record(
        record: EntryRecord,
        value: Box<dyn Any + Send + Sync>,
        expires: i64,
        inputs: InputKey,
        bytes: usize,
        now: i128,
    ) -> Self {
        let now = crate::context::saturate(now);
        Entry {
            record,
            value,
            expires,
            inputs,
            bytes,
            used: AtomicI64::new(now),
            seen: now,
        }
    }

    /// Its record, remade if need be (`None` for a remade record whose maker is unknown
    /// or whose key does not split into the maker's inputs, which `Entry::remade` and
    /// `KeyCache::insert_remade` rule out).
    fn record(&self, makers: &[Maker]) -> Option<Cow<'_, Cached>> {
        match &self.record {
            EntryRecord::Made(cached) => Some(Cow::Borrowed(&**cached)),
            EntryRecord::Remade {
                created,
                maker,
                starts,
            } => {
                let &(names, cache_key) = makers.get(usize::from(*maker))?;
                let digests = self.inputs.each_digest(starts)?;
                (digests.len() == names.len()).then(|| {
                    Cow::Owned(Cached {
                        expiration: (self.expires != i64::MAX)
                            .then(|| DateTime::from_timestamp_nanos(self.expires)),
                        hashed_inputs: HashedInputs::copied(names, &digests),
                        parameters: Parameters::default(),
                        cache_key: Cow::Borrowed(cache_key),
                        created: DateTime::from_timestamp_nanos(created.get()),
                    })
                })
            }
        }
    }

    /// Its record to hand to a state.
    fn shared_record(&self, makers: &[Maker]) -> Option<Arc<Cached>> {
        match &self.record {
            EntryRecord::Made(cached) => Some(Arc::clone(cached)),
            EntryRecord::Remade { .. } => self.record(makers).map(|c| Arc::new(c.into_owned())),
        }
    }

    /// Whether it was made under these flow parameters.
    fn made_under(&self, parameters: &Parameters) -> bool {
        match &self.record {
            EntryRecord::Made(cached) => cached.parameters == *parameters,
            EntryRecord::Remade { .. } => parameters.is_empty(),
        }
    }

    fn parameters(&self) -> &Parameters {
        match &self.record {
            EntryRecord::Made(cached) => &cached.parameters,
            EntryRecord::Remade { .. } => Parameters::none_ref(),
        }
    }

    fn is_expired(&self, now: i128) -> bool {
        if self.expires != i64::MAX {
            return now >= i128::from(self.expires);
        }
        // Never, or past 2262 (a made record only: a remade one is never made so).
        match &self.record {
            EntryRecord::Made(c) => c
                .expiration
                .is_some_and(|e| now >= crate::context::instant(e)),
            EntryRecord::Remade { .. } => false,
        }
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
/// The candidates sit behind a sharded lock ([`ShardedRw`]): a reader takes only its
/// own thread's shard, so threads hitting one key write no shared cache line as long
/// as they are no more than the shards (the processors, up to eight); a writer takes
/// every shard.
#[derive(Default)]
pub(crate) struct KeyCache {
    candidates: ShardedRw<Candidates>,
    flights: Mutex<HashMap<u64, InFlight, BuildFingerprint>>,
    usage: Arc<Usage>,
    /// Seeds the fingerprints of exact keys, per key: inputs chosen to collide in one
    /// process collide in no other.
    seed: foldhash::fast::RandomState,
}

/// The candidates of one key: the outputs in a slab, found through a table of their
/// slots by fingerprint, and evicted by a clock hand that sweeps the slab.
///
/// A table slot is eight bytes, so the table stays small enough to sit in the
/// processor's caches where a table of the outputs themselves would not; an insert
/// that evicts to make room stores its output in the slot it freed.
#[derive(Default)]
struct Candidates {
    /// Slab indexes, each beside the high half of its output's fingerprint, which the
    /// table's hash is made from ([`table_hash`]): growing the table rehashes from the
    /// table alone, without a visit to every output.
    table: HashTable<(u32, u32)>,
    /// The outputs; `None` where one was removed (reused first: see `free`).
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// The slot the clock's hand looks at next.
    hand: usize,
    len: usize,
    sweep_at: usize,
    /// The makers of the remade records, by number (a key has one in all but rare
    /// cases: tasks that share a `cache_key`).
    makers: Vec<Maker>,
}

impl Candidates {
    /// The outputs whose inputs have fingerprint `fp`, and perhaps a few others whose
    /// fingerprints share its high half: callers compare the inputs.
    fn with_fingerprint(&self, fp: u64) -> impl Iterator<Item = &Entry> {
        let (hash, high) = table_hash(fp);
        self.table
            .iter_hash(hash)
            .filter(move |&&(_, h)| h == high)
            .filter_map(|&(i, _)| self.slots.get(i as usize)?.as_ref())
    }

    /// The slots of the outputs whose inputs have fingerprint `fp` (and perhaps a few
    /// others whose fingerprints share its high half).
    fn slots_with_fingerprint(&self, fp: u64) -> impl Iterator<Item = usize> + '_ {
        let (hash, high) = table_hash(fp);
        self.table
            .iter_hash(hash)
            .filter(move |&&(_, h)| h == high)
            .map(|&(i, _)| i as usize)
    }

    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().flatten()
    }

    /// The number of `maker`, given one if it has none yet (`None` past 256).
    fn maker_number(&mut self, maker: Maker) -> Option<u8> {
        let same = |m: &Maker| m.0 == maker.0 && m.1 == maker.1;
        if let Some(i) = self.makers.iter().position(same) {
            return u8::try_from(i).ok();
        }
        let i = u8::try_from(self.makers.len()).ok()?;
        self.makers.push(maker);
        Some(i)
    }

    fn push(&mut self, mut entry: Entry, seed: &foldhash::fast::RandomState) {
        let fp = fingerprint(seed, &entry.inputs);
        let i = match self.free.pop() {
            Some(i) => {
                // A freed slot may lie just ahead of the hand: the new output gets the
                // pass an output appended at the end gets by lying behind every other.
                entry.seen = entry.used.load(Ordering::Relaxed).saturating_sub(1);
                self.slots[i as usize] = Some(entry);
                i
            }
            None => {
                self.slots.push(Some(entry));
                // (A key holds fewer than 2^32 outputs: the memory budget sees to it.)
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let (hash, high) = table_hash(fp);
        self.table
            .insert_unique(hash, (i, high), |&(_, h)| expand(h));
        self.len += 1;
    }

    /// Takes the output in slot `i` out.
    fn remove(&mut self, i: usize, seed: &foldhash::fast::RandomState) -> Option<Entry> {
        let entry = self.slots.get_mut(i)?.take()?;
        let (hash, _) = table_hash(fingerprint(seed, &entry.inputs));
        if let Ok(found) = self.table.find_entry(hash, |&(j, _)| j as usize == i) {
            found.remove();
        }
        self.free.push(i as u32);
        self.len -= 1;
        Some(entry)
    }

    /// Removes the outputs `gone` accepts, and gives them back.
    fn remove_where(
        &mut self,
        mut gone: impl FnMut(&Entry) -> bool,
        seed: &foldhash::fast::RandomState,
    ) -> Vec<Entry> {
        let doomed: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].as_ref().is_some_and(&mut gone))
            .collect();
        let removed = doomed
            .into_iter()
            .filter_map(|i| self.remove(i, seed))
            .collect();
        self.compact(seed);
        removed
    }

    /// Rebuilds the slab without its holes once they are most of it.
    fn compact(&mut self, seed: &foldhash::fast::RandomState) {
        if self.slots.len() <= 64 || self.len * 4 > self.slots.len() {
            return;
        }
        let kept: Vec<Entry> = std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .collect();
        self.table.clear();
        self.free.clear();
        self.hand = 0;
        self.len = 0;
        self.slots.reserve(kept.len());
        for e in kept {
            self.push(e, seed);
        }
        self.table.shrink_to_fit(|&(_, h)| expand(h));
    }

    fn clear(&mut self) -> Vec<Entry> {
        self.table.clear();
        self.free.clear();
        self.hand = 0;
        self.len = 0;
        std::mem::take(&mut self.slots)
            .into_iter()
            .flatten()
            .collect()
    }

    /// The slot eviction takes next, the way a clock does: the hand passes over an
    /// output served since it last passed (its second chance) and stops at the first
    /// one that was not. At most one round of second chances, so the hand never
    /// circles for long; a second chance is paid for by the hit that earned it.
    fn clock(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mut chances = 0;
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let i = self.hand;
            self.hand += 1;
            let Some(e) = self.slots[i].as_mut() else {
                continue;
            };
            let used = e.used.load(Ordering::Relaxed);
            if used > e.seen && chances < self.len {
                e.seen = used;
                chances += 1;
                continue;
            }
            return Some(i);
        }
    }
}

/// Where the table files a fingerprint: a hash made from its high half alone (so that
/// the table can rehash what it holds), and that half. Outputs whose fingerprints
/// share a high half share a probe sequence, and are told apart by their keys.
#[inline]
fn table_hash(fp: u64) -> (u64, u32) {
    let high = (fp >> 32) as u32;
    (expand(high), high)
}

#[inline]
fn expand(high: u32) -> u64 {
    // A multiplication spreads the 32 bits over the 64 the table reads (its low bits
    // pick the group, its top seven tag the slot).
    u64::from(high).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The 64-bit fingerprint that groups candidates: the first bytes of a digest, or a
/// seeded hash of an exact encoding. Equal fingerprints are always confirmed by
/// comparing the keys themselves.
fn fingerprint(seed: &foldhash::fast::RandomState, key: &InputKey) -> u64 {
    match key {
        InputKey::Digest(d) => {
            let mut word = [0u8; 8];
            word.copy_from_slice(&d.0[..8]);
            u64::from_le_bytes(word)
        }
        InputKey::Exact { .. } => seed.hash_one(key.as_bytes()),
    }
}

/// Why [`KeyCache::get_exact`] found nothing: the candidates for exactly these inputs
/// that had expired or held another type's output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExactMiss {
    pub(crate) expired: usize,
    pub(crate) other_type: usize,
}

impl ExactMiss {
    /// The miss reason the validator named `validator` gives for it, as
    /// [`KeyCache::find`] would.
    pub(crate) fn reason(self, validator: &'static str) -> MissReason {
        MissReason {
            validator,
            expired: self.expired,
            other_type: self.other_type,
            ..MissReason::default()
        }
    }
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
        let makers = &candidates.makers;
        let mut check = |entry: &Entry| -> Option<T> {
            if entry.is_expired(now) {
                reason.expired += 1;
                return None;
            }
            let equal_inputs = match all_inputs {
                Some(all) if validator.requires_equal_inputs() => Some(entry.inputs == *all),
                _ => None,
            };
            let valid = match equal_inputs {
                Some(equal) => equal,
                // The record is read (or remade) only for a validator that reads it.
                None => {
                    let cached = entry.record(makers)?;
                    let valid = match inputs {
                        Some(i) => validator.accepts(&cached, i, parameters),
                        // The validator ignores inputs: hand it the candidate's own.
                        None => validator.accepts(&cached, &cached.hashed_inputs, parameters),
                    };
                    // What differs, for the validators that compare inputs or
                    // parameters (on a miss only, and from the first few candidates).
                    if !valid && reason.refused < 8 {
                        reason.note_changes(&cached, inputs, parameters);
                    }
                    valid
                }
            };
            if !valid {
                reason.refused += 1;
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
            let record = entry.shared_record(makers)?;
            entry.touch(now);
            Some(Lookup::Hit(v, record))
        };
        if let (Some(all), true) = (all_inputs, validator.requires_equal_inputs()) {
            for entry in candidates.with_fingerprint(self.fingerprint(all)) {
                if entry.inputs == *all {
                    if let Some(found) = check(entry).and_then(|v| hit(entry, v)) {
                        return found;
                    }
                }
            }
            return Lookup::Miss(reason);
        }
        for entry in candidates.iter() {
            if let Some(found) = check(entry).and_then(|v| hit(entry, v)) {
                return found;
            }
        }
        Lookup::Miss(reason)
    }

    /// The value of the first valid candidate for exactly these inputs under a
    /// validator that needs all of them equal, cloned out: the whole of a hit. On a
    /// miss, `miss` counts the candidates for these inputs as [`find`](Self::find)
    /// would (an `all_inputs` miss then needs no second lookup to say why; an out
    /// parameter, so that a hit returns in registers).
    pub(crate) fn get_exact<T: Clone + 'static>(
        &self,
        inputs: &InputKey,
        now: i128,
        miss: &mut ExactMiss,
    ) -> Option<T> {
        let candidates = read_shard(&self.candidates);
        let fp = self.fingerprint(inputs);
        let found = candidates.with_fingerprint(fp).find_map(|e| {
            (e.inputs == *inputs && !e.is_expired(now))
                .then(|| e.value.downcast_ref::<T>().map(|v| (e, v.clone())))
                .flatten()
        });
        if let Some((entry, value)) = found {
            entry.touch(now);
            return Some(value);
        }
        // A miss: why, counted apart from the hit's way.
        for entry in candidates.with_fingerprint(fp) {
            if entry.inputs == *inputs {
                if entry.is_expired(now) {
                    miss.expired += 1;
                } else {
                    miss.other_type += 1;
                }
            }
        }
        None
    }

    /// The number of candidates (expired ones not yet pruned included).
    pub(crate) fn len(&self) -> usize {
        read_shard(&self.candidates).len
    }

    /// The fingerprint of `key` under this key cache's seed ([`fingerprint`]).
    fn fingerprint(&self, key: &InputKey) -> u64 {
        fingerprint(&self.seed, key)
    }

    fn with_usage(usage: Arc<Usage>) -> Self {
        KeyCache {
            candidates: ShardedRw::default(),
            flights: Mutex::default(),
            usage,
            seed: foldhash::fast::RandomState::default(),
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
        let gone = write(&self.candidates).clear();
        self.released(&gone);
    }

    /// Forgets the candidates made from exactly these inputs (a refresh replaces them).
    pub(crate) fn remove_inputs(&self, all_inputs: &InputKey) {
        let fp = self.fingerprint(all_inputs);
        let mut c = write(&self.candidates);
        let doomed: Vec<usize> = c
            .slots_with_fingerprint(fp)
            .filter(|&i| c.slots[i].as_ref().is_some_and(|e| e.inputs == *all_inputs))
            .collect();
        let gone: Vec<Entry> = doomed
            .into_iter()
            .filter_map(|i| c.remove(i, &self.seed))
            .collect();
        c.compact(&self.seed);
        drop(c);
        self.released(&gone);
    }

    /// Evicts one candidate, chosen by the clock ([`Candidates::clock`]). False when
    /// there is none.
    fn evict_one(&self) -> bool {
        let mut c = write(&self.candidates);
        let Some(gone) = c.clock().and_then(|i| c.remove(i, &self.seed)) else {
            return false;
        };
        // (A budget lowered under a full cache leaves holes that no insert refills.)
        c.compact(&self.seed);
        drop(c);
        self.released([&gone]);
        true
    }

    /// Evicts least recently used candidates until at most `max` are left (a task's
    /// `max_entries`).
    pub(crate) fn trim_to(&self, max: usize) {
        while self.len() > max && self.evict_one() {}
    }

    /// Removes expired candidates (after a lookup that met some).
    pub(crate) fn prune_expired(&self, now: i128) {
        let gone = write(&self.candidates).remove_where(|e| e.is_expired(now), &self.seed);
        self.released(&gone);
    }

    /// Keeps an output, and under the same lock: the expired candidates that share its
    /// slots in the table go, and so does an output it supersedes (of the same inputs,
    /// flow parameters and type: two are never kept; tasks that share a `cache_key`
    /// keep one each). When the key must make room first
    /// (it holds `cap` outputs, or the cache is over its memory budget and this key
    /// holds at least half of it), the clock evicts before the output is stored, so
    /// the output just stored is never the one evicted, and it takes the freed slot.
    /// Every expired candidate goes from time to time, so that the cost of pruning
    /// stays proportional to the number of inserts.
    pub(crate) fn insert(&self, entry: Entry, now: i128, cap: Option<usize>) {
        debug_assert!(
            matches!(entry.record, EntryRecord::Made(_)),
            "a remade record needs its maker: insert_remade"
        );
        self.insert_made_by(entry, None, now, cap);
    }

    /// [`insert`](Self::insert) for an entry whose record is remade ([`Entry::remade`]),
    /// by `maker`.
    pub(crate) fn insert_remade(&self, entry: Entry, maker: Maker, now: i128, cap: Option<usize>) {
        self.insert_made_by(entry, Some(maker), now, cap);
    }

    fn insert_made_by(
        &self,
        mut entry: Entry,
        maker: Option<Maker>,
        now: i128,
        cap: Option<usize>,
    ) {
        let fp = self.fingerprint(&entry.inputs);
        self.usage.entries.fetch_add(1, Ordering::Relaxed);
        self.usage.bytes.fetch_add(entry.bytes, Ordering::Relaxed);
        let mut c = write(&self.candidates);
        if let Some(maker) = maker {
            let number = c.maker_number(maker);
            if let EntryRecord::Remade { maker: n, .. } = &mut entry.record {
                *n = number.unwrap_or(0);
            }
            if number.is_none() {
                // A key with 256 makers already: this one's record is made now (and
                // counted as a made record is).
                let Some(made) = entry.record(&[maker]).map(Cow::into_owned) else {
                    drop(c);
                    self.released([&entry]);
                    return;
                };
                let extra = std::mem::size_of::<Cached>() + 64 * maker.0.len();
                entry.bytes += extra;
                self.usage.bytes.fetch_add(extra, Ordering::Relaxed);
                entry.record = EntryRecord::Made(Arc::new(made));
            }
        }
        let doomed: Vec<usize> = c
            .slots_with_fingerprint(fp)
            .filter(|&i| {
                c.slots[i].as_ref().is_some_and(|e| {
                    e.is_expired(now)
                        || (e.inputs == entry.inputs
                            && e.made_under(entry.parameters())
                            && (*e.value).type_id() == (*entry.value).type_id())
                })
            })
            .collect();
        let gone: Vec<Entry> = doomed
            .into_iter()
            .filter_map(|i| c.remove(i, &self.seed))
            .collect();
        self.released(&gone);
        let mut evicted = Vec::new();
        let budget = memory_budget();
        loop {
            let capped = cap.is_some_and(|max| c.len >= max.max(1));
            let over = self.usage.entries.load(Ordering::Relaxed) > budget.max_entries
                || self.usage.bytes.load(Ordering::Relaxed) > budget.max_bytes;
            let largest = 2 * c.len >= self.usage.entries.load(Ordering::Relaxed);
            if !(capped || over && largest) {
                break;
            }
            let Some(one) = c.clock().and_then(|i| c.remove(i, &self.seed)) else {
                break;
            };
            // (Accounted for at once: the budget check above reads the usage.)
            self.released([&one]);
            evicted.push(one);
            if !capped {
                break;
            }
        }
        c.push(entry, &self.seed);
        // (A fresh key's first sweep comes at 64 outputs, as every later one comes at
        // twice the outputs the last left, at least 64.)
        let sweep = c.len >= c.sweep_at.max(64);
        // (What went is dropped once the lock is released: an output's `Drop` may do
        // anything, a task call included.)
        drop(c);
        drop((gone, evicted));
        if sweep {
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
        if let Some(f) = flights.get_mut(&fp) {
            if f.inputs == *all_inputs {
                let flight = f.waited.get_or_insert_with(|| {
                    Arc::new(Flight {
                        done: Mutex::new(FlightState::default()),
                        landed: Condvar::new(),
                    })
                });
                return Join::Wait(Arc::clone(flight));
            }
            // A fingerprint collision between different inputs: run independently.
            return Join::Alone;
        }
        flights.insert(
            fp,
            InFlight {
                inputs: *all_inputs,
                waited: None,
            },
        );
        Join::Leader(FlightGuard {
            key: Arc::clone(self),
            fp,
            inputs: *all_inputs,
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

/// A computation in progress, as its key's flights list it: what it computes, and what
/// its waiters wait on (made by the first of them, so that a run nobody waits for
/// allocates nothing).
struct InFlight {
    inputs: InputKey,
    waited: Option<Arc<Flight>>,
}

/// A computation in progress that others wait for.
pub(crate) struct Flight {
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
    inputs: InputKey,
}

impl FlightGuard {
    /// What this guard holds, as a running task's context records it.
    pub(crate) fn holding(&self) -> crate::context::Holding {
        crate::context::Holding::Flight(Arc::as_ptr(&self.key) as usize, self.inputs)
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let gone = self
            .key
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.fp);
        let Some(flight) = gone.and_then(|f| f.waited) else {
            return;
        };
        let (wakers, blocked) = {
            let mut state = flight.done.lock().unwrap_or_else(|e| e.into_inner());
            state.done = true;
            (std::mem::take(&mut state.wakers), state.blocked)
        };
        if blocked > 0 {
            flight.landed.notify_all();
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

fn read_shard<T: Default>(lock: &ShardedRw<T>) -> ReadGuard<'_, T> {
    lock.read()
}

fn write<T: Default>(lock: &ShardedRw<T>) -> WriteGuard<'_, T> {
    lock.write()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::InputHasher;
    use std::borrow::Cow;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_entry_is_two_cache_lines() {
        // A hit reads an entry's key, expiration and value; a slab of 128-byte entries
        // keeps each on two lines (and the memory per entry under 200 bytes).
        assert_eq!(std::mem::size_of::<EntryRecord>(), 16);
        assert_eq!(std::mem::size_of::<Option<Entry>>(), 128);
    }

    fn key_of(x: u64) -> InputKey {
        let mut h = InputHasher::all();
        h.input(&x).unwrap();
        h.key()
    }

    /// An entry of `x` (its value is `x` too) that expires at `expires` (nanoseconds).
    fn entry(x: u64, expires: i128) -> Entry {
        let cached = Arc::new(Cached {
            expiration: Some(crate::context::from_instant(expires)),
            hashed_inputs: HashedInputs::new(&[], Vec::new()),
            parameters: Parameters::none(),
            cache_key: Cow::Borrowed("k"),
            created: crate::context::from_instant(0),
        });
        Entry::new(cached, Box::new(x), key_of(x), 8, 0)
    }

    #[test]
    fn the_slab_stays_exact_through_pruning_compaction_and_reuse() {
        let key = KeyCache::default();
        let (soon, late) = (1_000i128, 1_000_000_000_000i128);
        // 300 outputs that expire soon, 20 that do not.
        for x in 0..320u64 {
            key.insert(entry(x, if x < 300 { soon } else { late }), 0, None);
        }
        assert_eq!(key.len(), 320);
        // Pruning leaves 20 of 320 slots filled: the slab is rebuilt without its holes.
        key.prune_expired(soon);
        assert_eq!(key.len(), 20);
        assert!(read_shard(&key.candidates).slots.len() < 320);
        for x in 0..320u64 {
            let got = key.get_exact::<u64>(&key_of(x), soon, &mut ExactMiss::default());
            assert_eq!(got, (x >= 300).then_some(x), "output {x} after the rebuild");
        }
        // Freed slots are reused, and every output is found by its own inputs.
        for x in 1_000..1_200u64 {
            key.insert(entry(x, late), soon, None);
        }
        for x in (300..320).chain(1_000..1_200) {
            assert_eq!(
                key.get_exact::<u64>(&key_of(x), soon, &mut ExactMiss::default()),
                Some(x)
            );
        }
        // The clock evicts, one at a time, until none is left; lookups stay exact.
        let mut left = key.len();
        while key.evict_one() {
            left -= 1;
            assert_eq!(key.len(), left);
        }
        assert_eq!(left, 0);
        assert_eq!(
            key.get_exact::<u64>(&key_of(1_000), soon, &mut ExactMiss::default()),
            None
        );
    }

    #[test]
    fn the_clock_gives_an_output_served_since_it_passed_a_second_chance() {
        let key = KeyCache::default();
        for x in 0..4u64 {
            key.insert(entry(x, i128::MAX), 0, None);
        }
        // Output 0 is served after it was stored: the hand passes it once.
        assert_eq!(
            key.get_exact::<u64>(&key_of(0), 10_000_000, &mut ExactMiss::default()),
            Some(0)
        );
        assert!(key.evict_one());
        assert_eq!(
            key.get_exact::<u64>(&key_of(0), 10_000_000, &mut ExactMiss::default()),
            Some(0)
        );
        assert_eq!(
            key.get_exact::<u64>(&key_of(1), 10_000_000, &mut ExactMiss::default()),
            None,
            "1 went first"
        );
    }

    #[test]
    fn evicting_down_to_a_lower_budget_gives_the_slab_back() {
        let key = KeyCache::default();
        for x in 0..10_000u64 {
            key.insert(entry(x, i128::MAX), 0, None);
        }
        key.trim_to(100);
        assert_eq!(key.len(), 100);
        assert!(
            read_shard(&key.candidates).slots.len() <= 400,
            "holes do not outnumber outputs 3 to 1"
        );
        let kept = (0..10_000u64)
            .filter(|&x| key.get_exact::<u64>(&key_of(x), 0, &mut ExactMiss::default()) == Some(x))
            .count();
        assert_eq!(kept, 100);
    }

    #[test]
    fn removing_one_input_leaves_the_others() {
        let key = KeyCache::default();
        for x in 0..50u64 {
            key.insert(entry(x, i128::MAX), 0, None);
        }
        key.remove_inputs(&key_of(7));
        assert_eq!(key.len(), 49);
        for x in 0..50u64 {
            assert_eq!(
                key.get_exact::<u64>(&key_of(x), 0, &mut ExactMiss::default()),
                (x != 7).then_some(x)
            );
        }
    }
}
