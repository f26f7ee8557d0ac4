//! The default cache key is the function's path, so tasks of the same name in two
//! modules never share outputs; `name` and `cache_key` share them on purpose.

use std::sync::atomic::{AtomicU32, Ordering};
use taskcache::prelude::*;
use taskcache::OutputCache;

fn isolated<R>(f: impl FnOnce() -> R) -> R {
    Context::current().with_cache(OutputCache::new()).scope(f)
}

mod a {
    use super::*;

    #[task(cache_for = "1h")]
    pub fn load() -> String {
        let name = taskcache::context::current().task_name().unwrap();
        format!("a ({name})")
    }

    #[task(cache_for = "1h", name = "named")]
    pub fn by_name() -> u32 {
        1
    }
}

mod b {
    use super::*;

    #[task(cache_for = "1h")]
    pub fn load() -> String {
        "b".into()
    }

    pub static BY_NAME_RUNS: AtomicU32 = AtomicU32::new(0);

    #[task(cache_for = "1h", name = "named")]
    pub fn by_name() -> u32 {
        BY_NAME_RUNS.fetch_add(1, Ordering::SeqCst);
        2
    }
}

#[test]
fn two_tasks_of_one_name_in_two_modules_keep_their_own_outputs() {
    isolated(|| {
        assert_eq!(
            a::load(),
            "a (load)",
            "the task's name stays the function's"
        );
        assert_eq!(b::load(), "b");
        assert!(a::load::run().is_cached());
        assert!(b::load::run().is_cached());
        assert_eq!(b::load(), "b");
    });
    assert_eq!(a::load::spec().name(), "load");
    assert_eq!(a::load::spec().cache_key(), "keys::a::load");
    assert_eq!(b::load::spec().cache_key(), "keys::b::load");
}

#[test]
fn a_name_written_out_is_the_key_and_shares_outputs() {
    isolated(|| {
        assert_eq!(a::by_name(), 1);
        let state = b::by_name::run();
        assert!(state.is_cached());
        assert_eq!(state.cached().unwrap().cache_key, "named");
        assert_eq!(state.into_output(), 1);
        assert_eq!(b::BY_NAME_RUNS.load(Ordering::SeqCst), 0);
    });
    assert_eq!(b::by_name::spec().cache_key(), "named");
}
