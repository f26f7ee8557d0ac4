use taskcache::prelude::*;

// Both would overflow a date when added to the clock: an expiry, a retry's start.
#[task(cache_for = "500000years", max_retries = 1, retry_delay = "200000years")]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn main() {}
