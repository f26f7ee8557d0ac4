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

/// The blocks of the zstd frame `frame` under a header recording `content_size` as its
/// decompressed size, whatever they decompress to (8-byte size field, same window and
/// checksum flag).
#[cfg(feature = "zstd")]
#[allow(dead_code)]
pub fn reframe(frame: &[u8], content_size: u64) -> Vec<u8> {
    assert_eq!(frame[..4], 0xFD2F_B528u32.to_le_bytes(), "a zstd frame");
    let descriptor = frame[4];
    assert_eq!(descriptor & 3, 0, "no dictionary id");
    let single_segment = descriptor & 0x20 != 0;
    let size_len = match descriptor >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let header_len = 5 + usize::from(!single_segment) + size_len;
    let window = if single_segment {
        // The window is the recorded size: the smallest power of two holding it.
        let size = zstd::zstd_safe::get_frame_content_size(&frame[..header_len])
            .unwrap()
            .unwrap();
        let log = (64 - size.max(1024).saturating_sub(1).leading_zeros()).max(10) as u8;
        (log - 10) << 3
    } else {
        frame[5]
    };
    let mut out = frame[..4].to_vec();
    out.push(0xc0 | (descriptor & 0x04));
    out.push(window);
    out.extend_from_slice(&content_size.to_le_bytes());
    out.extend_from_slice(&frame[header_len..]);
    out
}
