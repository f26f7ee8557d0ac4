//! Helpers shared by the integration tests of `taskcache-results`.

use sha2::{Digest, Sha256};
use taskcache_results::format::{self, Header};

/// A file whose header is valid for `payload` as a `T`, whatever the payload says.
pub fn forged<T: ?Sized>(serializer: u8, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        serializer,
        fingerprint: format::fingerprint::<T>(),
        len: payload.len() as u64,
        digest: Sha256::digest(payload).into(),
    };
    let mut file = header.to_bytes().to_vec();
    file.extend_from_slice(payload);
    file
}
