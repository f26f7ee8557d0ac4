use taskcache::prelude::*;

struct Handle;

#[task(trigger = manual_only)]
fn approve(handle: Handle) -> u32 {
    let _ = handle;
    1
}

fn main() {}
