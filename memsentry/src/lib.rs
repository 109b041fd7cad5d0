//! Always-on memory observability for Rust services.
//!
//! memsentry is a global allocator that wraps jemalloc and counts every allocation and
//! free, per thread and per jemalloc size class, cheaply enough to leave on in
//! production: the Rust counterpart of Go's `runtime/metrics` and `MemStats`.
//!
//! # Quick start
//!
//! ```rust,standalone_crate
//! #[global_allocator]
//! static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
//!
//! fn main() {
//!     let earlier = memsentry::snapshot();
//!     let data: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
//!     let now = memsentry::snapshot();
//!     let delta = now.delta(&earlier);
//!     assert!(delta.counts.allocations >= 1000);
//!     println!("{} live, {:.0} allocations/s", memsentry::Bytes(now.totals.live_bytes()),
//!              delta.allocations_per_sec());
//!     # drop(data);
//! }
//! ```
//!
//! # Concepts
//!
//! - **Counters.** Every allocation, free and `realloc` (a free plus an allocation) is
//!   counted in the calling thread's own slot of a static table: common requests (up to
//!   4 KiB) per exact size, one increment, the rest per size class. Reading turns both
//!   into per-class allocations, frees, requested bytes allocated and freed; class bytes
//!   (what jemalloc really hands out) follow from the class size. Counts are exact:
//!   nothing is lost when threads exit or free memory allocated elsewhere.
//! - **Size classes.** jemalloc serves each request from a size class (8, 16, 32, 48, 64,
//!   80, 96, 112, 128, then four per doubling); memsentry computes the class from size and
//!   alignment by arithmetic, identical to jemalloc's `nallocx`.
//! - **[`totals`]** sums the counters without allocating; **[`snapshot`]** adds the
//!   per-class table, jemalloc's own statistics and the process's resident set;
//!   **[`Snapshot::delta`]** turns two snapshots into rates.
//!
//! # Off switch
//!
//! `MEMSENTRY=off` in the environment at start, or [`set_enabled(false)`](set_enabled) at
//! run time, turns all bookkeeping off: the allocator then costs three loads and two
//! compares per call over plain jemalloc (the thread's slot pointer and its gate, then
//! the switch; all in the L1 cache). Any other `MEMSENTRY*` variable or value memsentry
//! does not understand gets one warning on stderr and is ignored.
//!
//! - **[`profile`].** Allocations are sampled (one per 512 KiB allocated, on average) with
//!   their call stacks; [`profile::heap`] turns the samples into unbiased estimates of
//!   in-use and allocated bytes per call site, written as pprof files for `go tool pprof`.
//!
//! # Architecture
//!
//! Every module is tagged by where its code runs: **\[H\]** reachable from the global
//! allocator (never allocates, takes no lock another allocation may hold, never panics;
//! `clippy.toml` denies allocating types there), **\[S\]** the sample path (runs only
//! under the sampler's re-entrancy guard: it may allocate, and what it allocates is
//! counted but never sampled), **\[C\]** cold (ordinary Rust, called by the program).
//! The allocator's layers call only downwards, and each can be read without the ones
//! above it.
//!
//! ```text
//!  program ──GlobalAlloc──▶ alloc ............................... [H]
//!                             │  fast path / slow path per operation
//!                             ▼
//!                            hot ................................. [H]
//!        ┌────────────┬───────┴──────┬────────────┐
//!        ▼            ▼              ▼            ▼
//!   hot::control  hot::task    hot::sampler   (sample, fork) ───▶ sampler, fork ... [S]
//!        │            │              │                              │
//!        └────────────┴──────┬───────┘                              ▼
//!                            ▼                                    unwind ......... [S]
//!                       hot::counters ──▶ hot::switch, hot::size_class
//!
//!  snapshot, profile, task, budget, report, http, watch, stats ...... [C]
//!  (they read what the layers above keep; none of those calls them)
//! ```
//!
//! - **`alloc`** \[H\]: [`MemSentry`], the only `GlobalAlloc`. For each operation one
//!   fast-path function read whole (`allocate`: the increment, the countdown, the inner
//!   call; `free`: the increment, the placed-sample test, the inner free) and one slow
//!   path for every other case (bookkeeping off, a task current, a large or over-aligned
//!   request, a sample due, a failure). It owns the calls to the inner allocator and
//!   moving a sampled block to a block of its own; it calls `hot` for the bookkeeping.
//! - **`hot`** \[H\]: the bookkeeping of each path, by name (`count_alloc_fast`,
//!   `count_alloc_slow`, `count_free_fast`, ...). Below it: `hot::control` writes the
//!   on/off switch and reads `MEMSENTRY*` once; `hot::task` keeps what the current task
//!   and the open measured scope allocate; `hot::sampler` owns the sampling countdown,
//!   the placed-sample test, the free-side filter and the re-entrancy guard;
//!   `hot::counters` owns the per-thread counter slots and their gates; `hot::switch`
//!   holds the switch's value; `hot::size_class` is jemalloc's size arithmetic.
//! - **`sampler`** \[S\]: records a sample (the live table, interned stacks, the peak)
//!   and takes a freed sample out. It calls `unwind` and, for a registered observer (the
//!   measured scopes' collector), a function pointer: never the layers above.
//! - **`unwind`** \[S\]: the stack walks (frame pointers, memsentry's unwind table in
//!   `unwind/table.rs`, or libgcc's), reading only the thread's own stack mapping.
//! - **`fork`** \[S\]: `pthread_atfork` handlers that hold the sample table's locks
//!   across a `fork`, so that the child can allocate and free.
//! - **Cold modules** \[C\]: [`snapshot`](snapshot()), [`profile`], [`task`], [`budget`],
//!   [`report`], [`http`], [`watch`] and the statistics read the counters, tallies and
//!   tables; they allocate freely.
//!
//! Where to look: the fast path is in `alloc.rs` (`allocate`, `free`), its bookkeeping in
//! `hot/mod.rs` and `hot/counters.rs`; everything under `sampler`, `unwind` and the
//! `MemSentry::sample` hook runs under the guard; code tagged \[C\] and \[S\] may
//! allocate, code tagged \[H\] may not.
//!
//! # Hot-path guarantees
//!
//! The allocator's common path (counting, the sampling countdown, the free side's
//! "possibly sampled?" test) never allocates, never takes a lock and never panics;
//! thread-locals on that path are `const`-initialised and have no destructor. A sampled
//! allocation takes a slower path under a thread-local guard: it allocates (a small
//! sampled block is moved to a page-aligned block of its own, see [`MemSentry`]) and takes
//! the sample table's shard locks, but nested allocations are never sampled and no lock
//! is held while waiting for anything else. A free that may be of a sampled block takes
//! one shard lock and allocates nothing. Its stack walk follows frame pointers when the
//! program keeps them, memsentry's table of the loaded objects' unwind rules when it does
//! not (both read only the thread's own stack mapping, found once per thread in
//! `/proc/self/maps` with plain `read`s), and libgcc's DWARF unwinder where neither agrees
//! with it ([`profile::unwinder`]). `pthread_atfork` handlers hold the sample table's
//! locks across a `fork`, so the child of a multi-threaded process can allocate and free
//! (as with jemalloc alone). The overhead over raw jemalloc is measured in
//! `BENCHMARKS.md`.
//!
//! # Limitations
//!
//! - Size classes assume jemalloc's defaults on 64-bit Linux (16-byte quantum, 4 KiB
//!   pages, `opt.disable_large_size_classes` on): building jemalloc with other
//!   `JEMALLOC_SYS_WITH_LG_*` values, or turning that option off in `MALLOC_CONF`, makes
//!   class bytes approximate (counts and requested bytes stay exact).
//! - Turning bookkeeping off and on again at run time makes live figures approximate:
//!   blocks allocated while off and freed while on are counted as frees only.
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The types and macros `clippy.toml` disallows are fine in cold code; `hot`, `alloc`
// and `config` deny them below.
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

#[deny(clippy::disallowed_types, clippy::disallowed_macros)]
mod alloc;
pub mod budget;
#[deny(clippy::disallowed_types, clippy::disallowed_macros)]
mod config;
#[deny(clippy::disallowed_types, clippy::disallowed_macros)]
mod fork;
#[deny(clippy::disallowed_types, clippy::disallowed_macros)]
mod hot;
pub mod http;
mod json;
mod periodic;
pub mod profile;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod release;
pub mod report;
mod sampler;
mod snapshot;
mod spin;
mod stats;
pub mod task;
mod unwind;
pub mod watch;

pub use crate::alloc::MemSentry;
pub use crate::budget::{measure, measure_future};
pub use crate::release::{ReleasedMemory, release_memory};
pub use crate::snapshot::{Bytes, ClassStats, Counts, Delta, Snapshot, snapshot, totals};
pub use crate::stats::JemallocStats;
/// Counts a function as a [task]: `#[memsentry::tracked]` or
/// `#[memsentry::tracked(name = "checkout")]` on an `async fn` (each call an instance,
/// its polls' allocations charged to it) or a plain `fn` (for the call's duration).
///
/// ```rust,standalone_crate
/// #[global_allocator]
/// static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
///
/// #[memsentry::tracked(name = "doc::checkout")]
/// async fn checkout(items: usize) -> Vec<u64> {
///     vec![0; items]
/// }
///
/// fn main() {
///     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
///     let mut fut = Box::pin(checkout(100));
///     assert!(fut.as_mut().poll(&mut cx).is_ready());
///     let report = memsentry::task::report();
///     let row = report.task("doc::checkout").unwrap();
///     assert_eq!((row.started, row.finished), (1, 1));
///     assert!(row.allocated_bytes >= 800);
/// }
/// ```
pub use memsentry_macros::tracked;

/// A memory budget on a test function: `#[memsentry::limit(allocations = 40, peak =
/// "24 MiB", leaks = 0)]`; see [`budget`] and the attribute's own docs.
///
/// ```rust,standalone_crate
/// #[global_allocator]
/// static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
///
/// #[memsentry::limit(allocations = 1, peak = "1 KiB", leaks = 0)]
/// fn build() -> usize {
///     vec![0u8; 1000].len()
/// }
///
/// fn main() {
///     assert_eq!(build(), 1000);
/// }
/// ```
pub use memsentry_macros::limit;

/// Turns bookkeeping on or off at run time, overriding `MEMSENTRY` from the environment.
///
/// While off, allocations and frees are forwarded to the inner allocator and neither
/// counted nor sampled. Counters keep their values; live figures become approximate if
/// blocks allocated while off are freed while on (they are counted as frees only).
/// Turning off forgets the live samples of blocks larger than 4 KiB or aligned to more
/// than 16 (their frees go unseen while off, so a later profile's in-use figures for them
/// start again from zero); samples of smaller blocks stay, since their frees are seen
/// even while off (see [`MemSentry`]). Cumulative allocation samples stay.
///
/// ```rust,standalone_crate
/// # #[global_allocator]
/// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
/// # fn main() {
/// memsentry::set_enabled(false);
/// let before = memsentry::totals();
/// let block = Box::new([0u8; 100]);
/// assert_eq!(memsentry::totals(), before);
/// drop(block);
/// memsentry::set_enabled(true);
/// assert!(memsentry::is_enabled());
/// # }
/// ```
pub fn set_enabled(enabled: bool) {
    hot::control::set_active(enabled);
    if !enabled {
        // Frees are no longer seen (placed samples' excepted): the other live sample
        // records would go stale.
        sampler::forget_live();
    }
}

/// Whether bookkeeping is on (see [`set_enabled`] and the `MEMSENTRY` variable).
#[must_use]
pub fn is_enabled() -> bool {
    hot::control::active()
}

/// The size in bytes of the block jemalloc hands out for `layout` (its `nallocx`): the
/// request rounded up to its size class, or to whole pages above 14 KiB.
///
/// ```
/// use std::alloc::Layout;
/// assert_eq!(memsentry::size_class(Layout::from_size_align(100, 8).unwrap()), 112);
/// assert_eq!(memsentry::size_class(Layout::from_size_align(100, 64).unwrap()), 128);
/// ```
#[must_use]
pub fn size_class(layout: core::alloc::Layout) -> u64 {
    hot::size_class::usable_size(layout.size(), layout.align())
}

/// The per-class row that counts `layout`: the [`ClassStats::size`] of its row in
/// [`Snapshot::classes`]. Equal to [`size_class`] up to 14 KiB; above, large blocks are
/// bucketed by jemalloc's nominal size classes (four per doubling).
///
/// ```
/// use std::alloc::Layout;
/// let layout = Layout::from_size_align(33_000, 8).unwrap();
/// assert_eq!(memsentry::size_class(layout), 36_864); // nine pages
/// assert_eq!(memsentry::class_bucket(layout), 40_960); // counted in the 40 KiB row
/// ```
#[must_use]
pub fn class_bucket(layout: core::alloc::Layout) -> u64 {
    hot::size_class::size_of_index(hot::size_class::index_of(layout.size(), layout.align()))
}

/// The caller's stack walked by libgcc's unwinder and by memsentry's unwind table, leaf
/// first. Not part of the API: for memsentry's tests of builds without frame pointers.
#[doc(hidden)]
#[must_use]
pub fn __both_walks() -> (Vec<usize>, Vec<usize>) {
    unwind::both_walks()
}

/// Number of per-thread counter slots currently owned by live threads.
#[doc(hidden)]
#[must_use]
pub fn __owned_slots() -> usize {
    hot::counters::owned_slots()
}

/// Whether the calling thread's allocations take the fast path: it owns a counter slot,
/// bookkeeping is on and no task is current. Not part of the API: for memsentry's tests.
#[doc(hidden)]
#[must_use]
pub fn __fast_path_open() -> bool {
    hot::counters::fast_path_open()
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}
