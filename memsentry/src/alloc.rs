//! **[H]** [`MemSentry`], the global allocator: the crate's only `GlobalAlloc` impl.

use core::alloc::{GlobalAlloc, Layout};

use tikv_jemallocator::Jemalloc;

use crate::hot;

/// A global allocator that counts every allocation and free, per size class, and forwards
/// to an inner allocator (jemalloc by default).
///
/// ```rust,standalone_crate
/// #[global_allocator]
/// static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
/// # fn main() {
/// let v = vec![0u8; 1000];
/// assert!(memsentry::totals().allocations > 0);
/// # drop(v);
/// # }
/// ```
///
/// Every call forwards the caller's `Layout` unchanged, so jemalloc's sized free, `calloc`
/// for `alloc_zeroed` and in-place `rallocx` all keep working. Null from the inner
/// allocator is returned as it is, and counted as a failed allocation.
///
/// The counters are process-wide (`static`), so any number of `MemSentry` values share
/// them; a program has one global allocator anyway.
///
/// # Another inner allocator
///
/// [`MemSentry::with_allocator`] wraps any `GlobalAlloc`. Size classes are always
/// jemalloc's: with another allocator they are a consistent bucketing, not that
/// allocator's real classes, and [`JemallocStats`](crate::JemallocStats) describe the
/// (then idle) jemalloc, not it.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemSentry<A = Jemalloc> {
    inner: A,
}

impl MemSentry<Jemalloc> {
    /// The counting allocator over jemalloc; `const`, so it can initialise a `static`.
    #[must_use]
    pub const fn new() -> Self {
        Self { inner: Jemalloc }
    }
}

impl<A> MemSentry<A> {
    /// The counting allocator over `inner`.
    #[must_use]
    pub const fn with_allocator(inner: A) -> Self {
        Self { inner }
    }

    /// The allocator every call is forwarded to.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

// SAFETY: every method forwards to `A`, a `GlobalAlloc`, with the caller's arguments
// unchanged and returns its result unchanged, so `A`'s guarantees (alignment, validity,
// zeroing) are ours. The bookkeeping around the calls never allocates, never unwinds (no
// panicking operation on that path; see `hot`) and never touches the memory handed out.
unsafe impl<A: GlobalAlloc> GlobalAlloc for MemSentry<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
        let ptr = unsafe { self.inner.alloc(layout) };
        hot::on_alloc(ptr, layout.size(), layout.align());
        ptr
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `GlobalAlloc::alloc_zeroed`'s contract for `layout`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        hot::on_alloc(ptr, layout.size(), layout.align());
        ptr
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        hot::on_free(ptr, layout.size(), layout.align());
        // SAFETY: our caller guarantees `ptr` was allocated by this allocator (hence by
        // `inner`) with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let taken = hot::before_realloc(ptr);
        // SAFETY: our caller upholds `GlobalAlloc::realloc`'s contract for `ptr`, `layout`
        // and `new_size`; `inner` allocated `ptr`.
        let new_ptr = unsafe { self.inner.realloc(ptr, layout, new_size) };
        hot::on_realloc(ptr, taken, new_ptr, layout.size(), new_size, layout.align());
        new_ptr
    }
}
