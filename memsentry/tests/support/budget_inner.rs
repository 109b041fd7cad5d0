//! The budget checks run over each inner allocator other than jemalloc
//! (`#[path]`-included by `budget_system.rs` and `budget_mimalloc.rs`, each with its own
//! `#[global_allocator]`).

use std::hint::black_box;

use memsentry::budget::Measure;

#[inline(never)]
fn make(n: usize) -> Vec<u8> {
    black_box(vec![1u8; n])
}

/// Counts, bytes, peaks and sites, exact over the inner allocator in use.
pub(crate) fn budgets_are_exact() {
    let (kept, usage) = Measure::new().sites(true).run(|| {
        let a = make(1000);
        let b = make(2000);
        drop(a);
        b
    });
    assert_eq!((usage.allocations(), usage.frees()), (2, 1));
    assert_eq!(usage.allocated_bytes(), 3000);
    assert_eq!(usage.peak_bytes(), 3000);
    assert_eq!(usage.live_bytes(), 2000);
    assert_eq!(usage.leaked_blocks(), Some(1));
    let top = usage.top_sites(memsentry::profile::SampleType::AllocObjects, 1);
    assert!(top[0].function.ends_with("make"), "{top:?}");
    drop(kept);
}
