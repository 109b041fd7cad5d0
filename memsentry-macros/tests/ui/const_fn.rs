#[memsentry_macros::tracked]
const fn answer() -> u32 {
    42
}

fn main() {}
