//! `#[tracked]` and `#[limit]` misuse is a compile error pointing at the offending tokens.
//! The cases use `memsentry_macros::{tracked, limit}`, what `memsentry` re-exports.
//! The expected messages are in `tests/ui/*.stderr`; `TRYBUILD=overwrite` regenerates
//! them after a deliberate change.

#[test]
fn misuse_is_a_compile_error_at_the_right_span() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
