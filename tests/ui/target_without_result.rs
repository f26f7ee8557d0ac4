use taskcache::prelude::*;

#[task(target = "{task_name}.bin")]
fn report() -> u32 {
    1
}

fn main() {}
