//! **[H]** [`MemSentry`], the global allocator: the crate's only `GlobalAlloc` impl.

use core::alloc::{GlobalAlloc, Layout};
use core::any::TypeId;

use tikv_jemalloc_sys as jemalloc;
use tikv_jemallocator::Jemalloc;

use crate::hot;
use crate::hot::sampler::{PLACED_OFFSET, at_placed_offset, placeable, placed_layout};
use crate::hot::size_class::by_size_alone;

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
/// allocator is returned as it is, and counted as a failed allocation. (Most requests
/// are counted just before the inner call, and the count taken back if the call fails:
/// for the length of a failing call, a reader may see one allocation more.)
///
/// The exception is a *sampled* block of a common request (at most 4 KiB, aligned to at
/// most 16): it is moved to 16 bytes into a page-aligned block of its own (4 KiB, or
/// 8 KiB from 4,081 bytes up), so that frees can tell it apart by its address alone
/// instead of looking up a table; `realloc` of such a block allocates, copies and frees.
/// At the default sampling rate that is about one block in 800 on a typical mix, and
/// ~0.8% more memory for small blocks; see [`profile`](crate::profile).
///
/// The counters are process-wide (`static`), so any number of `MemSentry` values share
/// them; a program has one global allocator anyway.
///
/// # Another inner allocator
///
/// [`MemSentry::with_allocator`] wraps any `GlobalAlloc` (`'static`, as any global
/// allocator is). Over jemalloc (the default), requests aligned to at most 8 bytes go to
/// its C API (`malloc`, `calloc`, `sdallocx`, `realloc`) directly, as tikv-jemallocator
/// would send them, less its alignment test. Size classes are always
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

/// What a block moved to a placed sample's block must hold.
#[derive(Clone, Copy)]
enum Fill {
    /// Nothing (`alloc`).
    Uninit,
    /// Zeroes (`alloc_zeroed`).
    Zeroed,
    /// The moved block's bytes (`realloc`).
    Copy,
}

impl<A: GlobalAlloc + 'static> MemSentry<A> {
    /// The countdown ran out for the block at `ptr`, allocated with `layout`: maybe
    /// samples it, and returns where the caller's block now is (moved if placed).
    ///
    /// Never inlined: its frame marks where the sampler's own frames end in a captured
    /// stack (everything called from here is left out).
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of `self.inner` allocated with `layout`, not yet handed out.
    #[cold]
    #[inline(never)]
    unsafe fn sample(&self, ptr: *mut u8, layout: Layout, fill: Fill) -> *mut u8 {
        let Some((_guard, rate)) = hot::take_sample(layout.size()) else {
            return ptr;
        };
        let block = if placeable(layout.size(), layout.align()) {
            // SAFETY: forwarded from our caller.
            match unsafe { self.place(ptr, layout, fill) } {
                Some(block) => block,
                // No memory for a block of its own: this sample is dropped (a free could
                // not tell it apart), the allocation stands.
                None => return ptr,
            }
        } else {
            ptr
        };
        let marker = 0u8;
        // The marker's address lies in this frame: frames below it are the sampler's.
        let frame = core::hint::black_box(core::ptr::addr_of!(marker)) as usize;
        hot::record_sample(block, layout.size(), rate, frame);
        block
    }

    /// Moves the block at `ptr` (allocated with `layout`, placeable) to a placed
    /// sample's block; `None`, leaving it where it is, if the inner allocator has no
    /// memory for one.
    ///
    /// # Safety
    ///
    /// As for [`sample`](Self::sample).
    unsafe fn place(&self, ptr: *mut u8, layout: Layout, fill: Fill) -> Option<*mut u8> {
        let holder = placed_layout(layout.size())?;
        // SAFETY: `holder` has a non-zero size. The inner allocator is called directly:
        // the holder is bookkeeping, the caller's allocation was counted by its layout.
        let base = unsafe { self.inner_alloc(holder, fill) };
        if base.is_null() {
            return None;
        }
        // SAFETY: `holder` is `layout.size() + PLACED_OFFSET` bytes, so the block starts
        // inside it and ends at its end; `ptr`'s block and the new one are distinct live
        // blocks of at least `layout.size()` bytes; `ptr` was allocated by `inner` with
        // `layout` and nobody else has it yet.
        unsafe {
            let block = base.add(PLACED_OFFSET);
            if let Fill::Copy = fill {
                core::ptr::copy_nonoverlapping(ptr, block, layout.size());
            }
            self.inner_dealloc(ptr, layout);
            Some(block)
        }
    }

    /// `alloc` (`fill`: `Uninit`, `Copy`) or `alloc_zeroed` (`Zeroed`) through the inner
    /// allocator: over jemalloc, for a request aligned to at most 8, its `malloc` or
    /// `calloc` (see [`to_jemalloc`]).
    ///
    /// # Safety
    ///
    /// `GlobalAlloc::alloc`'s contract for `layout`.
    #[inline(always)]
    unsafe fn inner_alloc(&self, layout: Layout, fill: Fill) -> *mut u8 {
        if to_jemalloc::<A>(layout) {
            // SAFETY: `layout.size()` is non-zero (our caller's contract). jemalloc
            // returns null or a block of at least that many bytes (zeroed by `calloc`),
            // aligned to 8 at least (`by_size_alone`), so to `layout.align()`, and of the
            // class `mallocx` with that alignment would have chosen: `inner_dealloc`
            // and tikv-jemallocator's `dealloc` both free it.
            let ptr = unsafe {
                match fill {
                    Fill::Zeroed => jemalloc::calloc(1, layout.size()),
                    Fill::Uninit | Fill::Copy => jemalloc::malloc(layout.size()),
                }
            };
            return ptr.cast();
        }
        // SAFETY: forwarded from our caller.
        unsafe {
            match fill {
                Fill::Zeroed => self.inner.alloc_zeroed(layout),
                Fill::Uninit | Fill::Copy => self.inner.alloc(layout),
            }
        }
    }

    /// `dealloc` through the inner allocator: over jemalloc, for a request aligned to at
    /// most 8, its `sdallocx` without flags (see [`to_jemalloc`]).
    ///
    /// # Safety
    ///
    /// `GlobalAlloc::dealloc`'s contract: `ptr` is a live block of the inner allocator,
    /// allocated with `layout`.
    #[inline(always)]
    unsafe fn inner_dealloc(&self, ptr: *mut u8, layout: Layout) {
        if to_jemalloc::<A>(layout) {
            // SAFETY: `ptr` is a live jemalloc block allocated with `layout`, by
            // `inner_alloc`, `inner_realloc` or tikv-jemallocator: in each case its class
            // is `layout.size()`'s (`by_size_alone`), the size `sdallocx` takes without
            // flags.
            return unsafe { jemalloc::sdallocx(ptr.cast(), layout.size(), 0) };
        }
        // SAFETY: forwarded from our caller.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    /// `realloc` through the inner allocator: over jemalloc, for a request aligned to at
    /// most 8, its `realloc` (see [`to_jemalloc`]).
    ///
    /// # Safety
    ///
    /// `GlobalAlloc::realloc`'s contract; `ptr` is a live block of the inner allocator.
    #[inline(always)]
    unsafe fn inner_realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if to_jemalloc::<A>(layout) {
            // SAFETY: `ptr` is a live jemalloc block (see `inner_dealloc`) and `new_size`
            // is non-zero (our caller's contract); the block returned, if any, is
            // aligned to 8, and of `new_size`'s class, as in `inner_alloc`.
            return unsafe { jemalloc::realloc(ptr.cast(), new_size) }.cast();
        }
        // SAFETY: forwarded from our caller.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }

    /// `alloc` and `alloc_zeroed`: the fast path. The increment (a common request from a
    /// thread that counts fast, counted before the inner call), then
    /// [`allocate_counted`]: the countdown (a sample due?) and the inner call. Everything
    /// else is [`allocate_slow`]'s.
    ///
    /// [`allocate_counted`]: Self::allocate_counted
    /// [`allocate_slow`]: Self::allocate_slow
    ///
    /// # Safety
    ///
    /// `GlobalAlloc::alloc`'s contract for `layout`; `fill` is not `Copy`.
    #[inline(always)]
    unsafe fn allocate(&self, layout: Layout, fill: Fill) -> *mut u8 {
        if !hot::count_alloc_fast(layout.size(), layout.align()) {
            // SAFETY: forwarded from our caller.
            return unsafe { Self::allocate_slow(layout, self, fill) };
        }
        // SAFETY: forwarded from our caller.
        unsafe { self.allocate_counted(layout, fill) }
    }

    /// An allocation counted ahead of the inner call: the countdown, then the call (the
    /// count taken back if it fails). Inlined apart into the fast path and the slow path,
    /// so that the fast path's copy calls jemalloc's `malloc` with no test of the
    /// alignment (its increment tested it already).
    ///
    /// # Safety
    ///
    /// As for `allocate`.
    #[inline(always)]
    unsafe fn allocate_counted(&self, layout: Layout, fill: Fill) -> *mut u8 {
        if hot::sampler::due(layout.size()) {
            // SAFETY: forwarded from our caller.
            return unsafe { Self::allocate_sampled(layout, self, fill) };
        }
        // SAFETY: forwarded from our caller.
        let ptr = unsafe { self.inner_alloc(layout, fill) };
        if ptr.is_null() {
            // The size noted when counting: `layout` is not kept across the call.
            hot::alloc_failed(None);
        }
        ptr
    }

    /// [`allocate`](Self::allocate)'s slow path: every allocation its increment did not
    /// count. With bookkeeping off, the inner call alone; a task current, or a request
    /// over 4 KiB or 16-aligned, counted ahead as on the fast path; anything else,
    /// counted after the call ([`allocate_general`](Self::allocate_general)).
    ///
    /// # Safety
    ///
    /// As for `allocate`.
    #[inline(always)]
    unsafe fn allocate_slow(layout: Layout, this: &Self, fill: Fill) -> *mut u8 {
        // SAFETY: every arm forwards our caller's contract.
        unsafe {
            match hot::count_alloc_slow(layout.size(), layout.align()) {
                hot::SlowAlloc::Ahead => this.allocate_counted(layout, fill),
                hot::SlowAlloc::Off => this.inner_alloc(layout, fill),
                hot::SlowAlloc::After => Self::allocate_general(layout, this, fill),
            }
        }
    }

    /// [`allocate`](Self::allocate) when the countdown ran out: the inner call, then the
    /// sample.
    ///
    /// # Safety
    ///
    /// As for `allocate`.
    #[cold]
    #[inline(never)]
    unsafe fn allocate_sampled(layout: Layout, this: &Self, fill: Fill) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        let ptr = unsafe { this.inner_alloc(layout, fill) };
        if ptr.is_null() {
            hot::alloc_failed(Some(layout.size()));
            return ptr;
        }
        // SAFETY: a block `inner` just allocated with `layout`, not yet handed out.
        unsafe { this.sample(ptr, layout, fill) }
    }

    /// [`allocate`](Self::allocate)'s general path: the inner call, then the count (or
    /// the failure's) and maybe a sample.
    ///
    /// # Safety
    ///
    /// As for `allocate`.
    #[cold]
    #[inline(never)]
    unsafe fn allocate_general(layout: Layout, this: &Self, fill: Fill) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        let ptr = unsafe { this.inner_alloc(layout, fill) };
        if hot::count_alloc_after(ptr, layout.size(), layout.align()) {
            // SAFETY: a block `inner` just allocated with `layout`; due only if not null.
            return unsafe { this.sample(ptr, layout, fill) };
        }
        ptr
    }

    /// `dealloc`: the fast path. The increment (a common request from a thread that counts
    /// fast, counted before the free: a sampled block's record must be gone before its
    /// address can be handed out again), then [`free_counted`]: the placed-sample test and
    /// the inner free. Everything else is [`free_slow`]'s. Every way out is a call in tail
    /// position: the fast path keeps nothing across a call, so it saves no registers.
    ///
    /// [`free_counted`]: Self::free_counted
    /// [`free_slow`]: Self::free_slow
    ///
    /// # Safety
    ///
    /// `GlobalAlloc::dealloc`'s contract.
    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        if !hot::count_free_fast(layout.size(), layout.align()) {
            // SAFETY: forwarded from our caller.
            return unsafe { Self::free_slow(ptr, layout, self) };
        }
        // SAFETY: forwarded from our caller.
        unsafe { self.free_counted(ptr, layout) }
    }

    /// Frees the block at `ptr`, counted (or not to be counted: bookkeeping off): a block
    /// where placed samples lie through [`free_placed`](Self::free_placed), any other
    /// straight to the inner allocator.
    ///
    /// # Safety
    ///
    /// As for `free`.
    #[inline(always)]
    unsafe fn free_counted(&self, ptr: *mut u8, layout: Layout) {
        if at_placed_offset(ptr) {
            // SAFETY: forwarded from our caller.
            return unsafe { Self::free_placed(ptr, layout, self) };
        }
        // SAFETY: our caller guarantees `ptr` was allocated by this allocator with
        // `layout`, and it is not a placed sample, so `inner` allocated it with `layout`.
        unsafe { self.inner_dealloc(ptr, layout) }
    }

    /// [`free`](Self::free)'s slow path: every free its increment did not count. With
    /// bookkeeping off, or a task current (counted in the task's slot and charged to the
    /// task), the block is freed as on the fast path; the rest is
    /// [`free_rare`](Self::free_rare)'s.
    ///
    /// # Safety
    ///
    /// As for `free`.
    #[inline(always)]
    unsafe fn free_slow(ptr: *mut u8, layout: Layout, this: &Self) {
        if hot::count_free_slow(layout.size(), layout.align()) {
            // SAFETY: forwarded from our caller.
            return unsafe { this.free_counted(ptr, layout) };
        }
        // SAFETY: forwarded from our caller.
        unsafe { Self::free_rare(ptr, layout, this) }
    }

    /// [`free_slow`](Self::free_slow)'s rare cases: a request over 4 KiB or 16-aligned
    /// from a thread that counts fast, by class, first, with every call in tail position,
    /// so that it saves no registers; then the general path. An associated function with
    /// `ptr` first, as the other cold paths, so that the inlined `free` has the pointer
    /// where the inner free takes it, whichever way it goes.
    ///
    /// # Safety
    ///
    /// As for `free`.
    #[cold]
    #[inline(never)]
    unsafe fn free_rare(ptr: *mut u8, layout: Layout, this: &Self) {
        if hot::count_free_by_class(layout.size(), layout.align()) {
            if placeable(layout.size(), layout.align()) {
                // SAFETY: forwarded from our caller; counted.
                return unsafe { this.free_counted(ptr, layout) };
            }
            if hot::sampler::maybe_sampled(ptr) {
                // SAFETY: forwarded from our caller.
                return unsafe { Self::free_sampled(ptr, layout, this) };
            }
            // SAFETY: as in `free_counted`: over 4 KiB, so not a placed sample.
            return unsafe { this.inner_dealloc(ptr, layout) };
        }
        // SAFETY: forwarded from our caller.
        unsafe { Self::free_general(ptr, layout, this) }
    }

    /// `free` of a block over 4 KiB that may be a (never placed) sample, counted.
    ///
    /// # Safety
    ///
    /// As for `free`.
    #[cold]
    #[inline(never)]
    unsafe fn free_sampled(ptr: *mut u8, layout: Layout, this: &Self) {
        hot::forget_sampled(ptr);
        // SAFETY: as in `free_counted`: not a placed sample.
        unsafe { this.inner_dealloc(ptr, layout) }
    }

    /// [`free`](Self::free)'s general path.
    ///
    /// # Safety
    ///
    /// As for `free`.
    #[cold]
    #[inline(never)]
    unsafe fn free_general(ptr: *mut u8, layout: Layout, this: &Self) {
        if hot::count_free_general(ptr, layout.size(), layout.align()) {
            // SAFETY: forwarded from our caller.
            return unsafe { Self::free_placed(ptr, layout, this) };
        }
        // SAFETY: as in `free_counted`: not a placed sample.
        unsafe { this.inner_dealloc(ptr, layout) }
    }

    /// Frees the block at `ptr` (allocated with `layout`), which lies where placed
    /// samples do: as the placed sample it is, or as the ordinary block it is.
    ///
    /// # Safety
    ///
    /// As for `free`.
    #[cold]
    #[inline(never)]
    unsafe fn free_placed(ptr: *mut u8, layout: Layout, this: &Self) {
        let holder = hot::take_placed(ptr, layout.size(), layout.align())
            .and_then(|_| placed_layout(layout.size()));
        // SAFETY: a placed sample's block starts PLACED_OFFSET bytes before it and was
        // allocated by `inner` with `holder`; any other block was allocated with `layout`.
        unsafe {
            match holder {
                Some(holder) => this.inner_dealloc(ptr.sub(PLACED_OFFSET), holder),
                None => this.inner_dealloc(ptr, layout),
            }
        }
    }

    /// `realloc`: a block where placed samples lie goes to
    /// [`reallocate_placed`](Self::reallocate_placed); any other, to the inner `realloc`,
    /// with the bookkeeping of its free half and its allocation half counted after the
    /// call (which may fail, keeping the old block).
    ///
    /// # Safety
    ///
    /// `GlobalAlloc::realloc`'s contract.
    #[inline(always)]
    unsafe fn reallocate(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if at_placed_offset(ptr) {
            // SAFETY: forwarded from our caller.
            return unsafe { self.reallocate_placed(ptr, layout, new_size) };
        }
        // SAFETY: forwarded from our caller; not a placed sample.
        unsafe { self.reallocate_in_place(ptr, layout, new_size) }
    }

    /// `realloc` of a block that lies where placed samples do: a placed sample moves (a
    /// new allocation, a copy, the old block freed), anything else reallocates as usual.
    ///
    /// # Safety
    ///
    /// As for `realloc`.
    #[cold]
    #[inline(never)]
    unsafe fn reallocate_placed(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(taken) = hot::take_placed(ptr, layout.size(), layout.align()) else {
            // SAFETY: forwarded from our caller.
            return unsafe { self.reallocate_in_place(ptr, layout, new_size) };
        };
        // SAFETY: `resized`'s contract is `realloc`'s, forwarded from our caller; the
        // layout is non-zero. Through `self`: counted (or counted as a failure) and maybe
        // sampled, as any allocation.
        let new_ptr = unsafe { self.alloc(resized(layout, new_size)) };
        if new_ptr.is_null() {
            hot::put_back(ptr, taken);
            return new_ptr;
        }
        hot::count_moved_free(layout.size(), layout.align());
        let holder = placed_layout(layout.size());
        // SAFETY: both blocks are live and distinct, the old one of `layout.size()` bytes,
        // the new one of `new_size`; the old block was placed, so its holder starts
        // PLACED_OFFSET bytes before it and was allocated by `inner` with `holder`.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
            if let Some(holder) = holder {
                self.inner_dealloc(ptr.sub(PLACED_OFFSET), holder);
            }
        }
        new_ptr
    }

    /// `realloc` through the inner allocator, for a block that is not a placed sample.
    ///
    /// # Safety
    ///
    /// As for `realloc`.
    #[inline(always)]
    unsafe fn reallocate_in_place(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let taken = hot::before_realloc(ptr, layout.size(), layout.align());
        // SAFETY: our caller upholds `GlobalAlloc::realloc`'s contract for `ptr`, `layout`
        // and `new_size`; `inner` allocated `ptr`.
        let new_ptr = unsafe { self.inner_realloc(ptr, layout, new_size) };
        if !hot::count_realloc_free(ptr, taken, new_ptr, layout.size(), layout.align()) {
            return new_ptr;
        }
        // SAFETY: `resized`'s contract is `realloc`'s, forwarded from our caller.
        let new_layout = unsafe { resized(layout, new_size) };
        if hot::count_reallocated(new_ptr, new_size, layout.align()) {
            // SAFETY: `new_ptr` is a live block of `inner` allocated with `new_layout`,
            // not yet returned (the countdown runs out only for a block counted).
            return unsafe { self.sample(new_ptr, new_layout, Fill::Copy) };
        }
        new_ptr
    }
}

/// Whether a request for `layout` goes to jemalloc's C API directly
/// ([`MemSentry::inner_alloc`], `inner_dealloc`, `inner_realloc`): `A` is jemalloc as
/// this crate links it (`tikv_jemallocator::Jemalloc`, the default) and the request is
/// aligned to at most 8 (`size_class::by_size_alone`), which the fast path has tested
/// already; tikv-jemallocator's `GlobalAlloc` would test the alignment again (`align <=
/// 16 && align <= size`, three compares) to choose between the same calls and `mallocx`.
/// Which `A` it is, is a constant once `A` is known: the compiler keeps one branch.
#[inline(always)]
fn to_jemalloc<A: 'static>(layout: Layout) -> bool {
    TypeId::of::<A>() == TypeId::of::<Jemalloc>() && by_size_alone(layout.align())
}

/// `layout` resized to `new_size`, for `realloc`.
///
/// # Safety
///
/// `realloc`'s contract: `new_size`, rounded up to `layout.align()`, does not overflow
/// `isize`, and is non-zero.
#[inline(always)]
unsafe fn resized(layout: Layout, new_size: usize) -> Layout {
    // SAFETY: the caller's contract above; the alignment is `layout`'s, a power of two.
    unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) }
}

// SAFETY: every method forwards to `A`, a `GlobalAlloc`, with the caller's arguments
// unchanged (over jemalloc, a request aligned to at most 8 goes to its `malloc`,
// `calloc`, `sdallocx` or `realloc` with the same size, which serve that alignment and
// choose the class `A`'s own calls would: see `inner_alloc`) and returns its result
// unchanged, except for sampled blocks of placeable requests, which are moved into a
// block of `A` of their own that holds them whole, with their alignment (PLACED_OFFSET
// is a multiple of every placeable alignment), their zeroes (`alloc_zeroed`) or their
// bytes (`realloc`), and freed from there. So `A`'s guarantees are ours. The
// bookkeeping around the calls never unwinds (no panicking operation on that path; see
// `hot`), allocates only when sampling (under the sampler's guard, which keeps it from
// recursing) and never touches the memory handed out.
unsafe impl<A: GlobalAlloc + 'static> GlobalAlloc for MemSentry<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.allocate(layout, Fill::Uninit) }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.allocate(layout, Fill::Zeroed) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from our caller.
        unsafe { self.free(ptr, layout) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from our caller.
        unsafe { self.reallocate(ptr, layout, new_size) }
    }
}
