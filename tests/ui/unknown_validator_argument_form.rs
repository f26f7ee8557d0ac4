use taskcache::prelude::*;

#[task(cache_for = "1h", cache_validator = all_inputs(x))]
fn add(x: i64) -> i64 {
    x
}

fn main() {}
