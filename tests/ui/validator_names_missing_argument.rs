use taskcache::prelude::*;

#[task(cache_for = "1d", cache_validator = partial_inputs_only(x, z))]
fn add_fmt(x: i64, y: i64, as_string: bool) -> String {
    let _ = as_string;
    (x + y).to_string()
}

fn main() {}
