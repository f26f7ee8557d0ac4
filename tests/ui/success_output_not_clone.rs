use taskcache::prelude::*;

struct Handle;

#[task(cache_for = "1h")]
fn open(path: String) -> Result<Handle, std::io::Error> {
    let _ = path;
    Ok(Handle)
}

fn main() {}
