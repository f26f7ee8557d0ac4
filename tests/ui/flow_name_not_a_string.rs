use taskcache::prelude::*;

#[flow(name = my_flow)]
fn daily(nrows: u32) -> u32 {
    nrows
}

fn main() {}
