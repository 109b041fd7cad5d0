//! Null from jemalloc is passed through and counted as a failure; nothing else moves.

// `memsentry/clippy.toml` bans allocating types for the allocator's hot path; tests are not.
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::alloc::{GlobalAlloc, Layout};

use memsentry::MemSentry;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

#[test]
fn impossible_allocations_return_null_and_count_as_failed() {
    // Exact counts: with sampling on, the sampler's own (counted) allocations would
    // show up too.
    memsentry::profile::set_sample_rate(0);
    // Larger than any address space: jemalloc refuses it.
    let huge = Layout::from_size_align(isize::MAX as usize - 4095, 4096).unwrap();
    let small = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: non-zero layouts; the small block is freed with its layout (`realloc`
    // failing leaves it untouched and still ours).
    unsafe {
        let block = GLOBAL.alloc(small);
        assert!(!block.is_null());
        block.write_bytes(0x5a, 64);

        let before = memsentry::snapshot();
        let counts_before = memsentry::totals();
        assert!(GLOBAL.alloc(huge).is_null());
        assert!(GLOBAL.alloc_zeroed(huge).is_null());
        assert!(GLOBAL.realloc(block, small, huge.size()).is_null());
        let counts_after = memsentry::totals();
        let after = memsentry::snapshot();

        assert_eq!(after.failed_allocations - before.failed_allocations, 3);
        // No allocation, and no free for the block `realloc` left in place.
        assert_eq!(counts_after, counts_before);
        assert!(
            std::slice::from_raw_parts(block, 64)
                .iter()
                .all(|&b| b == 0x5a)
        );
        GLOBAL.dealloc(block, small);
    }
}
