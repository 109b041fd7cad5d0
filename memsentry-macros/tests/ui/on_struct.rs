#[memsentry_macros::tracked]
struct Checkout {
    items: Vec<u64>,
}

fn main() {}
