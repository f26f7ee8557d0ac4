use taskcache::prelude::*;

#[task]
unsafe fn read_raw(address: usize) -> u8 {
    *(address as *const u8)
}

fn main() {}
