use taskcache::prelude::*;

#[task(cache_validator = all_inputs)]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn main() {}
