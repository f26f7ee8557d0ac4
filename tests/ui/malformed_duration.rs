use taskcache::prelude::*;

#[task(cache_for = "1 hour and a bit", max_retries = 2, retry_delay = "2")]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn main() {}
