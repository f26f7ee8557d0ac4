//! `hash_input` of a `HashMap` is the same in two processes, whose `RandomState`s iterate
//! the map in different orders.
//!
//! The test re-runs its own binary with [`CHILD`] set; the child prints the digest and the
//! map's iteration order instead of testing.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use taskcache_core::hash::hash_input;

const CHILD: &str = "TASKCACHE_CORE_TEST_PRINT_DIGEST";
const NAME: &str = "a_hashmap_hashes_equal_in_two_processes";

fn map() -> HashMap<String, u64> {
    (0..50u64)
        .map(|i| (format!("key-{i}"), i * i + 7))
        .collect()
}

fn hex(map: &HashMap<String, u64>) -> String {
    hash_input(map)
        .unwrap()
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn order(map: &HashMap<String, u64>) -> String {
    map.keys().map(String::as_str).collect::<Vec<_>>().join(",")
}

/// The rest of the line after `label=` (the harness may have printed the test's name
/// before it on the same line).
fn field<'a>(stdout: &'a str, label: &str) -> &'a str {
    let marker = format!("{label}=");
    stdout
        .lines()
        .find_map(|line| line.split_once(&marker).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("the child printed no {label}: {stdout}"))
}

#[test]
fn a_hashmap_hashes_equal_in_two_processes() {
    let mine = map();
    if std::env::var_os(CHILD).is_some() {
        println!("digest={}", hex(&mine));
        println!("order={}", order(&mine));
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the child failed: {stdout}");

    assert_eq!(field(&stdout, "digest"), hex(&mine));
    // The child really iterated its map in another order (with overwhelming probability
    // for 50 keys), so the equality above is not an accident of order.
    assert_ne!(field(&stdout, "order"), order(&mine));
    // The same logical map, ordered, hashes alike too.
    let sorted: BTreeMap<_, _> = mine.clone().into_iter().collect();
    assert_eq!(hash_input(&sorted).unwrap(), hash_input(&mine).unwrap());
}
