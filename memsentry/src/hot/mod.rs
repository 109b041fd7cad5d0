//! **[H]** Everything reachable from `GlobalAlloc`: no allocation (outside the sampler's
//! guard), no lock another allocation may hold, no panic. `clippy.toml` lists the types
//! and macros that are denied here (see the `deny` on this module in `lib.rs`).

pub(crate) mod counters;
pub(crate) mod mode;
pub(crate) mod sampler;
pub(crate) mod size_class;
pub(crate) mod task;

use counters::Event;

use crate::sampler::Taken;

// Each entry point below is a short inlined fast path with out-of-line calls for
// everything else. The fast path is: the thread's slot (one TLS load) lets the request
// through its gate (one compare with the slot's gate, which is closed while bookkeeping
// is off, before the thread has a slot, or while a task is current) and the alignment is
// common (one compare); one single-writer increment; then, on allocation, the sampling
// countdown (a TLS subtract and a sign test), on free, the sampled-block filter (one
// load and a bit test). Whatever fails the gate loads the switch once: off, nothing
// more; otherwise the task branch (`counters::try_record_fast`), which also charges the
// task, or the out-of-line slow path. With no task current, task attribution costs the
// fast path nothing.

/// Bookkeeping for an allocation of `size` bytes aligned to `align` that returned `ptr`
/// (null: the inner allocator refused).
#[inline(always)]
pub(crate) fn on_alloc(ptr: *mut u8, size: usize, align: usize) {
    if !ptr.is_null() && counters::try_record_fast(Event::Alloc, size, align) {
        if sampler::due(size) {
            on_sample_due(ptr, size);
        }
    } else if !mode::is_off() {
        if !ptr.is_null() && counters::try_record_in_task(Event::Alloc, size, align) {
            if sampler::due(size) {
                on_sample_due(ptr, size);
            }
        } else {
            on_alloc_slow(ptr, size, align);
        }
    }
}

/// Everything the fast path of [`on_alloc`] does not handle: the switch off or not read
/// yet, a failed allocation, a request or thread the fast counters do not cover.
#[cold]
#[inline(never)]
fn on_alloc_slow(ptr: *mut u8, size: usize, align: usize) {
    if !mode::active() {
        return;
    }
    if ptr.is_null() {
        counters::record_failure();
        return;
    }
    // The fast path's tests, retried (the thread may have claimed its slot meanwhile);
    // the task branch charges the task itself.
    if !counters::try_record_fast(Event::Alloc, size, align)
        && !counters::try_record_in_task(Event::Alloc, size, align)
    {
        counters::record_alloc(size_class::index_of(size, align), size);
        task::charge(Event::Alloc, size);
    }
    if sampler::due(size) {
        on_sample_due(ptr, size);
    }
}

/// The countdown ran out: maybe record a sample for the block at `ptr`.
///
/// Never inlined: its frame marks where the sampler's own frames end in a captured
/// stack (everything called from here is trimmed).
#[cold]
#[inline(never)]
fn on_sample_due(ptr: *mut u8, size: usize) {
    // Nested allocations (the sampler's own) are counted, never sampled.
    let Some(_guard) = sampler::Guard::enter() else {
        return;
    };
    if let Some(rate) = sampler::take_sample(size) {
        let marker = 0u8;
        // The marker's address lies in this frame: frames below it are the sampler's.
        let frame = core::hint::black_box(core::ptr::addr_of!(marker)) as usize;
        // The sample belongs to the current task; the sampler's own allocations (its
        // tables) are charged to no task.
        let task = task::set_current(0);
        crate::sampler::record(ptr as usize, size, rate, frame, task);
        task::set_current(task);
    }
}

/// Bookkeeping for freeing the block at `ptr` of `size` bytes aligned to `align`. Runs
/// *before* the inner free: a sampled block's record must be gone before its address
/// can be handed out (and sampled) again.
#[inline(always)]
pub(crate) fn on_free(ptr: *mut u8, size: usize, align: usize) {
    if count_free(size, align) && sampler::maybe_sampled(ptr) {
        on_maybe_sampled_free(ptr);
    }
}

/// Counts a free of `size` bytes aligned to `align`; `false` if bookkeeping is off.
#[inline(always)]
fn count_free(size: usize, align: usize) -> bool {
    counters::try_record_fast(Event::Free, size, align)
        || (!mode::is_off()
            && (counters::try_record_in_task(Event::Free, size, align)
                || count_free_slow(size, align)))
}

/// Everything the fast path of [`count_free`] does not handle.
#[cold]
#[inline(never)]
fn count_free_slow(size: usize, align: usize) -> bool {
    let active = mode::active();
    if active
        && !counters::try_record_fast(Event::Free, size, align)
        && !counters::try_record_in_task(Event::Free, size, align)
    {
        counters::record_free(size_class::index_of(size, align), size);
        task::charge(Event::Free, size);
    }
    active
}

#[cold]
#[inline(never)]
fn on_maybe_sampled_free(ptr: *mut u8) {
    // Under the guard, the table may be locked by this very thread, and nothing freed
    // there was ever sampled (it was allocated under the guard too).
    if let Some(_guard) = sampler::Guard::enter() {
        let _ = crate::sampler::take(ptr as usize);
    }
}

/// Before a `realloc` of `ptr`: takes its sample record out (the old block may be freed
/// by the call), to be put back by [`on_realloc`] if the call fails.
#[inline(always)]
pub(crate) fn before_realloc(ptr: *mut u8) -> Option<Taken> {
    if !mode::is_off() && sampler::maybe_sampled(ptr) {
        take_for_realloc(ptr)
    } else {
        None
    }
}

#[cold]
#[inline(never)]
fn take_for_realloc(ptr: *mut u8) -> Option<Taken> {
    let _guard = sampler::Guard::enter()?;
    crate::sampler::take(ptr as usize)
}

/// Bookkeeping for a `realloc` of `old_ptr` from `old_size` to `new_size` that returned
/// `new_ptr`: a free plus an allocation when it succeeded; when it failed, a failure
/// (and no free), with the old block's sample record, if any, put back.
#[inline(always)]
pub(crate) fn on_realloc(
    old_ptr: *mut u8,
    taken: Option<Taken>,
    new_ptr: *mut u8,
    old_size: usize,
    new_size: usize,
    align: usize,
) {
    if new_ptr.is_null() {
        if let Some(taken) = taken {
            put_back(old_ptr, taken);
        }
        on_alloc_slow(new_ptr, new_size, align);
    } else if count_free(old_size, align) {
        // The old block's sample, if any, was taken out by `before_realloc`.
        on_alloc(new_ptr, new_size, align);
    }
}

#[cold]
#[inline(never)]
fn put_back(ptr: *mut u8, taken: Taken) {
    if let Some(_guard) = sampler::Guard::enter() {
        crate::sampler::put_back(ptr as usize, taken);
    }
}
