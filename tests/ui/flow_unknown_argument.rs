use taskcache::prelude::*;

#[flow(store = "runs.db")]
fn nightly() -> u32 {
    1
}

fn main() {}
