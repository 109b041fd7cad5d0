//! Memory budgets for tests and benchmarks: what one piece of code allocates, frees and
//! peaks at, exactly, whatever the other threads of the process do.
//!
//! [`measure`] runs a closure in a *scope* and returns its [`Usage`]: the
//! allocations and frees made on the calling thread while the closure ran (requested
//! bytes, and the size-class bytes jemalloc hands out beside them), the net bytes left
//! behind and the peak of the net bytes while it ran. [`measure_future`]
//! does the same for a future, counting every poll on whichever thread polls it, as
//! [tracked tasks](crate::task) are. Other threads' allocations are never counted, so
//! tests running in parallel under `cargo test` do not disturb each other.
//!
//! ```rust,standalone_crate
//! #[global_allocator]
//! static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
//!
//! fn main() {
//!     let (sum, usage) = memsentry::measure(|| {
//!         let squares: Vec<u64> = (0..1000).map(|i| i * i).collect();
//!         squares.iter().sum::<u64>()
//!     });
//!     assert_eq!(sum, 332_833_500);
//!     assert_eq!(usage.allocations(), 1);
//!     assert_eq!(usage.allocated_bytes(), 8000);
//!     assert_eq!(usage.live_bytes(), 0); // the vector was freed inside
//!     assert_eq!(usage.peak_bytes(), 8000);
//! }
//! ```
//!
//! # What a scope counts
//!
//! - The calling thread only, from the scope's start to its end; a thread spawned inside
//!   is not counted. To count one, measure its body on its own thread and add the
//!   usages: `usage + thread_usage` (counts add exactly; the peaks add to an upper bound
//!   of the joint peak).
//! - Frees cross threads: a block the scope allocated may be freed by another thread (not
//!   counted here), and the scope may free blocks allocated before it or elsewhere
//!   (counted, so [`live_bytes`](Usage::live_bytes) may be negative). The counts of what
//!   the scope *did* are exact either way.
//! - Leaks are judged by block, not by thread: with [sites](Measure::sites) on, every
//!   allocation of the scope is sampled, and a leak is a block the scope allocated that
//!   is still live when it ends, whoever freed the rest.
//! - A scope inside a scope counts for both. memsentry's own allocations (the sampler's
//!   tables, task bookkeeping) are never counted in a scope.
//! - Counts and bytes work over any inner allocator ([`MemSentry::with_allocator`](crate::MemSentry::with_allocator)):
//!   class bytes are jemalloc's size classes (with another allocator they are what
//!   jemalloc would hand out). Sites need nothing of jemalloc either.
//!
//! # Cost
//!
//! No scope open: nothing (the allocation path is the same instructions). Inside a scope
//! every allocation and free takes the task branch the allocator has for tracked tasks,
//! plus a few adds and a compare for the peak. With [sites](Measure::sites), every
//! allocation is also sampled (a stack walk each, and a block of at most 4 KiB is moved
//! into a 4 KiB block of its own while it lives): a test setting, for finding culprits.
//!
//! # Assertions
//!
//! [`assert_allocations!`](crate::assert_allocations), [`assert_peak!`](crate::assert_peak)
//! and [`assert_no_leaks!`](crate::assert_no_leaks) measure a block with sites on and
//! panic with the top call sites when the budget is exceeded; `#[memsentry::limit(..)]`
//! does it for a whole test function.

mod baseline;
mod collect;
#[cfg(feature = "criterion")]
pub mod criterion;

use std::fmt;
use std::future::Future;
use std::ops::Add;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use baseline::{Baseline, BaselineError, Comparison, UPDATE_VAR};

use crate::Bytes;
use crate::hot::task::{self as tally, ScopeCounts};
use crate::profile::{Profile, SampleType};
use collect::Collector;

/// 1,024 bytes, for budgets: `assert_peak!(< 64 * KiB, ...)`.
#[allow(non_upper_case_globals)]
pub const KiB: u64 = 1 << 10;
/// 1,048,576 bytes.
#[allow(non_upper_case_globals)]
pub const MiB: u64 = 1 << 20;
/// 1,073,741,824 bytes.
#[allow(non_upper_case_globals)]
pub const GiB: u64 = 1 << 30;

/// How to measure: [`run`](Self::run) a closure or [`run_future`](Self::run_future) a
/// future.
#[derive(Clone, Copy, Debug, Default)]
#[must_use = "nothing is measured until `run` or `run_future`"]
pub struct Measure {
    sites: bool,
}

impl Measure {
    /// Counts only (what [`measure`] does).
    pub const fn new() -> Measure {
        Measure { sites: false }
    }

    /// Also samples every allocation of the scope, on its thread only (the process's
    /// sampling rate is unchanged), so [`Usage::sites`] names the call sites and
    /// [`Usage::leaked_blocks`] counts what is still live at the end. Costs a stack walk
    /// per allocation: for tests.
    pub const fn sites(mut self, enabled: bool) -> Measure {
        self.sites = enabled;
        self
    }

    /// Runs `f` in a scope; returns its result and what it allocated. A panic in `f`
    /// closes the scope as it unwinds.
    pub fn run<R>(self, f: impl FnOnce() -> R) -> (R, Usage) {
        let collector = self.sites.then(|| Arc::new(Collector::default()));
        let scope = Entered::enter(collector.clone(), &ScopeCounts::default(), true);
        let output = f();
        let counts = scope.exit();
        (output, Usage::new(counts, collector.as_deref()))
    }

    /// Wraps `future`: every poll runs in its scope, on whichever thread polls it; the
    /// output comes with what all the polls allocated.
    pub fn run_future<F: Future>(self, future: F) -> Measured<F> {
        Measured {
            inner: future,
            counts: ScopeCounts::default(),
            collector: self.sites.then(|| Arc::new(Collector::default())),
        }
    }
}

/// Runs `f` and returns what it allocated on this thread: see the [module docs](crate::budget).
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    Measure::new().run(f)
}

/// Wraps `future` so that its output comes with what its polls allocated: see the
/// [module docs](crate::budget).
///
/// ```rust,standalone_crate
/// #[global_allocator]
/// static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
///
/// fn main() {
///     let future = memsentry::measure_future(async { vec![0u8; 100].len() });
///     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
///     let mut future = std::pin::pin!(future);
///     let std::task::Poll::Ready((len, usage)) = future.as_mut().poll(&mut cx) else {
///         unreachable!()
///     };
///     assert_eq!((len, usage.allocations(), usage.allocated_bytes()), (100, 1, 100));
/// }
/// ```
pub fn measure_future<F: Future>(future: F) -> Measured<F> {
    Measure::new().run_future(future)
}

/// A scope open on this thread, until [`exit`](Self::exit) (or a panic's unwinding).
struct Entered {
    /// The counts it opened with (a measured future's earlier polls).
    start: ScopeCounts,
    /// The scope open before, which gets this one's counts when it closes.
    previous: Option<ScopeCounts>,
    previous_collector: Option<Arc<Collector>>,
    /// This scope's collector, handed to the enclosing scope's when it closes (a closure's
    /// scope: a future's polls each end, and its collector lives on).
    hand_over: Option<Arc<Collector>>,
    previous_rate: Option<u64>,
    open: bool,
}

impl Entered {
    /// Opens a scope counting on from `start`, collecting into `collector` if any;
    /// `hand_over`: when it closes, the enclosing scope's collector takes what this one
    /// collected.
    fn enter(collector: Option<Arc<Collector>>, start: &ScopeCounts, hand_over: bool) -> Entered {
        // Everything that may allocate comes before the scope opens: setting the
        // thread's collector the first time registers its destructor.
        let previous_collector = collect::set_current(collector.clone());
        let previous_rate = collector
            .is_some()
            .then(|| crate::hot::sampler::set_thread_rate(1));
        let previous = tally::open_scope(start);
        Entered {
            start: *start,
            previous,
            previous_collector,
            hand_over: collector.filter(|_| hand_over),
            previous_rate,
            open: true,
        }
    }

    /// Closes the scope, returning its counts; the scope that was open before opens again
    /// with what this one added to them.
    fn exit(mut self) -> ScopeCounts {
        self.close()
    }

    fn close(&mut self) -> ScopeCounts {
        self.open = false;
        let counts = tally::close_scope(None);
        if let Some(mut outer) = self.previous.take() {
            outer.absorb(&counts.since(&self.start));
            let _ = tally::open_scope(&outer);
        }
        if let Some(rate) = self.previous_rate.take() {
            crate::hot::sampler::set_thread_rate(rate);
        }
        let outer_collector = self.previous_collector.take();
        if let (Some(outer), Some(inner)) = (&outer_collector, self.hand_over.take()) {
            outer.absorb(&inner);
        }
        collect::set_current(outer_collector);
        counts
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if self.open {
            let _ = self.close();
        }
    }
}

/// A future measured by [`measure_future`] or
/// [`Measure::run_future`]: its output is `(output, Usage)`.
#[must_use = "futures do nothing unless polled"]
pub struct Measured<F> {
    inner: F,
    counts: ScopeCounts,
    collector: Option<Arc<Collector>>,
}

impl<F> fmt::Debug for Measured<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Measured")
            .field("allocations", &self.counts.allocations)
            .field("sites", &self.collector.is_some())
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for Measured<F> {
    type Output = (F::Output, Usage);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is structurally pinned: it is never moved out of `self` nor
        // given out unpinned; the other fields are plain data, only read and overwritten.
        let this = unsafe { self.get_unchecked_mut() };
        let scope = Entered::enter(this.collector.clone(), &this.counts, false);
        // SAFETY: see above; `inner` stays where it is.
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        let poll = inner.poll(cx);
        this.counts = scope.exit();
        match poll {
            Poll::Ready(output) => {
                Poll::Ready((output, Usage::new(this.counts, this.collector.as_deref())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What a scope allocated: see the [module docs](crate::budget). `Display` gives a
/// one-line summary.
#[derive(Clone, Debug)]
pub struct Usage {
    counts: ScopeCounts,
    sites: Option<Profile>,
}

impl Usage {
    fn new(counts: ScopeCounts, collector: Option<&Collector>) -> Usage {
        Usage {
            counts,
            sites: collector.map(Collector::profile),
        }
    }

    /// Allocations (a `realloc` counts as a free and an allocation).
    #[must_use]
    pub fn allocations(&self) -> u64 {
        self.counts.allocations
    }

    /// Frees.
    #[must_use]
    pub fn frees(&self) -> u64 {
        self.counts.frees
    }

    /// Requested bytes allocated.
    #[must_use]
    pub fn allocated_bytes(&self) -> u64 {
        self.counts.allocated_bytes
    }

    /// Requested bytes freed.
    #[must_use]
    pub fn freed_bytes(&self) -> u64 {
        self.counts.freed_bytes
    }

    /// Bytes allocated in jemalloc's size classes (what the blocks occupy).
    #[must_use]
    pub fn allocated_class_bytes(&self) -> u64 {
        self.counts.allocated_class_bytes
    }

    /// Bytes freed in jemalloc's size classes.
    #[must_use]
    pub fn freed_class_bytes(&self) -> u64 {
        self.counts.freed_class_bytes
    }

    /// Requested bytes allocated minus freed: what the scope left behind (negative if it
    /// freed more than it allocated).
    #[must_use]
    pub fn live_bytes(&self) -> i64 {
        self.counts.net
    }

    /// The highest the scope's net bytes ([`live_bytes`](Self::live_bytes) as it went)
    /// reached while it ran; 0 if they never went above where they started.
    #[must_use]
    pub fn peak_bytes(&self) -> u64 {
        u64::try_from(self.counts.peak).unwrap_or(0)
    }

    /// With [sites](Measure::sites): the scope's allocations per call stack (every one
    /// sampled: the `alloc_*` values are exact counts) and, as in-use values, the blocks
    /// it allocated that were still live at its end.
    #[must_use]
    pub fn sites(&self) -> Option<&Profile> {
        self.sites.as_ref()
    }

    /// With [sites](Measure::sites): how many blocks the scope allocated are still live
    /// (its leaks, judged by block).
    #[must_use]
    pub fn leaked_blocks(&self) -> Option<u64> {
        self.sites.as_ref().map(|p| p.totals().1.samples)
    }

    /// With [sites](Measure::sites): the bytes of those blocks.
    #[must_use]
    pub fn leaked_bytes(&self) -> Option<u64> {
        self.sites
            .as_ref()
            .map(|p| p.totals().1.bytes.round() as u64)
    }

    /// The call sites that allocated most (by count, or by bytes for `bytes`), at most
    /// `limit` of them: `30 × my_crate::parse::token (lib.rs:88)`. Empty without sites.
    #[must_use]
    pub fn top_sites(&self, by: SampleType, limit: usize) -> Vec<Site> {
        self.sites
            .as_ref()
            .map_or_else(Vec::new, |profile| sites(profile, by, limit))
    }

    /// Checks `limits`; the first one exceeded, with the top sites, as the error.
    ///
    /// # Errors
    ///
    /// [`BudgetExceeded`] when a limit is exceeded.
    pub fn check(&self, limits: &Limits) -> Result<(), BudgetExceeded> {
        let checks = [
            (Quantity::Allocations, limits.allocations),
            (Quantity::AllocatedBytes, limits.allocated_bytes),
            (Quantity::Peak, limits.peak_bytes),
            (Quantity::Leaks, limits.leaks),
        ];
        for (quantity, limit) in checks {
            if let Some(limit) = limit
                && let Some(value) = self.value(quantity)
                && value > limit
            {
                return Err(self.exceeded(quantity, "<=", limit));
            }
        }
        Ok(())
    }

    /// Panics with [`check`](Self::check)'s message if a limit is exceeded: what
    /// `#[memsentry::limit]` calls at the end of a test.
    ///
    /// # Panics
    ///
    /// When a limit is exceeded.
    #[track_caller]
    pub fn enforce(&self, limits: &Limits) {
        if let Err(error) = self.check(limits) {
            panic!("{error}");
        }
    }

    fn value(&self, quantity: Quantity) -> Option<u64> {
        match quantity {
            Quantity::Allocations => Some(self.allocations()),
            Quantity::AllocatedBytes => Some(self.allocated_bytes()),
            Quantity::Peak => Some(self.peak_bytes()),
            Quantity::Leaks => self.leaked_blocks(),
        }
    }

    fn exceeded(&self, quantity: Quantity, op: &'static str, limit: u64) -> BudgetExceeded {
        let (by, limit_text, value_text) = match quantity {
            Quantity::Allocations => (
                SampleType::AllocObjects,
                limit.to_string(),
                format!("allocated {} times", self.allocations()),
            ),
            Quantity::AllocatedBytes => (
                SampleType::AllocSpace,
                Bytes(limit).to_string(),
                format!("allocated {}", Bytes(self.allocated_bytes())),
            ),
            Quantity::Peak => (
                SampleType::AllocSpace,
                Bytes(limit).to_string(),
                format!("peaked at {}", Bytes(self.peak_bytes())),
            ),
            Quantity::Leaks => (
                SampleType::InuseObjects,
                limit.to_string(),
                format!(
                    "leaked {} blocks ({})",
                    self.leaked_blocks().unwrap_or(0),
                    Bytes(self.leaked_bytes().unwrap_or(0))
                ),
            ),
        };
        BudgetExceeded {
            message: format!("{value_text} (budget {op} {limit_text})"),
            top: self.top_sites(by, 5),
            by,
        }
    }
}

impl Add for Usage {
    type Output = Usage;

    /// Counts add; the peaks add to an upper bound (two threads' peaks need not
    /// coincide); sites are kept from `self` only.
    fn add(self, other: Usage) -> Usage {
        let mut counts = self.counts;
        let peak = counts.peak.saturating_add(other.counts.peak);
        counts.absorb(&other.counts);
        counts.peak = peak;
        Usage {
            counts,
            sites: self.sites,
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = self.live_bytes();
        write!(
            f,
            "{} allocations ({}), {} frees ({}), {}{} left, peak {}",
            self.allocations(),
            Bytes(self.allocated_bytes()),
            self.frees(),
            Bytes(self.freed_bytes()),
            if live < 0 { "-" } else { "" },
            Bytes(live.unsigned_abs()),
            Bytes(self.peak_bytes())
        )?;
        if let Some(leaked) = self.leaked_blocks() {
            write!(f, ", {leaked} blocks still live")?;
        }
        Ok(())
    }
}

/// What a budget limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quantity {
    Allocations,
    AllocatedBytes,
    Peak,
    Leaks,
}

/// Limits for [`Usage::check`], as `#[memsentry::limit(..)]` sets them; each at most
/// (inclusive), unset ones unchecked.
///
/// ```
/// use memsentry::budget::{Limits, MiB};
/// let limits = Limits::new().allocations(40).peak_bytes(24 * MiB).leaks(0);
/// # let _ = limits;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Limits {
    allocations: Option<u64>,
    allocated_bytes: Option<u64>,
    peak_bytes: Option<u64>,
    leaks: Option<u64>,
}

impl Limits {
    /// No limit.
    pub const fn new() -> Limits {
        Limits {
            allocations: None,
            allocated_bytes: None,
            peak_bytes: None,
            leaks: None,
        }
    }

    /// At most this many allocations.
    pub const fn allocations(mut self, at_most: u64) -> Limits {
        self.allocations = Some(at_most);
        self
    }

    /// At most this many requested bytes allocated.
    pub const fn allocated_bytes(mut self, at_most: u64) -> Limits {
        self.allocated_bytes = Some(at_most);
        self
    }

    /// A peak of at most this many net bytes.
    pub const fn peak_bytes(mut self, at_most: u64) -> Limits {
        self.peak_bytes = Some(at_most);
        self
    }

    /// At most this many blocks allocated and still live at the end (needs
    /// [sites](Measure::sites)).
    pub const fn leaks(mut self, at_most: u64) -> Limits {
        self.leaks = Some(at_most);
        self
    }
}

/// A call site of a scope's allocations (see [`Usage::top_sites`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Site {
    /// Allocations (or bytes, or blocks still live: whatever the list was sorted by).
    pub value: f64,
    /// The function: the first frame outside Rust's `std`, `core` and `alloc` (and
    /// memsentry's measuring, into which an optimiser may inline the measured closure).
    pub function: String,
    /// Its file (the name alone) and line, if known.
    pub location: Option<(String, u32)>,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} × {}", self.value.round(), self.function)?;
        if let Some((file, line)) = &self.location {
            write!(f, " ({file}:{line})")?;
        }
        Ok(())
    }
}

/// The top `limit` sites of `profile` by `by`.
fn sites(profile: &Profile, by: SampleType, limit: usize) -> Vec<Site> {
    let mut sums: Vec<Site> = Vec::new();
    for sample in profile.samples() {
        let value = by.value(sample);
        if value <= 0.0 {
            continue;
        }
        let frames: Vec<_> = profile.frames(sample).collect();
        let frame = frames
            .iter()
            .find(|frame| !frame.is_library())
            .or(frames.first());
        let Some(frame) = frame else { continue };
        let function = if frame.function.is_empty() {
            format!("{:#x}", frame.address)
        } else {
            frame.function.to_owned()
        };
        let location = (!frame.file.is_empty()).then(|| {
            let file = frame.file.rsplit('/').next().unwrap_or(frame.file);
            (file.to_owned(), frame.line)
        });
        match sums
            .iter_mut()
            .find(|s| s.function == function && s.location == location)
        {
            Some(site) => site.value += value,
            None => sums.push(Site {
                value,
                function,
                location,
            }),
        }
    }
    sums.sort_by(|a, b| b.value.total_cmp(&a.value));
    sums.truncate(limit);
    sums
}

/// A budget was exceeded: what, by how much, and the top call sites.
#[derive(Clone, Debug)]
pub struct BudgetExceeded {
    message: String,
    by: SampleType,
    top: Vec<Site>,
}

impl BudgetExceeded {
    /// The top call sites behind it (empty without sites).
    #[must_use]
    pub fn top(&self) -> &[Site] {
        &self.top
    }
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if self.top.is_empty() {
            return Ok(());
        }
        let unit = match self.by {
            SampleType::AllocSpace | SampleType::InuseSpace => " (bytes)",
            _ => "",
        };
        write!(f, "; top{unit}: ")?;
        for (i, site) in self.top.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            site.fmt(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for BudgetExceeded {}

/// For the assertion macros: measures `f` with sites, and panics unless
/// `quantity op limit` holds. Not part of the API.
#[doc(hidden)]
#[track_caller]
pub fn __assert<R>(
    quantity: &str,
    op: &'static str,
    holds: impl FnOnce(u64) -> bool,
    limit: u64,
    f: impl FnOnce() -> R,
) -> R {
    let quantity = match quantity {
        "allocations" => Quantity::Allocations,
        "peak" => Quantity::Peak,
        _ => Quantity::Leaks,
    };
    let (output, usage) = Measure::new().sites(true).run(f);
    let value = usage.value(quantity).unwrap_or(0);
    if !holds(value) {
        panic!("{}", usage.exceeded(quantity, op, limit));
    }
    output
}

/// Fails (panics, naming the top call sites) unless the block's allocations compare to
/// the limit as asked: `assert_allocations!(<= 40, { ... })`. Returns the block's value.
///
/// ```rust,standalone_crate
/// #[global_allocator]
/// static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
///
/// fn main() {
///     let words = memsentry::assert_allocations!(<= 1, {
///         "a b c".split(' ').collect::<Vec<_>>()
///     });
///     assert_eq!(words.len(), 3);
/// }
/// ```
#[macro_export]
macro_rules! assert_allocations {
    ($op:tt $limit:expr, $body:expr $(,)?) => {{
        let limit: u64 = $limit;
        $crate::budget::__assert(
            "allocations",
            ::core::stringify!($op),
            |value| value $op limit,
            limit,
            || $body,
        )
    }};
}

/// Fails unless the block's peak of net bytes compares to the limit as asked:
/// `assert_peak!(< 24 * MiB, { ... })`. Returns the block's value.
///
/// ```rust,standalone_crate
/// #[global_allocator]
/// static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
///
/// use memsentry::budget::KiB;
///
/// fn main() {
///     let total = memsentry::assert_peak!(< 64 * KiB, {
///         vec![1u8; 40 * 1024].iter().map(|&b| u64::from(b)).sum::<u64>()
///     });
///     assert_eq!(total, 40 * 1024);
/// }
/// ```
#[macro_export]
macro_rules! assert_peak {
    ($op:tt $limit:expr, $body:expr $(,)?) => {{
        let limit: u64 = $limit;
        $crate::budget::__assert(
            "peak",
            ::core::stringify!($op),
            |value| value $op limit,
            limit,
            || $body,
        )
    }};
}

/// Fails unless every block the block allocated is freed by its end (judged by block:
/// whoever frees it). Returns the block's value.
///
/// ```rust,standalone_crate
/// #[global_allocator]
/// static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
///
/// fn main() {
///     let len = memsentry::assert_no_leaks!({ format!("{}-{}", 1, 2).len() });
///     assert_eq!(len, 3);
/// }
/// ```
#[macro_export]
macro_rules! assert_no_leaks {
    ($body:expr $(,)?) => {{ $crate::budget::__assert("leaks", "==", |value| value == 0, 0, || $body) }};
}
