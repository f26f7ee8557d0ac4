use taskcache::prelude::*;

#[task(cache_for = 3600)]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn main() {}
