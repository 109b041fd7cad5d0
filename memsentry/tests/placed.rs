//! Placed samples: a sampled block of at most 4 KiB, aligned to at most 16, lives 16 bytes
//! into a page-aligned block of its own. Under every `GlobalAlloc` call (and the off
//! switch), the inner allocator must still see each block freed exactly once, with the
//! layout it was allocated with, and the caller must get memory that keeps its contract
//! (alignment, zeroes, contents across `realloc`).
//!
//! The inner allocator here is [`Checked`]: jemalloc, plus a table of every block it has
//! handed out, which flags any free of a block it does not hold or with another layout.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use memsentry::MemSentry;
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static GLOBAL: MemSentry<Checked> = MemSentry::with_allocator(Checked);

/// Slots of the table of live blocks (a power of two).
const SLOTS: usize = 1 << 20;
const EMPTY: usize = 0;
const DELETED: usize = 1;

/// Block address per slot (or EMPTY, DELETED), and its layout's size and alignment.
static ADDRESSES: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(EMPTY) }; SLOTS];
static SIZES: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
static ALIGNS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
/// Frees of blocks the table does not hold, or with another layout.
static VIOLATIONS: AtomicUsize = AtomicUsize::new(0);

fn home(address: usize) -> usize {
    ((address >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44) & (SLOTS - 1)
}

fn insert(address: usize, layout: Layout) {
    let mut slot = home(address);
    loop {
        let seen = ADDRESSES[slot].load(Ordering::Relaxed);
        if (seen == EMPTY || seen == DELETED)
            && ADDRESSES[slot]
                .compare_exchange(seen, address, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            SIZES[slot].store(layout.size(), Ordering::Relaxed);
            ALIGNS[slot].store(layout.align(), Ordering::Release);
            return;
        }
        slot = (slot + 1) & (SLOTS - 1);
    }
}

fn remove(address: usize, layout: Layout) {
    let mut slot = home(address);
    loop {
        match ADDRESSES[slot].load(Ordering::Acquire) {
            EMPTY => {
                VIOLATIONS.fetch_add(1, Ordering::Relaxed);
                return;
            }
            seen if seen == address => {
                if ALIGNS[slot].load(Ordering::Acquire) != layout.align()
                    || SIZES[slot].load(Ordering::Relaxed) != layout.size()
                {
                    VIOLATIONS.fetch_add(1, Ordering::Relaxed);
                }
                ADDRESSES[slot].store(DELETED, Ordering::Release);
                return;
            }
            _ => slot = (slot + 1) & (SLOTS - 1),
        }
    }
}

/// jemalloc, checking that every block is freed once, with its layout.
struct Checked;

// SAFETY: forwards every call to jemalloc unchanged; the table only observes.
unsafe impl GlobalAlloc for Checked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        let ptr = unsafe { Jemalloc.alloc(layout) };
        if !ptr.is_null() {
            insert(ptr as usize, layout);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        let ptr = unsafe { Jemalloc.alloc_zeroed(layout) };
        if !ptr.is_null() {
            insert(ptr as usize, layout);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        remove(ptr as usize, layout);
        // SAFETY: forwarded.
        unsafe { Jemalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        remove(ptr as usize, layout);
        // SAFETY: forwarded.
        let new = unsafe { Jemalloc.realloc(ptr, layout, new_size) };
        if new.is_null() {
            insert(ptr as usize, layout);
        } else {
            insert(
                new as usize,
                Layout::from_size_align(new_size, layout.align()).unwrap(),
            );
        }
        new
    }
}

/// The sampling rate and the switch are process-wide: one test at a time.
fn exclusive(rate: u64) -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    memsentry::set_enabled(true);
    memsentry::profile::set_sample_rate(rate);
    guard
}

fn no_violations() {
    assert_eq!(
        VIOLATIONS.load(Ordering::Relaxed),
        0,
        "bad frees seen by jemalloc"
    );
}

fn at_placed_offset(ptr: *mut u8) -> bool {
    ptr as usize % 4096 == 16
}

fn fill(ptr: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: `ptr` is a live block of at least `len` bytes.
        unsafe { ptr.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

fn holds(ptr: *mut u8, len: usize, seed: u8) -> bool {
    // SAFETY: `ptr` is a live block of at least `len` initialised bytes.
    (0..len).all(|i| unsafe { ptr.add(i).read() } == seed.wrapping_add(i as u8))
}

const SIZES_TRIED: [usize; 10] = [1, 7, 8, 16, 48, 100, 1000, 4080, 4081, 4096];

#[test]
fn sampled_small_blocks_are_placed_and_keep_the_contract() {
    let _rate = exclusive(1);
    for align in [1, 8, 16] {
        for size in SIZES_TRIED {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero layouts; every block is freed once with its layout (or the
            // one `realloc` gave it).
            unsafe {
                let ptr = GLOBAL.alloc(layout);
                assert!(at_placed_offset(ptr), "{size} aligned to {align}: {ptr:p}");
                fill(ptr, size, 3);

                // Grows into a larger block (placed again if it is at most 4 KiB).
                let grown = GLOBAL.realloc(ptr, layout, size * 3);
                assert!(holds(grown, size, 3), "{size}: contents moved");
                assert_eq!(at_placed_offset(grown), size * 3 <= 4096);
                assert_eq!(grown as usize % align, 0);
                let grown_layout = Layout::from_size_align(size * 3, align).unwrap();
                // Shrinks back.
                let shrunk = GLOBAL.realloc(grown, grown_layout, size);
                assert!(holds(shrunk, size, 3));
                assert!(at_placed_offset(shrunk));
                GLOBAL.dealloc(shrunk, layout);

                let zeroed = GLOBAL.alloc_zeroed(layout);
                assert!(at_placed_offset(zeroed));
                assert!((0..size).all(|i| zeroed.add(i).read() == 0));
                GLOBAL.dealloc(zeroed, layout);
            }
            no_violations();
        }
    }
}

#[test]
fn larger_and_over_aligned_samples_stay_where_they_are() {
    let _rate = exclusive(1);
    for (size, align) in [(100, 32), (100, 64), (4096, 4096), (4097, 8), (100_000, 8)] {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: as above.
        unsafe {
            let ptr = GLOBAL.alloc(layout);
            assert!(!at_placed_offset(ptr));
            assert_eq!(ptr as usize % align, 0);
            fill(ptr, size, 5);
            let moved = GLOBAL.realloc(ptr, layout, 50);
            assert!(holds(moved, 50, 5));
            GLOBAL.dealloc(moved, Layout::from_size_align(50, align).unwrap());
        }
    }
    no_violations();
}

#[test]
fn a_failed_realloc_leaves_a_placed_sample_in_place() {
    let _rate = exclusive(1);
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: as above; the failed `realloc` leaves the block ours.
    unsafe {
        let ptr = GLOBAL.alloc(layout);
        assert!(at_placed_offset(ptr));
        fill(ptr, 64, 9);
        assert!(
            GLOBAL
                .realloc(ptr, layout, isize::MAX as usize - 4095)
                .is_null()
        );
        assert!(holds(ptr, 64, 9));
        GLOBAL.dealloc(ptr, layout);
    }
    no_violations();
}

#[test]
fn placed_samples_are_freed_right_while_bookkeeping_is_off() {
    let _rate = exclusive(1);
    let layout = Layout::from_size_align(200, 8).unwrap();
    // SAFETY: as above.
    unsafe {
        let blocks: Vec<*mut u8> = (0..100).map(|_| GLOBAL.alloc(layout)).collect();
        assert!(blocks.iter().all(|&p| at_placed_offset(p)));
        memsentry::set_enabled(false);
        // Freed and reallocated while off, and again once back on.
        for &ptr in &blocks[..50] {
            GLOBAL.dealloc(ptr, layout);
        }
        let moved: Vec<*mut u8> = blocks[50..75]
            .iter()
            .map(|&p| GLOBAL.realloc(p, layout, 300))
            .collect();
        memsentry::set_enabled(true);
        for ptr in moved {
            GLOBAL.dealloc(ptr, Layout::from_size_align(300, 8).unwrap());
        }
        for &ptr in &blocks[75..] {
            GLOBAL.dealloc(ptr, layout);
        }
    }
    no_violations();
}

#[test]
fn unsampled_blocks_at_the_placed_offset_are_ordinary_blocks() {
    let _rate = exclusive(0);
    let mut at_offset = 0;
    // jemalloc puts one object in 256 of the classes that are odd multiples of 16 bytes
    // at 16 bytes into a page.
    for size in [16, 48, 80, 112] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: as above.
        unsafe {
            let blocks: Vec<*mut u8> = (0..20_000).map(|_| GLOBAL.alloc(layout)).collect();
            for (i, &ptr) in blocks.iter().enumerate() {
                if at_placed_offset(ptr) {
                    at_offset += 1;
                    if i % 2 == 0 {
                        let moved = GLOBAL.realloc(ptr, layout, size + 1000);
                        GLOBAL.dealloc(moved, Layout::from_size_align(size + 1000, 8).unwrap());
                        continue;
                    }
                }
                GLOBAL.dealloc(ptr, layout);
            }
        }
    }
    assert!(
        at_offset > 0,
        "no block at the placed offset: nothing tested"
    );
    no_violations();
}

#[test]
fn the_room_placed_samples_take_is_counted_in_the_samplers_usage() {
    let _rate = exclusive(1);
    let layout = Layout::from_size_align(96, 8).unwrap();
    let before = memsentry::profile::usage().bytes;
    // SAFETY: as above.
    let blocks: Vec<*mut u8> = (0..1000).map(|_| unsafe { GLOBAL.alloc(layout) }).collect();
    let during = memsentry::profile::usage().bytes;
    // SAFETY: as above.
    blocks
        .iter()
        .for_each(|&p| unsafe { GLOBAL.dealloc(p, layout) });
    let after = memsentry::profile::usage().bytes;
    // Each 96-byte sample lives in a 4 KiB block: 4,000 bytes of room each (the table's
    // growth adds a little more, and stays). Other threads of this binary may sample a
    // few blocks meanwhile (the rate is 1): 64 KiB of slack for theirs.
    const SLACK: usize = 64 * 1024;
    assert!(
        during + SLACK >= before + 1000 * 4000,
        "{before} → {during}"
    );
    assert!(after + 1000 * 4000 <= during + SLACK, "{during} → {after}");
    no_violations();
}
