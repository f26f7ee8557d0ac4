use taskcache::prelude::*;

struct Report;

impl Report {
    #[task(cache_for = "1h")]
    fn total(x: i64) -> i64 {
        x
    }
}

fn main() {}
