use taskcache::prelude::*;

struct Connection;

#[task(cache_for = "1h", cache_validator = all_inputs)]
fn query(sql: String, conn: Connection) -> usize {
    let _ = conn;
    sql.len()
}

fn main() {}
