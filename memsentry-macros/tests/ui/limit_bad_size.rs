#[memsentry_macros::limit(peak = "24 megabytes")]
fn measured() {}

fn main() {}
