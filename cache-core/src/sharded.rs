//! A read-mostly lock with one shard per processor: what the in-memory cache keeps each
//! key's candidates behind.
//!
//! A reader takes the read lock of its own thread's shard only, so that threads hitting
//! one key write no shared cache line as long as they are no more than the shards; a
//! writer takes every shard. Crossbeam's
//! `ShardedLock`, used before, has eight shards whatever the machine: every insert took
//! and released eight locks, and every fresh key allocated a 1 KiB aligned block for
//! them (a persistent hit in a fresh process makes one: 2.3-2.4x the raw reads of its
//! files with it, 2.1-2.2x with this lock). Here the shards are as many as the
//! processors (a power of two, at most eight), and the whole is safe code over `std`'s
//! `RwLock`: each shard holds the same `Arc` of the value; a writer, holding every
//! shard, takes the clones out, so that the one left is the only one and can be
//! changed in place, and puts clones back.

use std::collections::BTreeSet;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// How many shards every lock has: the processors, rounded up to a power of two (a
/// shard is then picked with a mask), at most eight (crossbeam's count).
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .next_power_of_two()
            .min(8)
    })
}

/// This thread's number: the lowest that no other living thread holds, taken when the
/// thread first reads a lock and given back when it ends (as crossbeam numbers its
/// threads). Two threads reading at once then have different numbers, and with as many
/// shards as processors, different shards: numbers handed out in turn and never reused
/// would put two threads on one shard whenever a thread that came between them had
/// ended.
fn this_thread() -> usize {
    /// The numbers given back, and the next never handed out.
    static NUMBERS: Mutex<(BTreeSet<usize>, usize)> = Mutex::new((BTreeSet::new(), 0));

    struct Number(usize);

    impl Number {
        fn take() -> Number {
            let mut numbers = NUMBERS.lock().unwrap_or_else(|e| e.into_inner());
            let (free, next) = &mut *numbers;
            match free.pop_first() {
                Some(n) => Number(n),
                None => {
                    *next += 1;
                    Number(*next - 1)
                }
            }
        }
    }

    impl Drop for Number {
        fn drop(&mut self) {
            let mut numbers = NUMBERS.lock().unwrap_or_else(|e| e.into_inner());
            numbers.0.insert(self.0);
        }
    }

    thread_local! {
        static MINE: Number = Number::take();
    }
    // (A thread whose number is already gone, during its own exit, reads shard 0.)
    MINE.try_with(|n| n.0).unwrap_or(0)
}

/// A value behind one read lock per shard (see the module's documentation).
///
/// (`T: Default` for the value a fresh lock holds, and for the stand-ins that keep this
/// code free of panic paths.)
pub(crate) struct ShardedRw<T> {
    shards: Box<[Shard<T>]>,
    /// What a reader would see of a shard left without its value, which no reader can
    /// meet (a writer puts every value back before its locks are released, in `Drop`,
    /// so on a panic too): it keeps this code free of a panic path.
    empty: T,
}

/// One shard: its lock, and room enough after it that two shards' lock words never
/// share a cache line (without asking the allocator for an aligned block).
struct Shard<T> {
    lock: RwLock<Option<Arc<T>>>,
    _apart: [u8; 112],
}

impl<T: Default> Default for ShardedRw<T> {
    fn default() -> Self {
        let value = Arc::new(T::default());
        ShardedRw {
            shards: (0..shard_count())
                .map(|_| Shard {
                    lock: RwLock::new(Some(Arc::clone(&value))),
                    _apart: [0; 112],
                })
                .collect(),
            empty: T::default(),
        }
    }
}

impl<T: Default> ShardedRw<T> {
    /// Reads the value: only this thread's shard is locked.
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        // (The length is a power of two, whatever made the lock.)
        let shard = &self.shards[this_thread() & (self.shards.len() - 1)];
        ReadGuard {
            guard: shard.lock.read().unwrap_or_else(|e| e.into_inner()),
            empty: &self.empty,
        }
    }

    /// Writes the value: every shard is locked, in order, until the guard is dropped.
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        let mut guards: smallvec::SmallVec<[RwLockWriteGuard<'_, Option<Arc<T>>>; 8]> = self
            .shards
            .iter()
            .map(|s| s.lock.write().unwrap_or_else(|e| e.into_inner()))
            .collect();
        // Every clone is taken out of its shard and all but one dropped: the one left is
        // the only one (a reader only ever borrows it), so it is changed in place.
        let mut value = None;
        for guard in guards.iter_mut() {
            if let Some(held) = guard.take() {
                value = Some(held);
            }
        }
        WriteGuard {
            value: value.unwrap_or_default(),
            guards,
            spare: None,
        }
    }
}

/// Read access to a [`ShardedRw`]'s value.
pub(crate) struct ReadGuard<'a, T> {
    guard: RwLockReadGuard<'a, Option<Arc<T>>>,
    empty: &'a T,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_deref().unwrap_or(self.empty)
    }
}

/// Write access to a [`ShardedRw`]'s value; the shards get it back when dropped.
pub(crate) struct WriteGuard<'a, T: Default> {
    /// The value, its only reference while the guard lives. (Declared before `guards`,
    /// so dropped before them: the next writer, once the shards are unlocked, must find
    /// no reference but the shards' own, or its write would go to `spare`.)
    value: Arc<T>,
    guards: smallvec::SmallVec<[RwLockWriteGuard<'a, Option<Arc<T>>>; 8]>,
    /// Where writes would go were `value` shared after all, which the write lock rules
    /// out: never made in practice, it keeps this code free of a panic path.
    spare: Option<T>,
}

impl<T: Default> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Default> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match Arc::get_mut(&mut self.value) {
            Some(value) => value,
            None => self.spare.get_or_insert_with(T::default),
        }
    }
}

impl<T: Default> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        for guard in self.guards.iter_mut() {
            **guard = Some(Arc::clone(&self.value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_seen_by_readers_on_every_thread() {
        let lock = Arc::new(ShardedRw::<Vec<u32>>::default());
        for i in 0..100 {
            lock.write().push(i);
        }
        let sums: Vec<u32> = (0..6)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || lock.read().iter().sum::<u32>())
            })
            .map(|t| t.join().unwrap())
            .collect();
        assert!(sums.iter().all(|&s| s == (0..100).sum::<u32>()), "{sums:?}");
        // A write changes the value in place: nothing kept a second reference to it.
        let mut w = lock.write();
        w.push(100);
        assert!(w.spare.is_none());
        drop(w);
        assert_eq!(lock.read().len(), 101);
        assert_eq!(
            lock.write().len(),
            101,
            "a write starts from the whole value"
        );
    }

    #[test]
    fn threads_reading_at_once_have_different_numbers() {
        let here = this_thread();
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(this_thread).join().unwrap();
            let b = s.spawn(this_thread).join().unwrap();
            (a, b)
        });
        // (Other tests' threads take numbers meanwhile: only what holds whatever they
        // do is checked.)
        assert_ne!(a, here);
        assert_ne!(b, here);
        // Three threads alive at once: three numbers.
        let all_in = std::sync::Barrier::new(3);
        let numbers: Vec<usize> = std::thread::scope(|s| {
            let held: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let n = this_thread();
                        all_in.wait();
                        n
                    })
                })
                .collect();
            held.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut unique = numbers.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 3, "{numbers:?}");
        assert!(!numbers.contains(&here));
    }

    #[test]
    fn readers_and_writers_on_many_threads_agree() {
        let lock = Arc::new(ShardedRw::<Vec<u64>>::default());
        // All four start together, so that writes overlap.
        let start = Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (lock, start) = (Arc::clone(&lock), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    for i in 0..20_000 {
                        if i % 4 == 0 {
                            lock.write().push(t);
                        } else {
                            // A reader never sees a half-made value.
                            let r = lock.read();
                            assert!(r.len() <= 20_000);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // (A write lost to a second reference would show here.)
        assert_eq!(lock.read().len(), 20_000);
    }
}
