//! The header every stored value starts with: what a result file, a cache record and a
//! flow run's persisted inputs share (`taskcache_results::format` describes the file
//! format it begins).
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `TASKCCH\0` |
//! | 2 | format version ([`VERSION`]) |
//! | 1 | serializer id |
//! | 1 | flags, reserved: 0 (a reader refuses other values) |
//! | 8 | fingerprint of the stored Rust type ([`fingerprint_of`]) |
//! | 8 | payload length |
//! | 32 | SHA-256 of the payload |

use crate::result::ResultError;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The first bytes of every result file.
pub const MAGIC: [u8; 8] = *b"TASKCCH\0";
/// The format version this crate writes and reads. Version 1 (taskcache before its
/// first release) stored `Vec<u8>` values without their length prefix.
pub const VERSION: u16 = 2;
/// The length of the header.
pub const HEADER_LEN: usize = 60;

/// The header of a result file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The id of the serializer that wrote the payload.
    pub serializer: u8,
    /// The fingerprint of the stored type ([`fingerprint_of`] its name).
    pub fingerprint: u64,
    /// The payload's length in bytes.
    pub len: u64,
    /// The payload's SHA-256.
    pub digest: [u8; 32],
}

impl Header {
    /// The header as written at the start of a file.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_le_bytes());
        h[10] = self.serializer;
        h[11] = 0;
        h[12..20].copy_from_slice(&self.fingerprint.to_le_bytes());
        h[20..28].copy_from_slice(&self.len.to_le_bytes());
        h[28..60].copy_from_slice(&self.digest);
        h
    }

    /// Reads a header, checking its magic, version and flags (`path` is for messages).
    ///
    /// # Errors
    /// [`ResultError::Corrupt`] when the bytes are not a header this version can read.
    pub fn parse(h: &[u8; HEADER_LEN], path: &Path) -> Result<Self, ResultError> {
        if h[..8] != MAGIC {
            return Err(corrupt(
                path,
                "it does not start with taskcache's magic bytes",
            ));
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version != VERSION {
            return Err(corrupt(
                path,
                format!("format version {version}, this taskcache reads version {VERSION}"),
            ));
        }
        if h[11] != 0 {
            return Err(corrupt(
                path,
                format!("header flags {:#04x}, from a newer taskcache", h[11]),
            ));
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&h[28..60]);
        Ok(Header {
            serializer: h[10],
            fingerprint: word(12),
            len: word(20),
            digest,
        })
    }
}

/// The fingerprint of the type named `type_name`: the first 8 bytes (little-endian) of
/// the SHA-256 of the name (`std::any::type_name`).
pub fn fingerprint_of(type_name: &str) -> u64 {
    let d = Sha256::digest(type_name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// The serializer id of a blob: bytes stored as they are, under the same header and
/// checksum as a value (cache records).
pub const BLOB_SERIALIZER: u8 = 0x7f;

fn corrupt(path: &Path, reason: impl Into<String>) -> ResultError {
    ResultError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// `payload` behind its header: the serializer that wrote it, the fingerprint of what it
/// holds, its length and SHA-256.
pub fn seal(payload: &[u8], serializer: u8, fingerprint: u64) -> Vec<u8> {
    let header = Header {
        serializer,
        fingerprint,
        len: payload.len() as u64,
        digest: Sha256::digest(payload).into(),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload [`seal`] put behind a header, verified: header, serializer, fingerprint,
/// length and checksum (`path` is for messages).
///
/// # Errors
/// [`ResultError::Corrupt`] for bytes that are not an intact sealed payload of that
/// serializer and fingerprint.
pub fn unseal<'a>(
    stored: &'a [u8],
    serializer: u8,
    fingerprint: u64,
    path: &Path,
) -> Result<&'a [u8], ResultError> {
    let Some((head, payload)) = stored.split_first_chunk::<HEADER_LEN>() else {
        return Err(corrupt(
            path,
            format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                stored.len()
            ),
        ));
    };
    let header = Header::parse(head, path)?;
    if header.serializer != serializer || header.fingerprint != fingerprint {
        return Err(corrupt(path, "it holds something else"));
    }
    if header.len != payload.len() as u64 {
        return Err(corrupt(
            path,
            format!(
                "the header claims {} payload bytes but {} follow it",
                header.len,
                payload.len()
            ),
        ));
    }
    if <[u8; 32]>::from(Sha256::digest(payload)) != header.digest {
        return Err(corrupt(
            path,
            "checksum mismatch: the payload is not what was written",
        ));
    }
    Ok(payload)
}
