//! **[H]** Per-thread, per-size-class counters.
//!
//! # Design
//!
//! A fixed `static` table of [`MAX_SLOTS`] slots. A thread claims a free slot on its first
//! allocation and is then the slot's **only writer**: an increment is a `load` + `store`,
//! which compiles to one `add` to memory on x86-64 (no `lock` prefix), and no other core
//! writes the slot's cache lines.
//!
//! A slot holds two kinds of counters:
//!
//! - **Per exact size**, for the common request (at most [`EXACT_MAX`] bytes, aligned to
//!   at most 8, which jemalloc serves by size alone: `size_class::by_size_alone`): one
//!   allocation count and one free count per byte size. The fast path is a single
//!   increment at an address computed from the size; the requested bytes and the
//!   class are derived when the counters are read (`count × size`, the size's class), so
//!   they stay exact without a second add or a class lookup per call. 2 × 4,097 × 8 bytes
//!   = 64 KiB of address space per slot, of which a thread touches only the pages of the
//!   sizes it allocates.
//! - **Per size class**, for every other request (larger, over-aligned, or counted in a
//!   shared shard): allocations, requested bytes allocated, frees, requested bytes freed.
//!   Larger requests aligned to at most 16, from a thread whose gate is open, take a
//!   second tier ([`count_by_class`], called out of line): the class comes from the
//!   size alone, and the cells are the owned slot's, with no other lookup. (The second
//!   tier also counts 16-aligned requests of 16 bytes to 4 KiB, in their size's cell.)
//!
//! Slots are **never reset**. When a thread exits, a thread-local destructor gives its
//! slot back, and the next thread to claim it keeps adding to the same monotonic totals.
//! So there is no "retired" accumulator to fold into, nothing a reader can see twice or
//! miss while a thread retires, and sums stay exact across any number of short-lived
//! threads. (DESIGN.md suggests folding a retiring slot into a global total; handing the
//! slot over as it is gives the same sums with one atomic store and no race window.)
//!
//! When all slots are owned, or while a thread is claiming one, or after its slot was
//! given back during thread teardown, increments go to a few shared *fallback* shards
//! with `fetch_add`: slower, never lost.
//!
//! # The gate
//!
//! The fast path makes one test before its increment: `size <= gate` (and the
//! alignment's, `align <= 8`, after which `MemSentry` calls jemalloc's `malloc` or
//! `sdallocx` without a test of their own).
//! The gate is a word at the head of each slot, read through the thread's slot pointer,
//! which always points at a slot: the thread's own, or [`CLOSED`], whose gate is 0. It
//! is [`EXACT_MAX`] in a claimed slot while bookkeeping is on, and 0 otherwise, so that one
//! compare also answers "is bookkeeping on?" and "does this thread own a slot?": the fast
//! path reads no global switch and tests no null pointer.
//!
//! Every write of the switch (`control`) stores the gates of the slots ever claimed, and
//! stores them again if the switch changed meanwhile; a thread claiming a slot sets its
//! gate from the switch with the same store-then-recheck handshake ([`sync_gate`]), so
//! that neither racing flips nor a claim racing a flip can leave a gate open while
//! bookkeeping is off. No lock: a `fork` at any moment leaves nothing held. The owner's
//! fast path reads its gate `Relaxed`: a flip by another thread reaches it a little
//! later, as any flag would; a flip on the owner's own thread, at once.
//!
//! # Ordering
//!
//! Writers store with `Release` and readers load with `Acquire` (both plain `mov` on
//! x86-64). A reader sums **frees before allocations**: if it sees a free, it sees the
//! allocation that happened before it, so live counts it derives never go negative.
//! Single-writer handover is ordered by the `Release` store that frees a slot and the
//! `Acquire` CAS that claims it.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::size_class::{
    LARGE_MIN_INDEX, NUM_CLASSES, by_size_alone, index_of_above_lookup, index_of_size,
    large_usable, natural, size_of_index,
};

/// Number of large buckets, which also count their blocks' page-rounding slack.
const NUM_LARGE: usize = NUM_CLASSES - LARGE_MIN_INDEX;

/// Largest request counted per exact size (one jemalloc serves by its size alone).
pub(crate) const EXACT_MAX: usize = 4096;
/// Entries of a per-exact-size array: sizes `0..=EXACT_MAX`.
const EXACT_LEN: usize = EXACT_MAX + 1;

/// Number of per-thread slots. Threads beyond this many alive at once share the fallback
/// shards. 132 shards × ~73 KiB ≈ 9.4 MiB of zeroed `static` memory (`.bss`: address
/// space, not memory), of which only the pages of slots, sizes and classes in use are
/// ever touched.
pub(crate) const MAX_SLOTS: usize = 128;
/// Shared shards for threads without a slot (a power of two: indexed by a mask).
const FALLBACK_SHARDS: usize = 4;

/// The four counters of one size class in one slot; allocation and its bytes share a
/// cache line.
#[derive(Debug)]
#[repr(C)]
struct ClassCell {
    allocations: AtomicU64,
    allocated_bytes: AtomicU64,
    frees: AtomicU64,
    freed_bytes: AtomicU64,
}

impl ClassCell {
    const fn new() -> Self {
        Self {
            allocations: AtomicU64::new(0),
            allocated_bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
        }
    }
}

/// Bytes a large bucket's blocks occupy beyond the request (page rounding): a large
/// bucket spans many block sizes, so its class bytes are requested bytes plus this.
#[derive(Debug)]
#[repr(C)]
struct SlackCell {
    allocated: AtomicU64,
    freed: AtomicU64,
}

impl SlackCell {
    const fn new() -> Self {
        Self {
            allocated: AtomicU64::new(0),
            freed: AtomicU64::new(0),
        }
    }
}

/// One shard of counters. Aligned to 128 bytes: on x86-64 the adjacent-line prefetcher
/// pulls 64-byte lines in pairs, so 128 keeps two slots from sharing a prefetch unit
/// (Intel 64 and IA-32 Optimization Reference Manual, §3.7.3; crossbeam's `CachePadded`).
#[derive(Debug)]
#[repr(C, align(128))]
struct Shard {
    /// The largest request the fast path counts in this shard's exact-size cells:
    /// [`EXACT_MAX`] while bookkeeping is on, 0 (closed) while it is off or before the
    /// shard is first claimed. (A slot given back may keep an open gate: no thread's slot
    /// pointer points at it until a claim, which sets the gate.)
    /// The fast path's one test compares the request's size with it, so the switch, "this
    /// thread owns a slot" and "the request is small" cost one compare (see the module docs).
    gate: AtomicUsize,
    /// Allocations of each exact size up to [`EXACT_MAX`] (owned slots only).
    exact_allocations: [AtomicU64; EXACT_LEN],
    /// Frees of each exact size up to [`EXACT_MAX`] (owned slots only).
    exact_frees: [AtomicU64; EXACT_LEN],
    classes: [ClassCell; NUM_CLASSES],
    large_slack: [SlackCell; NUM_LARGE],
}

impl Shard {
    const fn new() -> Self {
        Self {
            gate: AtomicUsize::new(0),
            exact_allocations: [const { AtomicU64::new(0) }; EXACT_LEN],
            exact_frees: [const { AtomicU64::new(0) }; EXACT_LEN],
            classes: [const { ClassCell::new() }; NUM_CLASSES],
            large_slack: [const { SlackCell::new() }; NUM_LARGE],
        }
    }

    /// The cell of `class`; indices past the table (impossible for a valid `Layout`)
    /// land in the last class rather than panicking.
    #[inline(always)]
    fn cell(&self, class: usize) -> &ClassCell {
        let last = NUM_CLASSES - 1;
        &self.classes[if class < last { class } else { last }]
    }

    /// The slack cell of large bucket `class` (`class >= LARGE_MIN_INDEX`).
    #[inline]
    fn slack(&self, class: usize) -> &SlackCell {
        let large = class.saturating_sub(LARGE_MIN_INDEX);
        &self.large_slack[if large < NUM_LARGE {
            large
        } else {
            NUM_LARGE - 1
        }]
    }
}

static SLOTS: [Shard; MAX_SLOTS] = [const { Shard::new() }; MAX_SLOTS];
static OWNED: [AtomicBool; MAX_SLOTS] = [const { AtomicBool::new(false) }; MAX_SLOTS];
/// One past the highest slot index ever claimed: readers sum only `SLOTS[..HIGH_WATER]`.
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);
static FALLBACK: [Shard; FALLBACK_SHARDS] = [const { Shard::new() }; FALLBACK_SHARDS];
static FAILED: AtomicU64 = AtomicU64::new(0);
/// Where the owned slot pointer (`FastLocals::owned_slot`) points while the thread has no
/// slot to count in fast: its gate is never opened, so the fast path's test fails. Only
/// the gate's cache line is ever touched (the rest is `.bss` address space).
static CLOSED: Shard = Shard::new();

/// States of [`SLOT`] besides a slot index (`0..MAX_SLOTS`).
const UNCLAIMED: usize = usize::MAX;
/// Claiming in progress: nested allocations (e.g. registering the destructor) use the
/// fallback shards instead of recursing into the claim.
const CLAIMING: usize = usize::MAX - 1;
/// No slot: the table was full, or the slot was given back during thread teardown.
const SHARED: usize = usize::MAX - 2;

/// The thread-locals an allocation's fast path reads, in one thread-local so that one
/// TLS address serves both: after the inner allocator's call, the slot's gate and the
/// countdown are each one instruction away (as two thread-locals, each needs its own
/// address: one instruction more per allocation).
pub(super) struct FastLocals {
    /// The slot this thread owns, or [`CLOSED`]: the only thread-local a free reads.
    owned_slot: Cell<&'static Shard>,
    /// Bytes until this thread's next sample: `super::sampler`'s (see `sampler::due`).
    pub(super) countdown: Cell<i64>,
    /// The size of the last allocation counted ahead ([`note_ahead`]), for
    /// [`undo_alloc_ahead`] should the inner allocator refuse it.
    ahead: Cell<usize>,
}

thread_local! {
    /// `const`-initialised, no destructor: plain TLS accesses (`mov %fs:…`), usable until
    /// the thread is gone. The countdown starts at 0, so a thread's first allocation takes
    /// the sampler's slow path, which seeds its generator and draws the first countdown.
    pub(super) static FAST: FastLocals = const {
        FastLocals { owned_slot: Cell::new(&CLOSED), countdown: Cell::new(0), ahead: Cell::new(0) }
    };
    /// The slot this thread owns while a task is current (then the owned slot pointer is
    /// [`CLOSED`]): read only when the fast path's test fails.
    static TASK_SLOT: Cell<Option<&'static Shard>> = const { Cell::new(None) };
    /// This thread's slot index or one of the states above; read only off the fast path.
    static SLOT: Cell<usize> = const { Cell::new(UNCLAIMED) };
    /// Where this thread's calls are to be counted, as [`set_mode`] last said.
    static WANTED_MODE: Cell<Mode> = const { Cell::new(Mode::Fast) };
    /// Touched once, when a slot is claimed, to register [`SlotRelease`]'s destructor.
    static RELEASE: SlotRelease = const { SlotRelease };
}

/// Gives this thread's slot back when the thread exits.
struct SlotRelease;

impl Drop for SlotRelease {
    fn drop(&mut self) {
        let _ = FAST.try_with(|fast| fast.owned_slot.set(&CLOSED));
        let _ = TASK_SLOT.try_with(|owned| owned.set(None));
        let _ = SLOT.try_with(|slot| {
            let index = slot.replace(SHARED);
            if let Some(owned) = OWNED.get(index) {
                owned.store(false, Ordering::Release);
            }
        });
    }
}

/// Where the current thread's increments go.
enum Target {
    /// A slot this thread owns: plain load + store.
    Owned(&'static Shard),
    /// A shared shard: `fetch_add`.
    Shared(&'static Shard),
}

#[inline]
fn target() -> Target {
    match SLOT.try_with(Cell::get) {
        Ok(index) if index < MAX_SLOTS => Target::Owned(&SLOTS[index]),
        Ok(UNCLAIMED) => claim(),
        _ => Target::Shared(fallback_shard()),
    }
}

/// Where this thread's calls are counted, as [`set_mode`] arranges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No task current, no scope open: the fast path counts in the owned slot.
    Fast,
    /// A task current: the fast path's test fails (its slot pointer is [`CLOSED`]) and
    /// [`count_exact`]'s callers fall through to the task branch, which counts in
    /// the same slot (kept in `TASK_SLOT`) and charges the task.
    Task,
    /// A measured scope open: both the fast path and the task branch fail, so every call
    /// takes the general slow path, which counts it and charges the scope (and the task,
    /// if one is current). The fast path and the task branch stay free of the scope's
    /// bookkeeping.
    Slow,
}

/// Moves this thread's slot pointer for `mode` (and remembers it, for a slot claimed
/// later): with no task and no scope, the fast path never looks at either.
pub(crate) fn set_mode(mode: Mode) {
    let _ = WANTED_MODE.try_with(|wanted| wanted.set(mode));
    let slot = SLOT
        .try_with(Cell::get)
        .ok()
        .filter(|&index| index < MAX_SLOTS)
        .map(|index| &SLOTS[index]);
    let (fast, in_task) = match mode {
        Mode::Fast => (slot, None),
        Mode::Task => (None, slot),
        Mode::Slow => (None, None),
    };
    let _ = FAST.try_with(|locals| locals.owned_slot.set(fast.unwrap_or(&CLOSED)));
    let _ = TASK_SLOT.try_with(|owned| owned.set(in_task));
}

/// A fallback shard chosen by the stack address, which differs between threads and
/// needs no thread-local (which may be gone during teardown).
#[inline]
fn fallback_shard() -> &'static Shard {
    let marker = 0u8;
    let address = core::ptr::addr_of!(marker) as usize;
    &FALLBACK[(address >> 16) & (FALLBACK_SHARDS - 1)]
}

#[cold]
#[inline(never)]
fn claim() -> Target {
    if SLOT.try_with(|slot| slot.set(CLAIMING)).is_err() {
        return Target::Shared(fallback_shard());
    }
    let found = OWNED.iter().position(|owned| {
        !owned.load(Ordering::Relaxed)
            && owned
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    });
    let Some(index) = found else {
        let _ = SLOT.try_with(|slot| slot.set(SHARED));
        return Target::Shared(fallback_shard());
    };
    // Registering the destructor may allocate (std's fallback list; glibc's
    // `__cxa_thread_atexit_impl` uses its own malloc): nested calls see CLAIMING.
    if RELEASE.try_with(|_| ()).is_err() {
        // Teardown already destroyed RELEASE: nobody would give the slot back.
        OWNED[index].store(false, Ordering::Release);
        let _ = SLOT.try_with(|slot| slot.set(SHARED));
        return Target::Shared(fallback_shard());
    }
    // SeqCst, before the gate is set: see `sync_gate`.
    HIGH_WATER.fetch_max(index + 1, Ordering::SeqCst);
    sync_gate(&SLOTS[index]);
    let _ = SLOT.try_with(|slot| slot.set(index));
    // Where the fast path finds the slot: where the thread's mode wants it.
    set_mode(WANTED_MODE.try_with(Cell::get).unwrap_or(Mode::Fast));
    Target::Owned(&SLOTS[index])
}

/// Which pair of counters an event increments.
#[derive(Clone, Copy)]
pub(crate) enum Event {
    Alloc,
    Free,
}

impl SlackCell {
    #[inline(always)]
    fn get(&self, event: Event) -> &AtomicU64 {
        match event {
            Event::Alloc => &self.allocated,
            Event::Free => &self.freed,
        }
    }
}

impl Shard {
    /// The per-exact-size counts `event` increments.
    #[inline(always)]
    fn exact(&self, event: Event) -> &[AtomicU64; EXACT_LEN] {
        match event {
            Event::Alloc => &self.exact_allocations,
            Event::Free => &self.exact_frees,
        }
    }
}

impl ClassCell {
    /// The (count, bytes) counters `event` increments.
    #[inline(always)]
    fn pair(&self, event: Event) -> (&AtomicU64, &AtomicU64) {
        match event {
            Event::Alloc => (&self.allocations, &self.allocated_bytes),
            Event::Free => (&self.frees, &self.freed_bytes),
        }
    }
}

/// Adds `value` to a counter of a slot this thread owns (single writer).
#[inline(always)]
fn add_owned(counter: &AtomicU64, value: u64) {
    // No other thread writes this counter: a plain read-modify-write, published with
    // Release (a plain `mov` on x86-64) for readers.
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(value),
        Ordering::Release,
    );
}

/// Adds `value` to a counter of a shared shard.
#[inline(always)]
fn add_shared(counter: &AtomicU64, value: u64) {
    counter.fetch_add(value, Ordering::Release);
}

/// The fast path's increment: counts a common request (at most [`EXACT_MAX`] bytes,
/// aligned to at most 8: `size_class::by_size_alone`) in the slot this thread owns, and
/// returns `true`; returns `false`, counting nothing, for everything else (bookkeeping
/// off or not started, no slot yet, a task current, a scope open, other requests).
#[inline(always)]
pub(crate) fn count_exact(event: Event, size: usize, align: usize) -> bool {
    // A const-initialised `Cell` without a destructor: `try_with` cannot fail.
    FAST.try_with(|fast| fast.owned_slot.get())
        .is_ok_and(|shard| count_exact_in(shard, event, size, align))
}

/// Notes the size of an allocation counted ahead of the inner allocator's call, for
/// [`undo_alloc_ahead`] should the call fail; returns `true`. (Counted ahead, the size
/// need not be kept in a register across the call.)
#[inline(always)]
pub(crate) fn note_ahead(size: usize) -> bool {
    let _ = FAST.try_with(|fast| fast.ahead.set(size));
    true
}

/// The size the last allocation counted ahead noted (see [`undo_alloc_ahead`]).
#[inline(always)]
pub(crate) fn noted_ahead() -> usize {
    FAST.try_with(|fast| fast.ahead.get()).unwrap_or(0)
}

/// Takes back the count of an allocation of `size` bytes counted ahead of the inner
/// allocator's call ([`count_exact`], [`count_exact_in_task`] or [`count_by_class`],
/// then [`note_ahead`]) that the call then refused; without the layout, the caller finds
/// the size in [`noted_ahead`]. Where it was counted follows from the size and the mode:
/// the task's slot while a task is current, the owned one otherwise (only this thread
/// moves its slot pointers, and not in between); per exact size up to [`EXACT_MAX`], by
/// class above. Returns whether a task is current (whose charge the caller takes back).
///
/// The note is one word per thread: an inner allocator that allocates through the global
/// allocator in turn, or a signal handler that allocates, overwrites it, and a failure
/// of the outer call would then take back the wrong size. (Neither happens with jemalloc:
/// it never calls back, and allocating in a signal handler is undefined in any case.)
#[inline(always)]
pub(crate) fn undo_alloc_ahead(size: usize) -> bool {
    FAST.try_with(|fast| {
        let in_task = TASK_SLOT.try_with(Cell::get).ok().flatten();
        let slot = in_task.unwrap_or_else(|| fast.owned_slot.get());
        add_by_size(slot, Event::Alloc, size, take_back_owned);
        in_task.is_some()
    })
    .unwrap_or(false)
}

/// Takes `value` back from a counter of a slot this thread owns (single writer): the
/// inverse of [`add_owned`].
#[inline(always)]
fn take_back_owned(counter: &AtomicU64, value: u64) {
    add_owned(counter, value.wrapping_neg());
}

/// [`count_exact`] while a task is current: counts a common request the same way in the
/// slot kept in `TASK_SLOT` (the caller charges the task); `false`, counting nothing,
/// with no task current.
#[inline(always)]
pub(crate) fn count_exact_in_task(event: Event, size: usize, align: usize) -> bool {
    let Ok(Some(shard)) = TASK_SLOT.try_with(Cell::get) else {
        return false;
    };
    count_exact_in(shard, event, size, align)
}

/// Counts a common request in `shard`'s exact-size cells (one increment) if `shard`'s
/// gate is open; `false`, counting nothing, for any other request or a closed gate.
#[inline(always)]
fn count_exact_in(shard: &Shard, event: Event, size: usize, align: usize) -> bool {
    // `Relaxed`: a gate closed by another thread takes effect here a little later, as a
    // switch flipped by another thread always does.
    let gate = shard.gate.load(Ordering::Relaxed);
    // SAFETY: gates are only ever stored from `gate_for`, which returns 0 or EXACT_MAX.
    // (Telling the optimizer so removes a second compare, for the index below.)
    unsafe { core::hint::assert_unchecked(gate <= EXACT_MAX) };
    if size > gate || !by_size_alone(align) {
        // Without it, inlined into a loop, the compiler lays the fast paths out as taken
        // jumps to calls they share with the other ways; through a shim the code is the
        // same either way.
        core::hint::cold_path();
        return false;
    }
    // In bounds: size <= gate <= EXACT_MAX (the compiler sees it and drops the check).
    add_owned(&shard.exact(event)[size], 1);
    true
}

/// The gate value for bookkeeping on (`true`) or off.
const fn gate_for(on: bool) -> usize {
    if on { EXACT_MAX } else { 0 }
}

/// Sets the gate of a slot this thread has just claimed from the switch.
///
/// With [`publish_gates`] this is a store-fence-load handshake (both sides `SeqCst`):
/// the claimer raises `HIGH_WATER` over its slot, stores the gate, then reads the switch
/// again; the switch's writer stores the switch, then reads `HIGH_WATER` and stores the
/// gates below it. Either the claimer's second read sees the new switch (and it stores
/// again), or the writer's read of `HIGH_WATER` sees the slot, and its gate store comes
/// later than the claimer's in the gate's modification order. Either way the gate ends
/// agreeing with the last switch value.
fn sync_gate(shard: &Shard) {
    loop {
        let on = super::switch::is_on_seq_cst();
        shard.gate.store(gate_for(on), Ordering::SeqCst);
        if super::switch::is_on_seq_cst() == on {
            return;
        }
    }
}

/// Opens (`on`) or closes the gates of every slot ever claimed, after the switch was
/// read (`SeqCst`) as `on`. Concurrent calls may leave a mix; `control` publishes again
/// until the switch reads the same after publishing as before.
pub(crate) fn publish_gates(on: bool) {
    let used = HIGH_WATER.load(Ordering::SeqCst).min(MAX_SLOTS);
    for shard in &SLOTS[..used] {
        shard.gate.store(gate_for(on), Ordering::SeqCst);
    }
}

/// Counts one event of `size` bytes in `shard`'s cells of `class`, with `add`.
#[inline(always)]
fn add_to_class(shard: &Shard, event: Event, class: usize, size: usize, add: fn(&AtomicU64, u64)) {
    let (count, total) = shard.cell(class).pair(event);
    add(count, 1);
    // `usize` is at most 64 bits on every supported target: lossless.
    add(total, size as u64);
    if class >= LARGE_MIN_INDEX {
        // Large blocks are whole pages: also record how far above the request.
        add(
            shard.slack(class).get(event),
            large_usable(size).saturating_sub(size) as u64,
        );
    }
}

/// Counts a request the fast path leaves that jemalloc still serves by size
/// (`size_class::natural`: more than [`EXACT_MAX`] bytes aligned to at most 16, or 16-byte
/// aligned ones of at least 16 bytes) in the slot this thread owns, when its gate is open
/// (as [`count_exact`]), and returns `true`; `false`, counting nothing, for anything
/// else. Up to [`EXACT_MAX`] bytes the count goes to the size's cell as the fast path's
/// does; above, to its class's cells, the class from the size alone (a 64-entry table up
/// to 64 KiB, arithmetic above). It skips the general path's slot lookup (`target`) and
/// class lookup (`size_class::index_of`): ~25 instead of ~100 instructions a call.
#[inline(always)]
pub(crate) fn count_by_class(event: Event, size: usize, align: usize) -> bool {
    // A const-initialised `Cell` without a destructor: `try_with` cannot fail.
    FAST.try_with(|fast| fast.owned_slot.get())
        .is_ok_and(|shard| {
            if shard.gate.load(Ordering::Relaxed) == 0 || !natural(size, align) {
                return false;
            }
            add_by_size(shard, event, size, add_owned);
            true
        })
}

/// Counts one event of `size` bytes, of a request jemalloc serves by its size alone, in
/// `shard` with `add`: in the size's cell up to [`EXACT_MAX`] bytes (the count alone),
/// in its class's cells above. Counting ([`count_by_class`]) and taking back
/// ([`undo_alloc_ahead`]) go through here, so they agree on where.
#[inline(always)]
fn add_by_size(shard: &Shard, event: Event, size: usize, add: fn(&AtomicU64, u64)) {
    match shard.exact(event).get(size) {
        Some(count) => add(count, 1),
        None => add_to_class(shard, event, index_of_above_lookup(size), size, add),
    }
}

/// The general path: counts one `event` of `size` requested bytes in `class`, in the
/// slot this thread owns (claiming one on its first call) or in a shared shard.
#[inline(always)]
pub(crate) fn count_in_class(event: Event, class: usize, size: usize) {
    match target() {
        Target::Owned(shard) => add_to_class(shard, event, class, size, add_owned),
        Target::Shared(shard) => add_to_class(shard, event, class, size, add_shared),
    }
}

/// Counts one allocation that the inner allocator refused (returned null).
#[inline]
pub(crate) fn count_failure() {
    FAILED.fetch_add(1, Ordering::Relaxed);
}

/// Summed counters of one size class. Plain data, no allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClassSums {
    pub(crate) allocations: u64,
    pub(crate) allocated_bytes: u64,
    /// Bytes of the blocks handed out (the requests rounded up to their class).
    pub(crate) allocated_class_bytes: u64,
    pub(crate) frees: u64,
    pub(crate) freed_bytes: u64,
    pub(crate) freed_class_bytes: u64,
}

/// Sums every shard into `out` (one entry per class), without allocating.
///
/// Frees are read before allocations (see the module docs), so for each class
/// `allocations >= frees` and `allocated_bytes >= freed_bytes` hold in the result.
pub(crate) fn read_into(out: &mut [ClassSums; NUM_CLASSES]) {
    let used = HIGH_WATER.load(Ordering::Acquire).min(MAX_SLOTS);
    let shards = || SLOTS[..used].iter().chain(FALLBACK.iter());
    // (count, requested bytes, slack) per class, frees first.
    let mut frees = [(0u64, 0u64, 0u64); NUM_CLASSES];
    let mut allocations = [(0u64, 0u64, 0u64); NUM_CLASSES];
    for (event, sums) in [(Event::Free, &mut frees), (Event::Alloc, &mut allocations)] {
        for shard in shards() {
            for (size, count) in shard.exact(event).iter().enumerate() {
                let count = count.load(Ordering::Acquire);
                if count != 0 {
                    // Counted here only if jemalloc serves it by its size alone (aligned
                    // to at most 8, or naturally to 16): its alignment did not move it.
                    let sum = &mut sums[index_of_size(size)];
                    sum.0 = sum.0.wrapping_add(count);
                    // `usize` is at most 64 bits on every supported target: lossless.
                    sum.1 = sum.1.wrapping_add(count.wrapping_mul(size as u64));
                }
            }
            for (class, (sum, cell)) in sums.iter_mut().zip(&shard.classes).enumerate() {
                let (count, bytes) = cell.pair(event);
                sum.0 = sum.0.wrapping_add(count.load(Ordering::Acquire));
                sum.1 = sum.1.wrapping_add(bytes.load(Ordering::Acquire));
                if class >= LARGE_MIN_INDEX {
                    let slack = shard.slack(class).get(event).load(Ordering::Acquire);
                    sum.2 = sum.2.wrapping_add(slack);
                }
            }
        }
    }
    for (class, out) in out.iter_mut().enumerate() {
        let class_bytes = |(count, bytes, slack): (u64, u64, u64)| {
            if class < LARGE_MIN_INDEX {
                count.wrapping_mul(size_of_index(class))
            } else {
                bytes.wrapping_add(slack)
            }
        };
        *out = ClassSums {
            allocations: allocations[class].0,
            allocated_bytes: allocations[class].1,
            allocated_class_bytes: class_bytes(allocations[class]),
            frees: frees[class].0,
            freed_bytes: frees[class].1,
            freed_class_bytes: class_bytes(frees[class]),
        };
    }
}

/// Number of allocations the inner allocator refused.
pub(crate) fn failures() -> u64 {
    FAILED.load(Ordering::Relaxed)
}

/// Whether this thread's fast path is open: it owns a slot whose gate is open and no task
/// is current (for tests).
pub(crate) fn fast_path_open() -> bool {
    FAST.try_with(|fast| fast.owned_slot.get().gate.load(Ordering::Relaxed) != 0)
        .unwrap_or(false)
}

/// In the child of a `fork`: gives back the slots of the parent's other threads, which
/// do not exist in the child (`fork` copies the calling thread only), so that the child's
/// threads can claim them. Their counts stay, as a thread's do when it exits.
pub(crate) fn release_slots_of_other_threads() {
    let own = SLOT.try_with(Cell::get).unwrap_or(SHARED);
    for (index, owned) in OWNED.iter().enumerate() {
        if index != own {
            owned.store(false, Ordering::Release);
        }
    }
}

/// Slots currently owned by live threads (for diagnostics and tests).
pub(crate) fn owned_slots() -> usize {
    OWNED
        .iter()
        .filter(|owned| owned.load(Ordering::Relaxed))
        .count()
}
