#[memsentry_macros::limit()]
fn measured() {}

fn main() {}
