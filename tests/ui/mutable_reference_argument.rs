use taskcache::prelude::*;

#[task(cache_for = "1h")]
fn push(items: &mut Vec<u32>, (a, b): (u32, u32)) -> usize {
    items.push(a + b);
    items.len()
}

fn main() {}
