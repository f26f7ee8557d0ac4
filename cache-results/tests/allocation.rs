//! Crafted lengths must not make reading allocate what they claim: this test binary
//! counts, per thread, the largest single allocation and the sum of all of them.

mod common;

use common::forged;
use serde::Deserialize;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use taskcache_results::{LocalResult, Location, MemoryResult, ResultBackendExt, ResultError};

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    let _ = TOTAL.try_with(|t| t.set(t.get() + size));
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The largest single allocation `f` makes on this thread.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let (r, largest, _) = allocations(f);
    (r, largest)
}

/// The largest single allocation `f` makes on this thread, and the sum of all of them.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize, usize) {
    LARGEST.with(|l| l.set(0));
    TOTAL.with(|t| t.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get), TOTAL.with(Cell::get))
}

/// A bincode length prefix claiming `n`.
fn claim(n: u64) -> Vec<u8> {
    let mut v = vec![253u8];
    v.extend_from_slice(&n.to_le_bytes());
    v
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Blob {
    name: String,
    data: Vec<u8>,
}

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

#[test]
fn crafted_lengths_do_not_allocate_what_they_claim() {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    let loc = Location::new("crafted.bin").unwrap();
    let path = loc.under(dir.path());
    let mut payload = claim(u64::MAX / 2);
    payload.extend_from_slice(b"tiny");

    // (A small file is read whole: its own length, and messages, are all there is.)
    macro_rules! check {
        ($t:ty, $file:expr, $max:expr) => {{
            std::fs::write(&path, $file).unwrap();
            let (read, largest) = largest_allocation(|| result.read::<$t>(&loc));
            let e = read.unwrap_err();
            assert!(
                matches!(
                    e,
                    ResultError::Corrupt { .. } | ResultError::TypeMismatch { .. }
                ),
                "{}: {e}",
                stringify!($t)
            );
            assert!(
                largest <= $max,
                "{}: an allocation of {largest} bytes",
                stringify!($t)
            );
        }};
    }
    check!(Vec<u8>, forged::<Vec<u8>>(1, &payload), KIB);
    check!(String, forged::<String>(1, &payload), KIB);
    check!(Vec<String>, forged::<Vec<String>>(1, &payload), KIB);
    check!(Vec<u64>, forged::<Vec<u64>>(1, &payload), KIB);
    let mut blob = vec![1, b'x'];
    blob.extend_from_slice(&payload);
    check!(Blob, forged::<Blob>(1, &blob), KIB);

    // A file decoded streaming (over 1 MiB): the hashing and decoding buffers only.
    let mut large = payload.clone();
    large.resize(3 * MIB, b'x');
    check!(String, forged::<String>(1, &large), MIB);
    // A claim larger than the file, though far below what bincode's own limit let
    // through (16 times the file): refused before anything is allocated for it.
    let mut within = claim(40 * MIB as u64);
    within.resize(3 * MIB, b'x');
    check!(String, forged::<String>(1, &within), MIB);

    // In memory.
    let memory = MemoryResult::new();
    memory.set_bytes(&loc, forged::<String>(1, &payload));
    let (read, largest) = largest_allocation(|| memory.read::<String>(&loc));
    assert!(read.is_err());
    assert!(largest <= KIB, "{largest}");
}

#[test]
fn a_forged_length_allocates_at_most_the_bytes_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    let loc = Location::new("forged.bin").unwrap();
    let path = loc.under(dir.path());
    // Small files are read whole, larger ones streaming.
    for len in [100, 10 * KIB, 3 * MIB, 5 * MIB] {
        // The second of two strings claims one byte more than the file has left, or
        // exactly what it has left (bytes that are not UTF-8).
        for (extra, fill) in [(1, b'x'), (0, 0xff)] {
            let mut payload = vec![2, 1, b'a'];
            let left = len - payload.len() - 9;
            payload.extend_from_slice(&claim((left + extra) as u64));
            payload.resize(len, fill);
            let file = forged::<Vec<String>>(1, &payload);
            std::fs::write(&path, &file).unwrap();
            let (read, largest, total) = allocations(|| result.read::<Vec<String>>(&loc));
            let e = read.unwrap_err();
            assert!(matches!(e, ResultError::TypeMismatch { .. }), "{e}");
            // The whole file when it is read whole, or the hashing buffer; nothing
            // claimed beyond the bytes there.
            let bound = file.len().max(MIB) + KIB;
            assert!(largest <= bound, "{len}: an allocation of {largest} bytes");
            assert!(
                total <= 2 * bound + 2 * left,
                "{len}: {total} bytes allocated in all"
            );
            if extra == 1 {
                assert!(e.to_string().contains("limit"), "{e}");
            }
        }
    }
}

/// A zstd frame of `plain` that records its size.
#[cfg(feature = "zstd")]
fn compressed(plain: &[u8]) -> Vec<u8> {
    let frame = zstd::bulk::compress(plain, 3).unwrap();
    let size = zstd::zstd_safe::get_frame_content_size(&frame).ok();
    assert_eq!(size, Some(Some(plain.len() as u64)));
    frame
}

#[cfg(feature = "zstd")]
#[test]
fn a_crafted_length_behind_zstd_does_not_allocate_it() {
    use taskcache_results::{BincodeSerializer, Serializer, Zstd};
    let dir = tempfile::tempdir().unwrap();
    let zstd = Zstd::new(BincodeSerializer);
    let result = LocalResult::new(dir.path()).with_serializer(zstd);
    let loc = Location::new("crafted.bin").unwrap();
    let mut plain = claim(u64::MAX / 2);
    plain.extend_from_slice(b"tiny");
    let packed = compressed(&plain);
    std::fs::write(loc.under(dir.path()), forged::<String>(zstd.id(), &packed)).unwrap();
    let (read, largest) = largest_allocation(|| result.read::<String>(&loc));
    assert!(read.is_err());
    // zstd's own buffers are allocated by C; ours stay small.
    assert!(largest <= KIB, "{largest}");
}

/// Issue 9, bug 3: a small zstd result for `Vec<String>` whose decompressed payload
/// claims a 32 GiB string aborted the process, allocating the claim.
#[cfg(feature = "zstd")]
#[test]
fn a_zstd_string_claiming_32_gib_fails_without_allocating_it() {
    use common::reframe;
    use taskcache_results::{BincodeSerializer, Serializer, Zstd};
    let dir = tempfile::tempdir().unwrap();
    let zstd = Zstd::new(BincodeSerializer);
    let result = LocalResult::new(dir.path()).with_serializer(zstd);
    let loc = Location::new("bomb.bin").unwrap();
    let path = loc.under(dir.path());
    // One string, claiming 32 GiB; 3 MiB of it are there.
    let mut plain = vec![1];
    plain.extend_from_slice(&claim(32 << 30));
    plain.resize(3 * MIB, b'x');
    let present = plain.len();
    let honest = compressed(&plain);

    let check = |frame: &[u8], why: &str| {
        let file = forged::<Vec<String>>(zstd.id(), frame);
        std::fs::write(&path, &file).unwrap();
        let (read, largest, total) = allocations(|| result.read::<Vec<String>>(&loc));
        let e = read.unwrap_err();
        assert!(
            matches!(
                e,
                ResultError::TypeMismatch { .. } | ResultError::Corrupt { .. }
            ),
            "{why}: {e}"
        );
        assert!(
            largest < 4 * present && largest < 16 * MIB,
            "{why}: an allocation of {largest} bytes ({} in the file, {present} decompressed)",
            file.len()
        );
        assert!(total < 4 * present, "{why}: {total} bytes allocated in all");
        (e.to_string(), largest)
    };

    // The frame records its real size: the claim is refused unread.
    let (e, largest) = check(&honest, "the real size");
    assert!(e.contains("limit"), "{e}");
    assert!(largest <= 128 * KIB + KIB, "{largest}");
    // A recorded size larger than the claim, more than the frame can expand to.
    let (e, _) = check(&reframe(&honest, 64 << 30), "64 GiB recorded");
    assert!(e.contains("expand"), "{e}");
    // The largest size a frame could record for its length, and a claim within it:
    // the string grows with the 3 MiB that are there and no further. (Bytes that
    // compress less well, so that the frame may record far more than they are.)
    let mut inside = vec![1];
    inside.extend_from_slice(&claim(0));
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    inside.extend((inside.len()..3 * MIB).map(|i| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        if i % 512 < 4 {
            (state >> 56) as u8
        } else {
            b'x'
        }
    }));
    let estimate = reframe(&compressed(&inside), 0).len() as u64;
    let claimed = estimate * Zstd::<BincodeSerializer>::MAX_EXPANSION / 2;
    inside[1..10].copy_from_slice(&claim(claimed));
    let frame = compressed(&inside);
    let most = reframe(&frame, 0).len() as u64 * Zstd::<BincodeSerializer>::MAX_EXPANSION;
    assert!(
        claimed + 10 <= most && claimed as usize > 16 * present,
        "{claimed}"
    );
    let frame = reframe(&frame, most);
    check(&frame, "a claim within the recorded size");
    // No recorded size at all.
    let mut encoder = zstd::Encoder::new(Vec::new(), 3).unwrap();
    std::io::Write::write_all(&mut encoder, &plain).unwrap();
    check(&encoder.finish().unwrap(), "no recorded size");
}

/// However well a real value compresses, it is read back: the size its frame records
/// is the bound, not a ratio to the compressed bytes.
#[cfg(feature = "zstd")]
#[test]
fn a_highly_compressible_value_still_round_trips() {
    use taskcache_results::{BincodeSerializer, Zstd};
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path()).with_serializer(Zstd::new(BincodeSerializer));
    let loc = Location::new("zeros.bin").unwrap();
    let value = "0".repeat(64 * MIB);
    result.write(&value, &loc).unwrap();
    let file = std::fs::metadata(loc.under(dir.path())).unwrap().len() as usize;
    assert!(file * 4096 < value.len(), "{file} bytes");
    let (back, largest, total) = allocations(|| result.read::<String>(&loc).unwrap());
    assert_eq!(back, value);
    assert!(largest <= value.len(), "{largest}");
    assert!(total < 3 * value.len(), "{total}");
}

#[test]
fn reading_a_large_value_allocates_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    let loc = Location::new("large.bin").unwrap();
    let value = vec![42u8; 24 * MIB];
    result.write(&value, &loc).unwrap();
    for _ in 0..2 {
        // Verified, then trusted.
        let (back, largest, total) = allocations(|| result.read::<Vec<u8>>(&loc).unwrap());
        assert_eq!(back, value);
        assert_eq!(largest, value.len(), "exactly the value, nothing larger");
        assert!(total < value.len() + MIB, "allocated once: {total}");
    }
    // A large struct is decoded streaming: its payload is never held in one piece
    // (nothing in this value is as large as its encoding).
    let rows: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 5000]).collect();
    result.write(&rows, &loc).unwrap();
    let payload = std::fs::metadata(loc.under(dir.path())).unwrap().len() as usize;
    assert!(payload > 4 * MIB, "{payload}");
    let (back, largest, _) = allocations(|| result.read::<Vec<Vec<u8>>>(&loc).unwrap());
    assert_eq!(back, rows);
    assert!(largest <= MIB, "{largest}");
}
