#[memsentry_macros::tracked(label = "checkout")]
async fn checkout() {}

fn main() {}
