use taskcache::prelude::*;

#[task(target = "{date:%Q}/<task_name}.bin", checkpoint, result = LocalResult::new("out"))]
fn report() -> u32 {
    1
}

fn main() {}
