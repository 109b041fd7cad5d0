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
// is off, before the thread has a slot, or while a task is current) and jemalloc serves
// it by its size alone (`size_class::by_size_alone`: aligned to at most 8; `MemSentry`
// then calls jemalloc's C API with no test of its own); one single-writer increment;
// then, on allocation, the sampling countdown (a TLS subtract and a sign test), on free,
// the placed-sample test (a mask and a compare of the address:
// `sampler::at_placed_offset`).
// Whatever fails the gate loads the switch once: off, only the placed-sample test (a
// placed block must be freed as one, whatever the switch says); otherwise the task
// branch (`counters::try_record_in_task`), which also charges the task, or the
// second tier, for requests over 4 KiB (or 16-aligned ones) from a thread whose gate is
// open (`counters::try_record_by_class`: the same slot's cells), or the general slow
// path. With no task current, task attribution costs the fast path nothing.
//
// For an allocation, the fast path, the task branch and the second tier run *before*
// the inner allocator's call (`on_alloc_ahead`, `on_alloc_ahead_in_task_or_by_class`):
// they count the request and run the countdown ahead, so that after the call nothing
// but the pointer is needed, and no register is saved across it; the rare failure takes
// both back (`on_alloc_ahead_failed`; BENCHMARKS.md, "Counting ahead"). The general
// slow path counts after the call, when it knows whether the call failed.
//
// Sampling needs the inner allocator (a sample of a placeable request is moved to a
// block of its own), so the entry points only say when to sample or to look further,
// and `MemSentry` (`crate::alloc`) does it. `MemSentry` calls the pieces so that every
// call after the fast path's is in tail position: a free's fast path then keeps nothing
// across a call, and neither saves registers it does not need (BENCHMARKS.md, "The call
// shape").

/// The fast path of the bookkeeping for an allocation of `size` bytes aligned to `align`
/// that returned `ptr` (null: the inner allocator refused): counts a successful common
/// allocation and returns `true` (then the caller asks [`sampler::due`] whether to hand
/// the block to `MemSentry::sample`); `false`, counting nothing, for everything else:
/// with bookkeeping off, nothing to do; otherwise [`on_alloc_in_task`], then
/// [`on_alloc_slow`]. For `realloc`, which counts after the call; `alloc` counts ahead
/// ([`on_alloc_ahead`]).
#[inline(always)]
pub(crate) fn on_alloc_fast(ptr: *mut u8, size: usize, align: usize) -> bool {
    !ptr.is_null() && counters::try_record_fast(Event::Alloc, size, align)
}

/// What [`on_alloc_ahead`] did.
pub(crate) enum Ahead {
    /// Counted; the caller hands out the block, or calls [`on_alloc_ahead_failed`] if
    /// there is none.
    Counted,
    /// Counted, and the countdown ran out: as `Counted`, and the caller hands the block
    /// to `MemSentry::sample`.
    Due,
    /// Bookkeeping is off: nothing to do.
    Off,
    /// Nothing done: the allocation is for [`on_alloc_ahead_in_task_or_by_class`] (after
    /// `on_alloc_ahead`), or to be counted after the inner call by [`on_alloc_slow`].
    Not,
}

/// The fast path of the bookkeeping for an allocation of `size` bytes aligned to `align`,
/// run *before* the inner allocator's call: counts a common request and runs the
/// sampling countdown. The call's failure, rare, is then undone by
/// [`on_alloc_ahead_failed`].
#[inline(always)]
pub(crate) fn on_alloc_ahead(size: usize, align: usize) -> Ahead {
    if !counters::try_record_alloc_ahead(size, align) {
        return if mode::is_off() {
            Ahead::Off
        } else {
            Ahead::Not
        };
    }
    due_ahead(size)
}

/// [`on_alloc_ahead`]'s task branch and second tier, for when it said `Not`: as
/// [`on_alloc_in_task`], or for a request over 4 KiB (or 16-aligned) as
/// [`on_alloc_slow`]'s second tier, before the inner call; `Counted`, `Due` or `Not`.
#[inline(always)]
pub(crate) fn on_alloc_ahead_in_task_or_by_class(size: usize, align: usize) -> Ahead {
    if !counters::try_record_alloc_in_task_ahead(size, align)
        && !counters::try_record_alloc_by_class_ahead(size, align)
    {
        return Ahead::Not;
    }
    due_ahead(size)
}

/// For an allocation of `size` bytes counted ahead: runs the countdown.
#[inline(always)]
fn due_ahead(size: usize) -> Ahead {
    if sampler::due(size) {
        Ahead::Due
    } else {
        Ahead::Counted
    }
}

/// The inner allocator refused an allocation [`on_alloc_ahead`] (or
/// [`on_alloc_ahead_in_task_or_by_class`]) counted: takes the count and the countdown's
/// bytes back and counts a failure instead, as the slow path counts one. `size`: the
/// request's, or `None` for the size noted when counting.
#[cold]
#[inline(never)]
pub(crate) fn on_alloc_ahead_failed(size: Option<usize>) {
    let size = size.unwrap_or_else(counters::noted_ahead);
    counters::undo_alloc_ahead(size);
    sampler::give_back(size);
    counters::record_failure();
}

/// The task branch of the bookkeeping for an allocation: as [`on_alloc_fast`], while a
/// task is current (and charges the task).
#[inline(always)]
pub(crate) fn on_alloc_in_task(ptr: *mut u8, size: usize, align: usize) -> bool {
    !ptr.is_null() && counters::try_record_in_task(Event::Alloc, size, align)
}

/// Everything [`on_alloc_fast`] and [`on_alloc_in_task`] do not handle: the switch off or
/// not read yet, a failed allocation, a request or thread the fast counters do not cover.
/// `true`: as after [`on_alloc_fast`], the countdown ran out.
#[cold]
#[inline(never)]
pub(crate) fn on_alloc_slow(ptr: *mut u8, size: usize, align: usize) -> bool {
    if !ptr.is_null() && counters::try_record_by_class(Event::Alloc, size, align) {
        return sampler::due(size);
    }
    if !mode::active() {
        return false;
    }
    if ptr.is_null() {
        counters::record_failure();
        return false;
    }
    // The fast path's tests, retried (the thread may have claimed its slot meanwhile);
    // the task branch charges the task itself.
    if !counters::try_record_fast(Event::Alloc, size, align)
        && !counters::try_record_in_task(Event::Alloc, size, align)
    {
        counters::record_alloc(size_class::index_of(size, align), size);
        task::charge(Event::Alloc, size, align);
    }
    sampler::due(size)
}

/// For `MemSentry` when the countdown ran out: whether to sample this allocation of
/// `size` bytes, and at which rate; `None` when not, or when this thread is inside the
/// sampler already (its own allocations are counted, never sampled). While the returned
/// guard lives, nested allocations are not sampled.
#[inline]
pub(crate) fn take_sample(size: usize) -> Option<(sampler::Guard, u64)> {
    let mut guard = sampler::Guard::enter()?;
    let rate = sampler::take_sample(&mut guard, size)?;
    Some((guard, rate))
}

/// Records the sample of the block at `ptr` of `size` bytes taken at `rate` (under the
/// guard [`take_sample`] returned). `marker` is an address in the frame of the
/// allocator's sampling hook: the frames at or below it are the sampler's, and left out
/// of the stack.
#[inline(never)]
pub(crate) fn record_sample(ptr: *mut u8, size: usize, rate: u64, marker: usize) {
    // The sample belongs to the current task; the sampler's own allocations (its tables)
    // are charged to no task and counted in no scope.
    let task = task::current();
    let suspended = task::suspend();
    crate::sampler::record(ptr as usize, size, rate, marker, task);
    task::resume(suspended);
}

/// The fast path of the bookkeeping for a free of `size` bytes aligned to `align`, run
/// *before* the inner free (a sampled block's record must be gone before its address
/// can be handed out, and sampled, again): counts it and returns `true`; `false`,
/// counting nothing, for everything else. After `true`, a block at the placed offset
/// ([`sampler::at_placed_offset`]) may be a placed sample, to be freed through
/// [`take_placed`]; after `false`, [`on_free_off_or_in_task`], then [`on_free_slow`].
#[inline(always)]
pub(crate) fn on_free_fast(size: usize, align: usize) -> bool {
    counters::try_record_fast(Event::Free, size, align)
}

/// For a free [`on_free_fast`] did not count: `true` with bookkeeping off, or when the
/// task branch counted it (and charged the task); then as after [`on_free_fast`].
#[inline(always)]
pub(crate) fn on_free_off_or_in_task(size: usize, align: usize) -> bool {
    mode::is_off() || counters::try_record_in_task(Event::Free, size, align)
}

/// The second tier for a free that neither [`on_free_fast`] nor
/// [`on_free_off_or_in_task`] took: counts a request over 4 KiB (or 16-aligned) by class
/// ([`counters::try_record_by_class`]) and returns `true`. Then a placeable block (a
/// 16-aligned one of at most 4 KiB) is freed as after [`on_free_fast`]; a larger one is
/// never placed (`EXACT_MAX` = `PLACE_MAX`), but may be sampled: the caller asks
/// [`sampler::maybe_sampled`], and if so calls [`forget_sampled`] before the inner free.
/// `false`: [`on_free_slow`].
#[inline(always)]
pub(crate) fn on_free_by_class(size: usize, align: usize) -> bool {
    counters::try_record_by_class(Event::Free, size, align)
}

/// Takes the record of the block at `ptr`, about to be freed and not placed, out of the
/// live table, if it has one.
#[cold]
#[inline(never)]
pub(crate) fn forget_sampled(ptr: *mut u8) {
    let _ = take_unless_locked(ptr);
}

/// Bookkeeping for the free of the block at `ptr` that neither [`on_free_fast`],
/// [`on_free_off_or_in_task`] nor [`on_free_by_class`] took. `true`: the block may be a
/// placed sample, and the caller must free it through [`take_placed`].
#[inline(always)]
pub(crate) fn on_free_slow(ptr: *mut u8, size: usize, align: usize) -> bool {
    if count_free_general(size, align) && !sampler::placeable(size, align) {
        if sampler::maybe_sampled(ptr) {
            forget_sampled(ptr);
        }
        return false;
    }
    sampler::at_placed_offset(ptr)
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
    counters::try_record_by_class(Event::Free, size, align) || count_free_general(size, align)
}

/// Counts a free that neither the fast path nor the second tier counted (the switch not
/// read yet, a task current, an over-aligned request, a thread without a slot of its
/// own); `false` if bookkeeping is off.
#[cold]
#[inline(never)]
fn count_free_general(size: usize, align: usize) -> bool {
    let active = mode::active();
    if active
        && !counters::try_record_fast(Event::Free, size, align)
        && !counters::try_record_in_task(Event::Free, size, align)
    {
        counters::record_free(size_class::index_of(size, align), size);
        task::charge(Event::Free, size, align);
    }
    active
}

/// For a block at `ptr` of `size` bytes aligned to `align` that is about to be freed or
/// reallocated, and lies at the placed-sample offset: takes its record out if it is a
/// placed sample (then the caller frees the block it was placed in, see
/// [`sampler::placed_layout`], or puts the record back with [`put_back`]); `None` if not
/// (and, without looking, while this thread holds a table lock: [`take_unless_locked`]).
#[cold]
#[inline(never)]
pub(crate) fn take_placed(ptr: *mut u8, size: usize, align: usize) -> Option<Taken> {
    if !sampler::placeable(size, align) || !sampler::maybe_sampled(ptr) {
        return None;
    }
    // A record of another size is stale (a block freed unseen while bookkeeping was
    // off): taken out all the same, and the block is not a placed sample.
    take_unless_locked(ptr).filter(|taken| crate::sampler::is_placed(ptr as usize, taken.size()))
}

/// Before a `realloc` of `ptr` (not a placed sample) of `size` bytes aligned to `align`:
/// takes its sample record out (the old block may be freed by the call), to be put back
/// by [`on_realloc_free`] if the call fails.
#[inline(always)]
pub(crate) fn before_realloc(ptr: *mut u8, size: usize, align: usize) -> Option<Taken> {
    if !sampler::placeable(size, align) && !mode::is_off() && sampler::maybe_sampled(ptr) {
        take_unless_locked(ptr)
    } else {
        None
    }
}

/// Takes the record of the block at `ptr` out of the live table, if there is one; `None`
/// without looking while this thread holds one of the table's locks (the tables free only
/// their own memory then, never a sampled block, and the lookup could need that very
/// lock). Allocates nothing.
#[cold]
#[inline(never)]
fn take_unless_locked(ptr: *mut u8) -> Option<Taken> {
    if crate::spin::held_by_this_thread() {
        return None;
    }
    crate::sampler::take(ptr as usize)
}

/// The free half of the bookkeeping for a `realloc` of `old_ptr` (`old_size` bytes
/// aligned to `align`) that returned `new_ptr`: when it succeeded, counts the free;
/// when it failed, puts the old block's sample record, if any, back (no free happened).
/// `true`: the allocation half is to be done as for `alloc` (which counts a failure as
/// one); `false` with bookkeeping off.
#[inline(always)]
pub(crate) fn on_realloc_free(
    old_ptr: *mut u8,
    taken: Option<Taken>,
    new_ptr: *mut u8,
    old_size: usize,
    align: usize,
) -> bool {
    if new_ptr.is_null() {
        if let Some(taken) = taken {
            put_back(old_ptr, taken);
        }
        return true;
    }
    // The old block's sample, if any, was taken out by `before_realloc`.
    count_free(old_size, align)
}

/// Counts the free half of moving a placed sample of `size` bytes aligned to `align` in
/// a `realloc` (its allocation half goes through `alloc`).
#[cold]
#[inline(never)]
pub(crate) fn count_moved_free(size: usize, align: usize) {
    let _ = count_free(size, align);
}

/// Puts back a record [`take_placed`] or [`before_realloc`] took out, for a `realloc`
/// that failed.
#[cold]
#[inline(never)]
pub(crate) fn put_back(ptr: *mut u8, taken: Taken) {
    // Inserting allocates: not to be sampled. Already inside the sampler (a `realloc`
    // from a profile's symbolization, say), the guard is held already; the record goes
    // back either way, since a placed block must stay known until it is freed.
    let _guard = sampler::Guard::enter();
    crate::sampler::put_back(ptr as usize, taken);
}
