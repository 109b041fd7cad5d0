//! **[H]** What this thread allocates and frees while a tracked task is polled on it.
//!
//! One thread-local block, constant-initialised and without a destructor (reading it
//! cannot fail or allocate). While a task is current, the thread's slot pointer is moved
//! aside (`counters::set_task_mode`), so the fast path's first test fails into its task
//! branch, which counts as usual and adds to this tally with plain (non-atomic) adds,
//! since only this thread touches it; requests the fast path does not take reach the
//! slow paths, which charge the task too. With no task current the fast path runs as
//! before and never looks here: task attribution costs it nothing then. `crate::task` moves the tally into the task's
//! shared statistics at every switch (poll start, poll end, nested scopes): one set of
//! atomic adds per poll, none per allocation.

use core::cell::Cell;

use super::counters::Event;

/// The thread's current task and what it allocated and freed since the last switch.
#[derive(Debug)]
pub(crate) struct Tally {
    /// The current task's index (`crate::task` numbers them from 1); 0: none.
    task: Cell<u32>,
    allocations: Cell<u64>,
    allocated_bytes: Cell<u64>,
    frees: Cell<u64>,
    freed_bytes: Cell<u64>,
}

impl Tally {
    const fn new() -> Tally {
        Tally {
            task: Cell::new(0),
            allocations: Cell::new(0),
            allocated_bytes: Cell::new(0),
            frees: Cell::new(0),
            freed_bytes: Cell::new(0),
        }
    }
}

thread_local! {
    static TALLY: Tally = const { Tally::new() };
}

/// Adds one `event` of `size` bytes to the current task's tally, if a task is current.
#[inline(always)]
pub(crate) fn charge(event: Event, size: usize) {
    // `usize` is at most 64 bits on every supported target: lossless.
    add_to_tally(event, 1, size as u64);
}

/// Takes back a [`charge`] of an allocation of `size` bytes that failed after all.
#[inline(always)]
pub(crate) fn uncharge_alloc(size: usize) {
    add_to_tally(
        Event::Alloc,
        1u64.wrapping_neg(),
        (size as u64).wrapping_neg(),
    );
}

/// Adds `count` and `bytes` (wrapping: a negated value takes back) to the current task's
/// tally of `event`, if a task is current.
#[inline(always)]
fn add_to_tally(event: Event, count: u64, bytes: u64) {
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
            let previous = tally.task.replace(task);
            if (previous == 0) != (task == 0) {
                super::counters::set_task_mode(task != 0);
            }
            previous
        })
        .unwrap_or(0)
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
