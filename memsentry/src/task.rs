//! Async task attribution: which task allocates, which holds memory, which leaks.
//!
//! Wrap a future in [`Tracked`] (with [`track`], [`TrackExt::tracked`] or the
//! [`#[tracked]`](crate::tracked) attribute) and memsentry keeps, per task *name*:
//!
//! - **instances**: started (first polled), finished (returned `Ready`), cancelled
//!   (dropped before finishing), live now, and the age of the oldest live one;
//! - **polls**;
//! - **allocations, frees and their bytes made while it was polled** (or while its state
//!   was dropped), exact: the allocator adds them to a per-thread tally that moves into
//!   the task's totals at each poll's end;
//! - **bytes and blocks in use that it allocated**, estimated from the sampled heap
//!   profile, whose samples carry the task that allocated them.
//!
//! Nesting is normal: the innermost tracked scope being polled owns an allocation. Any
//! executor works (nothing here depends on tokio): each poll sets the thread's current
//! task and restores the previous one afterwards, also when the inner poll panics.
//!
//! # Why in-use bytes are estimated, not counted
//!
//! An exact "live bytes per task" needs to know, at every free, which task allocated
//! the block. The allocator is only given the address and layout, so it would have to
//! store the owner with every block: a header of 8 or 16 bytes per allocation (a 25-50%
//! increase for the small blocks most programs are made of, and a different size class
//! for many), or a side table updated on every allocation and free (a hash insert and
//! remove on the hot path). memsentry pays neither: it counts what each task allocates
//! and frees (exact, cheap), and estimates what each task still holds from the sampled
//! blocks, which already record their stack and now their task. With `R = 1` (every
//! allocation sampled) the estimate is exact.
//!
//! # Cost
//!
//! With no task current, the allocator pays nothing: its fast path never looks at tasks
//! (a switch moves the thread's slot pointer aside, which sends the fast path into a task
//! branch). With a task current, two plain adds to a thread-local tally per call. A poll
//! of a [`Tracked`] future costs two switches (thread-local only) and a handful of atomic
//! adds to the task's totals, ~15 ns (`BENCHMARKS.md`). Starting and ending an instance
//! also note it in its name's set of live instances, under a lock that is the starting
//! thread's own, ~150 ns for the pair. A name's counts and live set are kept per thread
//! (16 shards, 2 KiB per name), so threads running one task do not contend.
//!
//! # Bounded
//!
//! Names are interned; past [`set_max_names`] (default 1,000) distinct names, new names
//! are counted under `other`, with a warning on stderr the first time.
//!
//! ```rust,standalone_crate
//! #[global_allocator]
//! static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
//!
//! use memsentry::task::TrackExt;
//! use std::task::{Context, Poll, Waker};
//!
//! fn main() {
//!     let mut fut = Box::pin(async { vec![0u8; 1000].len() }.tracked("doc::compute"));
//!     // Any executor polls it; here, by hand.
//!     let mut cx = Context::from_waker(Waker::noop());
//!     assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(1000));
//!     let report = memsentry::task::report();
//!     let row = report.task("doc::compute").unwrap();
//!     assert_eq!((row.started, row.finished, row.live), (1, 1, 0));
//!     assert!(row.allocated_bytes >= 1000);
//!     println!("{report}");
//! }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::Bytes;
use crate::hot::task as tally;

mod live;
mod shard;

use live::{Instance, LiveSet};
use shard::Sharded;

/// The name tasks past the limit are counted under.
pub const OTHER: &str = "other";

/// How many distinct names are kept unless [`set_max_names`] says otherwise.
pub const DEFAULT_MAX_NAMES: usize = 1000;

static MAX_NAMES: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_NAMES);
static WARNED: AtomicBool = AtomicBool::new(false);

/// Sets how many distinct task names are kept (at least 1); names registered past it
/// are counted under [`OTHER`]. Names already registered stay.
pub fn set_max_names(names: usize) {
    MAX_NAMES.store(names.max(1), Ordering::Relaxed);
}

/// One task name's totals, shared by all its instances on every thread.
#[derive(Debug)]
struct Stats {
    name: &'static str,
    /// Its index in the registry, from 1 (what the allocator's tally holds).
    index: u32,
    /// Counts, one set per thread shard: each thread adds to its own (see `shard`).
    counts: Sharded<Counts>,
    /// Live instances.
    live: LiveSet,
}

/// One shard's counts of a task name (64 bytes: one cache line).
#[derive(Debug, Default)]
struct Counts {
    started: AtomicU64,
    finished: AtomicU64,
    cancelled: AtomicU64,
    polls: AtomicU64,
    allocations: AtomicU64,
    allocated_bytes: AtomicU64,
    frees: AtomicU64,
    freed_bytes: AtomicU64,
}

impl Stats {
    /// Adds 1 to one of the calling thread's counts.
    fn count(&self, which: fn(&Counts) -> &AtomicU64) {
        which(self.counts.mine()).fetch_add(1, Ordering::Relaxed);
    }

    /// The sum of one count over the shards.
    fn total(&self, which: fn(&Counts) -> &AtomicU64) -> u64 {
        self.counts
            .iter()
            .map(|counts| which(counts).load(Ordering::Relaxed))
            .sum()
    }

    fn charge(&self, taken: tally::Taken) {
        if taken == tally::Taken::default() {
            return;
        }
        let counts = self.counts.mine();
        counts
            .allocations
            .fetch_add(taken.allocations, Ordering::Relaxed);
        counts
            .allocated_bytes
            .fetch_add(taken.allocated_bytes, Ordering::Relaxed);
        counts.frees.fetch_add(taken.frees, Ordering::Relaxed);
        counts
            .freed_bytes
            .fetch_add(taken.freed_bytes, Ordering::Relaxed);
    }
}

/// Every name registered, by name; taken to register one. Entries are leaked: there are
/// at most `MAX_NAMES + 1` of them, and the allocator's tally refers to them by index.
static BY_NAME: Mutex<Option<HashMap<&'static str, &'static Stats>>> = Mutex::new(None);
/// Every name registered, by index − 1: appended to under [`BY_NAME`]'s lock (so an
/// entry's position is its `index` − 1), read without any lock, since a poll of a task
/// nested in another charges the outer one by index.
static BY_INDEX: boxcar::Vec<&'static Stats> = boxcar::Vec::new();

/// Runs `f` with no task current and no scope open, so that memsentry's own bookkeeping
/// (registering a name, the live-instance sets) is charged to no task and counted in no
/// measured scope; the tally is kept.
pub(crate) fn untracked<R>(f: impl FnOnce() -> R) -> R {
    struct Resume(tally::Suspended);
    impl Drop for Resume {
        fn drop(&mut self) {
            tally::resume(self.0);
        }
    }
    let _resume = Resume(tally::suspend());
    f()
}

/// The totals of `name`, registered on first use.
fn register(name: &str) -> &'static Stats {
    untracked(|| register_untracked(name))
}

fn register_untracked(name: &str) -> &'static Stats {
    let mut guard = BY_NAME.lock().unwrap_or_else(PoisonError::into_inner);
    let by_name = guard.get_or_insert_with(HashMap::new);
    if let Some(stats) = by_name.get(name) {
        return stats;
    }
    let full = BY_INDEX.count() >= MAX_NAMES.load(Ordering::Relaxed);
    let name = if full && name != OTHER {
        if let Some(other) = by_name.get(OTHER) {
            return other;
        }
        if !WARNED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "memsentry: more than {} task names; further names are counted as {OTHER:?} \
                 (memsentry::task::set_max_names raises the limit)",
                MAX_NAMES.load(Ordering::Relaxed)
            );
        }
        OTHER
    } else {
        name
    };
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    // Appended to only under the lock we hold: the count is the next position.
    let index = u32::try_from(BY_INDEX.count() + 1).unwrap_or(u32::MAX);
    let stats: &'static Stats = Box::leak(Box::new(Stats {
        name,
        index,
        counts: Sharded::default(),
        live: LiveSet::default(),
    }));
    by_name.insert(name, stats);
    BY_INDEX.push(stats);
    stats
}

/// The name of the task with `index` (from the allocator's tally), if any.
pub(crate) fn name_of(index: u32) -> Option<&'static str> {
    stats_of(index).map(|stats| stats.name)
}

/// The totals of the task with `index` (from the allocator's tally), if any; no lock.
fn stats_of(index: u32) -> Option<&'static Stats> {
    let position = usize::try_from(index).ok()?.checked_sub(1)?;
    BY_INDEX.get(position).copied()
}

fn all() -> Vec<&'static Stats> {
    BY_INDEX.iter().map(|(_, stats)| *stats).collect()
}

/// A task name registered once, for `static`s: what `#[tracked]` expands to, so that a
/// call does not look its name up.
///
/// ```
/// static CHECKOUT: memsentry::task::TaskName = memsentry::task::TaskName::new("shop::checkout");
/// let fut = CHECKOUT.track(async { 42 });
/// # drop(fut);
/// ```
#[derive(Debug)]
pub struct TaskName {
    name: &'static str,
    stats: OnceLock<&'static Stats>,
}

impl TaskName {
    /// A name, registered when first used.
    #[must_use]
    pub const fn new(name: &'static str) -> TaskName {
        TaskName {
            name,
            stats: OnceLock::new(),
        }
    }

    fn stats(&self) -> &'static Stats {
        self.stats.get_or_init(|| register(self.name))
    }

    /// Wraps `future` as an instance of this task.
    pub fn track<F: Future>(&self, future: F) -> Tracked<F> {
        Tracked::new(self.stats(), future)
    }

    /// Runs the caller's code until the returned guard drops as an instance of this task
    /// (for synchronous functions).
    pub fn scope(&self) -> Scope {
        Scope::new(self.stats())
    }
}

/// Wraps `future` as an instance of the task `name` (see the [module docs](self)).
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
/// let handler = memsentry::task::track("api::get_user", async { /* ... */ });
/// // tokio::spawn(handler), or any executor.
/// # drop(handler);
/// ```
pub fn track<F: Future>(name: &str, future: F) -> Tracked<F> {
    Tracked::new(register(name), future)
}

/// `future.tracked("name")`: [`track`] as a method, for futures handed to
/// `tokio::spawn` and friends.
pub trait TrackExt: Future + Sized {
    /// Wraps `self` as an instance of the task `name`.
    fn tracked(self, name: &str) -> Tracked<Self> {
        track(name, self)
    }
}

impl<F: Future> TrackExt for F {}

/// Makes `stats` the thread's current task until [`Switch::back`]: what the thread
/// allocated since the last switch is charged to the previous task.
struct Switch {
    previous: u32,
}

impl Switch {
    fn to(stats: &Stats) -> Switch {
        let (previous, taken) = tally::switch(stats.index);
        charge_index(previous, taken);
        Switch { previous }
    }

    fn back(self, stats: &Stats) {
        let (_, taken) = tally::switch(self.previous);
        stats.charge(taken);
    }
}

/// Charges `taken` to the task with `index` (none: dropped).
fn charge_index(index: u32, taken: tally::Taken) {
    if index == 0 || taken == tally::Taken::default() {
        return;
    }
    if let Some(stats) = stats_of(index) {
        stats.charge(taken);
    }
}

/// An instance's life: not polled yet, running (live), or done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Unstarted,
    Live(Instance),
    Done,
}

/// A future counted as an instance of a task: see the [module docs](self).
#[must_use = "futures do nothing unless polled"]
pub struct Tracked<F> {
    // Dropped by hand, inside the task's scope: freeing its state is the task's too.
    inner: ManuallyDrop<F>,
    stats: &'static Stats,
    life: Life,
}

impl<F> fmt::Debug for Tracked<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("task", &self.stats.name)
            .field("life", &self.life)
            .finish_non_exhaustive()
    }
}

impl<F> Tracked<F> {
    fn new(stats: &'static Stats, inner: F) -> Tracked<F> {
        Tracked {
            inner: ManuallyDrop::new(inner),
            stats,
            life: Life::Unstarted,
        }
    }

    /// The task's name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.stats.name
    }

    fn end(&mut self, finished: bool) {
        if let Life::Live(instance) = self.life {
            untracked(|| self.stats.live.end(instance));
            self.stats.count(if finished {
                |c| &c.finished
            } else {
                |c| &c.cancelled
            });
        }
        self.life = Life::Done;
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is never moved out of `self` (it is dropped in place, in
        // `drop`), so projecting the pin to it is sound; the other fields are not
        // structurally pinned and are only read or overwritten.
        let this = unsafe { self.get_unchecked_mut() };
        if this.life == Life::Unstarted {
            this.stats.count(|c| &c.started);
            this.life = Life::Live(untracked(|| this.stats.live.start()));
        }
        this.stats.count(|c| &c.polls);
        let stats = this.stats;
        // Restores the previous task when dropped: after the poll, or while a panic of
        // the inner poll unwinds through here.
        struct Restore(Option<Switch>, &'static Stats);
        impl Drop for Restore {
            fn drop(&mut self) {
                if let Some(switch) = self.0.take() {
                    switch.back(self.1);
                }
            }
        }
        let _restore = Restore(Some(Switch::to(stats)), stats);
        // SAFETY: see above; `inner` stays where it is until dropped in place.
        let inner = unsafe { Pin::new_unchecked(&mut *this.inner) };
        let poll = inner.poll(cx);
        if poll.is_ready() {
            this.end(true);
        }
        poll
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        let stats = self.stats;
        let switch = Switch::to(stats);
        // SAFETY: `inner` is dropped exactly once, here, in place (never moved: it may
        // be pinned), and not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
        switch.back(stats);
        self.end(false);
    }
}

/// An instance of a task in synchronous code, from [`scope`] until dropped: what
/// `#[tracked]` on a plain `fn` expands to. Must be dropped on the thread that made it.
#[must_use = "the scope ends when this guard is dropped"]
pub struct Scope {
    stats: &'static Stats,
    switch: Option<Switch>,
    instance: Instance,
    // Thread-bound: the switch it undoes is this thread's.
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("task", &self.stats.name)
            .finish_non_exhaustive()
    }
}

impl Scope {
    fn new(stats: &'static Stats) -> Scope {
        stats.count(|c| &c.started);
        stats.count(|c| &c.polls);
        let instance = untracked(|| stats.live.start());
        Scope {
            stats,
            switch: Some(Switch::to(stats)),
            instance,
            _not_send: PhantomData,
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(switch) = self.switch.take() {
            switch.back(self.stats);
        }
        untracked(|| self.stats.live.end(self.instance));
        // A scope left by a panic did not finish.
        self.stats.count(if std::thread::panicking() {
            |c| &c.cancelled
        } else {
            |c| &c.finished
        });
    }
}

/// Enters the task `name` until the returned guard drops (synchronous code).
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
/// {
///     let _scope = memsentry::task::scope("batch::import");
///     let rows = vec![0u64; 1024]; // charged to batch::import
///     # drop(rows);
/// }
/// ```
pub fn scope(name: &str) -> Scope {
    Scope::new(register(name))
}

/// The name of the task current on this thread, if any.
#[must_use]
pub fn current() -> Option<&'static str> {
    name_of(tally::current())
}

/// One task name's statistics in a [`TaskReport`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TaskRow {
    /// The task's name.
    pub name: &'static str,
    /// Instances first polled.
    pub started: u64,
    /// Instances that returned `Ready` (or whose scope ended normally).
    pub finished: u64,
    /// Instances dropped before finishing (or whose scope a panic ended).
    pub cancelled: u64,
    /// Instances started and neither finished nor cancelled.
    pub live: u64,
    /// How long the oldest live instance has been alive: a task whose instances only
    /// get older, while `live` grows, leaks instances.
    pub oldest_live: Option<Duration>,
    /// Polls (scopes count one).
    pub polls: u64,
    /// Allocations made while an instance was polled (or its state dropped): exact.
    pub allocations: u64,
    /// Requested bytes of those allocations: exact.
    pub allocated_bytes: u64,
    /// Frees made while an instance was polled, whoever allocated the block: exact.
    pub frees: u64,
    /// Requested bytes of those frees: exact.
    pub freed_bytes: u64,
    /// Blocks allocated by this task and still in use, estimated from the sampled
    /// profile (see the [module docs](self)).
    pub inuse_objects_estimate: f64,
    /// Bytes of those blocks, estimated likewise.
    pub inuse_bytes_estimate: f64,
}

/// Per-task statistics, from [`report`]; `Display` prints a table sorted by in-use bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskReport {
    rows: Vec<TaskRow>,
}

impl TaskReport {
    /// One row per task name, largest in-use estimate first.
    #[must_use]
    pub fn rows(&self) -> &[TaskRow] {
        &self.rows
    }

    /// The row of `name`.
    #[must_use]
    pub fn task(&self, name: &str) -> Option<&TaskRow> {
        self.rows.iter().find(|row| row.name == name)
    }
}

/// Reads every task's statistics now.
#[must_use]
pub fn report() -> TaskReport {
    let inuse = crate::sampler::live_by_task();
    let now = Instant::now();
    let mut rows: Vec<TaskRow> = all()
        .into_iter()
        .map(|stats| {
            let (live, oldest) = stats.live.count_and_oldest();
            let oldest = oldest.map(|start| now.saturating_duration_since(start));
            let (objects, bytes) = inuse.get(&stats.index).copied().unwrap_or_default();
            TaskRow {
                name: stats.name,
                started: stats.total(|c| &c.started),
                finished: stats.total(|c| &c.finished),
                cancelled: stats.total(|c| &c.cancelled),
                live,
                oldest_live: oldest,
                polls: stats.total(|c| &c.polls),
                allocations: stats.total(|c| &c.allocations),
                allocated_bytes: stats.total(|c| &c.allocated_bytes),
                frees: stats.total(|c| &c.frees),
                freed_bytes: stats.total(|c| &c.freed_bytes),
                inuse_objects_estimate: objects,
                inuse_bytes_estimate: bytes,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.inuse_bytes_estimate
            .total_cmp(&a.inuse_bytes_estimate)
            .then(b.live.cmp(&a.live))
            .then(a.name.cmp(b.name))
    });
    TaskReport { rows }
}

impl fmt::Display for TaskReport {
    /// `task  live  oldest  started  finished  cancelled  polls  allocated  in use (est.)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .iter()
            .map(|row| row.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            f,
            "{:<width$} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>13}",
            "task",
            "live",
            "oldest",
            "started",
            "finished",
            "cancelled",
            "polls",
            "allocated",
            "in use (est)"
        )?;
        for row in &self.rows {
            let oldest = row.oldest_live.map_or_else(
                || "-".to_owned(),
                |age| format!("{:.1}s", age.as_secs_f64()),
            );
            writeln!(
                f,
                "{:<width$} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>13}",
                row.name,
                row.live,
                oldest,
                row.started,
                row.finished,
                row.cancelled,
                row.polls,
                Bytes(row.allocated_bytes).to_string(),
                // Saturating cast of a finite, non-negative estimate.
                Bytes(row.inuse_bytes_estimate.round() as u64).to_string(),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_the_limit_are_other() {
        // The registry is process-wide: work relative to what other tests registered.
        let before = all().len();
        set_max_names(before + 2);
        let a = register("limit::a").index;
        let b = register("limit::b").index;
        let c = register("limit::c");
        let d = register("limit::d");
        assert_ne!(a, b);
        assert_eq!(c.name, OTHER);
        assert_eq!(d.index, c.index);
        assert_eq!(register("limit::a").index, a, "known names stay");
        assert_eq!(name_of(a), Some("limit::a"));
        assert_eq!(name_of(0), None);
        set_max_names(DEFAULT_MAX_NAMES);
    }
}
