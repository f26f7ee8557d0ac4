//! A `HashMap` argument hashes the same in two processes, whose `RandomState`s iterate
//! the map in different orders.

use std::collections::HashMap;
use std::process::Command;
use taskcache::prelude::*;

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn total(prices: HashMap<String, u64>) -> u64 {
    prices.values().sum()
}

fn prices() -> HashMap<String, u64> {
    (0..64).map(|i| (format!("item-{i}"), i * 3)).collect()
}

fn digest_here() -> String {
    let state = total::run(prices());
    let cached = state
        .cached()
        .expect("a task with cache_for records its inputs");
    format!("{:?}", cached.hashed_inputs.digests()[0].0)
}

const CHILD: &str = "TASKCACHE_TEST_PRINT_DIGEST";

#[test]
fn a_hashmap_argument_hashes_equal_in_two_processes() {
    if std::env::var_os(CHILD).is_some() {
        println!("digest={}", digest_here());
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_hashmap_argument_hashes_equal_in_two_processes",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let theirs = stdout
        .split("digest=")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("child printed no digest: {stdout}"));
    assert_eq!(theirs, digest_here());
    // The two maps really were iterated differently (with overwhelming probability), so
    // the equality above is not an accident of order.
    let order = |m: &HashMap<String, u64>| m.keys().cloned().collect::<Vec<_>>();
    assert_ne!(
        order(&prices()),
        order(&prices()),
        "two RandomStates, two orders"
    );
}
