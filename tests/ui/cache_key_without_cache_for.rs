use taskcache::prelude::*;

#[task(cache_key = "prices")]
fn prices() -> Vec<f64> {
    vec![1.0]
}

fn main() {}
