use taskcache::prelude::*;

#[task(max_retries = 3)]
fn flaky(x: u32) -> Result<u32, String> {
    Ok(x)
}

fn main() {}
