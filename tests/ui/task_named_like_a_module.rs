use taskcache::prelude::*;

mod report {
    pub fn header() -> &'static str {
        "report"
    }
}

#[task]
fn report() -> String {
    report::header().to_owned()
}

fn main() {}
