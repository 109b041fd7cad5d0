//! Budgets over another inner allocator: `MemSentry::with_allocator(System)`. Counts,
//! bytes, peaks and sites need nothing of jemalloc.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::alloc::System;

use memsentry::MemSentry;

#[path = "support/budget_inner.rs"]
mod budget_inner;

#[global_allocator]
static GLOBAL: MemSentry<System> = MemSentry::with_allocator(System);

#[test]
fn budgets_work_over_the_system_allocator() {
    budget_inner::budgets_are_exact();
}
