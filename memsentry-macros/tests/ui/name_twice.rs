#[memsentry_macros::tracked(name = "a", name = "b")]
async fn checkout() {}

fn main() {}
