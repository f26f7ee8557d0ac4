//! Crafted lengths must not make reading allocate what they claim: this test binary
//! counts, per thread, the largest single allocation and the sum of all of them.

mod common;

use common::forged;
use serde::Deserialize;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use taskcache_results::{LocalResult, Location, MemoryResult, ResultBackend};

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

const MIB: usize = 1 << 20;

#[test]
fn crafted_lengths_do_not_allocate_what_they_claim() {
    let dir = tempfile::tempdir().unwrap();
    let result = LocalResult::new(dir.path());
    let loc = Location::new("crafted.bin").unwrap();
    let path = loc.under(dir.path());
    let mut payload = claim(u64::MAX / 2);
    payload.extend_from_slice(b"tiny");

    macro_rules! check {
        ($t:ty, $file:expr, $max:expr) => {{
            std::fs::write(&path, $file).unwrap();
            let (read, largest) = largest_allocation(|| result.read::<$t>(&loc));
            assert!(read.is_err(), "{}", stringify!($t));
            assert!(
                largest <= $max,
                "{}: an allocation of {largest} bytes",
                stringify!($t)
            );
        }};
    }
    check!(Vec<u8>, forged::<Vec<u8>>(1, &payload), MIB);
    check!(String, forged::<String>(1, &payload), MIB);
    check!(Vec<String>, forged::<Vec<String>>(1, &payload), MIB);
    check!(Vec<u64>, forged::<Vec<u64>>(1, &payload), 2 * MIB);
    let mut blob = vec![1, b'x'];
    blob.extend_from_slice(&payload);
    check!(Blob, forged::<Blob>(1, &blob), 2 * MIB);

    // A file decoded streaming (over 1 MiB): the hashing and decoding buffers only.
    let mut large = payload.clone();
    large.resize(3 * MIB, b'x');
    check!(String, forged::<String>(1, &large), 2 * MIB);

    // The documented bound: a claim bincode's limit lets through (16 times the payload,
    // rounded up to a power of 4) fails at the end of the input, having allocated it.
    let mut within = claim(40 * MIB as u64);
    within.resize(3 * MIB, b'x');
    check!(String, forged::<String>(1, &within), 64 * 3 * MIB);

    // In memory.
    let memory = MemoryResult::new();
    memory.set_bytes(&loc, forged::<String>(1, &payload));
    let (read, largest) = largest_allocation(|| memory.read::<String>(&loc));
    assert!(read.is_err());
    assert!(largest <= MIB, "{largest}");
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
    let packed = zstd::encode_all(&plain[..], 3).unwrap();
    std::fs::write(loc.under(dir.path()), forged::<String>(zstd.id(), &packed)).unwrap();
    let (read, largest) = largest_allocation(|| result.read::<String>(&loc));
    assert!(read.is_err());
    // zstd's own buffers are allocated by C; ours stay small.
    assert!(largest <= MIB, "{largest}");
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
