#[memsentry_macros::limit(allocations = 40, colour = 1)]
fn measured() {}

fn main() {}
