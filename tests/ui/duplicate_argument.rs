use taskcache::prelude::*;

#[task(cache_for = "1h", cache_for = "2h")]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn main() {}
