use taskcache::prelude::*;

#[task(cache_for = "1h")]
const fn double(x: u32) -> u32 {
    x * 2
}

fn main() {}
