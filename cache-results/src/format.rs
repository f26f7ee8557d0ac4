//! The file format of a stored result, and crash-safe writes and verified reads of it.
//!
//! A file is a 60-byte header, then the payload: exactly what the serializer wrote.
//! All integers are little-endian.
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `TASKCCH\0` |
//! | 2 | format version ([`VERSION`]) |
//! | 1 | serializer id ([`Serializer::id`]) |
//! | 1 | flags, reserved: 0 (a reader refuses other values) |
//! | 8 | fingerprint of the stored Rust type ([`fingerprint`]) |
//! | 8 | payload length |
//! | 32 | SHA-256 of the payload |
//!
//! (The reserved byte keeps the three wide fields 4-byte aligned, where version 1 had its
//! flags.)
//!
//! **Writes** go to a temporary file in the target's own directory: placeholder header,
//! payload streamed through a large buffer and a hasher, then the real header, `fsync`,
//! rename into place, `fsync` of the directory. A reader sees the old file or the new
//! one, never a part; on any error the temporary file is removed.
//!
//! **Reads** check the header (magic, version, serializer, type, and that the payload
//! length is the file's), then the payload's SHA-256, and only then decode it: damaged
//! bytes are never decoded. Small files are read whole; a large payload is hashed in a
//! first streaming pass and decoded in a second, so it is never held in memory beside
//! the value. Nothing is allocated for a length the bytes claim ahead of the bytes
//! behind it: every allocation is bounded by the real file length.
//!
//! **`Vec<u8>`**: serde hands a byte vector over one byte at a time. With a serializer
//! whose encoding of it is bincode's ([`Serializer::encodes_bytes_as_bincode`]: a varint
//! length, then the bytes), such a value is written and read in one piece, and large
//! ones are hashed on a second thread while the first does the I/O. The bytes on disk
//! are the same either way, so the file is an ordinary bincode result.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use taskcache_core::result::{
    PayloadDigest, ResultError, Serializer, Slot, TypedSlot, Value, ValueType,
};

// The header is defined beside the result-backend contract, so that everything that
// stores bytes (results, cache records, a flow run's persisted inputs) shares it.
pub use taskcache_core::header::{
    fingerprint_of, Header, BLOB_SERIALIZER, HEADER_LEN, MAGIC, VERSION,
};

/// Files up to this size are read in one piece and decoded from memory.
const WHOLE_FILE_MAX: u64 = 1 << 20;
/// A `Vec<u8>` in a file larger than this is read straight into its own vector.
const WHOLE_FILE_MAX_BYTES: u64 = 64 << 10;
/// The buffer between a serializer and the file, and the hashing pass's buffer.
const IO_BUFFER: usize = 1 << 20;
/// The buffer a large payload is decoded through.
const DECODE_BUFFER: usize = 256 << 10;
/// From this size on, a `Vec<u8>` is hashed on a second thread while the first does I/O.
const PARALLEL_FROM: usize = 1 << 20;
/// The chunk a large `Vec<u8>` is read in, each handed to the hashing thread.
const PIPELINE_CHUNK: usize = 8 << 20;
/// The most a streamed read reserves ahead of the bytes it has received.
const STREAM_RESERVE: usize = 1 << 30;

/// The fingerprint of a Rust type: the first 8 bytes (little-endian) of the SHA-256 of
/// `std::any::type_name::<T>()`.
///
/// It tells types apart by name, so a value written as `Vec<u32>` is not read as a
/// `String`; a type whose definition changed under the same name is caught when its
/// payload fails to decode.
pub fn fingerprint<T: ?Sized>() -> u64 {
    fingerprint_of(std::any::type_name::<T>())
}

fn corrupt(path: &Path, reason: impl Into<String>) -> ResultError {
    ResultError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ResultError + '_ {
    move |source| ResultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A read error: the file ending early means it changed under us (it is not one of
/// ours: ours are replaced, never written in place), anything else is I/O.
fn read_error(path: &Path) -> impl FnOnce(io::Error) -> ResultError + '_ {
    move |source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            corrupt(
                path,
                "the file ended before its header's length while it was read",
            )
        } else {
            io_error(path)(source)
        }
    }
}

/// Bytes a serializer cannot decode as `T`, or decodes with bytes left over. The
/// checksum has passed, so this is a `T` whose definition changed since it was written.
fn undecodable(path: &Path, ty: ValueType, serializer: &'static str, why: String) -> ResultError {
    ResultError::TypeMismatch {
        path: path.to_path_buf(),
        expected: ty.name.to_owned(),
        found: format!(
            "a value that {serializer} cannot decode as one ({why}), perhaps written by an \
             earlier definition of the type"
        ),
    }
}

/// The bincode standard encoding of a length: one byte below 251, else a marker byte
/// (251, 252, 253 for 2, 4, 8 bytes) and the little-endian value.
fn bincode_len(len: u64) -> ([u8; 9], usize) {
    let mut out = [0u8; 9];
    if len < 251 {
        out[0] = len as u8;
        (out, 1)
    } else if let Ok(v) = u16::try_from(len) {
        out[0] = 251;
        out[1..3].copy_from_slice(&v.to_le_bytes());
        (out, 3)
    } else if let Ok(v) = u32::try_from(len) {
        out[0] = 252;
        out[1..5].copy_from_slice(&v.to_le_bytes());
        (out, 5)
    } else {
        out[0] = 253;
        out[1..9].copy_from_slice(&len.to_le_bytes());
        (out, 9)
    }
}

/// The size of a bincode length whose first byte is `first` (None: not a `u64`).
fn bincode_len_size(first: u8) -> Option<usize> {
    match first {
        0..=250 => Some(1),
        251 => Some(3),
        252 => Some(5),
        253 => Some(9),
        _ => None,
    }
}

/// Decodes a bincode length from `prefix`, which holds exactly its bytes.
fn parse_bincode_len(prefix: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    match prefix.len() {
        1 => return u64::from(prefix[0]),
        n => b[..n - 1].copy_from_slice(&prefix[1..]),
    }
    u64::from_le_bytes(b)
}

/// Whether values of type `ty` take the one-piece `Vec<u8>` path with `serializer`.
fn is_byte_vec<S: Serializer>(ty: ValueType, serializer: &S) -> bool {
    serializer.encodes_bytes_as_bincode() && ty.is_byte_vec()
}

/// A writer that hashes and counts what passes through it, and keeps the first error
/// of the writer beneath so that a failed write is reported as I/O, not as a
/// serializer's failure.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
    failed: Option<io::Error>,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.len += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.failed.get_or_insert(e);
                Err(copy)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Encodes `value` with its header into `out`, which must be empty and seekable,
/// streaming the payload (`path` is for messages).
///
/// `sync` is called once the payload is written and before the header is: for a file,
/// syncing its data then overlaps with the hashing of a large `Vec<u8>`.
///
/// # Errors
/// [`ResultError::Serialize`] when the serializer fails, [`ResultError::Io`] when `out`
/// does.
pub fn encode_into<S, W>(
    value: Value<'_>,
    serializer: &S,
    out: &mut W,
    path: &Path,
    sync: impl FnOnce(&mut W) -> io::Result<()>,
) -> Result<PayloadDigest, ResultError>
where
    S: Serializer,
    W: Write + Seek,
{
    out.write_all(&[0u8; HEADER_LEN]).map_err(io_error(path))?;
    let header = encode_payload(value, serializer, out, path, sync)?;
    out.seek(SeekFrom::Start(0)).map_err(io_error(path))?;
    out.write_all(&header.to_bytes()).map_err(io_error(path))?;
    Ok(PayloadDigest(header.digest))
}

/// Encodes `value`'s payload (no header) into `out`, hashing it as it goes, and returns
/// the header that must precede it (`path` is for messages). For stores that cannot
/// seek back, such as an object store's multipart upload: the header is written last,
/// wherever it goes.
///
/// `sync` is called once the payload is written, as in [`encode_into`].
///
/// # Errors
/// [`ResultError::Serialize`] when the serializer fails, [`ResultError::Io`] when `out`
/// does.
pub fn encode_payload<S, W>(
    value: Value<'_>,
    serializer: &S,
    out: &mut W,
    path: &Path,
    sync: impl FnOnce(&mut W) -> io::Result<()>,
) -> Result<Header, ResultError>
where
    S: Serializer,
    W: Write,
{
    let bytes = value
        .bytes()
        .filter(|_| serializer.encodes_bytes_as_bincode());
    let (digest, len) = match bytes {
        Some(bytes) => {
            let (prefix, n) = bincode_len(bytes.len() as u64);
            let digest = write_and_hash(out, &prefix[..n], bytes, sync).map_err(io_error(path))?;
            (digest, (n + bytes.len()) as u64)
        }
        None => {
            let mut hashing = Hashing {
                inner: &mut *out,
                hasher: Sha256::new(),
                len: 0,
                failed: None,
            };
            let mut buffered = BufWriter::with_capacity(IO_BUFFER, &mut hashing);
            let written = serializer.serialize(value.serialize(), &mut buffered);
            let flushed = match written {
                Ok(()) => buffered.flush(),
                Err(_) => Ok(()),
            };
            // Without the flush a dropped `BufWriter` would do after a failure.
            let _ = buffered.into_parts();
            if let Some(source) = hashing.failed.take() {
                return Err(io_error(path)(source));
            }
            written.map_err(|source| ResultError::Serialize {
                path: path.to_path_buf(),
                serializer: serializer.name(),
                source,
            })?;
            flushed.map_err(io_error(path))?;
            let digest = hashing.hasher.finalize().into();
            let len = hashing.len;
            sync(out).map_err(io_error(path))?;
            (digest, len)
        }
    };
    Ok(Header {
        serializer: serializer.id(),
        fingerprint: fingerprint_of(value.ty().name),
        len,
        digest,
    })
}

/// Writes `prefix` and `bytes` to `out`, then `sync`s it, and returns their SHA-256;
/// a large payload is hashed on a second thread while this one writes.
fn write_and_hash<W: Write>(
    out: &mut W,
    prefix: &[u8],
    bytes: &[u8],
    sync: impl FnOnce(&mut W) -> io::Result<()>,
) -> io::Result<[u8; 32]> {
    let digest = || {
        Sha256::new()
            .chain_update(prefix)
            .chain_update(bytes)
            .finalize()
    };
    if bytes.len() < PARALLEL_FROM {
        out.write_all(prefix)?;
        out.write_all(bytes)?;
        sync(out)?;
        return Ok(digest().into());
    }
    std::thread::scope(|s| {
        let hasher = s.spawn(digest);
        let written = out
            .write_all(prefix)
            .and_then(|()| out.write_all(bytes))
            .and_then(|()| sync(out));
        let digest = hasher.join().expect("hashing a slice does not panic");
        written.map(|()| digest.into())
    })
}

/// Fills `payload` from `file` and returns the SHA-256 of `prefix` and `payload`;
/// a large payload is hashed chunk by chunk on a second thread as soon as each is read.
fn read_and_hash(file: &mut impl Read, prefix: &[u8], payload: &mut [u8]) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    if payload.len() < PARALLEL_FROM {
        file.read_exact(payload)?;
        hasher.update(&*payload);
        return Ok(hasher.finalize().into());
    }
    std::thread::scope(|s| {
        let (send, receive) = std::sync::mpsc::sync_channel::<&[u8]>(4);
        let hashing = s.spawn(move || {
            for chunk in receive {
                hasher.update(chunk);
            }
            hasher.finalize()
        });
        let mut read = Ok(());
        for chunk in payload.chunks_mut(PIPELINE_CHUNK) {
            if let Err(e) = file.read_exact(chunk) {
                read = Err(e);
                break;
            }
            let chunk: &[u8] = chunk;
            if send.send(chunk).is_err() {
                break;
            }
        }
        drop(send);
        let digest = hashing.join().expect("hashing a slice does not panic");
        read.map(|()| digest.into())
    })
}

/// Writes `value` to `path` atomically and durably: temporary file in the same
/// directory (created if missing), `sync_all`, rename, sync of the directory. On any
/// error the temporary file is removed and `path` is untouched.
///
/// # Errors
/// [`ResultError::Io`] naming the path or directory that failed, or
/// [`ResultError::Serialize`].
pub fn write_file<S>(
    value: Value<'_>,
    serializer: &S,
    path: &Path,
) -> Result<PayloadDigest, ResultError>
where
    S: Serializer,
{
    // A result is an ordinary file (a Make-style target other tools read): the usual
    // 0666 less the umask.
    write_atomically(path, 0o666, |file| {
        // The payload's data is synced as soon as it is written (overlapping the hashing
        // of a large `Vec<u8>`); the final sync then has only the header left.
        encode_into(value, serializer, file, path, |f| f.sync_data())
    })
}

/// Writes `bytes` to `path` as a blob of `kind` (a fingerprint the reader must
/// expect, see [`decode_blob`]), atomically and durably as [`write_file`], readable by
/// its owner only: a cache record holds the flow's parameters, which may be secrets.
///
/// # Errors
/// [`ResultError::Io`] naming the path or directory that failed.
pub fn write_blob(bytes: &[u8], kind: u64, path: &Path) -> Result<PayloadDigest, ResultError> {
    write_atomically(path, 0o600, |file| {
        let (header, digest) = blob_header(bytes, kind);
        file.write_all(&header)
            .and_then(|()| file.write_all(bytes))
            .map_err(io_error(path))?;
        Ok(digest)
    })
}

/// `bytes` as a blob of `kind`, header and all, in memory: what [`write_blob`] writes
/// to a file, for a store that takes whole objects.
pub fn encode_blob(bytes: &[u8], kind: u64) -> Vec<u8> {
    taskcache_core::header::seal(bytes, BLOB_SERIALIZER, kind)
}

fn blob_header(bytes: &[u8], kind: u64) -> ([u8; HEADER_LEN], PayloadDigest) {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    let header = Header {
        serializer: BLOB_SERIALIZER,
        fingerprint: kind,
        len: bytes.len() as u64,
        digest,
    };
    (header.to_bytes(), PayloadDigest(digest))
}

/// The bytes of a blob of `kind` held whole in `stored` (a file's contents), verified:
/// header, length and checksum (`path` is for messages).
///
/// # Errors
/// [`ResultError::Corrupt`] for bytes that are not an intact blob of `kind`.
pub fn decode_blob(stored: &[u8], kind: u64, path: &Path) -> Result<Vec<u8>, ResultError> {
    check_blob(stored, kind, path).map(<[u8]>::to_vec)
}

/// [`decode_blob`] of bytes it may keep: the payload is moved to the front of `stored`
/// instead of copied into a new vector.
///
/// # Errors
/// As [`decode_blob`].
pub(crate) fn decode_blob_owned(
    mut stored: Vec<u8>,
    kind: u64,
    path: &Path,
) -> Result<Vec<u8>, ResultError> {
    check_blob(&stored, kind, path)?;
    stored.drain(..HEADER_LEN);
    Ok(stored)
}

/// The payload of the blob of `kind` in `stored`, once header, length and checksum
/// have passed.
fn check_blob<'a>(stored: &'a [u8], kind: u64, path: &Path) -> Result<&'a [u8], ResultError> {
    let Some((head, payload)) = stored.split_first_chunk::<HEADER_LEN>() else {
        return Err(short(path, stored.len() as u64));
    };
    let header = Header::parse(head, path)?;
    if header.serializer != BLOB_SERIALIZER || header.fingerprint != kind {
        return Err(corrupt(path, "it is not the kind of record expected here"));
    }
    if header.len != payload.len() as u64 {
        return Err(corrupt(
            path,
            format!(
                "the header claims {} payload bytes but the file holds {}",
                header.len,
                payload.len()
            ),
        ));
    }
    if Sha256::digest(payload).as_slice() != header.digest {
        return Err(corrupt(
            path,
            "checksum mismatch: the payload is not what was written",
        ));
    }
    Ok(payload)
}

/// Opens `path` for reading only if it is a regular file, without blocking: a FIFO, a
/// device or a directory in its place is reported as [`ResultError::Corrupt`] (a miss
/// to the runtime), never waited on. The check is made on the opened handle, so the
/// file cannot be swapped between the check and the read; its metadata comes back
/// with it. `Ok(None)` when there is nothing at `path`.
///
/// # Errors
/// [`ResultError::Corrupt`] for anything but a regular file, [`ResultError::Io`] when
/// opening fails otherwise.
pub fn open_regular(path: &Path) -> Result<Option<(File, std::fs::Metadata)>, ResultError> {
    let Some(file) = open_nonblocking(path)? else {
        return Ok(None);
    };
    let meta = regular(&file, path)?;
    Ok(Some((file, meta)))
}

/// Opens `path` for reading without blocking, whatever it is (see [`open_regular`]):
/// for a read that makes sure of what it read some other way ([`read_whole_at_once`]).
/// `Ok(None)` when there is nothing at `path`.
pub(crate) fn open_nonblocking(path: &Path) -> Result<Option<File>, ResultError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
    // It changes nothing for regular files.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    match options.open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(io_error(path)(e)),
    }
}

/// The metadata of an opened `file`, when it is a regular file.
///
/// # Errors
/// [`ResultError::Corrupt`] for anything else, [`ResultError::Io`] when it cannot be
/// asked.
pub(crate) fn regular(file: &File, path: &Path) -> Result<std::fs::Metadata, ResultError> {
    let meta = file.metadata().map_err(io_error(path))?;
    if !meta.is_file() {
        return Err(corrupt(
            path,
            "it is not a regular file (a FIFO, a device, a socket or a directory); \
             remove it",
        ));
    }
    Ok(meta)
}

/// What the first read of a stored file asks for: a cache record and the result of a
/// small value fit.
const FIRST_READ: usize = 2048;

/// A small stored file read whole in one `read`, without asking first what it is or how
/// long: `Some` when the bytes read are exactly as many as their own header declares
/// (header and payload), which for a regular file means all of it, since a read stops
/// short of what it asked for only at the file's end. (Their checksum is checked by the
/// caller, as for every read: bytes that pass it are what was written, wherever they
/// were read from.) `None` for anything else (a longer file, a FIFO, a device, a
/// directory, bytes that are not a stored file, a read that fails): the caller reads
/// it the long way, from its start, after [`regular`]. A fresh process's persisted hit
/// reads two such files: this spares each a `statx` and the read that finds the end.
pub(crate) fn read_whole_at_once(file: &mut File) -> Option<Vec<u8>> {
    let mut first = [0u8; FIRST_READ];
    let n = loop {
        match file.read(&mut first) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // (A FIFO without data, a directory: the long way says what it is, and a
            // read that fails there too says why.)
            Err(_) => return None,
        }
    };
    let read = &first[..n];
    let declared = read
        .first_chunk::<HEADER_LEN>()
        .filter(|h| h[..8] == taskcache_core::header::MAGIC)
        .map(|h| {
            let mut len = [0u8; 8];
            len.copy_from_slice(&h[20..28]);
            u64::from_le_bytes(len).saturating_add(HEADER_LEN as u64)
        });
    (n < FIRST_READ && declared == Some(n as u64)).then(|| read.to_vec())
}

/// Creates a temporary file beside `path`, lets `fill` write it, syncs it, renames it
/// to `path` and syncs the directory. The temporary file is removed on any error (its
/// `NamedTempFile` deletes it when dropped), and is locked while it is written, so that
/// [`remove_stale_temp_files`] can tell the leftovers of a killed writer from the file
/// of a live one. The file gets the Unix permissions `mode`, less the umask.
fn write_atomically<R>(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> Result<R, ResultError>,
) -> Result<R, ResultError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    remove_stale_temp_files_once(dir);
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX).suffix(TEMP_SUFFIX);
    // tempfile's own default is owner-only; `mode` (less the umask) is the caller's.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(mode));
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder.tempfile_in(dir).map_err(io_error(dir))?;
    // A fresh file nobody else has opened: the lock is free. Held until the file is
    // closed (after the rename), also released if the process dies.
    if let Err(e) = tmp.as_file().try_lock() {
        tracing::debug!(path = %tmp.path().display(), error = %e, "cannot lock a temporary file");
    }
    let filled = fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(io_error(path))?;
    tmp.persist(path).map_err(|e| ResultError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(dir)?;
    Ok(filled)
}

/// The names of temporary files: `.tmp-<random>.taskcache`.
const TEMP_PREFIX: &str = ".tmp-";
const TEMP_SUFFIX: &str = ".taskcache";
/// A temporary file younger than this is never removed: its writer may have created it
/// and not yet locked it.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Removes the temporary files in `dir` left by writers that died (killed mid-write):
/// those no process holds locked, older than a few seconds. Returns how many were
/// removed. Safe beside live writers, in this process or another: a live writer holds
/// its temporary file locked until it has renamed it.
///
/// # Errors
/// When `dir` cannot be listed.
pub fn remove_stale_temp_files(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        let path = entry.path();
        let Ok(Some((file, meta))) = open_regular(&path) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if !old || file.try_lock().is_err() {
            continue;
        }
        // Still the same file under that name (not renamed or replaced meanwhile)?
        if same_file(&meta, &path) && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether `path` names the file whose metadata is `meta`.
fn same_file(meta: &std::fs::Metadata, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path)
            .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = (meta, path);
        false
    }
}

/// [`remove_stale_temp_files`], the first time this process writes into `dir`.
fn remove_stale_temp_files_once(dir: &Path) {
    static SWEPT: std::sync::Mutex<Option<std::collections::HashSet<std::path::PathBuf>>> =
        std::sync::Mutex::new(None);
    let first = SWEPT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Default::default)
        .insert(dir.to_path_buf());
    if first {
        match remove_stale_temp_files(dir) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(dir = %dir.display(), removed = n, "removed temporary files left by killed writers")
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot look for stale temporary files")
            }
        }
    }
}

/// Makes a rename in `dir` durable (Unix; elsewhere the rename is as durable as the
/// system makes it).
fn sync_dir(dir: &Path) -> Result<(), ResultError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// [`fingerprint_of`] the type `ty`, remembered for the type this thread read last (a
/// SHA-256 saved on every read of it).
fn fingerprint_for(ty: ValueType) -> u64 {
    thread_local! {
        static LAST: std::cell::Cell<Option<(std::any::TypeId, u64)>> =
            const { std::cell::Cell::new(None) };
    }
    LAST.with(|last| match last.get() {
        Some((id, fingerprint)) if id == ty.id => fingerprint,
        _ => {
            let fingerprint = fingerprint_of(ty.name);
            last.set(Some((ty.id, fingerprint)));
            fingerprint
        }
    })
}

/// What a reader expects of a stored value: the serializer that wrote it and the type
/// it holds. Taken from the reader's serializer where the read starts; `Copy` and
/// `'static`, so that a download can be checked on the thread it arrives on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected {
    serializer_id: u8,
    serializer_name: &'static str,
    /// Whether the value takes the one-piece `Vec<u8>` path ([`is_byte_vec`]).
    byte_vec: bool,
    ty: ValueType,
    fingerprint: u64,
}

impl Expected {
    /// A value of type `ty` written by `serializer`.
    pub(crate) fn new<S: Serializer>(serializer: &S, ty: ValueType) -> Self {
        Expected {
            serializer_id: serializer.id(),
            serializer_name: serializer.name(),
            byte_vec: is_byte_vec(ty, serializer),
            ty,
            fingerprint: fingerprint_for(ty),
        }
    }
}

/// Checks a header against the payload a record pinned (if any), the reader's
/// serializer, type and the file's length.
pub(crate) fn check_header<S: Serializer>(
    head: &[u8; HEADER_LEN],
    file_len: u64,
    serializer: &S,
    path: &Path,
    pinned: Option<&PayloadDigest>,
    ty: ValueType,
) -> Result<Header, ResultError> {
    check_expected(head, file_len, &Expected::new(serializer, ty), path, pinned)
}

/// [`check_header`] against what the reader expects.
fn check_expected(
    head: &[u8; HEADER_LEN],
    file_len: u64,
    expected: &Expected,
    path: &Path,
    pinned: Option<&PayloadDigest>,
) -> Result<Header, ResultError> {
    let header = Header::parse(head, path)?;
    if pinned.is_some_and(|p| p.0 != header.digest) {
        return Err(ResultError::Changed {
            path: path.to_path_buf(),
        });
    }
    if header.serializer != expected.serializer_id {
        return Err(corrupt(
            path,
            format!(
                "written by serializer {}, read with {} (id {}); read it with the serializer \
                 that wrote it",
                header.serializer, expected.serializer_name, expected.serializer_id,
            ),
        ));
    }
    if header.fingerprint != expected.fingerprint {
        return Err(ResultError::TypeMismatch {
            path: path.to_path_buf(),
            expected: expected.ty.name.to_owned(),
            found: format!(
                "a value of another type (type fingerprint {:016x}); tasks with different \
                 output types need different targets",
                header.fingerprint
            ),
        });
    }
    let payload_len = file_len - HEADER_LEN as u64;
    if header.len != payload_len {
        return Err(corrupt(
            path,
            format!(
                "the header claims {} payload bytes but the file holds {payload_len}",
                header.len
            ),
        ));
    }
    Ok(header)
}

/// Checks `payload` against `header` (its checksum unless `verify` is false) and decodes
/// it.
pub(crate) fn decode_payload<S: Serializer>(
    payload: &[u8],
    header: &Header,
    serializer: &S,
    path: &Path,
    verify: bool,
    slot: &mut dyn Slot,
) -> Result<(), ResultError> {
    if verify && Sha256::digest(payload).as_slice() != header.digest {
        return Err(corrupt(
            path,
            "checksum mismatch: the payload is not what was written",
        ));
    }
    if is_byte_vec(slot.ty(), serializer) {
        let size = payload
            .first()
            .and_then(|&first| bincode_len_size(first))
            .filter(|&size| size <= payload.len())
            .ok_or_else(|| corrupt(path, "the payload does not start with a byte length"))?;
        let len = parse_bincode_len(&payload[..size]);
        let bytes = &payload[size..];
        if len != bytes.len() as u64 {
            return Err(corrupt(
                path,
                format!("the payload claims {len} bytes and holds {}", bytes.len()),
            ));
        }
        slot.put_bytes(bytes.to_vec());
        return Ok(());
    }
    let ty = slot.ty();
    let mut input = payload;
    serializer
        .deserialize_with(&mut input, payload.len() as u64, &mut |de| slot.decode(de))
        .map_err(|e| undecodable(path, ty, serializer.name(), e.0))?;
    if !input.is_empty() {
        return Err(undecodable(
            path,
            ty,
            serializer.name(),
            format!("{} bytes are left over after the value", input.len()),
        ));
    }
    Ok(())
}

/// The value a typed read put in its slot.
fn taken<T>(slot: TypedSlot<T>, path: &Path) -> Result<T, ResultError> {
    slot.0
        .ok_or_else(|| corrupt(path, "bytes read for a type that is not Vec<u8>"))
}

/// Reads and verifies the value stored in `bytes` (a whole file held in memory; `path`
/// is for messages), only if its payload is the `pinned` one when that is given.
///
/// # Errors
/// [`ResultError::Corrupt`] or [`ResultError::TypeMismatch`] when the bytes cannot be
/// trusted as a `T`, [`ResultError::Changed`] when they hold another payload than the
/// pinned one.
pub fn decode_bytes<T, S>(
    bytes: &[u8],
    serializer: &S,
    path: &Path,
    pinned: Option<&PayloadDigest>,
) -> Result<T, ResultError>
where
    T: serde::de::DeserializeOwned + 'static,
    S: Serializer,
{
    let mut slot = TypedSlot::<T>(None);
    decode_bytes_into(bytes, serializer, path, pinned, &mut slot)?;
    taken(slot, path)
}

/// [`decode_bytes`] into a type-erased [`Slot`].
///
/// # Errors
/// As [`decode_bytes`].
pub fn decode_bytes_into<S: Serializer>(
    bytes: &[u8],
    serializer: &S,
    path: &Path,
    pinned: Option<&PayloadDigest>,
    slot: &mut dyn Slot,
) -> Result<(), ResultError> {
    let Some((head, payload)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(short(path, bytes.len() as u64));
    };
    let header = check_header(
        head,
        bytes.len() as u64,
        serializer,
        path,
        pinned,
        slot.ty(),
    )?;
    decode_payload(payload, &header, serializer, path, true, slot)
}

fn short(path: &Path, len: u64) -> ResultError {
    corrupt(
        path,
        format!("{len} bytes, shorter than the {HEADER_LEN}-byte header"),
    )
}

/// Reads the value stored in `file`, whose length is `file_len` (`path` is for
/// messages).
///
/// With `verify` false the payload's checksum is not recomputed (the caller has
/// verified this very file before); everything else is still checked. With `pinned`,
/// only that payload is accepted.
///
/// # Errors
/// [`ResultError::Corrupt`] or [`ResultError::TypeMismatch`] when the file cannot be
/// trusted as a `T`, [`ResultError::Changed`] when it holds another payload than the
/// pinned one, [`ResultError::Io`] when reading fails.
pub fn read_from<T, S, R>(
    file: R,
    file_len: u64,
    serializer: &S,
    path: &Path,
    verify: bool,
    pinned: Option<&PayloadDigest>,
) -> Result<T, ResultError>
where
    T: serde::de::DeserializeOwned + 'static,
    S: Serializer,
    R: Read + Seek,
{
    let mut slot = TypedSlot::<T>(None);
    read_into(file, file_len, serializer, path, verify, pinned, &mut slot)?;
    taken(slot, path)
}

/// [`read_from`] into a type-erased [`Slot`].
///
/// # Errors
/// As [`read_from`].
pub fn read_into<S, R>(
    mut file: R,
    file_len: u64,
    serializer: &S,
    path: &Path,
    verify: bool,
    pinned: Option<&PayloadDigest>,
    slot: &mut dyn Slot,
) -> Result<(), ResultError>
where
    S: Serializer,
    R: Read + Seek,
{
    if file_len < HEADER_LEN as u64 {
        return Err(short(path, file_len));
    }
    let ty = slot.ty();
    let byte_vec = is_byte_vec(ty, serializer);
    let whole_max = if byte_vec {
        WHOLE_FILE_MAX_BYTES
    } else {
        WHOLE_FILE_MAX
    };
    if file_len <= whole_max {
        let bytes = read_whole(&mut file, file_len, path)?;
        let (head, payload) = bytes
            .split_first_chunk::<HEADER_LEN>()
            .expect("the file is at least a header long");
        let header = check_header(head, file_len, serializer, path, pinned, ty)?;
        return decode_payload(payload, &header, serializer, path, verify, slot);
    }
    let mut head = [0u8; HEADER_LEN];
    file.read_exact(&mut head).map_err(read_error(path))?;
    let header = check_header(&head, file_len, serializer, path, pinned, ty)?;
    if byte_vec {
        slot.put_bytes(read_byte_vec(file, &header, path, verify)?);
        return Ok(());
    }
    if verify {
        let digest = hash_stream(&mut file, header.len).map_err(read_error(path))?;
        if digest != header.digest {
            return Err(corrupt(
                path,
                "checksum mismatch: the payload is not what was written",
            ));
        }
        file.seek(SeekFrom::Start(HEADER_LEN as u64))
            .map_err(io_error(path))?;
    }
    let mut input = BufReader::with_capacity(DECODE_BUFFER, (&mut file).take(header.len));
    serializer
        .deserialize_with(&mut input, header.len, &mut |de| slot.decode(de))
        .map_err(|e| undecodable(path, ty, serializer.name(), e.0))?;
    let left = io::copy(&mut input, &mut io::sink()).map_err(io_error(path))?;
    if left > 0 {
        return Err(undecodable(
            path,
            ty,
            serializer.name(),
            format!("{left} bytes are left over after the value"),
        ));
    }
    Ok(())
}

/// Reads the `len` bytes of `file` (its length, as its metadata gave it) in one read
/// (`path` is for messages): the length is the file's real one, so is the allocation.
/// A file that ends early changed under the reader (ours are replaced, never written
/// in place): [`ResultError::Corrupt`].
///
/// # Errors
/// [`ResultError::Corrupt`] for a file shorter than `len`, [`ResultError::Io`] when
/// reading fails.
pub(crate) fn read_whole(file: impl Read, len: u64, path: &Path) -> Result<Vec<u8>, ResultError> {
    let want = usize::try_from(len).map_err(|_| corrupt(path, "a file larger than memory"))?;
    let mut bytes = Vec::with_capacity(want);
    // `take`: the read stops at `len` without a further read to find the end.
    file.take(len)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    if bytes.len() != want {
        return Err(read_error(path)(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(bytes)
}

/// Reads the value stored in a stream that cannot seek, such as an object store's
/// download, whose total length is `len` (`path` is for messages): the same checks as
/// [`read_into`], in one pass.
///
/// The header is checked as soon as its bytes arrive, so a foreign, pinned-out or
/// mistyped object is refused before its payload is fetched. A `Vec<u8>` is read
/// straight into its vector, each piece hashed as it arrives (while the network
/// delivers the next). Any
/// other value up to 1 MiB is held whole; a larger one is spilled to an anonymous
/// temporary file while it is hashed, and decoded from there only once its checksum
/// has passed, so it is never held in memory beside the value.
///
/// # Errors
/// As [`read_into`]; a stream that ends early is [`ResultError::Corrupt`].
pub fn read_stream_into<S, R>(
    mut input: R,
    len: u64,
    serializer: &S,
    path: &Path,
    pinned: Option<&PayloadDigest>,
    slot: &mut dyn Slot,
) -> Result<(), ResultError>
where
    S: Serializer,
    R: BufRead,
{
    let expected = Expected::new(serializer, slot.ty());
    let mut incoming = Incoming::new(len, expected, path, pinned.copied())?;
    while incoming.wants() > 0 {
        let piece = input.fill_buf().map_err(read_error(path))?;
        if piece.is_empty() {
            break;
        }
        let n = piece.len().min(incoming.wants());
        incoming.push(&piece[..n])?;
        input.consume(n);
    }
    incoming.finish()?.decode(serializer, slot)
}

/// A stored value arriving piece by piece (an object store's download), checked as it
/// comes, on whichever thread it arrives: the header as soon as its bytes are in (a
/// foreign, pinned-out or mistyped value is refused before its payload is fetched),
/// the payload's SHA-256 piece by piece. What [`read_stream_into`] reads with, and what
/// an object store's fetch runs on its I/O runtime; [`Stored::decode`] decodes the
/// result later, on the caller's thread.
pub(crate) struct Incoming {
    /// The stream's length, as the store gave it.
    len: u64,
    received: u64,
    expected: Expected,
    path: std::path::PathBuf,
    pinned: Option<PayloadDigest>,
    /// The digest and payload CRC-64 this version of the stored value was verified to
    /// have (see [`trust`](Incoming::trust)).
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    trusted: Option<(PayloadDigest, u64)>,
    /// Whether to take a CRC-64 of the payload beside its hash, to remember.
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    crc: bool,
    head: [u8; HEADER_LEN],
    state: Receiving,
}

/// The payload's check as it comes: its SHA-256 (with, for an object store, a CRC-64
/// to remember beside it), or, for a version verified before (see
/// [`Incoming::trust`]), a CRC-64 compared with the one taken then.
enum Check {
    Hash(Box<Sha256>, Option<Crc>),
    #[cfg(feature = "object-store")]
    Trusted(Crc, u64),
}

/// A CRC-64 of a payload as it comes (object stores only).
#[cfg(feature = "object-store")]
struct Crc(crc_fast::Digest);

#[cfg(feature = "object-store")]
impl Crc {
    fn new() -> Self {
        Crc(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme))
    }
    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn value(&self) -> u64 {
        self.0.finalize()
    }
}

/// No CRC without object stores.
#[cfg(not(feature = "object-store"))]
enum Crc {}

#[cfg(not(feature = "object-store"))]
impl Crc {
    fn update(&mut self, _: &[u8]) {
        match *self {}
    }
    fn value(&self) -> u64 {
        match *self {}
    }
}

impl Check {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Check::Hash(hasher, crc) => {
                hasher.update(bytes);
                if let Some(crc) = crc {
                    crc.update(bytes);
                }
            }
            #[cfg(feature = "object-store")]
            Check::Trusted(crc, _) => crc.update(bytes),
        }
    }

    /// Whether the payload is the one `header` describes; with the CRC-64 it has, when
    /// one was taken.
    fn passes(self, header: &Header) -> (bool, Option<u64>) {
        match self {
            Check::Hash(hasher, crc) => (
                <[u8; 32]>::from(hasher.finalize()) == header.digest,
                crc.map(|c| c.value()),
            ),
            #[cfg(feature = "object-store")]
            Check::Trusted(crc, expected) => {
                let got = crc.value();
                (got == expected, Some(got))
            }
        }
    }
}

/// Where [`Incoming`] is in the stream.
enum Receiving {
    /// The header's bytes (`Incoming::head`, `received` of them).
    Head,
    /// A `Vec<u8>`'s bincode length: `have` of its `size` bytes (`size` is 0 until the
    /// first has come).
    Prefix {
        header: Header,
        prefix: [u8; 9],
        have: usize,
        size: usize,
    },
    /// A `Vec<u8>`'s `want` bytes, straight into their vector.
    Bytes {
        header: Header,
        hasher: Check,
        bytes: Vec<u8>,
        want: usize,
    },
    /// A payload of up to [`WHOLE_FILE_MAX`] bytes, held whole.
    Payload {
        header: Header,
        hasher: Check,
        payload: Vec<u8>,
    },
    /// A larger payload, spilled behind its header to an anonymous temporary file.
    Spill {
        header: Header,
        hasher: Check,
        file: BufWriter<File>,
    },
}

/// What messages call the temporary file a large value is spilled to.
fn temporary() -> &'static Path {
    Path::new("a temporary file")
}

impl Incoming {
    /// Expects a stream of `len` bytes holding a value as `expected` says (`path` is
    /// for messages), only the `pinned` payload when that is given.
    ///
    /// # Errors
    /// [`ResultError::Corrupt`] when `len` is shorter than a header.
    pub(crate) fn new(
        len: u64,
        expected: Expected,
        path: &Path,
        pinned: Option<PayloadDigest>,
    ) -> Result<Self, ResultError> {
        if len < HEADER_LEN as u64 {
            return Err(short(path, len));
        }
        Ok(Incoming {
            len,
            received: 0,
            expected,
            path: path.to_path_buf(),
            pinned,
            trusted: None,
            crc: false,
            head: [0; HEADER_LEN],
            state: Receiving::Head,
        })
    }

    /// Takes a CRC-64 of the payload beside its SHA-256, for [`Stored::crc`].
    #[cfg(feature = "object-store")]
    pub(crate) fn with_crc(&mut self) {
        self.crc = true;
    }

    /// Says that this very version of the stored value (the same object version, as
    /// the store identifies it) was verified earlier to hold a payload whose digest is
    /// `digest` and whose CRC-64 is `crc`: a header that states that digest then has
    /// its payload checked against the CRC-64 (damage in transit or at rest still
    /// shows) instead of being hashed again. The header, the length and a pinned digest
    /// are checked all the same; a header stating another digest is hashed in full.
    #[cfg(feature = "object-store")]
    pub(crate) fn trust(&mut self, digest: PayloadDigest, crc: u64) {
        self.trusted = Some((digest, crc));
    }

    /// The check of a payload whose header has passed.
    #[cfg_attr(not(feature = "object-store"), allow(unused_variables))]
    fn check(&self, header: &Header) -> Check {
        #[cfg(feature = "object-store")]
        if let Some((digest, crc)) = self.trusted {
            if digest.0 == header.digest {
                return Check::Trusted(Crc::new(), crc);
            }
        }
        #[cfg(feature = "object-store")]
        let crc = self.crc.then(Crc::new);
        #[cfg(not(feature = "object-store"))]
        let crc = None;
        Check::Hash(Box::new(Sha256::new()), crc)
    }

    /// How many more bytes the stream should bring.
    pub(crate) fn wants(&self) -> usize {
        usize::try_from(self.len - self.received).unwrap_or(usize::MAX)
    }

    /// Takes the next piece of the stream; bytes beyond its length are ignored, as a
    /// reader of a file's first `len` bytes ignores what follows.
    ///
    /// # Errors
    /// As [`read_into`], as soon as the bytes show it: a refused header once it is
    /// complete, a `Vec<u8>` length that disagrees with the header;
    /// [`ResultError::Io`] when the temporary file of a large value fails.
    pub(crate) fn push(&mut self, piece: &[u8]) -> Result<(), ResultError> {
        let mut piece = &piece[..piece.len().min(self.wants())];
        while !piece.is_empty() {
            let n = self.take(piece)?;
            if n == 0 {
                break;
            }
            self.received += n as u64;
            piece = &piece[n..];
        }
        Ok(())
    }

    /// Takes what the current state wants of `piece` (not empty); returns how much.
    fn take(&mut self, piece: &[u8]) -> Result<usize, ResultError> {
        let n = match &mut self.state {
            Receiving::Head => {
                // In this state `received` is below the header's length.
                let have = self.received as usize;
                let n = (HEADER_LEN - have).min(piece.len());
                self.head[have..have + n].copy_from_slice(&piece[..n]);
                if have + n == HEADER_LEN {
                    self.state = self.after_head()?;
                }
                n
            }
            Receiving::Prefix {
                header,
                prefix,
                have,
                size,
            } => {
                if *size == 0 {
                    *size = bincode_len_size(piece[0])
                        .filter(|&size| size as u64 <= header.len)
                        .ok_or_else(|| {
                            corrupt(&self.path, "the payload does not start with a byte length")
                        })?;
                }
                let n = (*size - *have).min(piece.len());
                prefix[*have..*have + n].copy_from_slice(&piece[..n]);
                *have += n;
                if *have == *size {
                    let (header, prefix, size) = (*header, *prefix, *size);
                    self.state = self.after_prefix(header, &prefix[..size])?;
                }
                n
            }
            Receiving::Bytes {
                hasher,
                bytes,
                want,
                ..
            } => {
                // Each piece is hashed right after it is copied, while it is in cache.
                let n = (*want - bytes.len()).min(piece.len());
                bytes.extend_from_slice(&piece[..n]);
                hasher.update(&piece[..n]);
                n
            }
            Receiving::Payload {
                header,
                hasher,
                payload,
            } => {
                // At most `WHOLE_FILE_MAX`: a `usize`.
                let n = (header.len as usize - payload.len()).min(piece.len());
                payload.extend_from_slice(&piece[..n]);
                hasher.update(&piece[..n]);
                n
            }
            Receiving::Spill { hasher, file, .. } => {
                file.write_all(piece).map_err(io_error(temporary()))?;
                hasher.update(piece);
                piece.len()
            }
        };
        Ok(n)
    }

    /// The state after a complete header, once it has passed.
    fn after_head(&self) -> Result<Receiving, ResultError> {
        let header = check_expected(
            &self.head,
            self.len,
            &self.expected,
            &self.path,
            self.pinned.as_ref(),
        )?;
        if self.expected.byte_vec {
            return Ok(Receiving::Prefix {
                header,
                prefix: [0; 9],
                have: 0,
                size: 0,
            });
        }
        if header.len <= WHOLE_FILE_MAX {
            // Bounded by the stream's real length, checked against the header.
            return Ok(Receiving::Payload {
                header,
                hasher: self.check(&header),
                payload: Vec::with_capacity(header.len as usize),
            });
        }
        let spill = tempfile::tempfile().map_err(io_error(temporary()))?;
        let mut file = BufWriter::with_capacity(IO_BUFFER, spill);
        file.write_all(&self.head).map_err(io_error(temporary()))?;
        Ok(Receiving::Spill {
            header,
            hasher: self.check(&header),
            file,
        })
    }

    /// The state after a `Vec<u8>`'s length `prefix`, checked against the header.
    fn after_prefix(&self, header: Header, prefix: &[u8]) -> Result<Receiving, ResultError> {
        let len = parse_bincode_len(prefix);
        let held = header.len - prefix.len() as u64;
        if len != held {
            return Err(corrupt(
                &self.path,
                format!("the payload claims {len} bytes and holds {held}"),
            ));
        }
        let len =
            usize::try_from(len).map_err(|_| corrupt(&self.path, "payload larger than memory"))?;
        let mut hasher = self.check(&header);
        hasher.update(prefix);
        // The length is the store's claim, not bytes at hand: at most 1 GiB is reserved
        // ahead of them (untouched capacity costs nothing), so a hostile claim of
        // terabytes fails as a short stream instead of an allocation failure.
        Ok(Receiving::Bytes {
            header,
            hasher,
            bytes: Vec::with_capacity(len.min(STREAM_RESERVE)),
            want: len,
        })
    }

    /// The verified value, once the whole stream has come.
    ///
    /// # Errors
    /// [`ResultError::Corrupt`] for a stream that ended early or a payload whose
    /// checksum is not the header's; [`ResultError::Io`] when the temporary file of a
    /// large value fails.
    pub(crate) fn finish(self) -> Result<Stored, ResultError> {
        let ended_early = || read_error(&self.path)(io::ErrorKind::UnexpectedEof.into());
        let mismatch = || {
            corrupt(
                &self.path,
                "checksum mismatch: the payload is not what was written",
            )
        };
        if self.received < self.len {
            return Err(ended_early());
        }
        let (header, crc, body) = match self.state {
            Receiving::Head | Receiving::Prefix { .. } => return Err(ended_early()),
            Receiving::Bytes {
                header,
                hasher,
                bytes,
                want,
            } => {
                if bytes.len() != want {
                    return Err(ended_early());
                }
                let (passed, crc) = hasher.passes(&header);
                if !passed {
                    return Err(mismatch());
                }
                (header, crc, StoredBody::Bytes(bytes))
            }
            Receiving::Payload {
                header,
                hasher,
                payload,
            } => {
                if payload.len() as u64 != header.len {
                    return Err(ended_early());
                }
                let (passed, crc) = hasher.passes(&header);
                if !passed {
                    return Err(mismatch());
                }
                (header, crc, StoredBody::Payload(payload))
            }
            Receiving::Spill {
                header,
                hasher,
                file,
            } => {
                let file = file
                    .into_inner()
                    .map_err(|e| io_error(temporary())(e.into_error()))?;
                let (passed, crc) = hasher.passes(&header);
                if !passed {
                    return Err(mismatch());
                }
                (header, crc, StoredBody::Spilled(file))
            }
        };
        Ok(Stored {
            header,
            crc,
            len: self.len,
            expected: self.expected,
            path: self.path,
            body,
        })
    }
}

/// A stored value downloaded and verified by [`Incoming`] (header, length, checksum,
/// pinned digest), not yet decoded.
pub(crate) struct Stored {
    header: Header,
    /// The payload's CRC-64, when one was taken ([`Incoming::with_crc`]).
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    crc: Option<u64>,
    /// The stored length, header included.
    len: u64,
    expected: Expected,
    path: std::path::PathBuf,
    body: StoredBody,
}

/// Where a [`Stored`] value's bytes are.
enum StoredBody {
    /// A `Vec<u8>`'s bytes, its vector already.
    Bytes(Vec<u8>),
    /// A small payload.
    Payload(Vec<u8>),
    /// A large payload, behind its header in an anonymous temporary file.
    Spilled(File),
}

impl Stored {
    /// The digest of the verified payload, and its CRC-64 when one was taken.
    #[cfg(feature = "object-store")]
    pub(crate) fn verified(&self) -> (PayloadDigest, Option<u64>) {
        (PayloadDigest(self.header.digest), self.crc)
    }

    /// Decodes the value into `slot` with `serializer` (the checksum has passed: it is
    /// not computed again).
    ///
    /// # Errors
    /// [`ResultError::TypeMismatch`] when the bytes are not a value of the slot's type
    /// (or were fetched for another type or serializer); [`ResultError::Io`] when the
    /// temporary file of a large value fails.
    pub(crate) fn decode<S: Serializer>(
        self,
        serializer: &S,
        slot: &mut dyn Slot,
    ) -> Result<(), ResultError> {
        let ty = slot.ty();
        let expected = Expected::new(serializer, ty);
        if expected.serializer_id != self.expected.serializer_id
            || expected.ty.id != self.expected.ty.id
            || expected.byte_vec != self.expected.byte_vec
        {
            // Fetched for another reader: the header's checks say why, if they can.
            check_expected(
                &self.header.to_bytes(),
                self.len,
                &expected,
                &self.path,
                None,
            )?;
            return Err(ResultError::TypeMismatch {
                path: self.path,
                expected: ty.name.to_owned(),
                found: format!(
                    "a value fetched to be read as a `{}` with {}",
                    self.expected.ty.name, self.expected.serializer_name
                ),
            });
        }
        match self.body {
            StoredBody::Bytes(bytes) => {
                slot.put_bytes(bytes);
                Ok(())
            }
            StoredBody::Payload(payload) => {
                decode_payload(&payload, &self.header, serializer, &self.path, false, slot)
            }
            StoredBody::Spilled(mut file) => {
                file.seek(SeekFrom::Start(0))
                    .map_err(io_error(temporary()))?;
                read_into(file, self.len, serializer, &self.path, false, None, slot)
            }
        }
    }

    /// Where the bytes are held, for tests: `bytes`, `payload` or `spilled`, and the
    /// address of a `Vec<u8>`'s bytes.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (&'static str, Option<*const u8>) {
        match &self.body {
            StoredBody::Bytes(b) => ("bytes", Some(b.as_ptr())),
            StoredBody::Payload(_) => ("payload", None),
            StoredBody::Spilled(_) => ("spilled", None),
        }
    }
}

/// Reads the bincode length a `Vec<u8>` payload starts with, checked against the
/// header's payload length: the prefix's bytes, their number, and the vector's length
/// (bounded by the stored length, checked against the file's or stream's own).
fn read_byte_len(
    input: &mut impl Read,
    header: &Header,
    path: &Path,
) -> Result<([u8; 9], usize, usize), ResultError> {
    let mut prefix = [0u8; 9];
    input
        .read_exact(&mut prefix[..1])
        .map_err(read_error(path))?;
    let size = bincode_len_size(prefix[0])
        .filter(|&size| size as u64 <= header.len)
        .ok_or_else(|| corrupt(path, "the payload does not start with a byte length"))?;
    input
        .read_exact(&mut prefix[1..size])
        .map_err(read_error(path))?;
    let len = parse_bincode_len(&prefix[..size]);
    let held = header.len - size as u64;
    if len != held {
        return Err(corrupt(
            path,
            format!("the payload claims {len} bytes and holds {held}"),
        ));
    }
    let len = usize::try_from(len).map_err(|_| corrupt(path, "payload larger than memory"))?;
    Ok((prefix, size, len))
}

/// The SHA-256 of the next `len` bytes of `file`, read through a bounded buffer.
fn hash_stream(file: &mut impl Read, len: u64) -> io::Result<[u8; 32]> {
    let mut buffer = vec![0u8; IO_BUFFER.min(usize::try_from(len).unwrap_or(IO_BUFFER))];
    let mut hasher = Sha256::new();
    let mut left = len;
    while left > 0 {
        let n = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut buffer[..n])?;
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    Ok(hasher.finalize().into())
}

/// Reads a `Vec<u8>` payload (bincode length, bytes) straight into its vector.
fn read_byte_vec(
    mut file: impl Read,
    header: &Header,
    path: &Path,
    verify: bool,
) -> Result<Vec<u8>, ResultError> {
    let (prefix, size, len) = read_byte_len(&mut file, header, path)?;
    let bytes = if verify {
        let mut bytes = vec![0u8; len];
        let digest =
            read_and_hash(&mut file, &prefix[..size], &mut bytes).map_err(read_error(path))?;
        if digest != header.digest {
            return Err(corrupt(
                path,
                "checksum mismatch: the payload is not what was written",
            ));
        }
        bytes
    } else {
        // Into spare capacity, as `fs::read` does: nothing is zeroed first.
        let mut bytes = Vec::with_capacity(len);
        file.take(len as u64)
            .read_to_end(&mut bytes)
            .map_err(io_error(path))?;
        if bytes.len() != len {
            return Err(read_error(path)(io::ErrorKind::UnexpectedEof.into()));
        }
        bytes
    };
    Ok(bytes)
}

/// Reads and verifies the value stored at `path`.
///
/// # Errors
/// As [`read_from`]; a missing file is [`ResultError::Io`] (a backend turns it into
/// [`ResultError::NotFound`]), anything but a regular file [`ResultError::Corrupt`].
pub fn read_file<T, S>(path: &Path, serializer: &S) -> Result<T, ResultError>
where
    T: serde::de::DeserializeOwned + 'static,
    S: Serializer,
{
    let (file, meta) =
        open_regular(path)?.ok_or_else(|| io_error(path)(io::ErrorKind::NotFound.into()))?;
    read_from(file, meta.len(), serializer, path, true, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serializers::BincodeSerializer;

    #[test]
    fn byte_vec_lengths_are_bincode_lengths() {
        for len in [0u64, 1, 250, 251, 65_535, 65_536, 1 << 32, u64::MAX] {
            let (prefix, n) = bincode_len(len);
            let reference = bincode::encode_to_vec(len, bincode::config::standard()).unwrap();
            assert_eq!(&prefix[..n], &reference[..], "{len}");
            assert_eq!(bincode_len_size(prefix[0]), Some(n));
            assert_eq!(parse_bincode_len(&prefix[..n]), len);
        }
    }

    /// A version trusted by its ETag is still checked, against the CRC-64 taken when
    /// its SHA-256 was verified: bytes damaged under an unchanged ETag are refused.
    #[cfg(feature = "object-store")]
    #[test]
    fn a_trusted_version_is_still_checked_against_its_crc() {
        use crate::ResultBackendExt;
        let dir = tempfile::tempdir().unwrap();
        let at = taskcache_core::result::Location::new("v.bin").unwrap();
        let value: Vec<u32> = (0..100_000).collect();
        crate::LocalResult::new(dir.path())
            .write(&value, &at)
            .unwrap();
        let good = std::fs::read(dir.path().join("v.bin")).unwrap();
        let incoming = |bytes: &[u8]| {
            let ty = ValueType::of::<Vec<u32>>();
            let expected = Expected::new(&BincodeSerializer, ty);
            Incoming::new(bytes.len() as u64, expected, Path::new("v.bin"), None).unwrap()
        };
        // The first read hashes, and takes the CRC to remember.
        let mut first = incoming(&good);
        first.with_crc();
        first.push(&good).unwrap();
        let (digest, crc) = first.finish().unwrap().verified();
        let crc = crc.expect("a CRC was asked for");
        let again = |bytes: &[u8]| {
            let mut i = incoming(bytes);
            i.trust(digest, crc);
            i.push(bytes).and_then(|()| i.finish()).map(|_| ())
        };
        again(&good).expect("the same bytes pass");
        for at in [HEADER_LEN + 3, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            match again(&bad) {
                Err(ResultError::Corrupt { .. }) => {}
                other => panic!("a flipped byte at {at} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_serializer_leaves_what_follows_its_value() {
        let mut encoded = Vec::new();
        BincodeSerializer
            .serialize(&(1u32, "x".to_string()), &mut encoded)
            .unwrap();
        let len = encoded.len() as u64;
        encoded.extend_from_slice(b"tail");
        let mut input = &encoded[..];
        let v: (u32, String) = BincodeSerializer.deserialize(&mut input, len + 4).unwrap();
        assert_eq!(v, (1, "x".to_string()));
        assert_eq!(input, b"tail");
    }
}
