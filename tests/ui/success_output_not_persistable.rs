use taskcache::prelude::*;

#[derive(Clone)]
struct Report;

// Only the `Ok` value is written: the error type needs no serde, the success type does.
#[task(checkpoint, result = LocalResult::new("out"))]
fn report() -> Result<Report, std::io::Error> {
    Ok(Report)
}

fn main() {}
