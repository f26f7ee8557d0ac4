use taskcache::prelude::*;

#[task(trigger = when_ready)]
fn publish() -> u32 {
    1
}

fn main() {}
