use taskcache::prelude::*;

#[derive(Clone)]
struct Report;

impl Report {
    #[task(cache_for = "1h")]
    fn new() -> Self {
        Report
    }
}

fn main() {}
