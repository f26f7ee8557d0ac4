use taskcache::prelude::*;

#[derive(Clone)]
struct Report;

#[task(checkpoint, result = LocalResult::new("out"))]
fn report() -> Report {
    Report
}

fn main() {}
