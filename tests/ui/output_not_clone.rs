use taskcache::prelude::*;

struct Handle;

#[task(cache_for = "1h")]
fn open(path: String) -> Handle {
    let _ = path;
    Handle
}

fn main() {}
