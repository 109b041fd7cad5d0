//! **[H]** Everything reachable from `GlobalAlloc`: no allocation, no lock another
//! allocation may hold, no panic. `clippy.toml` lists the types and macros that are denied
//! here (see the `deny` on this module in `lib.rs`).

pub(crate) mod counters;
pub(crate) mod mode;
pub(crate) mod size_class;

use counters::Event;
use mode::Fast;

// Each entry point below is a short inlined fast path (switch on, a slot owned by this
// thread, a common size: one relaxed load, one TLS load, one table load and two
// single-writer adds) with a single out-of-line call for everything else. One call site
// lets the compiler keep the fast path free of register saves.

/// Bookkeeping for an allocation of `size` bytes aligned to `align` that returned `ptr`
/// (null: the inner allocator refused).
#[inline(always)]
pub(crate) fn on_alloc(ptr: *mut u8, size: usize, align: usize) {
    match mode::fast() {
        Fast::Off => {}
        Fast::On if !ptr.is_null() && counters::try_record_fast(Event::Alloc, size, align) => {}
        _ => on_alloc_slow(ptr, size, align),
    }
}

#[cold]
#[inline(never)]
fn on_alloc_slow(ptr: *mut u8, size: usize, align: usize) {
    if !mode::active() {
        return;
    }
    if ptr.is_null() {
        counters::record_failure();
    } else {
        counters::record_alloc(size_class::index_of(size, align), size);
    }
}

/// Bookkeeping for freeing a block of `size` bytes aligned to `align`.
#[inline(always)]
pub(crate) fn on_free(size: usize, align: usize) {
    match mode::fast() {
        Fast::Off => {}
        Fast::On if counters::try_record_fast(Event::Free, size, align) => {}
        _ => on_free_slow(size, align),
    }
}

#[cold]
#[inline(never)]
fn on_free_slow(size: usize, align: usize) {
    if mode::active() {
        counters::record_free(size_class::index_of(size, align), size);
    }
}

/// Bookkeeping for a `realloc` from `old_size` to `new_size` that returned `new_ptr`:
/// a free plus an allocation when it succeeded, a failure (and no free) when it did not.
#[inline(always)]
pub(crate) fn on_realloc(new_ptr: *mut u8, old_size: usize, new_size: usize, align: usize) {
    if mode::fast() == Fast::Off {
        return;
    }
    if new_ptr.is_null() {
        on_alloc_slow(new_ptr, new_size, align);
    } else {
        on_free(old_size, align);
        on_alloc(new_ptr, new_size, align);
    }
}
