//! The short ways a task call takes when nobody reads its state (calling the task
//! rather than `run`): a hit in memory on exactly these inputs, and a task with nothing
//! to cache, retry or persist. Each must behave as the full way does.

use std::sync::atomic::{AtomicU32, Ordering};
use taskcache::prelude::*;
use taskcache::OutputCache;

fn isolated<R>(f: impl FnOnce() -> R) -> R {
    Context::current().with_cache(OutputCache::new()).scope(f)
}

fn name_here() -> Option<String> {
    taskcache::context::current().task_name().map(str::to_owned)
}

#[task]
fn whoami() -> (Option<String>, u32) {
    let c = taskcache::context::current();
    (c.task_name().map(str::to_owned), c.task_run_count())
}

#[test]
fn a_plain_task_body_sees_its_own_name_and_attempt() {
    assert_eq!(whoami(), (Some("whoami".to_owned()), 1));
    assert_eq!(
        name_here(),
        None,
        "the caller's context is the caller's again"
    );
}

#[task(cache_for = "1h")]
fn cached_outer(x: u32) -> (Option<String>, Option<String>, Option<String>) {
    let before = name_here();
    let inner = whoami().0;
    let after = name_here();
    let _ = x;
    (before, inner, after)
}

#[task]
fn plain_outer() -> (Option<String>, Option<String>, Option<String>) {
    let before = name_here();
    let inner = whoami().0;
    (before, inner, name_here())
}

#[test]
fn nested_calls_see_their_own_names_and_give_the_callers_back() {
    let outer = Some("cached_outer".to_owned());
    let expected = (outer.clone(), Some("whoami".to_owned()), outer);
    assert_eq!(isolated(|| cached_outer(1)), expected);
    let outer = Some("plain_outer".to_owned());
    let expected = (outer.clone(), Some("whoami".to_owned()), outer);
    assert_eq!(plain_outer(), expected);
}

#[task]
fn scoped_inside() -> (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
) {
    let in_scope = Context::current()
        .with_value("k", "v")
        .scope(|| (name_here(), taskcache::context::current().get("k")));
    let nested = Context::current().with_value("k", "v").scope(|| whoami().0);
    let spawned = taskcache::context::spawn(name_here).join().unwrap();
    (in_scope.0, in_scope.1, nested, spawned)
}

#[test]
fn scopes_and_threads_opened_in_a_plain_body_keep_its_task() {
    let me = Some("scoped_inside".to_owned());
    assert_eq!(
        scoped_inside(),
        (
            me.clone(),
            Some("v".to_owned()),
            Some("whoami".to_owned()),
            me
        )
    );
}

#[task]
fn boom() -> u32 {
    panic!("boom 42")
}

#[test]
fn a_plain_task_panic_reaches_the_caller_with_its_payload() {
    let payload = std::panic::catch_unwind(boom).unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom 42"));
    assert_eq!(
        name_here(),
        None,
        "the task's frame is gone after the unwind"
    );
    // The full way says the same.
    let state = std::panic::catch_unwind(boom::run).unwrap();
    assert!(state.is_failed());
    assert!(state.message().contains("boom 42"), "{state}");
}

#[task]
fn fails(x: u32) -> Result<u32, String> {
    if x == 0 {
        Err("zero".to_owned())
    } else {
        Ok(x)
    }
}

#[test]
fn a_plain_task_returns_its_err_and_its_state_is_failed() {
    assert_eq!(fails(0), Err("zero".to_owned()));
    assert_eq!(fails(3), Ok(3));
    assert!(fails::run(0).is_failed());
    assert!(fails::run(3).is_successful());
}

static ECHOES: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn echo(s: String) -> usize {
    ECHOES.fetch_add(1, Ordering::SeqCst);
    s.len()
}

#[test]
fn hits_are_exact_on_both_sides_of_the_short_key_length() {
    isolated(|| {
        // A string argument encodes in 10 bytes plus its own: up to 45 bytes it is
        // looked up by its encoding, past that by its digest.
        let lengths = [0usize, 1, 44, 45, 46, 54, 55, 56, 100, 4096];
        for &n in &lengths {
            let before = ECHOES.load(Ordering::SeqCst);
            assert_eq!(echo("e".repeat(n)), n);
            assert_eq!(echo("e".repeat(n)), n, "a hit gives the same value");
            assert_eq!(
                ECHOES.load(Ordering::SeqCst),
                before + 1,
                "the body ran once for length {n}"
            );
            let state = echo::run("e".repeat(n));
            assert!(state.is_cached(), "the state of a hit says Cached ({n})");
        }
        // Inputs that differ only in their last byte are apart, short or long.
        for n in [5usize, 45, 46, 100] {
            let before = ECHOES.load(Ordering::SeqCst);
            let a = "a".repeat(n);
            let b = format!("{}b", &a[..n - 1]);
            echo(a);
            echo(b);
            assert_eq!(
                ECHOES.load(Ordering::SeqCst),
                before + 2,
                "the second input is no hit on the first (length {n})"
            );
        }
    });
}

static SWAPS: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn swap(a: u64, b: u64) -> (u64, u64) {
    SWAPS.fetch_add(1, Ordering::SeqCst);
    (b, a)
}

#[test]
fn a_refresh_and_an_invalidate_are_seen_by_the_short_way() {
    isolated(|| {
        assert_eq!(swap(1, 2), (2, 1));
        assert_eq!(
            swap(2, 1),
            (1, 2),
            "the order of the arguments is part of the key"
        );
        assert_eq!(SWAPS.load(Ordering::SeqCst), 2);
        assert_eq!(swap(1, 2), (2, 1));
        assert_eq!(SWAPS.load(Ordering::SeqCst), 2, "a hit");
        swap::refresh(1, 2);
        assert_eq!(SWAPS.load(Ordering::SeqCst), 3, "a refresh runs the body");
        assert_eq!(swap(1, 2), (2, 1));
        assert_eq!(
            SWAPS.load(Ordering::SeqCst),
            3,
            "and its output serves the next call"
        );
        swap::invalidate();
        assert_eq!(swap(1, 2), (2, 1));
        assert_eq!(
            SWAPS.load(Ordering::SeqCst),
            4,
            "nothing cached after invalidate"
        );
    });
}

static CLOCKED: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1m", cache_validator = all_inputs)]
fn clocked(x: u8) -> u8 {
    CLOCKED.fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn an_expired_output_is_not_served_by_the_short_way() {
    let clock = taskcache::context::ManualClock::new(chrono::Utc::now());
    Context::current()
        .with_cache(OutputCache::new())
        .with_clock(clock.clock())
        .scope(|| {
            clocked(1);
            clocked(1);
            assert_eq!(CLOCKED.load(Ordering::SeqCst), 1);
            clock.advance(std::time::Duration::from_secs(61));
            clocked(1);
            assert_eq!(CLOCKED.load(Ordering::SeqCst), 2, "expired: the body ran");
        });
}

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn blob_len(blob: Vec<u8>, view: &[u8], tag: u8) -> usize {
    blob.len() + view.len() + usize::from(tag)
}

#[test]
fn runs_of_bytes_hash_in_bulk_to_the_digests_serde_gives() {
    isolated(|| {
        let blob: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let view = &blob[..1000];
        let state = blob_len::run(blob.clone(), view, 3);
        let cached = state
            .cached()
            .expect("a Success with cache_for records its inputs");
        let inputs = &cached.hashed_inputs;
        assert_eq!(
            inputs.get("blob"),
            Some(&taskcache::hash_input(&blob).unwrap())
        );
        assert_eq!(
            inputs.get("view"),
            Some(&taskcache::hash_input(view).unwrap())
        );
        assert_eq!(
            inputs.get("tag"),
            Some(&taskcache::hash_input(&3u8).unwrap())
        );
        assert!(blob_len::run(blob.clone(), view, 3).is_cached());
        assert!(!blob_len::run(blob.clone(), &blob[..999], 3).is_cached());
    });
    // The public bulk hash agrees with serde's at every length around the chunking.
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for n in [
        0usize, 1, 31, 32, 33, 63, 64, 65, 4095, 4096, 4097, 65_536, 300_000,
    ] {
        assert_eq!(
            taskcache::hash_bytes(&blob[..n]),
            taskcache::hash_input(&blob[..n]).unwrap(),
            "{n} bytes"
        );
    }
    assert_ne!(taskcache::hash_bytes(&[1]), taskcache::hash_bytes(&[2]));
}

/// Runs `f` on a thread of its own and fails the test if it has not returned within a
/// minute (a call waiting for its own caller would otherwise hang the suite).
fn within_a_minute<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Context::current().with_cache(OutputCache::new()).scope(f));
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the call returned (it did not wait for its own caller)")
}

static REENTRIES: AtomicU32 = AtomicU32::new(0);

/// Calls itself with the same inputs from its body, once directly, once from a scope
/// opened in the body, and once through a task that goes the full way (it retries).
#[task(cache_for = "1h", cache_validator = all_inputs)]
fn reenter(x: u64, how: u8) -> u64 {
    if REENTRIES.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
        return x;
    }
    match how {
        0 => reenter(x, how) + 1,
        1 => Context::current().scope(|| reenter(x, how)) + 1,
        _ => go_between(x, how) + 1,
    }
}

#[task(max_retries = 1, retry_delay = "0s")]
fn go_between(x: u64, how: u8) -> u64 {
    reenter(x, how)
}

#[test]
fn a_miss_whose_body_calls_the_same_task_with_the_same_inputs_does_not_wait_for_itself() {
    for how in 0..3u8 {
        let before = REENTRIES.load(Ordering::SeqCst);
        let (first, again) = within_a_minute(move || (reenter(7, how), reenter(7, how)));
        assert_eq!(first, 8, "way {how}");
        assert_eq!(
            REENTRIES.load(Ordering::SeqCst),
            before + 2,
            "the outer body and the nested call both ran (way {how})"
        );
        // The outer output, stored last, replaced the nested one's for these inputs.
        assert_eq!(again, 8, "the later output is served (way {how})");
    }
}

static MISSES: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn counted(x: u64) -> u64 {
    MISSES.fetch_add(1, Ordering::SeqCst);
    x * 3
}

#[test]
fn a_lean_miss_keeps_the_same_record_a_full_run_keeps() {
    isolated(|| {
        // Called (the lean way), then read back through `run`: a Cached state whose
        // record holds this call's argument digest and a live expiration.
        assert_eq!(counted(5), 15);
        let state = counted::run(5);
        assert!(state.is_cached());
        let cached = state.cached().expect("a hit carries its record");
        let digests: Vec<_> = cached.hashed_inputs.iter().collect();
        assert_eq!(digests.len(), 1);
        assert_eq!(digests[0].0, "x");
        assert_eq!(
            *digests[0].1,
            taskcache::hash_input(&5u64).unwrap(),
            "the record keeps the argument's own digest"
        );
        let expires = cached.expiration.expect("cache_for sets an expiration");
        assert!(expires > chrono::Utc::now() + chrono::Duration::minutes(59));
        assert_eq!(MISSES.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn outputs_stay_exact_through_eviction_and_refills() {
    isolated(|| {
        // Fill, let the clock evict down to a per-task cap, refill: every call gives
        // its own value, whether it was kept or recomputed.
        for round in 0..3u64 {
            for x in 0..5_000u64 {
                assert_eq!(capped(x), x, "round {round}");
            }
            let kept = Context::current().cache().len_of("quick_paths::capped");
            assert!(kept <= 1_000, "the cap holds ({kept} kept)");
        }
        for x in (0..5_000u64).rev() {
            assert_eq!(capped(x), x);
        }
    });
}

#[task(cache_for = "1h", cache_validator = all_inputs, max_entries = 1000)]
fn capped(x: u64) -> u64 {
    x
}

static RANKED: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs, max_entries = 3)]
fn ranked(x: u64) -> u64 {
    RANKED.fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn an_output_stored_in_a_freed_slot_is_not_the_next_evicted() {
    isolated(|| {
        for x in 1..=3 {
            ranked(x);
        }
        // The refresh frees the first slot and stores the new output in it, just
        // where the clock's hand is; the next insert over the cap must evict an older
        // output (2, never served since), not the one just stored.
        ranked::refresh(1);
        ranked(4);
        let before = RANKED.load(Ordering::SeqCst);
        assert_eq!(ranked(1), 1);
        assert_eq!(RANKED.load(Ordering::SeqCst), before, "1 is still cached");
        ranked(2);
        assert_eq!(RANKED.load(Ordering::SeqCst), before + 1, "2 was evicted");
    });
}

/// An output whose `Drop` opens a scope and calls a task: evicting it must not find
/// the thread's context borrowed.
#[derive(Clone)]
struct Noisy(u64);

impl Drop for Noisy {
    fn drop(&mut self) {
        Context::current().scope(whoami);
    }
}

#[task(cache_for = "1h", cache_validator = all_inputs, max_entries = 1)]
fn noisy(x: u64) -> Noisy {
    Noisy(x)
}

#[test]
fn evicting_an_output_whose_drop_calls_a_task_does_not_panic() {
    isolated(|| {
        for x in 0..20 {
            assert_eq!(noisy(x).0, x);
        }
        assert_eq!(Context::current().cache().len_of("quick_paths::noisy"), 1);
    });
}

static MIXED: AtomicU32 = AtomicU32::new(0);

#[task(cache_for = "1h", cache_validator = all_inputs, cache_key = "remade")]
fn mixed(a: u64, b: String, c: Vec<u16>, d: Option<i8>) -> usize {
    MIXED.fetch_add(1, Ordering::SeqCst);
    a as usize + b.len() + c.len() + usize::from(d.is_some())
}

#[task(cache_for = "1h", cache_validator = partial_inputs_only(a, d), cache_key = "remade")]
fn mixed_by_a_and_d(a: u64, b: String, c: Vec<u16>, d: Option<i8>) -> usize {
    MIXED.fetch_add(1, Ordering::SeqCst);
    a as usize + b.len() + c.len() + usize::from(d.is_some())
}

#[test]
fn a_record_remade_from_the_short_key_is_the_one_hashed_from_the_inputs() {
    isolated(|| {
        let before = chrono::Utc::now();
        // A lean miss keeps no record: it is remade from the key when asked for. (What
        // the cache counts for the entry says which: a made record of four arguments
        // adds its own size and 4 x 64 bytes to the 176 of the entry.)
        assert_eq!(mixed(7, "s7".into(), vec![1, 2], Some(-1)), 12);
        let after = chrono::Utc::now();
        let (entries, bytes) = taskcache::context::current().cache().usage();
        assert_eq!(entries, 1);
        assert!(bytes < 300, "a remade record: {bytes} bytes counted");
        let state = mixed::run(7, "s7".into(), vec![1, 2], Some(-1));
        assert!(state.is_cached());
        let cached = state.cached().expect("a hit carries its record");
        let inputs = &cached.hashed_inputs;
        assert_eq!(inputs.names(), &["a", "b", "c", "d"]);
        assert_eq!(
            inputs.get("a"),
            Some(&taskcache::hash_input(&7u64).unwrap())
        );
        assert_eq!(inputs.get("b"), Some(&taskcache::hash_input("s7").unwrap()));
        assert_eq!(
            inputs.get("c"),
            Some(&taskcache::hash_input(&vec![1u16, 2]).unwrap())
        );
        assert_eq!(
            inputs.get("d"),
            Some(&taskcache::hash_input(&Some(-1i8)).unwrap())
        );
        assert!(
            before <= cached.created && cached.created <= after,
            "{cached:?}"
        );
        assert_eq!(
            cached.expiration,
            Some(cached.created + chrono::Duration::hours(1)),
            "made, then kept an hour"
        );
        assert_eq!(cached.cache_key, "remade");
        assert!(cached.parameters.is_empty());
        // Another task under the key reads the remade record's digests: equal `a` and
        // `d` are enough for it, and another `d` is not.
        assert_eq!(mixed_by_a_and_d(7, "other".into(), vec![], Some(-1)), 12);
        assert_eq!(mixed_by_a_and_d(7, "other".into(), vec![], Some(2)), 13);
        assert_eq!(MIXED.load(Ordering::SeqCst), 2);
    });
}
