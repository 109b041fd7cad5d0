//! **[H]** What this thread allocates and frees while a tracked task is polled on it, or
//! while a measured scope (`crate::budget`) is open on it.
//!
//! One thread-local block, constant-initialised and without a destructor (reading it
//! cannot fail or allocate). While a task is current, the thread's slot pointer is moved
//! aside (`counters::set_mode`), so the fast path's first test fails into its task
//! branch, which counts as usual and adds to this block with plain (non-atomic) adds,
//! since only this thread touches it; requests the fast path does not take reach the
//! slow paths, which charge here too. While a scope is open, the task branch is closed
//! too: every call takes the general slow path, which adds to the scope's counts and
//! keeps its peak, so neither the fast path nor the task branch carries the scope's
//! bookkeeping. With neither a task nor a scope, the fast path runs its one test and never
//! looks here: task attribution and scopes cost it nothing then.
//! `crate::task` moves the task's tally into the task's shared statistics at every switch
//! (poll start, poll end, nested scopes): one set of atomic adds per poll, none per
//! allocation. A scope's counts, with its running peak of net live bytes, stay here until
//! `crate::budget` takes them out (at the scope's end, or at the end of each poll of a
//! measured future).

use core::cell::Cell;

use super::counters::{Event, Mode};

/// The thread's current task and what it allocated and freed since the last switch, and
/// the open scope's counts.
#[derive(Debug)]
pub(crate) struct Tally {
    /// The current task's index (`crate::task` numbers them from 1); 0: none.
    task: Cell<u32>,
    allocations: Cell<u64>,
    allocated_bytes: Cell<u64>,
    frees: Cell<u64>,
    freed_bytes: Cell<u64>,
    /// Whether a scope is open (and counted below).
    scope_open: Cell<bool>,
    scope: ScopeCells,
}

/// A scope's counts as the thread keeps them while it is open.
#[derive(Debug)]
struct ScopeCells {
    allocations: Cell<u64>,
    frees: Cell<u64>,
    allocated_bytes: Cell<u64>,
    freed_bytes: Cell<u64>,
    allocated_class_bytes: Cell<u64>,
    freed_class_bytes: Cell<u64>,
    /// Requested bytes allocated minus freed since the scope opened.
    net: Cell<i64>,
    /// The highest `net` reached.
    peak: Cell<i64>,
}

/// What a scope counted: see `crate::budget::Usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScopeCounts {
    pub(crate) allocations: u64,
    pub(crate) frees: u64,
    pub(crate) allocated_bytes: u64,
    pub(crate) freed_bytes: u64,
    pub(crate) allocated_class_bytes: u64,
    pub(crate) freed_class_bytes: u64,
    pub(crate) net: i64,
    pub(crate) peak: i64,
}

impl ScopeCounts {
    /// What was added since `start` (earlier counts of the same scope): the counts'
    /// differences, and as peak how far above its net at `start` this scope went since
    /// (exact when the peak rose since; otherwise the net's rise, a lower bound).
    pub(crate) fn since(&self, start: &ScopeCounts) -> ScopeCounts {
        let rise = if self.peak > start.peak {
            self.peak
        } else {
            self.net
        };
        ScopeCounts {
            allocations: self.allocations.wrapping_sub(start.allocations),
            frees: self.frees.wrapping_sub(start.frees),
            allocated_bytes: self.allocated_bytes.wrapping_sub(start.allocated_bytes),
            freed_bytes: self.freed_bytes.wrapping_sub(start.freed_bytes),
            allocated_class_bytes: self
                .allocated_class_bytes
                .wrapping_sub(start.allocated_class_bytes),
            freed_class_bytes: self.freed_class_bytes.wrapping_sub(start.freed_class_bytes),
            net: self.net.saturating_sub(start.net),
            peak: rise.saturating_sub(start.net).max(0),
        }
    }

    /// Adds `inner`, a scope that ran inside this one (its counts are this one's too; its
    /// peak, on top of this one's net when it opened, may be this one's peak).
    pub(crate) fn absorb(&mut self, inner: &ScopeCounts) {
        self.allocations = self.allocations.wrapping_add(inner.allocations);
        self.frees = self.frees.wrapping_add(inner.frees);
        self.allocated_bytes = self.allocated_bytes.wrapping_add(inner.allocated_bytes);
        self.freed_bytes = self.freed_bytes.wrapping_add(inner.freed_bytes);
        self.allocated_class_bytes = self
            .allocated_class_bytes
            .wrapping_add(inner.allocated_class_bytes);
        self.freed_class_bytes = self.freed_class_bytes.wrapping_add(inner.freed_class_bytes);
        self.peak = self.peak.max(self.net.saturating_add(inner.peak));
        self.net = self.net.saturating_add(inner.net);
    }
}

impl ScopeCells {
    const fn new() -> ScopeCells {
        ScopeCells {
            allocations: Cell::new(0),
            frees: Cell::new(0),
            allocated_bytes: Cell::new(0),
            freed_bytes: Cell::new(0),
            allocated_class_bytes: Cell::new(0),
            freed_class_bytes: Cell::new(0),
            net: Cell::new(0),
            peak: Cell::new(0),
        }
    }

    fn load(&self, counts: &ScopeCounts) {
        self.allocations.set(counts.allocations);
        self.frees.set(counts.frees);
        self.allocated_bytes.set(counts.allocated_bytes);
        self.freed_bytes.set(counts.freed_bytes);
        self.allocated_class_bytes.set(counts.allocated_class_bytes);
        self.freed_class_bytes.set(counts.freed_class_bytes);
        self.net.set(counts.net);
        self.peak.set(counts.peak);
    }

    fn get(&self) -> ScopeCounts {
        ScopeCounts {
            allocations: self.allocations.get(),
            frees: self.frees.get(),
            allocated_bytes: self.allocated_bytes.get(),
            freed_bytes: self.freed_bytes.get(),
            allocated_class_bytes: self.allocated_class_bytes.get(),
            freed_class_bytes: self.freed_class_bytes.get(),
            net: self.net.get(),
            peak: self.peak.get(),
        }
    }
}

impl Tally {
    const fn new() -> Tally {
        Tally {
            task: Cell::new(0),
            allocations: Cell::new(0),
            allocated_bytes: Cell::new(0),
            frees: Cell::new(0),
            freed_bytes: Cell::new(0),
            scope_open: Cell::new(false),
            scope: ScopeCells::new(),
        }
    }

    /// Where the thread's calls must be counted: a scope open takes every call to the
    /// slow path, a task current to the task branch.
    fn mode(&self) -> Mode {
        if self.scope_open.get() {
            Mode::Slow
        } else if self.task.get() != 0 {
            Mode::Task
        } else {
            Mode::Fast
        }
    }
}

thread_local! {
    static TALLY: Tally = const { Tally::new() };
}

/// The task branch's charge: adds one `event` of `size` bytes to the current task's
/// tally, if a task is current. (With a scope open the task branch is closed: see
/// [`charge`].)
#[inline(always)]
pub(crate) fn charge_in_task(event: Event, size: usize) {
    // `usize` is at most 64 bits on every supported target: lossless.
    add_to_task(event, 1, size as u64);
}

/// The slow paths' charge: adds one `event` of `size` bytes, aligned to `align`, to the
/// current task's tally, if a task is current, and to the open scope, if one is.
#[inline(always)]
pub(crate) fn charge(event: Event, size: usize, align: usize) {
    // `usize` is at most 64 bits on every supported target: lossless.
    add_to_task(event, 1, size as u64);
    let _ = TALLY.try_with(|tally| {
        if tally.scope_open.get() {
            add_to_scope(&tally.scope, event, size, align);
        }
    });
}

/// Takes back a [`charge_in_task`] of an allocation of `size` bytes that failed after
/// all. (Nothing is counted ahead while a scope is open: no scope to take back from.)
#[inline(always)]
pub(crate) fn uncharge_alloc(size: usize) {
    add_to_task(
        Event::Alloc,
        1u64.wrapping_neg(),
        (size as u64).wrapping_neg(),
    );
}

/// Adds `count` and `bytes` (wrapping: a negated value takes back) to the current task's
/// tally of `event`, if a task is current.
#[inline(always)]
fn add_to_task(event: Event, count: u64, bytes: u64) {
    // A const-initialised block without a destructor: `try_with` cannot fail; should it
    // ever, the event is not charged (and nothing panics).
    let _ = TALLY.try_with(|tally| {
        if tally.task.get() != 0 {
            let (counter, total) = match event {
                Event::Alloc => (&tally.allocations, &tally.allocated_bytes),
                Event::Free => (&tally.frees, &tally.freed_bytes),
            };
            counter.set(counter.get().wrapping_add(count));
            total.set(total.get().wrapping_add(bytes));
        }
    });
}

/// The scope's part of [`charge`]: counts, class bytes, net and peak. Out of line: the
/// slow path that calls it is too.
#[inline(never)]
fn add_to_scope(scope: &ScopeCells, event: Event, size: usize, align: usize) {
    // `usize` is at most 64 bits on every supported target, and a `Layout`'s size at
    // most `isize::MAX`: both casts are lossless.
    let bytes = size as u64;
    let signed = size as i64;
    let class = super::size_class::usable_size(size, align);
    let add = |cell: &Cell<u64>, value: u64| cell.set(cell.get().wrapping_add(value));
    match event {
        Event::Alloc => {
            add(&scope.allocations, 1);
            add(&scope.allocated_bytes, bytes);
            add(&scope.allocated_class_bytes, class);
            let net = scope.net.get().wrapping_add(signed);
            scope.net.set(net);
            if net > scope.peak.get() {
                scope.peak.set(net);
            }
        }
        Event::Free => {
            add(&scope.frees, 1);
            add(&scope.freed_bytes, bytes);
            add(&scope.freed_class_bytes, class);
            scope.net.set(scope.net.get().wrapping_sub(signed));
        }
    }
}

/// The current task's index (0: none).
#[inline]
pub(crate) fn current() -> u32 {
    TALLY.try_with(|tally| tally.task.get()).unwrap_or(0)
}

/// Makes `task` current without taking the tally (0: nothing is charged meanwhile),
/// returning the previous task.
pub(crate) fn set_current(task: u32) -> u32 {
    TALLY
        .try_with(|tally| {
            let before = tally.mode();
            let previous = tally.task.replace(task);
            sync_task_mode(tally, before);
            previous
        })
        .unwrap_or(0)
}

/// Moves the slot pointer if `tally` now wants another mode than `before`.
fn sync_task_mode(tally: &Tally, before: Mode) {
    let now = tally.mode();
    if now != before {
        super::counters::set_mode(now);
    }
}

/// What [`suspend`] set aside.
#[derive(Clone, Copy, Debug)]
#[must_use = "pass it to `resume`"]
pub(crate) struct Suspended {
    task: u32,
    scope_open: bool,
}

/// Charges nothing, to no task and no scope, until [`resume`]: for memsentry's own
/// allocations (the sampler's tables, task bookkeeping) made on a user's behalf.
pub(crate) fn suspend() -> Suspended {
    TALLY
        .try_with(|tally| {
            let before = tally.mode();
            let suspended = Suspended {
                task: tally.task.replace(0),
                scope_open: tally.scope_open.replace(false),
            };
            sync_task_mode(tally, before);
            suspended
        })
        .unwrap_or(Suspended {
            task: 0,
            scope_open: false,
        })
}

/// Undoes [`suspend`].
pub(crate) fn resume(suspended: Suspended) {
    let _ = TALLY.try_with(|tally| {
        let before = tally.mode();
        tally.task.set(suspended.task);
        tally.scope_open.set(suspended.scope_open);
        sync_task_mode(tally, before);
    });
}

/// Opens a scope on this thread, counting on from `counts` (zero for a new scope, what a
/// measured future counted in its earlier polls otherwise). Returns the scope that was
/// open, if any: it counts nothing until [`close_scope`] reopens it.
pub(crate) fn open_scope(counts: &ScopeCounts) -> Option<ScopeCounts> {
    TALLY
        .try_with(|tally| {
            let before = tally.mode();
            let previous = tally.scope_open.get().then(|| tally.scope.get());
            tally.scope.load(counts);
            tally.scope_open.set(true);
            sync_task_mode(tally, before);
            previous
        })
        .ok()
        .flatten()
}

/// Closes this thread's scope, returning what it counted, and reopens `previous` (what
/// [`open_scope`] returned) as it was.
pub(crate) fn close_scope(previous: Option<ScopeCounts>) -> ScopeCounts {
    TALLY
        .try_with(|tally| {
            let before = tally.mode();
            let counts = tally.scope.get();
            match previous {
                Some(previous) => tally.scope.load(&previous),
                None => tally.scope_open.set(false),
            }
            sync_task_mode(tally, before);
            counts
        })
        .unwrap_or_default()
}

/// What the tally held, taken out (the tally restarts from zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) allocations: u64,
    pub(crate) allocated_bytes: u64,
    pub(crate) frees: u64,
    pub(crate) freed_bytes: u64,
}

/// Makes `task` current (0: none), returning the previous task and what the thread
/// allocated and freed for it since the last switch.
pub(crate) fn switch(task: u32) -> (u32, Taken) {
    let taken = TALLY
        .try_with(|tally| Taken {
            allocations: tally.allocations.replace(0),
            allocated_bytes: tally.allocated_bytes.replace(0),
            frees: tally.frees.replace(0),
            freed_bytes: tally.freed_bytes.replace(0),
        })
        .unwrap_or_default();
    (set_current(task), taken)
}
