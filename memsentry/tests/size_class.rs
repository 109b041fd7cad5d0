//! The size-class arithmetic equals what jemalloc really hands out (`nallocx`), and the
//! allocator honours the `GlobalAlloc` contract (alignment, zeroing).

// `memsentry/clippy.toml` bans allocating types for the allocator's hot path; tests are not.
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::alloc::{GlobalAlloc, Layout};

use memsentry::MemSentry;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// The flags tikv-jemallocator passes for a layout: plain `malloc` when the natural
/// alignment (16 on 64-bit targets) covers the request, `MALLOCX_ALIGN` otherwise.
fn flags(layout: Layout) -> i32 {
    if layout.align() <= 16 && layout.align() <= layout.size() {
        0
    } else {
        tikv_jemalloc_sys::MALLOCX_ALIGN(layout.align())
    }
}

fn jemalloc_class(layout: Layout) -> u64 {
    // SAFETY: `nallocx` only computes a size; any size and valid alignment flag is allowed.
    let usable = unsafe { tikv_jemalloc_sys::nallocx(layout.size(), flags(layout)) };
    u64::try_from(usable).unwrap()
}

#[test]
fn every_small_size_and_alignment_matches_nallocx() {
    let mut checked = 0u64;
    for align_log in 0..=12 {
        let align = 1usize << align_log;
        for size in 1..=65_536usize {
            let layout = Layout::from_size_align(size, align).unwrap();
            assert_eq!(
                memsentry::size_class(layout),
                jemalloc_class(layout),
                "size {size}, align {align}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 13 * 65_536);
}

#[test]
fn large_sizes_match_nallocx() {
    // Class boundaries and their neighbours from 64 KiB to 1 TiB, plus a pseudo-random
    // spread in between.
    let mut sizes = Vec::new();
    for lg in 16..40 {
        for step in 0..4usize {
            let boundary = (1usize << lg) + step * (1usize << (lg - 2));
            sizes.extend([boundary - 1, boundary, boundary + 1]);
        }
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sizes.push(65_537 + usize::try_from(x % (1 << 36)).unwrap());
    }
    for size in sizes {
        for align in [1, 8, 16, 64, 4096, 8192, 1 << 16, 1 << 21] {
            let layout = Layout::from_size_align(size, align).unwrap();
            assert_eq!(
                memsentry::size_class(layout),
                jemalloc_class(layout),
                "size {size}, align {align}"
            );
        }
    }
}

#[test]
fn real_blocks_have_the_computed_usable_size() {
    // A sampled block of at most 4 KiB is moved into a page-aligned block of its own (a
    // placed sample), whose usable size is that block's: no sampling here, so that every
    // block is the one jemalloc handed out. (Sampled at the default rate, the 3,000-byte
    // block was, about once in 170 runs.) The other tests of this binary do not mind.
    memsentry::profile::set_sample_rate(0);
    for (size, align) in [
        (1, 1),
        (24, 8),
        (100, 64),
        (3000, 8),
        (20_000, 4096),
        (1 << 20, 16),
    ] {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: the layout has a non-zero size; the block is freed below with it.
        let ptr = unsafe { GLOBAL.alloc(layout) };
        assert!(!ptr.is_null());
        assert_eq!(ptr as usize % align, 0, "alignment of {size}/{align}");
        // SAFETY: `ptr` is a live jemalloc allocation.
        let usable = unsafe { tikv_jemalloc_sys::malloc_usable_size(ptr.cast()) };
        assert_eq!(
            u64::try_from(usable).unwrap(),
            memsentry::size_class(layout)
        );
        // SAFETY: allocated above with this layout.
        unsafe { GLOBAL.dealloc(ptr, layout) };
    }
}

#[test]
fn alignments_up_to_8_never_move_a_request_to_another_class() {
    // `MemSentry` serves these with jemalloc's `malloc` and frees them with `sdallocx`
    // without flags, where tikv-jemallocator passes `MALLOCX_ALIGN` below 8 bytes:
    // both must name the same class.
    let large = (16..40).map(|lg| (1usize << lg) + 1);
    for size in (1..=65_536usize).chain(large) {
        // SAFETY: `nallocx` only computes a size.
        let by_size = unsafe { tikv_jemalloc_sys::nallocx(size, 0) };
        for align in [1, 2, 4, 8] {
            let flag = tikv_jemalloc_sys::MALLOCX_ALIGN(align);
            // SAFETY: as above.
            let aligned = unsafe { tikv_jemalloc_sys::nallocx(size, flag) };
            assert_eq!(aligned, by_size, "size {size}, align {align}");
        }
    }
}

/// Whether the `size` bytes at `ptr` all equal `byte`.
///
/// # Safety
///
/// `ptr` is valid for reads of `size` initialised bytes.
unsafe fn holds_only(ptr: *const u8, size: usize, byte: u8) -> bool {
    // SAFETY: our caller's contract.
    unsafe { std::slice::from_raw_parts(ptr, size) }
        .iter()
        .all(|&b| b == byte)
}

#[test]
fn blocks_aligned_to_at_most_8_are_aligned_and_of_their_class() {
    // jemalloc's own calls serve these (see above): every size of the fast path, through
    // `alloc`, `alloc_zeroed` and `realloc`, lands aligned and in its class, and is freed.
    memsentry::profile::set_sample_rate(0);
    let usable = |ptr: *mut u8| {
        // SAFETY: `ptr` is a live jemalloc allocation.
        u64::try_from(unsafe { tikv_jemalloc_sys::malloc_usable_size(ptr.cast()) }).unwrap()
    };
    for size in (1..=4096).chain([5000, 20_000, 1 << 20]) {
        for align in [1, 2, 4, 8] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let grown = Layout::from_size_align(size * 2 + 1, align).unwrap();
            // SAFETY: non-zero layouts; each block is written and read within its size,
            // and freed with the layout it has then.
            unsafe {
                let ptr = GLOBAL.alloc(layout);
                assert!(!ptr.is_null());
                assert_eq!(ptr as usize % 8, 0, "alignment of {size}/{align}");
                assert_eq!(usable(ptr), memsentry::size_class(layout), "{size}/{align}");
                ptr.write_bytes(0x5a, size);
                let moved = GLOBAL.realloc(ptr, layout, grown.size());
                assert!(!moved.is_null());
                assert_eq!(moved as usize % 8, 0, "alignment of {size}/{align} grown");
                assert_eq!(usable(moved), memsentry::size_class(grown));
                assert!(holds_only(moved, size, 0x5a), "{size}/{align} moved");
                GLOBAL.dealloc(moved, grown);

                let zeroed = GLOBAL.alloc_zeroed(layout);
                assert!(!zeroed.is_null());
                assert_eq!(usable(zeroed), memsentry::size_class(layout));
                assert!(holds_only(zeroed, size, 0), "{size}/{align} zeroed");
                GLOBAL.dealloc(zeroed, layout);
            }
        }
    }
}

#[test]
fn alloc_zeroed_zeroes_reused_memory() {
    for (size, align) in [16usize, 100, 4096, 20_000, 300_000]
        .into_iter()
        .flat_map(|size| [(size, 8), (size, 16)])
    {
        let layout = Layout::from_size_align(size, align).unwrap();
        // Dirty a block, free it, and ask for a zeroed one of the same class: jemalloc
        // hands the dirty block back from its thread cache.
        // SAFETY: non-zero layout; written within bounds, freed with the same layout.
        unsafe {
            let dirty = GLOBAL.alloc(layout);
            assert!(!dirty.is_null());
            dirty.write_bytes(0xa5, size);
            GLOBAL.dealloc(dirty, layout);
        }
        // SAFETY: as above; the block is read within its `size` bytes.
        unsafe {
            let zeroed = GLOBAL.alloc_zeroed(layout);
            assert!(!zeroed.is_null());
            assert!(holds_only(zeroed, size, 0), "{size} bytes not zeroed");
            GLOBAL.dealloc(zeroed, layout);
        }
    }
}
