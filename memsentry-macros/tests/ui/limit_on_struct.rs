#[memsentry_macros::limit(leaks = 0)]
struct Measured;

fn main() {}
