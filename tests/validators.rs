//! Output caching with every validator, expiry under a controlled clock, and cache keys
//! shared between tasks and between flows.

use chrono::{TimeZone, Utc};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use taskcache::prelude::*;
use taskcache::{Cached, HashedInputs, OutputCache, Parameters};

/// Runs `f` with a cache of its own and a manual clock, so tests cannot see each other.
fn isolated<R>(f: impl FnOnce(&ManualClock) -> R) -> R {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap());
    Context::current()
        .with_cache(OutputCache::new())
        .with_clock(clock.clock())
        .scope(|| f(&clock))
}

macro_rules! counted_task {
    ($counter:ident, #[task($($args:tt)*)] fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty { $($body:tt)* }) => {
        static $counter: AtomicU32 = AtomicU32::new(0);
        #[task($($args)*)]
        fn $name($($arg: $ty),*) -> $ret {
            $counter.fetch_add(1, Ordering::SeqCst);
            $($body)*
        }
    };
}

fn runs(counter: &AtomicU32) -> u32 {
    counter.load(Ordering::SeqCst)
}

counted_task!(
    DURATION_RUNS,
    #[task(cache_for = "1h")]
    fn duration_task(x: i64) -> i64 {
        x * 10
    }
);

#[test]
fn duration_only_reuses_any_output_until_it_expires() {
    isolated(|clock| {
        assert_eq!(duration_task(1), 10);
        // duration_only ignores inputs: the cached output of x = 1 serves x = 2, as in Prefect.
        let state = duration_task::run(2);
        assert!(state.is_cached());
        assert_eq!(state.run_count(), 0);
        assert_eq!(state.into_output(), 10);
        assert_eq!(runs(&DURATION_RUNS), 1);

        clock.advance(Duration::from_secs(3599));
        assert!(duration_task::run(1).is_cached());
        clock.advance(Duration::from_secs(1));
        let state = duration_task::run(3);
        assert_eq!(
            state.kind(),
            StateKind::Success,
            "expired at exactly cache_for"
        );
        assert_eq!(state.into_output(), 30);
        assert_eq!(runs(&DURATION_RUNS), 2);
    });
}

counted_task!(
    NEVER_RUNS,
    #[task(cache_for = "1h", cache_validator = never_use)]
    fn never_task(x: i64) -> i64 {
        x
    }
);

#[test]
fn never_use_always_runs() {
    isolated(|_| {
        assert_eq!(never_task(1), 1);
        for _ in 0..2 {
            assert_eq!(never_task::run(1).kind(), StateKind::Success);
        }
        assert_eq!(runs(&NEVER_RUNS), 3);
    });
}

counted_task!(
    ALL_INPUTS_RUNS,
    #[task(cache_for = "1h", cache_validator = all_inputs)]
    fn add(x: i64, y: i64) -> i64 {
        x + y
    }
);

#[test]
fn all_inputs_needs_every_input_equal() {
    isolated(|clock| {
        assert_eq!(add(1, 2), 3);
        assert_eq!(add(1, 2), 3);
        assert_eq!(runs(&ALL_INPUTS_RUNS), 1, "a hit does not run the body");
        assert_eq!(add(2, 1), 3);
        assert_eq!(add(1, 3), 4);
        assert_eq!(runs(&ALL_INPUTS_RUNS), 3, "other inputs miss");
        let state = add::run(2, 1);
        assert!(state.is_cached());
        let cached = state.cached().unwrap();
        assert_eq!(cached.hashed_inputs.names(), &["x", "y"]);
        assert_eq!(
            cached.hashed_inputs.get("x"),
            Some(&taskcache::hash_input(&2i64).unwrap())
        );
        assert_eq!(
            cached.expiration,
            Some(clock.now() + chrono::Duration::hours(1))
        );
        clock.advance(Duration::from_secs(7200));
        assert_eq!(add::run(2, 1).kind(), StateKind::Success);
        assert_eq!(runs(&ALL_INPUTS_RUNS), 4);
    });
}

counted_task!(
    PARTIAL_RUNS,
    #[task(cache_for = "1d", cache_validator = partial_inputs_only(x, y))]
    fn add_fmt(x: i64, y: i64, as_string: bool) -> String {
        if as_string {
            format!("{x} + {y} = {}", x + y)
        } else {
            (x + y).to_string()
        }
    }
);

#[test]
fn partial_inputs_only_compares_the_named_inputs() {
    isolated(|_| {
        assert_eq!(add_fmt(1, 2, true), "1 + 2 = 3");
        // as_string is not validated on: the first output is reused.
        assert_eq!(add_fmt(1, 2, false), "1 + 2 = 3");
        assert_eq!(runs(&PARTIAL_RUNS), 1);
        assert_eq!(add_fmt(1, 5, false), "6");
        assert_eq!(runs(&PARTIAL_RUNS), 2);
    });
}

counted_task!(
    PARTIAL_EMPTY_RUNS,
    #[task(cache_for = "1h", cache_validator = partial_inputs_only())]
    fn partial_none(x: i64) -> i64 {
        x
    }
);

#[test]
fn partial_inputs_only_with_no_names_checks_only_expiry() {
    isolated(|clock| {
        assert_eq!(partial_none(1), 1);
        assert_eq!(partial_none(2), 1);
        assert_eq!(runs(&PARTIAL_EMPTY_RUNS), 1);
        clock.advance(Duration::from_secs(3601));
        assert_eq!(partial_none(2), 2);
        assert_eq!(runs(&PARTIAL_EMPTY_RUNS), 2);
    });
}

counted_task!(
    PARAMS_RUNS,
    #[task(cache_for = "1h", cache_validator = all_parameters)]
    fn by_params() -> u32 {
        7
    }
);

#[flow]
fn param_flow(nrows: u32, runtime: String) -> u32 {
    let _ = (nrows, runtime);
    by_params()
}

#[test]
fn all_parameters_needs_the_same_flow_parameters() {
    isolated(|_| {
        let kinds = |run: FlowRun<u32>| run.task_runs()[0].kind;
        assert_eq!(kinds(param_flow::run(10, "a".into())), StateKind::Success);
        assert_eq!(kinds(param_flow::run(10, "a".into())), StateKind::Cached);
        assert_eq!(kinds(param_flow::run(11, "a".into())), StateKind::Success);
        assert_eq!(kinds(param_flow::run(10, "b".into())), StateKind::Success);
        assert_eq!(kinds(param_flow::run(10, "a".into())), StateKind::Cached);
        assert_eq!(runs(&PARAMS_RUNS), 3);
    });
}

counted_task!(
    PARTIAL_PARAMS_RUNS,
    #[task(cache_for = "1h", cache_validator = partial_parameters_only(nrows))]
    fn by_nrows() -> u32 {
        8
    }
);

#[flow]
fn nrows_flow(nrows: u32, runtime: String) -> u32 {
    let _ = (nrows, runtime);
    by_nrows()
}

counted_task!(
    PARTIAL_PARAMS_EMPTY_RUNS,
    #[task(cache_for = "1h", cache_validator = partial_parameters_only())]
    fn by_no_params() -> u32 {
        9
    }
);

#[flow]
fn no_params_flow(nrows: u32) -> u32 {
    let _ = nrows;
    by_no_params()
}

#[test]
fn partial_parameters_only_compares_the_named_parameters() {
    isolated(|_| {
        nrows_flow(10, "a".into());
        nrows_flow(10, "b".into());
        assert_eq!(runs(&PARTIAL_PARAMS_RUNS), 1, "runtime is not validated on");
        nrows_flow(11, "a".into());
        assert_eq!(runs(&PARTIAL_PARAMS_RUNS), 2);

        no_params_flow(1);
        no_params_flow(2);
        assert_eq!(
            runs(&PARTIAL_PARAMS_EMPTY_RUNS),
            1,
            "no names: only expiry counts"
        );
    });
}

fn only_even(candidate: &Cached, inputs: &HashedInputs<'_>, _: &Parameters) -> bool {
    candidate.hashed_inputs.same_as(inputs) && candidate.created.timestamp() % 2 == 0
}

counted_task!(
    CUSTOM_RUNS,
    #[task(cache_for = "1h", cache_validator = only_even)]
    fn custom(x: i64) -> i64 {
        x
    }
);

#[test]
fn a_validator_of_your_own() {
    isolated(|clock| {
        custom(1); // created at an even second
        custom(1);
        assert_eq!(runs(&CUSTOM_RUNS), 1);
        clock.advance(Duration::from_secs(1));
        custom(2); // created at an odd second: never valid
        custom(2);
        assert_eq!(runs(&CUSTOM_RUNS), 3);
    });
}

counted_task!(
    SHARED_A_RUNS,
    #[task(cache_for = "1h", cache_key = "prices")]
    fn prices() -> Vec<f64> {
        vec![1.0, 2.0]
    }
);
counted_task!(
    SHARED_B_RUNS,
    #[task(cache_for = "1h", cache_key = "prices")]
    fn prices_too() -> Vec<f64> {
        vec![]
    }
);

#[test]
fn cache_key_is_shared_by_two_tasks() {
    isolated(|_| {
        assert_eq!(prices(), vec![1.0, 2.0]);
        let state = prices_too::run();
        assert!(state.is_cached());
        assert_eq!(state.cached().unwrap().cache_key, "prices");
        assert_eq!(state.into_output(), vec![1.0, 2.0]);
        assert_eq!(prices_too(), vec![1.0, 2.0]);
        assert_eq!((runs(&SHARED_A_RUNS), runs(&SHARED_B_RUNS)), (1, 0));
    });
}

counted_task!(
    REPORT_RUNS,
    #[task(cache_for = "1h", cache_key = "report")]
    fn report() -> String {
        "report".into()
    }
);
counted_task!(
    REPORT_OTHER_RUNS,
    #[task(cache_for = "1h", cache_key = "report")]
    fn report_again() -> String {
        "other".into()
    }
);

#[flow]
fn morning() -> String {
    report()
}

#[flow(name = "evening")]
fn evening() -> String {
    report_again()
}

#[test]
fn cache_key_is_shared_by_two_flows() {
    isolated(|_| {
        let first = morning::run();
        assert_eq!(first.task_runs()[0].kind, StateKind::Success);
        let second = evening::run();
        assert_eq!(second.task_runs()[0].task_name, "report_again");
        assert_eq!(second.task_runs()[0].kind, StateKind::Cached);
        assert_eq!(second.into_output(), "report");
        assert_ne!(first.run_id(), "");
        assert_eq!((runs(&REPORT_RUNS), runs(&REPORT_OTHER_RUNS)), (1, 0));
    });
}

counted_task!(
    TYPED_RUNS,
    #[task(cache_for = "1h", cache_key = "typed")]
    fn typed_u32() -> u32 {
        1
    }
);
counted_task!(
    TYPED_STR_RUNS,
    #[task(cache_for = "1h", cache_key = "typed")]
    fn typed_string() -> String {
        "s".into()
    }
);

#[test]
fn a_shared_key_holding_another_type_is_a_miss_not_a_crash() {
    isolated(|_| {
        assert_eq!(typed_u32(), 1);
        assert_eq!(typed_string(), "s");
        assert_eq!(typed_u32(), 1);
        assert_eq!(typed_string(), "s");
        assert_eq!((runs(&TYPED_RUNS), runs(&TYPED_STR_RUNS)), (1, 1));
    });
}

counted_task!(
    FAILING_RUNS,
    #[task(cache_for = "1h")]
    fn failing(fail: bool) -> Result<u32, String> {
        if fail {
            Err("no".into())
        } else {
            Ok(5)
        }
    }
);

#[test]
fn failures_are_never_cached() {
    isolated(|_| {
        assert_eq!(failing(true), Err("no".to_string()));
        let state = failing::run(true);
        assert!(state.is_failed());
        assert!(state.message().contains("no"), "{}", state.message());
        assert_eq!(failing(false), Ok(5));
        assert!(
            failing::run(true).is_cached(),
            "duration_only: the success now serves"
        );
        assert_eq!(runs(&FAILING_RUNS), 3);
    });
}

#[test]
fn spec_reports_the_settings() {
    let spec = add_fmt::spec();
    assert_eq!(spec.name(), "add_fmt");
    assert_eq!(spec.inputs(), &["x", "y", "as_string"]);
    assert_eq!(spec.cache_for(), Some(Duration::from_secs(86400)));
    assert_eq!(spec.cache_validator().name(), "partial_inputs_only");
    assert_eq!(prices::spec().cache_key(), "prices");
}
