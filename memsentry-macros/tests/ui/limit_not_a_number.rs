#[memsentry_macros::limit(allocations = "forty")]
fn measured() {}

fn main() {}
