use taskcache::prelude::*;

#[task(retry_delay = "2s")]
fn fetch(url: String) -> Result<String, String> {
    Ok(url)
}

fn main() {}
