//! The file format of a stored result, and crash-safe writes and verified reads of it.
//!
//! A file is a 60-byte header, then the payload:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `TASKCCH\0` |
//! | 2 | format version (1), little-endian |
//! | 1 | serializer id |
//! | 1 | flags: bit 0 set when the payload is the raw bytes of a `Vec<u8>` |
//! | 8 | fingerprint of the Rust type (SHA-256 of its type name), little-endian |
//! | 8 | payload length, little-endian |
//! | 32 | SHA-256 of the payload |
//!
//! Writes go to a temporary file in the same directory, which is synced, renamed into
//! place and the directory synced: a reader sees the old file or the new one, never a
//! part. Reads check the header, then the payload's length and checksum, and only then
//! decode it: damaged bytes are never decoded.

use sha2::{Digest, Sha256};
use std::any::{Any, TypeId};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use taskcache_core::result::{ResultError, Serializer};

/// The first bytes of every result file.
pub const MAGIC: [u8; 8] = *b"TASKCCH\0";
/// The current format version.
pub const VERSION: u16 = 1;
/// The size of the header.
pub const HEADER_LEN: usize = 60;
const FLAG_RAW: u8 = 1;

/// The header of a result file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The serializer that wrote the payload.
    pub serializer: u8,
    /// Flags (raw bytes).
    pub flags: u8,
    /// The fingerprint of the stored type.
    pub fingerprint: u64,
    /// The payload's length.
    pub len: u64,
    /// The payload's SHA-256.
    pub digest: [u8; 32],
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_le_bytes());
        h[10] = self.serializer;
        h[11] = self.flags;
        h[12..20].copy_from_slice(&self.fingerprint.to_le_bytes());
        h[20..28].copy_from_slice(&self.len.to_le_bytes());
        h[28..60].copy_from_slice(&self.digest);
        h
    }

    fn decode(h: &[u8; HEADER_LEN], path: &Path) -> Result<Self, ResultError> {
        if h[..8] != MAGIC {
            return Err(corrupt(path, "it is not a taskcache result (bad magic)"));
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(corrupt(
                path,
                format!("format version {version}, expected {VERSION}"),
            ));
        }
        let word = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[r]);
            u64::from_le_bytes(b)
        };
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&h[28..60]);
        Ok(Header {
            serializer: h[10],
            flags: h[11],
            fingerprint: word(12..20),
            len: word(20..28),
            digest,
        })
    }
}

/// The fingerprint of a Rust type: the first 8 bytes of the SHA-256 of its name.
pub fn fingerprint<T: ?Sized>() -> u64 {
    let d = Sha256::digest(std::any::type_name::<T>().as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
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

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Encodes `value` with its header into `out` (which must start empty and be seekable),
/// streaming the payload.
///
/// `sync` is called once the payload is written, while a large payload may still be
/// being hashed: for a file, syncing its data then overlaps with the hashing.
pub fn encode_into<T, S, W>(
    value: &T,
    serializer: &S,
    out: &mut W,
    path: &Path,
    sync: impl FnOnce(&mut W) -> io::Result<()>,
) -> Result<(), ResultError>
where
    T: serde::Serialize + 'static,
    S: Serializer,
    W: Write + Seek,
{
    out.write_all(&[0u8; HEADER_LEN]).map_err(io_error(path))?;
    let raw = raw_bytes(value, serializer);
    let (digest, len) = match raw {
        Some(bytes) => {
            let digest = write_and_hash(out, bytes, sync).map_err(io_error(path))?;
            (digest, bytes.len() as u64)
        }
        None => {
            let (digest, len) = {
                let mut hashing = Hashing {
                    inner: BufWriter::with_capacity(1 << 20, &mut *out),
                    hasher: Sha256::new(),
                    len: 0,
                };
                serializer
                    .serialize(value, &mut hashing)
                    .map_err(|source| ResultError::Serialize {
                        path: path.to_path_buf(),
                        serializer: serializer.name(),
                        source,
                    })?;
                hashing.flush().map_err(io_error(path))?;
                (hashing.hasher.finalize().into(), hashing.len)
            };
            sync(out).map_err(io_error(path))?;
            (digest, len)
        }
    };
    let header = Header {
        serializer: serializer.id(),
        flags: if raw.is_some() { FLAG_RAW } else { 0 },
        fingerprint: fingerprint::<T>(),
        len,
        digest,
    };
    out.seek(SeekFrom::Start(0)).map_err(io_error(path))?;
    out.write_all(&header.encode()).map_err(io_error(path))?;
    Ok(())
}

/// The raw bytes of a `Vec<u8>` value, when the serializer allows storing them as is.
fn raw_bytes<'a, T: 'static, S: Serializer>(value: &'a T, serializer: &S) -> Option<&'a [u8]> {
    if serializer.raw_bytes() && TypeId::of::<T>() == TypeId::of::<Vec<u8>>() {
        (value as &dyn Any)
            .downcast_ref::<Vec<u8>>()
            .map(Vec::as_slice)
    } else {
        None
    }
}

/// Payloads from this size on are hashed on a second thread while the first does the
/// I/O: hashing and disk then overlap instead of adding up.
const PARALLEL_FROM: usize = 1 << 20;
const PIPELINE_CHUNK: usize = 8 << 20;

/// Writes `bytes` to `out`, then `sync`s it, and returns their SHA-256.
fn write_and_hash<W: Write>(
    out: &mut W,
    bytes: &[u8],
    sync: impl FnOnce(&mut W) -> io::Result<()>,
) -> io::Result<[u8; 32]> {
    if bytes.len() < PARALLEL_FROM {
        out.write_all(bytes)?;
        sync(out)?;
        return Ok(Sha256::digest(bytes).into());
    }
    std::thread::scope(|s| {
        let hasher = s.spawn(|| Sha256::digest(bytes));
        let written = out.write_all(bytes).and_then(|()| sync(out));
        let digest = hasher.join().expect("hashing a slice does not panic");
        written.map(|()| digest.into())
    })
}

/// Fills `payload` from `file` and returns its SHA-256, hashing each chunk on a second
/// thread as soon as it has been read.
fn read_and_hash(file: &mut impl Read, payload: &mut [u8]) -> io::Result<[u8; 32]> {
    if payload.len() < PARALLEL_FROM {
        file.read_exact(payload)?;
        return Ok(Sha256::digest(&*payload).into());
    }
    std::thread::scope(|s| {
        let (send, receive) = std::sync::mpsc::sync_channel::<&[u8]>(4);
        let hasher = s.spawn(move || {
            let mut h = Sha256::new();
            for chunk in receive {
                h.update(chunk);
            }
            h.finalize()
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
        let digest = hasher.join().expect("hashing a slice does not panic");
        read.map(|()| digest.into())
    })
}

/// Writes `value` to `path` atomically and durably: temporary file in the same
/// directory, `sync_all`, rename, sync of the directory. On any error the temporary
/// file is removed and `path` is untouched.
pub fn write_file<T, S>(value: &T, serializer: &S, path: &Path) -> Result<(), ResultError>
where
    T: serde::Serialize + 'static,
    S: Serializer,
{
    write_atomically(path, |file| {
        // The payload's data is synced as soon as it is written (overlapping the hashing
        // of a large one); the final sync then has only the header left to write back.
        encode_into(value, serializer, file, path, |f| f.sync_data())
    })
}

/// Writes raw `bytes` to `path` atomically and durably (for records).
pub fn write_bytes(bytes: &[u8], path: &Path) -> Result<(), ResultError> {
    write_atomically(path, |file| file.write_all(bytes).map_err(io_error(path)))
}

/// Creates a temporary file beside `path`, lets `fill` write it, syncs it, renames it
/// to `path` and syncs the directory. The temporary file is removed on any error.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), ResultError>,
) -> Result<(), ResultError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_error(dir))?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(io_error(path))?;
    tmp.persist(path).map_err(|e| ResultError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), ResultError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    let _ = dir;
    Ok(())
}

/// Reads and verifies the value in `file` (`path` is for messages).
pub fn read_from<T, S>(
    file: impl Read,
    file_len: u64,
    serializer: &S,
    path: &Path,
) -> Result<T, ResultError>
where
    T: serde::de::DeserializeOwned + 'static,
    S: Serializer,
{
    read_checked(file, file_len, serializer, path, true)
}

/// Reads the value in `file`; with `verify` false the payload's checksum is not
/// recomputed (the caller has verified this very file before), everything else is
/// still checked.
pub fn read_checked<T, S>(
    mut file: impl Read,
    file_len: u64,
    serializer: &S,
    path: &Path,
    verify: bool,
) -> Result<T, ResultError>
where
    T: serde::de::DeserializeOwned + 'static,
    S: Serializer,
{
    let mut head = [0u8; HEADER_LEN];
    if file_len < HEADER_LEN as u64 {
        return Err(corrupt(
            path,
            format!("{file_len} bytes, shorter than the {HEADER_LEN}-byte header"),
        ));
    }
    file.read_exact(&mut head).map_err(io_error(path))?;
    let header = Header::decode(&head, path)?;
    if header.serializer != serializer.id() {
        return Err(corrupt(
            path,
            format!(
                "written with serializer {}, read with {} ({})",
                header.serializer,
                serializer.id(),
                serializer.name()
            ),
        ));
    }
    if header.fingerprint != fingerprint::<T>() {
        return Err(ResultError::TypeMismatch {
            path: path.to_path_buf(),
            expected: std::any::type_name::<T>().to_owned(),
            found: format!("type with fingerprint {:016x}", header.fingerprint),
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
    // The length is bounded by the file's real size, so this allocation is too.
    let len =
        usize::try_from(payload_len).map_err(|_| corrupt(path, "payload larger than memory"))?;
    let payload = if verify {
        let mut payload = vec![0u8; len];
        let digest = read_and_hash(&mut file, &mut payload).map_err(io_error(path))?;
        if digest != header.digest {
            return Err(corrupt(path, "checksum mismatch"));
        }
        payload
    } else {
        // Into spare capacity, as `fs::read` does: nothing is zeroed first.
        let mut payload = Vec::with_capacity(len);
        let read = (&mut file)
            .take(payload_len)
            .read_to_end(&mut payload)
            .map_err(io_error(path))?;
        if read != len {
            return Err(corrupt(
                path,
                format!("{read} payload bytes, the header says {len}"),
            ));
        }
        payload
    };
    let raw = header.flags & FLAG_RAW != 0;
    if raw {
        if TypeId::of::<T>() != TypeId::of::<Vec<u8>>() {
            return Err(corrupt(
                path,
                "raw bytes stored for a type that is not Vec<u8>",
            ));
        }
        let boxed: Box<dyn Any> = Box::new(payload);
        return boxed
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| corrupt(path, "raw bytes for another type"));
    }
    serializer.deserialize(&payload).map_err(|e| {
        corrupt(
            path,
            format!(
                "the payload does not decode with {}: {e}",
                serializer.name()
            ),
        )
    })
}

/// Reads and verifies the value stored at `path`.
pub fn read_file<T, S>(path: &Path, serializer: &S) -> Result<T, ResultError>
where
    T: serde::de::DeserializeOwned + 'static,
    S: Serializer,
{
    let file = File::open(path).map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    read_from(file, len, serializer, path)
}

/// `path` with `.lock` appended under a hidden lock directory of `root`.
pub(crate) fn lock_path(root: &Path, location: &str) -> PathBuf {
    let d = Sha256::digest(location.as_bytes());
    let name: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    root.join(".locks").join(format!("{name}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serializers::{BincodeSerializer, JsonSerializer};
    use std::io::Cursor;

    fn encode<T: serde::Serialize + 'static>(value: &T) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        encode_into(
            value,
            &BincodeSerializer,
            &mut out,
            Path::new("test"),
            |_| Ok(()),
        )
        .unwrap();
        out.into_inner()
    }

    fn decode<T: serde::de::DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T, ResultError> {
        read_from(
            bytes,
            bytes.len() as u64,
            &BincodeSerializer,
            Path::new("test"),
        )
    }

    /// A file whose header is valid for `payload`, however the payload lies.
    fn forged<T: ?Sized>(payload: &[u8]) -> Vec<u8> {
        let header = Header {
            serializer: BincodeSerializer.id(),
            flags: 0,
            fingerprint: fingerprint::<T>(),
            len: payload.len() as u64,
            digest: Sha256::digest(payload).into(),
        };
        let mut file = header.encode().to_vec();
        file.extend_from_slice(payload);
        file
    }

    #[test]
    fn round_trips_and_raw_bytes() {
        let v = vec![("a".to_string(), 1u64), ("b".to_string(), 2)];
        assert_eq!(decode::<Vec<(String, u64)>>(&encode(&v)).unwrap(), v);
        let bytes: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let file = encode(&bytes);
        assert_eq!(file[11], FLAG_RAW);
        assert_eq!(file.len(), HEADER_LEN + bytes.len());
        assert_eq!(decode::<Vec<u8>>(&file).unwrap(), bytes);
        let mut out = Cursor::new(Vec::new());
        encode_into(&v, &JsonSerializer, &mut out, Path::new("t"), |_| Ok(())).unwrap();
        let file = out.into_inner();
        assert_eq!(&file[HEADER_LEN..], br#"[["a",1],["b",2]]"#);
        let back: Vec<(String, u64)> = read_from(
            &file[..],
            file.len() as u64,
            &JsonSerializer,
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn damage_is_detected_before_decoding() {
        let file = encode(&"hello".to_string());
        let short = &file[..file.len() - 1];
        assert!(matches!(
            decode::<String>(short),
            Err(ResultError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<String>(&file[..10]),
            Err(ResultError::Corrupt { .. })
        ));
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let e = decode::<String>(&flipped).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        let mut magic = file.clone();
        magic[0] = b'X';
        assert!(decode::<String>(&magic)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        assert!(matches!(
            decode::<Vec<u32>>(&file),
            Err(ResultError::TypeMismatch { .. })
        ));
    }

    #[test]
    fn a_crafted_length_with_a_valid_checksum_does_not_allocate_it() {
        // A String whose varint length claims u64::MAX / 2 bytes (0xFD: an 8-byte length).
        let mut payload = vec![0xFD];
        payload.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        payload.extend_from_slice(b"tiny");
        let e = decode::<String>(&forged::<String>(&payload)).unwrap_err();
        assert!(matches!(e, ResultError::Corrupt { .. }), "{e}");
        // The same for a Vec<String> claiming 2^40 elements.
        let mut payload = vec![0xFD];
        payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let e = decode::<Vec<String>>(&forged::<Vec<String>>(&payload)).unwrap_err();
        assert!(matches!(e, ResultError::Corrupt { .. }), "{e}");
    }
}
