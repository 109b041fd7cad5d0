//! **[H]** The bookkeeping the allocator's paths call (`crate::alloc`): no allocation
//! (outside the sampler's guard), no lock another allocation may hold, no panic.
//! `clippy.toml` lists the types and macros that are denied here (see the `deny` on this
//! module in `lib.rs`).
//!
//! Each allocator operation has a fast path and a slow path, and this module gives each
//! its bookkeeping:
//!
//! - **Fast path** ([`count_alloc_fast`], [`count_free_fast`]): the thread's slot (one
//!   TLS load) lets the request through its gate (one compare with the slot's gate,
//!   which is closed while bookkeeping is off, before the thread has a slot, while a task
//!   is current or a scope is open) and jemalloc serves it by its size alone (aligned to
//!   at most 8: `MemSentry` then calls jemalloc's C API with no test of its own); one
//!   single-writer increment. An allocation is counted *before* the inner call, with its
//!   size noted, so that after the call nothing but the pointer is needed; the rare
//!   failure takes the count back ([`alloc_failed`]). Then, for an allocation, the
//!   sampling countdown (`sampler::due`: a TLS subtract and a sign test); for a free, the
//!   placed-sample test (`sampler::at_placed_offset`: a mask and a compare).
//! - **Slow path**, every other case, tried in this order: bookkeeping off (nothing to
//!   count; a placed block must still be freed as one); a task current (the same
//!   increment in the slot kept aside for the task, and the task charged:
//!   [`count_alloc_slow`], [`count_free_slow`]); a request over 4 KiB or 16-aligned from
//!   a thread whose gate is open (`counters::count_by_class`: the same slot's per-class
//!   cells); and the general path (the switch not read yet, a scope open, an
//!   over-aligned request, a thread without a slot of its own: [`count_alloc_after`],
//!   which counts after the inner call, when it knows whether the call failed). With no
//!   task current and no scope open, the fast path never looks at either.
//!
//! Sampling needs the inner allocator (a sample of a placeable request is moved to a
//! block of its own), so these functions only say when to sample or to look further,
//! and `MemSentry` does it.
//!
//! The modules below form layers; each calls only those listed after it:
//! `control` (the switch written, the environment read) → `task` (task and scope
//! tallies) → `sampler` (countdown, placed test, free-side filter, re-entrancy guard) →
//! `counters` (slots, gates, increments) → `switch` (the switch's value) →
//! `size_class`.

pub(crate) mod control;
pub(crate) mod counters;
pub(crate) mod sampler;
pub(crate) mod size_class;
pub(crate) mod switch;
pub(crate) mod task;

use counters::Event;

use crate::sampler::Taken;

// Allocation.

/// The fast path's increment for an allocation of `size` bytes aligned to `align`, made
/// before the inner call: counts a common request (at most 4 KiB, aligned to at most 8)
/// from a thread that counts fast, and notes its size in case the call fails (then
/// [`alloc_failed`]); `false`, counting nothing, for the slow path's cases.
#[inline(always)]
pub(crate) fn count_alloc_fast(size: usize, align: usize) -> bool {
    counters::count_exact(Event::Alloc, size, align) && counters::note_ahead(size)
}

/// What [`count_alloc_slow`] did with an allocation the fast path did not count.
pub(crate) enum SlowAlloc {
    /// Counted ahead of the inner call, as the fast path counts (a task current: in the
    /// task's slot, charged to the task; or a request over 4 KiB or 16-aligned from a
    /// thread whose gate is open: by class): the countdown and the call follow as on the
    /// fast path.
    Ahead,
    /// Bookkeeping is off: the inner call alone.
    Off,
    /// To be counted after the inner call, by [`count_alloc_after`].
    After,
}

/// The slow path's bookkeeping for an allocation, before the inner call.
#[inline(always)]
pub(crate) fn count_alloc_slow(size: usize, align: usize) -> SlowAlloc {
    if switch::is_off() {
        return SlowAlloc::Off;
    }
    if count_in_task(Event::Alloc, size, align)
        || counters::count_by_class(Event::Alloc, size, align)
    {
        counters::note_ahead(size);
        return SlowAlloc::Ahead;
    }
    SlowAlloc::After
}

/// The inner allocator refused an allocation counted ahead: takes the count, the task's
/// charge and the countdown's bytes back, and counts a failure instead. `size`: the
/// request's, or `None` for the size noted when counting.
#[cold]
#[inline(never)]
pub(crate) fn alloc_failed(size: Option<usize>) {
    let size = size.unwrap_or_else(counters::noted_ahead);
    if counters::undo_alloc_ahead(size) {
        task::uncharge_alloc(size);
    }
    sampler::give_back(size);
    counters::count_failure();
}

/// The general path, after the inner call returned `ptr` for `size` bytes aligned to
/// `align` (null: it refused): counts it (or the failure), charges the task and the
/// scope, and returns whether the countdown ran out. Also the allocation half of a
/// `realloc` that [`count_reallocated`] did not count.
#[cold]
#[inline(never)]
pub(crate) fn count_alloc_after(ptr: *mut u8, size: usize, align: usize) -> bool {
    if !ptr.is_null() && counters::count_by_class(Event::Alloc, size, align) {
        return sampler::due(size);
    }
    if !control::active() {
        return false;
    }
    if ptr.is_null() {
        counters::count_failure();
        return false;
    }
    count_general(Event::Alloc, size, align);
    sampler::due(size)
}

/// `realloc`'s allocation half, counted after the inner call returned `ptr` (null: it
/// failed): as the fast path counts, or a task's; `count_alloc_after` for the rest.
/// Returns whether the countdown ran out.
#[inline(always)]
pub(crate) fn count_reallocated(ptr: *mut u8, size: usize, align: usize) -> bool {
    if !ptr.is_null()
        && (counters::count_exact(Event::Alloc, size, align)
            || (!switch::is_off() && count_in_task(Event::Alloc, size, align)))
    {
        return sampler::due(size);
    }
    !switch::is_off() && count_alloc_after(ptr, size, align)
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

// Free.

/// The fast path's increment for a free of `size` bytes aligned to `align`, made before
/// the inner free (a sampled block's record must be gone before its address can be
/// handed out, and sampled, again); `false`, counting nothing, for the slow path's cases.
/// Then a block at the placed offset ([`sampler::at_placed_offset`]) may be a placed
/// sample, to be freed through [`take_placed`].
#[inline(always)]
pub(crate) fn count_free_fast(size: usize, align: usize) -> bool {
    counters::count_exact(Event::Free, size, align)
}

/// The slow path's bookkeeping for a free, in its common cases: `true` with bookkeeping
/// off (nothing to count), or when a task is current and the task's slot counted it (and
/// the task is charged); then the block is freed as after [`count_free_fast`]. `false`:
/// [`count_free_by_class`], then [`count_free_general`].
#[inline(always)]
pub(crate) fn count_free_slow(size: usize, align: usize) -> bool {
    switch::is_off() || count_in_task(Event::Free, size, align)
}

/// Counts a free of a request over 4 KiB (or 16-aligned) by class, from a thread whose
/// gate is open, and returns `true`. Then a placeable block (a 16-aligned one of at most
/// 4 KiB) is freed as after [`count_free_fast`]; a larger one is never placed, but may be
/// sampled: the caller asks [`sampler::maybe_sampled`], and if so calls
/// [`forget_sampled`] before the inner free. `false`: [`count_free_general`].
#[inline(always)]
pub(crate) fn count_free_by_class(size: usize, align: usize) -> bool {
    counters::count_by_class(Event::Free, size, align)
}

/// The general path for the free of the block at `ptr` (the switch not read yet, a scope
/// open, an over-aligned request, a thread without a slot of its own). `true`: the block
/// may be a placed sample, and the caller must free it through [`take_placed`].
#[inline(always)]
pub(crate) fn count_free_general(ptr: *mut u8, size: usize, align: usize) -> bool {
    if count_free_general_slow(size, align) && !sampler::placeable(size, align) {
        if sampler::maybe_sampled(ptr) {
            forget_sampled(ptr);
        }
        return false;
    }
    sampler::at_placed_offset(ptr)
}

/// Takes the record of the block at `ptr`, about to be freed and not placed, out of the
/// live table, if it has one.
#[cold]
#[inline(never)]
pub(crate) fn forget_sampled(ptr: *mut u8) {
    let _ = take_unless_locked(ptr);
}

/// Counts a free of `size` bytes aligned to `align`, whichever path takes it; `false` if
/// bookkeeping is off.
#[inline(always)]
fn count_free(size: usize, align: usize) -> bool {
    count_free_fast(size, align)
        || (!switch::is_off()
            && (count_in_task(Event::Free, size, align) || count_free_rest(size, align)))
}

/// [`count_free`]'s by-class and general paths.
#[cold]
#[inline(never)]
fn count_free_rest(size: usize, align: usize) -> bool {
    count_free_by_class(size, align) || count_free_general_slow(size, align)
}

/// The general path's count of a free; `false` if bookkeeping is off.
#[cold]
#[inline(never)]
fn count_free_general_slow(size: usize, align: usize) -> bool {
    let active = control::active();
    if active {
        count_general(Event::Free, size, align);
    }
    active
}

// Both.

/// The task branch: while a task is current, counts a common request in the task's slot
/// and charges the task; `false`, counting nothing, otherwise.
#[inline(always)]
fn count_in_task(event: Event, size: usize, align: usize) -> bool {
    let counted = counters::count_exact_in_task(event, size, align);
    if counted {
        task::charge_in_task(event, size);
    }
    counted
}

/// The general path's count: the fast path's and the task branch's tests retried (the
/// thread may have claimed its slot meanwhile), else by class in the thread's slot
/// (claimed on its first call) or a shared shard, charged to the task and the scope.
#[inline(always)]
fn count_general(event: Event, size: usize, align: usize) {
    if counters::count_exact(event, size, align) || count_in_task(event, size, align) {
        return;
    }
    // A thread's first general count claims its slot, and the process's first claim
    // follows its first allocation, so the inner allocator has registered its own `fork`
    // handlers by then: ours must come after them (`crate::fork`).
    crate::fork::register_handlers();
    counters::count_in_class(event, size_class::index_of(size, align), size);
    task::charge(event, size, align);
}

// Placed samples and `realloc`.

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
/// by [`count_realloc_free`] if the call fails.
#[inline(always)]
pub(crate) fn before_realloc(ptr: *mut u8, size: usize, align: usize) -> Option<Taken> {
    if !sampler::placeable(size, align) && !switch::is_off() && sampler::maybe_sampled(ptr) {
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
/// `true`: the allocation half is to be counted ([`count_reallocated`], which counts a
/// failure as one); `false` with bookkeeping off.
#[inline(always)]
pub(crate) fn count_realloc_free(
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
