use taskcache::prelude::*;

#[task(max_retries = 3, retry_delay = 2)]
fn fetch() -> Result<String, String> {
    Ok(String::new())
}

fn main() {}
