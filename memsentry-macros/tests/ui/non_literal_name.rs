const NAME: &str = "checkout";

#[memsentry_macros::tracked(name = NAME)]
async fn checkout() {}

fn main() {}
