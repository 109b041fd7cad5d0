#[memsentry_macros::limit(leaks = 0, leaks = 1)]
fn measured() {}

fn main() {}
