use taskcache::prelude::*;

#[task(checkpoint = yes, result = LocalResult::new("out"))]
fn report() -> u32 {
    1
}

fn main() {}
