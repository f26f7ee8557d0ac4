//! Input hashing: the SHA-256 digest of a value's serde serialization.
//!
//! The value is serialized straight into the hasher, with no buffer of the whole value.
//! The encoding is fixed and little-endian, so a digest depends on the value alone: it
//! is the same in every process, run and platform. Every serializer call writes a
//! one-byte tag, then its payload; lengths and names are included, so different values
//! of one type never encode alike.
//!
//! Maps are order-independent: each entry is hashed on its own and the entry digests
//! are summed (256-bit wrapping addition), so a `HashMap` hashes the same whatever its
//! iteration order, and like a `BTreeMap` with the same entries. Sets serialize as
//! sequences in serde, so a `HashSet` argument is hashed in its iteration order: use a
//! `BTreeSet` for a set whose digest must be stable.
//!
//! Floats hash their bits, with `-0.0` folded into `0.0` and every NaN into one.
//! Runs of `u8` (a `Vec<u8>`, which serde sends byte by byte) are gathered into chunks
//! so that hashing them costs little more than hashing the raw bytes.

use serde::ser::{self, Serialize};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt;

/// The SHA-256 digest of one task input, as recorded on a `Cached` state.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize)]
pub struct InputDigest(pub [u8; 32]);

impl fmt::Debug for InputDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// `bytes` in lowercase hex: how records, their file names and the result stores spell
/// digests.
#[doc(hidden)]
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(2 * bytes.len());
    for &b in bytes {
        out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]);
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Why a value could not be hashed: its `Serialize` implementation returned an error.
#[derive(Debug, thiserror::Error)]
#[error("could not hash a task input: its Serialize implementation failed: {0}")]
pub struct HashError(pub String);

impl ser::Error for HashError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        HashError(msg.to_string())
    }
}

/// Hashes one value.
///
/// # Errors
/// When the value's `Serialize` implementation fails.
pub fn hash_input<T: Serialize + ?Sized>(value: &T) -> Result<InputDigest, HashError> {
    let mut sink = Sink::new(true);
    value.serialize(&mut sink)?;
    Ok(InputDigest(sink.finish()))
}

/// Hashes a run of bytes (what a `Vec<u8>`, `[u8]` or `Box<[u8]>` holds) to the digest
/// [`hash_input`] gives that value, in bulk: serde hands a byte run over one byte at a
/// time, which costs more than SHA-256 itself. A task's byte arguments are hashed this
/// way.
///
/// ```
/// let blob = vec![7u8; 1 << 20];
/// assert_eq!(
///     taskcache::hash_bytes(&blob),
///     taskcache::hash_input(&blob).unwrap()
/// );
/// ```
pub fn hash_bytes(bytes: &[u8]) -> InputDigest {
    let mut sink = Sink::new(false);
    sink.byte_seq(bytes);
    InputDigest(sink.finish())
}

/// What the in-memory cache looks all of a call's inputs up by: their exact encoding
/// when it is short (a few numbers, a short string: no SHA-256 on a hit, and no
/// collision possible), else the SHA-256 digest of that encoding.
///
/// The encoding is the one [`InputHasher`] digests, so [`digest`](Self::digest) is
/// the digest of all the inputs together, whichever form the key has; two calls with
/// equal inputs always get the same form.
#[derive(Clone, Copy)]
pub(crate) enum InputKey {
    /// The encoding itself: `len` bytes of `bytes`.
    Exact { len: u8, bytes: [u8; EXACT_MAX] },
    /// The digest of a longer encoding.
    Digest(InputDigest),
}

/// The longest encoding an [`InputKey`] keeps as it is: what SHA-256 pads into one
/// block, so that its digest, when a miss needs it, is one compression.
pub(crate) const EXACT_MAX: usize = ONE_BLOCK;

impl InputKey {
    /// The SHA-256 digest of all the inputs together (what records are filed under).
    pub(crate) fn digest(&self) -> InputDigest {
        match self {
            InputKey::Exact { len, bytes } => InputDigest(one_block(&bytes[..usize::from(*len)])),
            InputKey::Digest(d) => *d,
        }
    }

    /// The digest of each input, remade from an exact key and where each input starts
    /// in it: the SHA-256 of its own encoding, which is the part of the key between its
    /// start and the next input's tag (what [`InputHasher::each`] computes from the
    /// inputs themselves). `None` for a key that is a digest.
    pub(crate) fn each_digest(
        &self,
        starts: &Starts,
    ) -> Option<smallvec::SmallVec<[InputDigest; 2]>> {
        let InputKey::Exact { len, bytes } = self else {
            return None;
        };
        let all = &bytes[..usize::from(*len)];
        let at = starts.at.get(..usize::from(starts.count))?;
        let mut digests = smallvec::SmallVec::with_capacity(at.len());
        for (i, &start) in at.iter().enumerate() {
            // (Each input's tag is the byte before its start.)
            let end = at
                .get(i + 1)
                .map_or(all.len(), |&next| usize::from(next) - 1);
            digests.push(InputDigest(one_block(all.get(usize::from(start)..end)?)));
        }
        Some(digests)
    }

    /// Whether [`each_digest`](Self::each_digest) can remake `inputs` digests from this
    /// key and `starts` (without making them): an exact key, and starts within it, in
    /// order.
    pub(crate) fn fits(&self, starts: &Starts, inputs: usize) -> bool {
        let InputKey::Exact { len, .. } = self else {
            return false;
        };
        let at = &starts.at[..usize::from(starts.count).min(MAX_SEGMENTS)];
        usize::from(starts.count) == inputs
            && at.iter().all(|&a| a >= 1 && a <= *len)
            && at.windows(2).all(|w| w[0] < w[1])
    }

    /// The bytes that identify the inputs: the encoding, or its digest.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            InputKey::Exact { len, bytes } => &bytes[..usize::from(*len)],
            InputKey::Digest(d) => &d.0,
        }
    }
}

impl PartialEq for InputKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (InputKey::Exact { .. }, InputKey::Exact { .. }) => self.as_bytes() == other.as_bytes(),
            (InputKey::Digest(a), InputKey::Digest(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for InputKey {}

impl fmt::Debug for InputKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputKey::Exact { len, .. } => write!(f, "Exact({len} bytes)"),
            InputKey::Digest(d) => write!(f, "Digest({d:?})"),
        }
    }
}

/// Hashes a task's arguments as the generated code hands them over, one call per
/// argument: either a digest per argument (what a `Cached` state records and partial
/// validators compare) or one digest of them all (what `all_inputs` looks up by).
pub struct InputHasher {
    mode: Mode,
}

// Boxing the sink would allocate on every cache hit; the hasher lives on the stack.
#[allow(clippy::large_enum_variant)]
enum Mode {
    /// (The first two inline: a miss hashes each argument, and a `Vec` cost it an
    /// allocation.)
    Each(smallvec::SmallVec<[InputDigest; 2]>),
    All(Sink),
    /// As `All`, noting where each argument's encoding starts in it.
    Segmented(Sink, Starts),
}

/// Where each argument's encoding starts in the encoding of them all (just after the
/// argument's tag), for a key short enough to keep as it is: the digest of each
/// argument can then be remade from the key alone ([`InputKey::each_digest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Starts {
    at: [u8; MAX_SEGMENTS],
    count: u8,
}

/// The most arguments [`Starts`] notes (six: it fits with an entry's other fields in
/// eight bytes).
pub(crate) const MAX_SEGMENTS: usize = 6;

impl Starts {
    /// How many arguments it notes.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Notes an argument starting at `at` (`None`: past what an exact key holds).
    fn note(&mut self, at: Option<usize>) {
        let i = usize::from(self.count);
        match (at.and_then(|a| u8::try_from(a).ok()), self.at.get_mut(i)) {
            (Some(a), Some(slot)) => {
                *slot = a;
                self.count += 1;
            }
            // Too many arguments, or an encoding too long to keep: nothing to note.
            _ => self.count = u8::MAX,
        }
    }
}

impl InputHasher {
    /// A hasher that keeps one digest per argument.
    pub fn each() -> Self {
        InputHasher {
            mode: Mode::Each(smallvec::SmallVec::new()),
        }
    }

    /// A hasher that makes one digest of all the arguments.
    #[inline]
    pub fn all() -> Self {
        InputHasher {
            mode: Mode::All(Sink::new(true)),
        }
    }

    /// A hasher as [`all`](Self::all) that also notes where each argument starts
    /// (see [`segments`](Self::segments)).
    pub(crate) fn segmented() -> Self {
        InputHasher {
            mode: Mode::Segmented(
                Sink::new(false),
                Starts {
                    at: [0; MAX_SEGMENTS],
                    count: 0,
                },
            ),
        }
    }

    /// Hashes the next argument.
    ///
    /// # Errors
    /// When the value's `Serialize` implementation fails.
    #[inline]
    pub fn input<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
        match &mut self.mode {
            Mode::Each(digests) => digests.push(hash_input(value)?),
            Mode::All(sink) => {
                sink.write(tag::INPUT, &[]);
                value.serialize(&mut *sink)?;
            }
            Mode::Segmented(sink, starts) => {
                sink.write(tag::INPUT, &[]);
                starts.note(sink.position());
                value.serialize(&mut *sink)?;
            }
        }
        Ok(())
    }

    /// Hashes the next argument, a run of bytes (a `Vec<u8>` or `[u8]`), exactly as
    /// [`input`](Self::input) hashes it, but in bulk on this thread: serde hands such a
    /// run over one byte at a time, which costs more than SHA-256 itself does, and
    /// leaves the hash to keep up on a second thread only where a second core is free.
    pub fn input_bytes(&mut self, bytes: &[u8]) {
        match &mut self.mode {
            Mode::Each(digests) => {
                let mut sink = Sink::new(false);
                sink.byte_seq(bytes);
                digests.push(InputDigest(sink.finish()));
            }
            Mode::All(sink) => {
                sink.write(tag::INPUT, &[]);
                sink.may_pipe = false;
                sink.byte_seq(bytes);
            }
            Mode::Segmented(sink, starts) => {
                sink.write(tag::INPUT, &[]);
                starts.note(sink.position());
                sink.byte_seq(bytes);
            }
        }
    }

    /// The digest per argument (empty for a hasher made with [`all`](Self::all)).
    pub fn into_each(self) -> Vec<InputDigest> {
        self.into_each_inline().into_vec()
    }

    /// [`into_each`](Self::into_each), the first two kept inline.
    pub(crate) fn into_each_inline(self) -> smallvec::SmallVec<[InputDigest; 2]> {
        match self.mode {
            Mode::Each(digests) => digests,
            Mode::All(_) | Mode::Segmented(..) => smallvec::SmallVec::new(),
        }
    }

    /// The digest of all arguments (of nothing, for a hasher made with [`each`](Self::each)).
    pub fn into_all(self) -> InputDigest {
        match self.mode {
            Mode::All(sink) | Mode::Segmented(sink, _) => InputDigest(sink.finish()),
            Mode::Each(_) => InputDigest(Sink::new(false).finish()),
        }
    }

    /// The key of all arguments (see [`InputKey`]): made with [`all`](Self::all), the
    /// encoding itself when it is short, else its digest. The sink is finished in place
    /// (it is a few hundred bytes, and a hit on a short key would otherwise spend a
    /// tenth of its time copying it); the hasher is spent afterwards.
    #[inline]
    pub(crate) fn key(&mut self) -> InputKey {
        match &mut self.mode {
            Mode::All(sink) | Mode::Segmented(sink, _) => sink.finish_key(),
            Mode::Each(_) => Sink::new(false).finish_key(),
        }
    }

    /// The key of all arguments, and where each starts in it, when the key is their
    /// encoding itself (made with [`segmented`](Self::segmented), of at most six
    /// arguments); else `None`.
    pub(crate) fn segments(&mut self) -> Option<(InputKey, Starts)> {
        let Mode::Segmented(sink, starts) = &mut self.mode else {
            return None;
        };
        let starts = *starts;
        let key = sink.finish_key();
        (matches!(key, InputKey::Exact { .. }) && usize::from(starts.count) <= MAX_SEGMENTS)
            .then_some((key, starts))
    }
}

mod tag {
    pub const BOOL: u8 = 1;
    pub const I8: u8 = 2;
    pub const I16: u8 = 3;
    pub const I32: u8 = 4;
    pub const I64: u8 = 5;
    pub const I128: u8 = 6;
    pub const U8_CHUNK: u8 = 7;
    pub const U16: u8 = 8;
    pub const U32: u8 = 9;
    pub const U64: u8 = 10;
    pub const U128: u8 = 11;
    pub const F32: u8 = 12;
    pub const F64: u8 = 13;
    pub const CHAR: u8 = 14;
    pub const STR: u8 = 15;
    pub const BYTES: u8 = 16;
    pub const NONE: u8 = 17;
    pub const SOME: u8 = 18;
    pub const UNIT: u8 = 19;
    pub const UNIT_STRUCT: u8 = 20;
    pub const UNIT_VARIANT: u8 = 21;
    pub const NEWTYPE_STRUCT: u8 = 22;
    pub const NEWTYPE_VARIANT: u8 = 23;
    pub const SEQ: u8 = 24;
    pub const SEQ_END: u8 = 25;
    pub const TUPLE: u8 = 26;
    pub const TUPLE_STRUCT: u8 = 27;
    pub const TUPLE_VARIANT: u8 = 28;
    pub const MAP: u8 = 29;
    pub const STRUCT: u8 = 30;
    pub const STRUCT_VARIANT: u8 = 31;
    pub const FIELD: u8 = 32;
    pub const SKIPPED_FIELD: u8 = 33;
    pub const DISPLAY: u8 = 34;
    pub const INPUT: u8 = 35;
}

/// The bits every `f32` NaN is hashed as: the quiet NaN, spelled out because the bits of
/// `f32::NAN` are not guaranteed across Rust versions and targets.
const CANONICAL_NAN_F32: u32 = 0x7fc0_0000;
/// The bits every `f64` NaN is hashed as (see [`CANONICAL_NAN_F32`]).
const CANONICAL_NAN_F64: u64 = 0x7ff8_0000_0000_0000;

/// Size of the chunk that gathers consecutive `u8` values.
const CHUNK: usize = 512;
const _: () = assert!(
    CHUNK <= u16::MAX as usize,
    "chunk lengths are written as u16"
);
/// Once an input has fed this many bytes, the rest is hashed on a second thread while
/// this one goes on encoding: for a large `Vec<u8>`, serde's byte-by-byte encoding and
/// SHA-256 then overlap instead of adding up. The digest is the same either way.
const PIPE_FROM: usize = 1 << 20;
/// The size of the buffers handed to the hashing thread.
const PIPE_BUFFER: usize = 1 << 20;

/// Where the encoded bytes go: nowhere yet (a short input never needs a hasher), a
/// hasher on this thread, or a hashing thread.
enum Engine {
    Fresh,
    Inline { hasher: Sha256, fed: usize },
    Piped(Pipe),
}

/// The longest message that SHA-256 pads into a single 64-byte block.
const ONE_BLOCK: usize = 55;

/// SHA-256 of a message of at most [`ONE_BLOCK`] bytes, padded by hand and compressed
/// once: most inputs (a few numbers, a short string) are this small, and skipping the
/// hasher's buffering and finalization is a good part of a cache hit's cost.
fn one_block(message: &[u8]) -> [u8; 32] {
    debug_assert!(message.len() <= ONE_BLOCK);
    let mut block = [0u8; 64];
    block[..message.len()].copy_from_slice(message);
    block[message.len()] = 0x80;
    block[56..].copy_from_slice(&((message.len() as u64) * 8).to_be_bytes());
    let mut state: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    sha2::compress256(&mut state, &[block.into()]);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Hands `data` to the engine, moving to a hashing thread once enough has passed.
#[inline]
fn feed(engine: &mut Engine, may_pipe: &mut bool, data: &[u8]) {
    if let Engine::Fresh = engine {
        *engine = Engine::Inline {
            hasher: Sha256::new(),
            fed: 0,
        };
    }
    match engine {
        Engine::Fresh => unreachable!("replaced just above"),
        Engine::Inline { hasher, fed } => {
            hasher.update(data);
            *fed += data.len();
            if *fed >= PIPE_FROM && *may_pipe {
                *may_pipe = false;
                let hasher = std::mem::take(hasher);
                *engine = match Pipe::start(hasher) {
                    Ok(pipe) => Engine::Piped(pipe),
                    Err(hasher) => Engine::Inline { hasher, fed: 0 },
                };
            }
        }
        Engine::Piped(pipe) => {
            pipe.buffer.extend_from_slice(data);
            if pipe.buffer.len() >= PIPE_BUFFER {
                pipe.ship();
            }
        }
    }
}

/// A hashing thread and the buffers travelling to it and back.
struct Pipe {
    buffer: Vec<u8>,
    send: std::sync::mpsc::SyncSender<Vec<u8>>,
    recycled: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: std::thread::JoinHandle<[u8; 32]>,
}

impl Pipe {
    fn start(hasher: Sha256) -> Result<Pipe, Sha256> {
        let (send, receive) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (recycle, recycled) = std::sync::mpsc::channel::<Vec<u8>>();
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Some(hasher)));
        let theirs = std::sync::Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("taskcache-hash".into())
            .spawn(move || {
                let mut hasher = theirs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .unwrap_or_default();
                for mut buffer in receive {
                    hasher.update(&buffer);
                    buffer.clear();
                    let _ = recycle.send(buffer);
                }
                hasher.finalize().into()
            });
        match spawned {
            Ok(thread) => Ok(Pipe {
                buffer: Vec::with_capacity(PIPE_BUFFER),
                send,
                recycled,
                thread,
            }),
            // No thread to be had: keep hashing here.
            Err(_) => Err(shared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_default()),
        }
    }

    fn ship(&mut self) {
        let next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(PIPE_BUFFER));
        let full = std::mem::replace(&mut self.buffer, next);
        // The thread only stops when the sender is dropped, so sending cannot fail.
        let _ = self.send.send(full);
    }

    fn finish(mut self) -> [u8; 32] {
        if !self.buffer.is_empty() {
            self.ship();
        }
        drop(self.send);
        self.thread
            .join()
            .expect("the hashing thread does not panic")
    }
}

/// Small writes are gathered here and handed to SHA-256 together: an input of a few
/// fields is one `update` call instead of one per tag and field.
const STAGE: usize = 64;

/// The encoder's output, with a pending chunk of consecutive `u8` values.
struct Sink {
    engine: Engine,
    may_pipe: bool,
    stage: [u8; STAGE],
    staged: usize,
    /// Allocated on the first `u8`: most inputs never need it.
    chunk: Vec<u8>,
}

impl Sink {
    #[inline]
    fn new(may_pipe: bool) -> Self {
        Sink {
            engine: Engine::Fresh,
            may_pipe,
            stage: [0; STAGE],
            staged: 0,
            chunk: Vec::new(),
        }
    }

    /// Where the next byte goes in the encoding, while all of it is still staged (an
    /// exact key's encoding always is).
    fn position(&self) -> Option<usize> {
        matches!(self.engine, Engine::Fresh).then_some(self.staged)
    }

    #[inline]
    fn update(&mut self, data: &[u8]) {
        let end = self.staged + data.len();
        if end <= STAGE {
            self.stage[self.staged..end].copy_from_slice(data);
            self.staged = end;
        } else {
            self.unstage();
            if data.len() <= STAGE {
                self.stage[..data.len()].copy_from_slice(data);
                self.staged = data.len();
            } else {
                feed(&mut self.engine, &mut self.may_pipe, data);
            }
        }
    }

    /// Hands the staged bytes to the engine.
    #[inline]
    fn unstage(&mut self) {
        if self.staged > 0 {
            feed(
                &mut self.engine,
                &mut self.may_pipe,
                &self.stage[..self.staged],
            );
            self.staged = 0;
        }
    }

    #[inline]
    fn flush(&mut self) {
        let n = self.chunk.len();
        if n > 0 {
            let mut head = [tag::U8_CHUNK, 0, 0];
            head[1..].copy_from_slice(&(n as u16).to_le_bytes());
            self.update(&head);
            self.unstage();
            feed(&mut self.engine, &mut self.may_pipe, &self.chunk);
            self.chunk.clear();
        }
    }

    #[inline(always)]
    fn byte(&mut self, v: u8) {
        if self.chunk.len() == self.chunk.capacity() {
            self.make_room();
        }
        self.chunk.push(v);
    }

    /// Flushes a full chunk, or allocates the chunk on the first `u8`.
    #[cold]
    #[inline(never)]
    fn make_room(&mut self) {
        if self.chunk.capacity() == 0 {
            self.chunk.reserve_exact(CHUNK);
        } else {
            self.flush();
        }
    }

    #[inline]
    fn write(&mut self, tag: u8, payload: &[u8]) {
        self.flush();
        self.update(&[tag]);
        self.update(payload);
    }

    /// A sequence of `u8` as serde sends it (a sequence tag, the elements gathered
    /// in chunks, the end tag and count), from the slice in bulk: the same bytes, so
    /// the same digest.
    fn byte_seq(&mut self, bytes: &[u8]) {
        self.write(tag::SEQ, &[]);
        for chunk in bytes.chunks(CHUNK) {
            let mut head = [tag::U8_CHUNK, 0, 0];
            head[1..].copy_from_slice(&(chunk.len() as u16).to_le_bytes());
            self.update(&head);
            self.unstage();
            feed(&mut self.engine, &mut self.may_pipe, chunk);
        }
        self.write(tag::SEQ_END, &(bytes.len() as u64).to_le_bytes());
    }

    #[inline]
    fn len(&mut self, tag: u8, len: usize) {
        self.write(tag, &(len as u64).to_le_bytes());
    }

    fn name(&mut self, name: &str) {
        self.len(tag::STR, name.len());
        self.update(name.as_bytes());
    }

    fn variant(&mut self, tag: u8, enum_name: &str, index: u32, variant: &str) {
        self.write(tag, &index.to_le_bytes());
        self.name(enum_name);
        self.name(variant);
    }

    fn finish(mut self) -> [u8; 32] {
        self.flush();
        if let (Engine::Fresh, true) = (&self.engine, self.staged <= ONE_BLOCK) {
            return one_block(&self.stage[..self.staged]);
        }
        self.unstage();
        match self.engine {
            Engine::Fresh => Sha256::digest([]).into(),
            Engine::Inline { hasher, .. } => hasher.finalize().into(),
            Engine::Piped(pipe) => pipe.finish(),
        }
    }

    /// The encoding itself when it is short and was never handed to a hasher, else
    /// its digest.
    #[inline]
    fn finish_key(&mut self) -> InputKey {
        self.flush();
        if let (Engine::Fresh, true) = (&self.engine, self.staged <= EXACT_MAX) {
            // A fixed-size copy (no call to `memcpy`); only the first `staged` bytes
            // are ever read.
            let mut bytes = [0u8; EXACT_MAX];
            bytes.copy_from_slice(&self.stage[..EXACT_MAX]);
            return InputKey::Exact {
                len: self.staged as u8,
                bytes,
            };
        }
        let sink = std::mem::replace(self, Sink::new(false));
        InputKey::Digest(InputDigest(sink.finish()))
    }

    /// The digest so far, and a fresh start (map entries reuse one sink, never piped).
    fn finish_reset(&mut self) -> [u8; 32] {
        self.flush();
        if let (Engine::Fresh, true) = (&self.engine, self.staged <= ONE_BLOCK) {
            let digest = one_block(&self.stage[..self.staged]);
            self.staged = 0;
            return digest;
        }
        self.unstage();
        match &mut self.engine {
            Engine::Fresh => Sha256::digest([]).into(),
            Engine::Inline { hasher, .. } => {
                let digest = hasher.finalize_reset().into();
                self.engine = Engine::Fresh;
                digest
            }
            Engine::Piped(_) => unreachable!("map entry sinks are never piped"),
        }
    }
}

impl<'a> ser::Serializer for &'a mut Sink {
    type Ok = ();
    type Error = HashError;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), HashError> {
        self.write(tag::BOOL, &[u8::from(v)]);
        Ok(())
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), HashError> {
        self.write(tag::I8, &v.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<(), HashError> {
        self.write(tag::I16, &v.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<(), HashError> {
        self.write(tag::I32, &v.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), HashError> {
        self.write(tag::I64, &v.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<(), HashError> {
        self.write(tag::I128, &v.to_le_bytes());
        Ok(())
    }
    #[inline(always)]
    fn serialize_u8(self, v: u8) -> Result<(), HashError> {
        self.byte(v);
        Ok(())
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<(), HashError> {
        self.write(tag::U16, &v.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), HashError> {
        self.write(tag::U32, &v.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), HashError> {
        self.write(tag::U64, &v.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result<(), HashError> {
        self.write(tag::U128, &v.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), HashError> {
        let bits = if v.is_nan() {
            CANONICAL_NAN_F32
        } else if v == 0.0 {
            0
        } else {
            v.to_bits()
        };
        self.write(tag::F32, &bits.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), HashError> {
        let bits = if v.is_nan() {
            CANONICAL_NAN_F64
        } else if v == 0.0 {
            0
        } else {
            v.to_bits()
        };
        self.write(tag::F64, &bits.to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<(), HashError> {
        self.write(tag::CHAR, &u32::from(v).to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), HashError> {
        self.len(tag::STR, v.len());
        self.update(v.as_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), HashError> {
        self.len(tag::BYTES, v.len());
        self.update(v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result<(), HashError> {
        self.write(tag::NONE, &[]);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), HashError> {
        self.write(tag::SOME, &[]);
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result<(), HashError> {
        self.write(tag::UNIT, &[]);
        Ok(())
    }
    #[inline]
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), HashError> {
        self.write(tag::UNIT_STRUCT, &[]);
        self.name(name);
        Ok(())
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<(), HashError> {
        self.variant(tag::UNIT_VARIANT, name, index, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), HashError> {
        self.write(tag::NEWTYPE_STRUCT, &[]);
        self.name(name);
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), HashError> {
        self.variant(tag::NEWTYPE_VARIANT, name, index, variant);
        value.serialize(self)
    }
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'a>, HashError> {
        // The length is written at the end, counted, so that `len: None` hashes the same
        // as a known length.
        let _ = len;
        self.write(tag::SEQ, &[]);
        Ok(Seq {
            sink: self,
            count: 0,
        })
    }
    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Self, HashError> {
        self.len(tag::TUPLE, len);
        Ok(self)
    }
    #[inline]
    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self, HashError> {
        self.len(tag::TUPLE_STRUCT, len);
        self.name(name);
        Ok(self)
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self, HashError> {
        self.variant(tag::TUPLE_VARIANT, name, index, variant);
        self.len(tag::TUPLE, len);
        Ok(self)
    }
    #[inline]
    fn serialize_map(self, _len: Option<usize>) -> Result<Map<'a>, HashError> {
        Ok(Map {
            sink: self,
            entry: None,
            sum: [0; 4],
            count: 0,
        })
    }
    #[inline]
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self, HashError> {
        self.len(tag::STRUCT, len);
        self.name(name);
        Ok(self)
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self, HashError> {
        self.variant(tag::STRUCT_VARIANT, name, index, variant);
        self.len(tag::STRUCT, len);
        Ok(self)
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), HashError> {
        // Streams the text without allocating: UTF-8 never contains 0xFF, so the end
        // marker is unambiguous.
        struct Writer<'s>(&'s mut Sink, u64);
        impl fmt::Write for Writer<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.update(s.as_bytes());
                self.1 += s.len() as u64;
                Ok(())
            }
        }
        self.write(tag::DISPLAY, &[]);
        let mut w = Writer(self, 0);
        fmt::write(&mut w, format_args!("{value}"))
            .map_err(|_| HashError("Display failed".into()))?;
        let n = w.1;
        self.update(&[0xFF]);
        self.update(&n.to_le_bytes());
        Ok(())
    }
}

/// A sequence: elements in order, then their count.
pub(crate) struct Seq<'a> {
    sink: &'a mut Sink,
    count: u64,
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = ();
    type Error = HashError;
    #[inline(always)]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
        self.count += 1;
        value.serialize(&mut *self.sink)
    }
    #[inline]
    fn end(self) -> Result<(), HashError> {
        self.sink.write(tag::SEQ_END, &self.count.to_le_bytes());
        Ok(())
    }
}

macro_rules! fixed_length {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for &mut Sink {
            type Ok = ();
            type Error = HashError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), HashError> {
                Ok(())
            }
        }
    )*};
}

fixed_length!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeStruct for &mut Sink {
    type Ok = ();
    type Error = HashError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), HashError> {
        self.write(tag::FIELD, &[]);
        self.name(key);
        value.serialize(&mut **self)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), HashError> {
        self.write(tag::SKIPPED_FIELD, &[]);
        self.name(key);
        Ok(())
    }
    fn end(self) -> Result<(), HashError> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Sink {
    type Ok = ();
    type Error = HashError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), HashError> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), HashError> {
        ser::SerializeStruct::skip_field(self, key)
    }
    fn end(self) -> Result<(), HashError> {
        Ok(())
    }
}

/// A map: each entry hashed on its own, the entry digests summed, so the order of the
/// entries does not matter.
pub(crate) struct Map<'a> {
    sink: &'a mut Sink,
    /// The entry being hashed: its key has been written, its value not yet.
    entry: Option<Box<Sink>>,
    sum: [u64; 4],
    count: u64,
}

impl Map<'_> {
    fn add(&mut self, digest: [u8; 32]) {
        let mut carry = 0u64;
        for (i, limb) in self.sum.iter_mut().enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&digest[i * 8..i * 8 + 8]);
            let (s1, c1) = limb.overflowing_add(u64::from_le_bytes(word));
            let (s2, c2) = s1.overflowing_add(carry);
            *limb = s2;
            carry = u64::from(c1) + u64::from(c2);
        }
        self.count += 1;
    }
}

impl ser::SerializeMap for Map<'_> {
    type Ok = ();
    type Error = HashError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), HashError> {
        // One entry sink is reused for every entry of this map.
        let mut entry = match self.entry.take() {
            Some(e) => e,
            None => Box::new(Sink::new(false)),
        };
        key.serialize(&mut *entry)?;
        self.entry = Some(entry);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), HashError> {
        let mut entry = self
            .entry
            .take()
            .ok_or_else(|| HashError("map value serialized before its key".into()))?;
        value.serialize(&mut *entry)?;
        let digest = entry.finish_reset();
        self.add(digest);
        self.entry = Some(entry);
        Ok(())
    }
    fn end(self) -> Result<(), HashError> {
        let mut sum = [0u8; 32];
        for (i, limb) in self.sum.iter().enumerate() {
            sum[i * 8..i * 8 + 8].copy_from_slice(&limb.to_le_bytes());
        }
        self.sink.len(tag::MAP, self.count as usize);
        self.sink.update(&sum);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    fn h<T: Serialize + ?Sized>(v: &T) -> InputDigest {
        hash_input(v).unwrap()
    }

    fn key_of(args: &[&dyn erased_serde::Serialize]) -> (InputKey, InputDigest) {
        let (mut k, mut a) = (InputHasher::all(), InputHasher::all());
        for v in args {
            k.input(v).unwrap();
            a.input(v).unwrap();
        }
        (k.key(), a.into_all())
    }

    #[test]
    fn a_key_is_the_encoding_when_short_and_its_digest_is_the_digest_of_all() {
        // A string of n bytes encodes in 10 + n (input tag, str tag, length, bytes).
        for n in [0usize, 1, 44, 45, 46, 54, 55, 56, 64, 65, 200, 5000] {
            let s = "x".repeat(n);
            let (key, all) = key_of(&[&s]);
            assert_eq!(key.digest(), all, "n = {n}");
            assert_eq!(
                matches!(key, InputKey::Exact { .. }),
                10 + n <= EXACT_MAX,
                "n = {n}"
            );
            assert_eq!(
                key,
                key_of(&[&s]).0,
                "the same input, the same key (n = {n})"
            );
        }
        // Bytes, maps and several arguments alike.
        let map: BTreeMap<String, u32> = [("a".to_owned(), 1)].into();
        for args in [
            vec![&1u64 as &dyn erased_serde::Serialize, &2u64],
            vec![&vec![7u8; 3]],
            vec![&map],
            vec![&(), &Some(1.5f64)],
        ] {
            let (key, all) = key_of(&args);
            assert_eq!(key.digest(), all);
        }
    }

    #[test]
    fn bytes_in_bulk_hash_as_serde_sends_them() {
        for n in [0usize, 1, 511, 512, 513, 1024, 5000, (1 << 20) + 7, 3 << 20] {
            let v: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
            let (mut each, mut bulk_each) = (InputHasher::each(), InputHasher::each());
            let (mut all, mut bulk_all) = (InputHasher::all(), InputHasher::all());
            each.input(&1u8).unwrap();
            bulk_each.input(&1u8).unwrap();
            all.input(&1u8).unwrap();
            bulk_all.input(&1u8).unwrap();
            each.input(&v).unwrap();
            bulk_each.input_bytes(&v);
            all.input(&v).unwrap();
            bulk_all.input_bytes(&v);
            each.input(&"after").unwrap();
            bulk_each.input(&"after").unwrap();
            all.input(&"after").unwrap();
            bulk_all.input(&"after").unwrap();
            assert_eq!(each.into_each(), bulk_each.into_each(), "n = {n}");
            assert_eq!(all.into_all(), bulk_all.into_all(), "n = {n}");
        }
    }

    #[test]
    fn keys_of_different_inputs_differ() {
        let k = |a: &str, b: &str| key_of(&[&a, &b]).0;
        assert_ne!(k("ab", "c"), k("a", "bc"));
        assert_ne!(key_of(&[&1u64, &2u64]).0, key_of(&[&2u64, &1u64]).0);
        assert_ne!(key_of(&[&1u64]).0, key_of(&[&1i64]).0);
        // Past the exact length: digests, still apart.
        let long = "y".repeat(100);
        let other = format!("{}z", &long[..99]);
        assert_ne!(key_of(&[&long]).0, key_of(&[&other]).0);
        // An exact key never equals a digest key.
        let short = key_of(&[&"s"]).0;
        assert_ne!(short, InputKey::Digest(short.digest()));
    }

    #[test]
    fn equal_values_hash_equal_and_different_values_differ() {
        assert_eq!(h(&(1u64, "x")), h(&(1u64, "x")));
        assert_ne!(h(&("ab", "c")), h(&("a", "bc")));
        assert_ne!(h(&Some(0u32)), h(&None::<u32>));
        assert_ne!(h(&1u32), h(&1u64));
        assert_ne!(h(&vec![1u32, 2]), h(&vec![2u32, 1]));
        assert_ne!(h(&Vec::<u8>::new()), h(&()));
    }

    #[derive(serde::Serialize)]
    #[allow(dead_code)]
    enum Shape {
        Circle(f64),
        Square(f64),
        Point,
        Rect { w: f64, h: f64 },
    }

    #[test]
    fn enum_variants_are_told_apart() {
        assert_ne!(h(&Shape::Circle(1.0)), h(&Shape::Square(1.0)));
        assert_ne!(h(&Shape::Point), h(&Shape::Rect { w: 0.0, h: 0.0 }));
        assert_ne!(
            h(&Shape::Rect { w: 1.0, h: 2.0 }),
            h(&Shape::Rect { w: 2.0, h: 1.0 })
        );
    }

    #[test]
    fn floats_fold_signed_zero_and_nans() {
        assert_eq!(h(&-0.0f64), h(&0.0f64));
        assert_eq!(h(&f64::NAN), h(&-f64::NAN));
        assert_eq!(h(&f32::NAN), h(&f32::from_bits(0x7fc0_0001)));
        assert_ne!(h(&1.0f64), h(&-1.0f64));
    }

    #[test]
    fn maps_hash_alike_whatever_their_order() {
        let mut a = HashMap::new();
        let mut b = HashMap::with_capacity(1000);
        for i in 0..200u64 {
            a.insert(format!("k{i}"), i);
        }
        for i in (0..200u64).rev() {
            b.insert(format!("k{i}"), i);
        }
        assert_eq!(h(&a), h(&b));
        let c: BTreeMap<String, u64> = a.clone().into_iter().collect();
        assert_eq!(
            h(&a),
            h(&c),
            "a BTreeMap and a HashMap with the same entries"
        );
        b.insert("k0".into(), 1);
        assert_ne!(h(&a), h(&b));
        // Keys and values are not interchangeable between entries.
        let swapped: HashMap<u64, u64> = [(1, 2), (2, 1)].into();
        let same: HashMap<u64, u64> = [(1, 1), (2, 2)].into();
        assert_ne!(h(&swapped), h(&same));
    }

    #[test]
    fn nested_maps() {
        let inner =
            |n: u64| -> HashMap<u64, String> { (0..n).map(|i| (i, i.to_string())).collect() };
        let a: HashMap<&str, HashMap<u64, String>> = [("x", inner(5)), ("y", inner(7))].into();
        let b: HashMap<&str, HashMap<u64, String>> = [("y", inner(7)), ("x", inner(5))].into();
        assert_eq!(h(&a), h(&b));
        let c: HashMap<&str, HashMap<u64, String>> = [("x", inner(7)), ("y", inner(5))].into();
        assert_ne!(h(&a), h(&c));
    }

    #[test]
    fn byte_vectors_are_chunked_but_exact() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut flipped = data.clone();
        flipped[5_000] ^= 1;
        assert_ne!(h(&data), h(&flipped));
        assert_ne!(h(&data), h(&data[..9_999]));
        assert_eq!(h(&data), h(&data.clone()));
        // A chunk boundary falls differently with one more leading element.
        let mut longer = vec![0u8];
        longer.extend_from_slice(&data);
        assert_ne!(h(&data), h(&longer));
    }

    #[test]
    fn large_inputs_hashed_on_a_second_thread_digest_alike() {
        let data: Vec<u8> = (0..3 * PIPE_FROM as u32).map(|i| (i % 251) as u8).collect();
        let inline = {
            let mut sink = Sink::new(false);
            data.serialize(&mut sink).unwrap();
            sink.finish()
        };
        let piped = hash_input(&data).unwrap();
        assert_eq!(piped.0, inline);
        let mut other = data.clone();
        other[2 * PIPE_FROM] ^= 1;
        assert_ne!(hash_input(&other).unwrap(), piped);
        // Inputs that go on after the switch, in a struct.
        let pair = (data.clone(), "tail".to_string());
        let mut sink = Sink::new(false);
        pair.serialize(&mut sink).unwrap();
        assert_eq!(hash_input(&pair).unwrap().0, sink.finish());
    }

    #[test]
    fn the_one_block_shortcut_is_sha256() {
        let data: Vec<u8> = (0..=ONE_BLOCK as u8).map(|i| i.wrapping_mul(37)).collect();
        for n in 0..=ONE_BLOCK {
            let expected: [u8; 32] = Sha256::digest(&data[..n]).into();
            assert_eq!(one_block(&data[..n]), expected, "length {n}");
        }
    }

    #[test]
    fn json_values_hash() {
        let a: serde_json::Value = serde_json::json!({"a": [1, 2, {"b": null}], "c": "d"});
        let b: serde_json::Value = serde_json::json!({"c": "d", "a": [1, 2, {"b": null}]});
        assert_eq!(h(&a), h(&b));
        assert_ne!(h(&a), h(&serde_json::json!({"c": "d"})));
    }

    #[test]
    fn known_answer() {
        // Pins the encoding: changing it changes every digest users have stored.
        let hex: String = h(&(1u64, "x"))
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, KNOWN);
    }

    const KNOWN: &str = "a64ecf64e6f43f5f1ca18f2fdea738001b5877cb167d0aa81e0c64a50d43b150";

    #[test]
    fn known_answer_for_folded_floats() {
        // Pins the canonical NaN and zero bits, whatever `f64::NAN` is on this toolchain.
        let hex: String = h(&(-f64::NAN, -0.0f64, f32::from_bits(0xffc0_0001), -0.0f32))
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "df69b834ba1afdbfc44cf572a6f5869401e5b78d50e90eef7253e2252b376779"
        );
    }

    /// Text written through `Display` in the given pieces.
    struct Pieces<'a>(&'a [&'a str]);
    impl fmt::Display for Pieces<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.iter().try_for_each(|p| f.write_str(p))
        }
    }
    impl Serialize for Pieces<'_> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    #[test]
    fn collected_strings_stream_and_stay_delimited() {
        assert_eq!(h(&Pieces(&["ab", "", "c"])), h(&Pieces(&["abc"])));
        assert_ne!(
            h(&(Pieces(&["ab"]), Pieces(&["c"]))),
            h(&(Pieces(&["a"]), Pieces(&["bc"])))
        );
        assert_ne!(h(&Pieces(&[""])), h(&Pieces(&["\0"])));
        // Long text goes past the staging buffer.
        let long = "é".repeat(1000);
        assert_eq!(
            h(&Pieces(&[&long[..1000], &long[1000..]])),
            h(&Pieces(&[&long]))
        );
    }

    /// A sequence and a map that do not tell serde their length.
    struct Unsized<'a>(&'a [(u64, u8)]);
    impl Serialize for Unsized<'_> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeTuple;
            let mut t = s.serialize_tuple(2)?;
            t.serialize_element(&UnsizedSeq(self.0))?;
            t.serialize_element(&UnsizedMap(self.0))?;
            t.end()
        }
    }
    struct UnsizedSeq<'a>(&'a [(u64, u8)]);
    impl Serialize for UnsizedSeq<'_> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().filter(|_| true).map(|e| e.1))
        }
    }
    struct UnsizedMap<'a>(&'a [(u64, u8)]);
    impl Serialize for UnsizedMap<'_> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().filter(|_| true).map(|e| (e.0, e.1)))
        }
    }
    #[test]
    fn unknown_lengths_hash_like_known_ones() {
        let entries: Vec<(u64, u8)> = (0..1500u64).map(|i| (i, (i * 13) as u8)).collect();
        let known = (
            entries.iter().map(|e| e.1).collect::<Vec<u8>>(),
            entries.iter().copied().collect::<BTreeMap<u64, u8>>(),
        );
        assert_eq!(hash_input(&Unsized(&entries)).unwrap(), h(&known));
    }

    #[test]
    fn runs_of_bytes_keep_their_structure() {
        assert_ne!(h(&(vec![1u8], 2u8)), h(&(vec![1u8, 2u8],)));
        assert_ne!(h(&vec![(1u8, 2u8), (3, 4)]), h(&vec![(1u8, 2u8, 3u8, 4u8)]));
        assert_ne!(h(&((1u8, 2u8), 3u8)), h(&(1u8, (2u8, 3u8))));
        // Lengths around the chunk size all differ.
        let data = vec![9u8; 3 * CHUNK + 1];
        let lengths = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 1];
        let digests: Vec<_> = lengths.iter().map(|&n| h(&data[..n])).collect();
        for (i, a) in digests.iter().enumerate() {
            for b in &digests[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: ser::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("the mutex is poisoned"))
        }
    }

    #[test]
    fn a_failing_serialize_is_an_error() {
        let e = hash_input(&Fails).unwrap_err();
        assert!(e.to_string().contains("the mutex is poisoned"));
        assert!(hash_input(&vec![Fails]).is_err());
    }
}

#[cfg(test)]
mod segment_tests {
    use super::*;
    use proptest::prelude::*;

    /// One argument, of one of the kinds the generated code hands over.
    #[derive(Debug, Clone)]
    enum Arg {
        Number(u64),
        Text(String),
        Maybe(Option<u32>),
        Bytes(Vec<u8>),
        Unit,
        Pair((i8, bool)),
    }

    fn feed(hasher: &mut InputHasher, args: &[Arg]) {
        for arg in args {
            match arg {
                Arg::Number(n) => hasher.input(n).unwrap(),
                Arg::Text(t) => hasher.input(t).unwrap(),
                Arg::Maybe(m) => hasher.input(m).unwrap(),
                Arg::Bytes(b) => hasher.input_bytes(b),
                Arg::Unit => hasher.input(&()).unwrap(),
                Arg::Pair(p) => hasher.input(p).unwrap(),
            }
        }
    }

    fn arg() -> impl Strategy<Value = Arg> {
        prop_oneof![
            any::<u64>().prop_map(Arg::Number),
            ".{0,20}".prop_map(Arg::Text),
            any::<Option<u32>>().prop_map(Arg::Maybe),
            prop::collection::vec(any::<u8>(), 0..24).prop_map(Arg::Bytes),
            Just(Arg::Unit),
            any::<(i8, bool)>().prop_map(Arg::Pair),
        ]
    }

    proptest! {
        /// The digests remade from an exact key are the ones hashed from the inputs
        /// themselves, and the key is the one `all` makes.
        #[test]
        fn each_digest_remade_from_the_key_is_the_hashed_one(
            args in prop::collection::vec(arg(), 0..10),
        ) {
            let mut each = InputHasher::each();
            feed(&mut each, &args);
            let mut all = InputHasher::all();
            feed(&mut all, &args);
            let mut segmented = InputHasher::segmented();
            feed(&mut segmented, &args);
            let key = all.key();
            match segmented.segments() {
                Some((seg_key, starts)) => {
                    prop_assert_eq!(seg_key, key);
                    prop_assert!(key.fits(&starts, args.len()));
                    prop_assert!(!key.fits(&starts, args.len() + 1));
                    prop_assert_eq!(
                        key.each_digest(&starts).map(|d| d.into_vec()),
                        Some(each.into_each())
                    );
                }
                // Only a key too long to keep, or more than six arguments, has none.
                None => prop_assert!(
                    matches!(key, InputKey::Digest(_)) || args.len() > MAX_SEGMENTS
                ),
            }
        }
    }
}
