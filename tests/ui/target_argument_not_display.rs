use taskcache::prelude::*;

#[derive(serde::Serialize)]
struct Region;

#[task(target = "<region>.bin", checkpoint, result = LocalResult::new("out"))]
fn report(region: Region) -> u32 {
    let _ = region;
    1
}

fn main() {}
