use taskcache::prelude::*;

#[task(checkpoint)]
fn report() -> u32 {
    1
}

fn main() {}
