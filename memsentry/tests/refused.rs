//! Most allocations are counted *before* the inner allocator's call (the fast path, the
//! task branch and the second tier count ahead, so that after the call nothing but the
//! pointer is needed).
//! When the inner allocator then refuses one, the count must be taken back, on every
//! path that counts ahead: the thread's fast path (up to 4 KiB), the second tier (larger
//! or 16-aligned requests), the sampled path (the countdown ran out) and the task branch.
//!
//! jemalloc does not refuse a 48-byte request short of exhausting the machine, so the
//! inner allocator here is [`Refusing`]: jemalloc, except that it returns null while
//! this thread's `REFUSE` is set.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

use memsentry::MemSentry;
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static GLOBAL: MemSentry<Refusing> = MemSentry::with_allocator(Refusing);

thread_local! {
    static REFUSE: Cell<bool> = const { Cell::new(false) };
}

fn refusing() -> bool {
    REFUSE.with(Cell::get)
}

/// jemalloc, refusing every request while this thread's `REFUSE` is set.
struct Refusing;

// SAFETY: forwards every call to jemalloc unchanged, or returns null (which every
// allocating method may), leaving the block of a refused `realloc` untouched.
unsafe impl GlobalAlloc for Refusing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refusing() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded.
        unsafe { Jemalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refusing() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded.
        unsafe { Jemalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { Jemalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refusing() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded.
        unsafe { Jemalloc.realloc(ptr, layout, new_size) }
    }
}

/// Requests counted ahead: by the fast path (at most 4 KiB, aligned to at most 8) and by
/// the second tier (larger, or 16-aligned; in a task, the slow path).
const LAYOUTS: [(usize, usize); 8] = [
    (48, 8),
    (1, 1),
    (32, 16),
    (4096, 8),
    (8192, 8),
    (20_000, 16),
    (100_000, 1),
    (isize::MAX as usize - 4095, 8),
];

/// Asks for every layout of [`LAYOUTS`] through `alloc` and `alloc_zeroed` while the
/// inner allocator refuses (inside a task named `task`, if any), and checks that each
/// returns null and counts as a failure only: no allocation, no sample.
fn refused_requests_count_as_failures_only(task: Option<&str>) {
    let layouts = LAYOUTS.map(|(size, align)| Layout::from_size_align(size, align).unwrap());
    let failed_before = memsentry::snapshot().failed_allocations;
    let samples_before = memsentry::profile::usage().live_samples;
    let scope = task.map(memsentry::task::scope);
    // From here to `after`, nothing allocates but the refused requests.
    let before = memsentry::totals();
    REFUSE.with(|refuse| refuse.set(true));
    let mut nulls = 0;
    for layout in layouts {
        // SAFETY: non-zero layouts; nothing is returned to free.
        unsafe {
            nulls += u64::from(GLOBAL.alloc(layout).is_null());
            nulls += u64::from(GLOBAL.alloc_zeroed(layout).is_null());
        }
    }
    REFUSE.with(|refuse| refuse.set(false));
    let after = memsentry::totals();
    drop(scope);
    let samples_after = memsentry::profile::usage().live_samples;
    let failed_after = memsentry::snapshot().failed_allocations;

    let requests = 2 * layouts.len() as u64;
    assert_eq!(nulls, requests, "every request refused");
    assert_eq!(after, before, "refused requests counted as allocations");
    assert_eq!(failed_after - failed_before, requests);
    assert_eq!(
        samples_after, samples_before,
        "a refused request was sampled"
    );
}

#[test]
fn refused_allocations_count_as_failures_only() {
    // Sampling off: the fast path.
    memsentry::profile::set_sample_rate(0);
    refused_requests_count_as_failures_only(None);

    // Every allocation due: the sampled path counts ahead too; and sampling goes on.
    memsentry::profile::set_sample_rate(1);
    refused_requests_count_as_failures_only(None);
    // The largest request there is: counted against the sampling countdown too, which
    // must get its bytes back when it fails, or the next request would wrap the
    // countdown around and this thread would sample nothing more.
    REFUSE.with(|refuse| refuse.set(true));
    let largest = Layout::from_size_align(isize::MAX as usize, 1).unwrap();
    // SAFETY: a non-zero layout; refused.
    let refused = unsafe { GLOBAL.alloc(largest) };
    REFUSE.with(|refuse| refuse.set(false));
    assert!(refused.is_null());
    let samples_before = memsentry::profile::usage().live_samples;
    let sampled = std::hint::black_box(Box::new([1u8; 64]));
    assert_eq!(
        memsentry::profile::usage().live_samples,
        samples_before + 1,
        "sampling stopped after refused requests"
    );
    drop(sampled);
    memsentry::profile::set_sample_rate(0);

    // Inside a task: the task branch counts ahead, and charges the task.
    refused_requests_count_as_failures_only(Some("refused"));
    let report = memsentry::task::report();
    let row = report.task("refused").expect("the task's row");
    assert_eq!((row.allocations, row.allocated_bytes), (0, 0), "{row:?}");
}
