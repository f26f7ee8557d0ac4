use taskcache::prelude::*;

#[derive(serde::Serialize)]
struct Region;

#[task(checkpoint, result = LocalResult::new("out").with_location("{region}.bin"))]
fn report(region: Region) -> u32 {
    let _ = region;
    1
}

fn main() {}
