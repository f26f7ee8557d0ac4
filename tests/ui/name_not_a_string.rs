use taskcache::prelude::*;

#[task(name = my_task)]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

fn main() {}
