use taskcache::prelude::*;

#[task(max_entries = 100)]
fn load(x: u32) -> u32 {
    x
}

fn main() {}
