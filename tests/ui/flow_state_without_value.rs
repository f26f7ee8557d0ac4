use taskcache::prelude::*;

#[flow(state)]
fn nightly() -> u32 {
    1
}

fn main() {}
