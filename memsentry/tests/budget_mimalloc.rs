//! Budgets over another real inner allocator from crates.io:
//! `MemSentry::with_allocator(MiMalloc)`. Counts, bytes, peaks and sites need nothing of
//! jemalloc.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use memsentry::MemSentry;
use mimalloc::MiMalloc;

#[path = "support/budget_inner.rs"]
mod budget_inner;

#[global_allocator]
static GLOBAL: MemSentry<MiMalloc> = MemSentry::with_allocator(MiMalloc);

#[test]
fn budgets_work_over_mimalloc() {
    budget_inner::budgets_are_exact();
}
