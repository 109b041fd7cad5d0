//! Sampled heap profiles: which call sites hold memory now, and which allocated the most.
//!
//! memsentry samples allocations as a Poisson process over allocated bytes, with mean
//! `R` bytes between samples (the *sample rate*, 512 KiB by default, like Go's
//! `MemProfileRate`). For each sampled block it records the call stack (instruction
//! pointers only, no symbolization, no allocation in the allocator) in a table that frees
//! keep up to date. [`heap`] turns the table into a [`Profile`]: per call stack and block
//! size, estimated allocations (cumulative since start) and estimated in-use blocks (live
//! now), in objects and bytes.
//!
//! # Estimates
//!
//! An allocation of `s` bytes is sampled with probability `p = 1 − e^(−s/R)`; each sample
//! is weighted by `1/p` *before* anything is summed (weighting sums of mixed sizes would
//! be biased), so every figure is an unbiased estimate of the true one. For blocks much
//! smaller than `R`, the standard deviation of an in-use estimate of `B` bytes is about
//! `sqrt(B × R)`: at the default rate a site holding 1 GiB is known within about ±2%,
//! one holding 64 MiB within about ±9%, one holding 1 MiB only within about ±70% (one
//! standard deviation). Blocks larger than a few `R` are sampled all but surely and known
//! exactly. Raw sample counts come with every estimate.
//!
//! # Rate
//!
//! Set the rate with `MEMSENTRY_SAMPLE_RATE` (`524288`, `512KiB`, `1MiB`, `0` = off,
//! `1` = every allocation) or [`set_sample_rate`] at run time. Samples keep the rate they
//! were taken at, so their weights stay right when it changes.
//!
//! # Example
//!
//! ```rust,standalone_crate
//! #[global_allocator]
//! static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
//!
//! fn main() -> Result<(), memsentry::profile::ProfileError> {
//!     memsentry::profile::set_sample_rate(64 * 1024);
//!     let kept: Vec<Vec<u8>> = (0..1000).map(|_| vec![0u8; 1024]).collect();
//!     let profile = memsentry::profile::heap();
//!     let path = std::env::temp_dir().join("memsentry-doc-heap.pb.gz");
//!     profile.write_pprof(&path)?; // then: go tool pprof -top <path>
//!     # drop(kept);
//!     # std::fs::remove_file(&path).ok();
//!     Ok(())
//! }
//! ```
//!
//! # Cost
//!
//! Unsampled allocations pay one subtraction and one compare; unsampled frees of at most
//! 4 KiB a test of the address (no load), larger ones a load and a bit test in an 8 KiB
//! filter. A sample costs a stack walk (following frame pointers where the program keeps
//! them, a few hundred instructions; otherwise DWARF unwinding through libgcc's
//! `_Unwind_Backtrace`, ~27,000: see [`unwinder`]) and a few table operations: at the
//! default rate that is one sample per 512 KiB allocated. A sampled block of at most
//! 4 KiB (aligned to at most 16) is moved to a 4 KiB block of its own, 16 bytes in, so
//! that frees can tell it by its address (see [`MemSentry`](crate::MemSentry)): about
//! 0.8% more memory for small blocks at the default rate, all of it at rate 1.
//! [`usage`] reports the memory the sampler holds (its tables, and placed samples' room).
//! See `BENCHMARKS.md` for measured figures.

mod diff;
pub mod dump;
#[cfg(feature = "flamegraph")]
mod flamegraph;
mod leaks;
mod lifetimes;
mod pprof;
mod symbolize;
mod views;

pub use diff::DiffError;
pub(crate) use leaks::to_json as leaks_json;
pub use leaks::{
    LeakSuspects, LeakTracker, Suspect, leak_suspects, observe_leaks, reset_leaks, track_leaks,
};
pub use lifetimes::{LifetimeRow, LifetimeTable, lifetimes};
pub use views::{SampleType, Top, TopRow, UnknownSampleType};

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::hot::sampler;
pub use crate::unwind::Unwinder;

/// The sampling rate unless set otherwise: one sample per 512 KiB allocated, on average
/// (Go's `MemProfileRate` default).
pub const DEFAULT_RATE: u64 = sampler::DEFAULT_RATE;

/// The current sampling rate: mean bytes between samples (0 = off, 1 = every allocation).
#[must_use]
pub fn sample_rate() -> u64 {
    sampler::rate()
}

/// Sets the sampling rate for samples taken from now on: mean bytes between samples;
/// 0 turns sampling off, 1 samples every allocation. Samples already taken keep the rate
/// they were taken at. The calling thread uses the new rate at once; other threads from
/// their next sample on (with sampling off, within 1 MiB of allocation): a thread that
/// is still counting down a long interval drawn at a low rate keeps it.
///
/// ```
/// memsentry::profile::set_sample_rate(1 << 20);
/// assert_eq!(memsentry::profile::sample_rate(), 1 << 20);
/// # memsentry::profile::set_sample_rate(memsentry::profile::DEFAULT_RATE);
/// ```
pub fn set_sample_rate(bytes: u64) {
    sampler::set_rate(bytes);
}

/// How samples' stacks are walked now.
///
/// A process starts out [`Unwinder::Checking`]: its first samples walk the frame-pointer
/// chain, memsentry's unwind table (the loaded objects' DWARF call-frame information,
/// parsed once into a sorted table of rules, see `BENCHMARKS.md`) and libgcc's DWARF
/// unwinder, and compare. If the frame-pointer walks always agree with libgcc's (the
/// program keeps frame pointers: built with `-C force-frame-pointers=yes`), sampling then
/// follows frame pointers; otherwise, if the table walks agree, the table (the usual case
/// for a build without frame pointers, three to four times the frame-pointer walk's
/// instructions); otherwise libgcc, about a hundred times the frame-pointer walk, said once
/// on stderr. Frame-pointer and table walks exist on x86-64 only.
///
/// ```
/// use memsentry::profile::{Unwinder, unwinder};
/// assert!(matches!(
///     unwinder(),
///     Unwinder::Checking | Unwinder::FramePointers | Unwinder::Table | Unwinder::Dwarf
/// ));
/// ```
#[must_use]
pub fn unwinder() -> Unwinder {
    crate::unwind::current()
}

/// Overrides the stack-walk choice (see [`unwinder`]): `Dwarf` where frame pointers or the
/// table give wrong stacks despite the check (code that keeps no frame pointer yet leaves
/// one that looks right), `FramePointers` or `Table` to skip the check, `Checking` to
/// check again. Stacks already sampled keep the frames they were taken with.
///
/// ```
/// use memsentry::profile::{Unwinder, set_unwinder, unwinder};
/// set_unwinder(Unwinder::Dwarf);
/// assert_eq!(unwinder(), Unwinder::Dwarf);
/// # set_unwinder(Unwinder::Checking);
/// ```
pub fn set_unwinder(unwinder: Unwinder) {
    crate::unwind::set(unwinder);
}

/// Names the program's version in every profile it writes from now on (a comment of the
/// pprof file, beside the program's name and its build ID), so that a profile collected
/// from a fleet says which release it came from. The first call wins.
///
/// ```
/// memsentry::profile::set_program_version(env!("CARGO_PKG_VERSION"));
/// ```
pub fn set_program_version(version: &str) {
    let _ = PROGRAM_VERSION.set(version.to_owned());
}

static PROGRAM_VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The version [`set_program_version`] set.
pub(crate) fn program_version() -> Option<&'static str> {
    PROGRAM_VERSION.get().map(String::as_str)
}

/// A goroutine-style profile of the tracked tasks, gzipped `profile.proto`: what the
/// endpoint's `/debug/pprof/goroutine` serves.
pub(crate) fn encode_tasks<W: io::Write>(rows: &[(&str, u64)], writer: W) -> io::Result<()> {
    pprof::encode_message(&pprof::goroutine_message(rows, SystemTime::now()), writer)
}

/// Makes sampling reproducible: threads that start sampling after this call draw their
/// sample points from streams derived from `seed` (in the order they start). Meant for
/// tests and experiments; by default each process seeds from the clock.
pub fn set_seed(seed: u64) {
    sampler::set_seed(seed);
}

/// What the sampler itself holds: the price of observation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SamplerUsage {
    /// Sampled blocks still allocated (records in the live table).
    pub live_samples: usize,
    /// Distinct call stacks seen since start.
    pub stacks: usize,
    /// Approximate bytes of the sampler's tables and filter, and of the room placed
    /// samples take beyond their requests (a sampled block of at most 4 KiB lives in a
    /// 4 KiB block of its own, see [`MemSentry`](crate::MemSentry)); not counting
    /// symbolization caches, which exist only while a profile is taken (`BENCHMARKS.md`).
    pub bytes: usize,
    /// The current sampling rate.
    pub sample_rate: u64,
    /// The unwind table's memory, for walking stacks without frame pointers
    /// ([`Unwinder::Table`]): its rows (8 bytes of address, 8 of rule, each), 0 until it
    /// is built (at the first sample, when it is needed).
    pub unwind_table_bytes: u64,
    /// The unwind table's rows (address ranges with one unwind rule each).
    pub unwind_table_rows: u64,
    /// How long building the last unwind table took, in microseconds.
    pub unwind_table_build_micros: u64,
    /// Rows of the loaded objects' call-frame information the table cannot express (a
    /// DWARF expression, a signal frame): a walk that reaches one stops there.
    pub unwind_table_unsupported_rows: u64,
    /// Table walks that stopped before the outermost frame (an address with no rule, or a
    /// rule that pointed outside the stack).
    pub unwind_walks_stopped: u64,
}

/// Sizes of the sampler's tables.
#[must_use]
pub fn usage() -> SamplerUsage {
    let usage = crate::sampler::usage();
    #[cfg(target_arch = "x86_64")]
    let table = crate::unwind::table::usage();
    #[cfg(not(target_arch = "x86_64"))]
    let table = [0; 5];
    SamplerUsage {
        live_samples: usage.live_samples,
        stacks: usage.stacks,
        bytes: usage.bytes,
        sample_rate: sampler::rate(),
        unwind_table_bytes: table[0],
        unwind_table_rows: table[1],
        unwind_table_build_micros: table[2],
        unwind_table_unsupported_rows: table[3],
        unwind_walks_stopped: table[4],
    }
}

/// Estimated objects and bytes, with the raw sample count behind them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Estimate {
    /// Estimated number of blocks.
    pub objects: f64,
    /// Estimated requested bytes.
    pub bytes: f64,
    /// Number of samples the estimate rests on.
    pub samples: u64,
}

impl Estimate {
    fn add(&mut self, other: &Estimate) {
        self.objects += other.objects;
        self.bytes += other.bytes;
        self.samples += other.samples;
    }
}

/// One row of a profile: a call stack and a block size.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    stack: usize,
    /// Requested size of the blocks, in bytes.
    pub size: u64,
    /// Allocations since start (cumulative).
    pub alloc: Estimate,
    /// Blocks still allocated when the profile was taken.
    pub inuse: Estimate,
    /// How long the oldest of those blocks' samples has been alive: a site whose blocks
    /// only ever get older is a leak candidate. `None` without live samples. Read off the
    /// kernel's coarse monotonic clock: exact to a timer tick (a few milliseconds).
    pub oldest: Option<Duration>,
    /// In a [diff](Profile::diff): the base profile's in-use estimate for this row (zero
    /// if the row was not in the base), so `inuse − base_inuse` is the change. `None` in
    /// a profile that is not a diff.
    pub base_inuse: Option<Estimate>,
    /// The [task](crate::task) that allocated the blocks, if one was being polled.
    pub task: Option<&'static str>,
    /// How long this call stack's sampled blocks lived, the median of those freed so far
    /// (the upper bound of its bucket, see [`LifetimeTable::bounds`]); `None` if none was
    /// freed, or it lived longer than the last bound. In pprof: the `median_lifetime`
    /// label, in nanoseconds (`go tool pprof -tags`).
    pub median_lifetime: Option<Duration>,
}

/// One frame of a call stack, inlined frames included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The function, demangled without its hash; empty if it could not be symbolized.
    pub function: &'a str,
    /// Its source file; empty if unknown.
    pub file: &'a str,
    /// Its line; 0 if unknown.
    pub line: u32,
    /// The instruction address (shared by a function and the frames inlined into it).
    pub address: u64,
}

impl Frame<'_> {
    /// Whether the frame is Rust's own library code (`std`, `core`, `alloc`), memsentry's
    /// measuring (`memsentry::budget`), or unknown: a site names the first frame that is
    /// not. Told by the source file where there is one (the standard library's paths run
    /// through `/rustc/<hash>/library/`), by the function's path otherwise.
    pub(crate) fn is_library(&self) -> bool {
        // The measuring itself, where an optimiser inlined the measured closure into it.
        if self.function.is_empty() || self.function.starts_with("memsentry::budget::") {
            return true;
        }
        if !self.file.is_empty() {
            return self.file.contains("/rustc/")
                || ["library/std/", "library/core/", "library/alloc/"]
                    .iter()
                    .any(|dir| self.file.contains(dir));
        }
        // Without line tables: `alloc::…`, `<alloc::…>`, `<str>::…` and `<[T]>::…` (methods
        // of primitive types, all the standard library's), `<T as alloc::…>::…`.
        let function = self.function.trim_start_matches('<');
        ["alloc::", "core::", "std::", "str>", "["]
            .iter()
            .any(|prefix| function.starts_with(prefix))
            || [" as alloc::", " as core::", " as std::"]
                .iter()
                .any(|trait_path| function.contains(trait_path))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Function {
    pub(crate) name: Arc<str>,
    pub(crate) system_name: Arc<str>,
    pub(crate) file: Arc<str>,
}

#[derive(Clone, Debug)]
pub(crate) struct Location {
    pub(crate) address: u64,
    /// Index into `Profile::mappings`, if the address is in a mapped file.
    pub(crate) mapping: Option<usize>,
    /// (function index, line), innermost first.
    pub(crate) lines: Vec<(usize, u32)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Mapping {
    pub(crate) start: u64,
    pub(crate) limit: u64,
    pub(crate) offset: u64,
    pub(crate) file: String,
    /// The file's GNU build ID in hex; empty if it has none.
    pub(crate) build_id: String,
}

/// Where a profile's addresses become function names, files and lines.
///
/// ```rust,standalone_crate
/// # #[global_allocator]
/// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
/// use memsentry::profile::{self, Symbolization};
/// let profile = profile::heap_with(Symbolization::Offline);
/// assert_eq!(profile.symbolization(), Symbolization::Offline);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Symbolization {
    /// In this process, when the profile is taken (the default): every view shows
    /// names. Costs the time and memory measured in `BENCHMARKS.md`, with a bounded
    /// cache that makes later profiles cheaper.
    #[default]
    InProcess,
    /// Not at all: the profile keeps addresses, with each binary's mapping and GNU build
    /// ID, for `go tool pprof BINARY PROFILE` (or a continuous-profiling backend) to
    /// symbolize later, against the same binary or its separate debug info. The cheap
    /// choice for stripped binaries and for frequent dumps. Views in this process show
    /// `0x…` addresses. The allocator's own frames, which only names reveal, are left
    /// for the reader to drop: the pprof file lists them in `drop_frames`.
    Offline,
}

impl fmt::Display for Symbolization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Symbolization::InProcess => "in-process",
            Symbolization::Offline => "offline",
        })
    }
}

/// A heap profile: see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Profile {
    taken_at: SystemTime,
    sample_rate: u64,
    /// How stacks were being walked when the profile was taken.
    unwinder: Unwinder,
    symbolization: Symbolization,
    /// Set in a diff: the profile it was taken against.
    base: Option<diff::Base>,
    /// Set in a delta profile ([`Profile::delta`]): the window its `alloc_*` values cover.
    window: Option<Duration>,
    samples: Vec<Sample>,
    /// Location indices, leaf first.
    stacks: Vec<Vec<usize>>,
    locations: Vec<Location>,
    functions: Vec<Function>,
    mappings: Vec<Mapping>,
}

/// A profile could not be written.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProfileError {
    /// Creating or writing the file failed.
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::Write { path, source } => {
                write!(f, "cannot write profile to {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for ProfileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProfileError::Write { source, .. } => Some(source),
        }
    }
}

/// Takes a heap profile now, without stopping the program: other threads keep
/// allocating (and sampling) while it is read. Symbolization happens here, with a cache.
///
/// Allocations made while the profile is built are counted but not sampled.
#[must_use]
pub fn heap() -> Profile {
    heap_with(Symbolization::InProcess)
}

/// [`heap`], symbolized as `symbolization` says: [`Symbolization::Offline`] skips
/// symbolization, for a cheaper dump that `go tool pprof BINARY PROFILE` symbolizes.
#[must_use]
pub fn heap_with(symbolization: Symbolization) -> Profile {
    let taken_at = SystemTime::now();
    let sample_rate = sampler::rate();
    let Some(_guard) = sampler::Guard::enter() else {
        // Only reachable from inside the sampler itself: nothing sensible to read.
        return Profile::empty(taken_at, sample_rate);
    };
    let now = sampler::now_nanos();
    let mut copy = crate::sampler::read();
    copy.lifetimes = crate::sampler::lifetimes();
    Profile::build(taken_at, now, sample_rate, copy, symbolization)
}

/// The sampled heap as it stood at the process's high-water mark of live bytes: what held
/// memory at the moment that mattered, usually gone by the time someone looks.
///
/// The sampler keeps it as it goes: its estimate of live bytes (the live samples, each
/// weighted) is updated with every sample and every sampled free, and when it passes the
/// last peak by 5% the live samples are copied (so the copies cost, amortised, a small
/// share of the samples that grew the heap). The profile has in-use values only (its
/// `alloc_*` are zero), [`taken_at`](Profile::taken_at) is the time of the peak, and
/// [`totals`](Profile::totals)' in-use bytes the peak's estimate. Empty before the first
/// sample. [`reset_peak`] starts a new window.
///
/// ```rust,standalone_crate
/// # #[global_allocator]
/// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
/// # fn main() {
/// use memsentry::profile;
/// profile::set_sample_rate(1);
/// profile::reset_peak();
/// drop(std::hint::black_box(vec![0u8; 1 << 20])); // a transient megabyte
/// let peak = profile::peak();
/// assert!(peak.totals().1.bytes >= (1 << 20) as f64);
/// assert!(profile::heap().totals().1.bytes < (1 << 20) as f64);
/// # profile::set_sample_rate(profile::DEFAULT_RATE);
/// # }
/// ```
#[must_use]
pub fn peak() -> Profile {
    let sample_rate = sampler::rate();
    let Some(_guard) = sampler::Guard::enter() else {
        return Profile::empty(SystemTime::now(), sample_rate);
    };
    let (records, at, _) = crate::sampler::peak();
    let mut copy = crate::sampler::read();
    copy.cumulative.clear();
    copy.live = records;
    let taken_at = at.unwrap_or_else(SystemTime::now);
    Profile::build(
        taken_at,
        sampler::now_nanos(),
        sample_rate,
        copy,
        Symbolization::InProcess,
    )
}

/// Starts a new window for [`peak`]: the peak from now on.
pub fn reset_peak() {
    crate::sampler::reset_peak();
}

impl Profile {
    fn empty(taken_at: SystemTime, sample_rate: u64) -> Profile {
        Profile {
            taken_at,
            sample_rate,
            unwinder: unwinder(),
            symbolization: Symbolization::InProcess,
            base: None,
            window: None,
            samples: Vec::new(),
            stacks: Vec::new(),
            locations: Vec::new(),
            functions: Vec::new(),
            mappings: Vec::new(),
        }
    }

    pub(crate) fn build(
        taken_at: SystemTime,
        now: u64,
        sample_rate: u64,
        copy: crate::sampler::TableCopy,
        symbolization: Symbolization,
    ) -> Profile {
        /// (stack id, size, task) → (allocated, in use, oldest live sample's time).
        type Rows = HashMap<(u32, usize, u32), (Estimate, Estimate, Option<u64>)>;
        let mut rows: Rows = HashMap::with_capacity(copy.cumulative.len());
        for ((stack, size, task), totals) in &copy.cumulative {
            rows.entry((*stack, *size, *task)).or_default().0 = Estimate {
                objects: totals.objects,
                bytes: totals.bytes,
                samples: totals.samples,
            };
        }
        for record in &copy.live {
            let weight = crate::sampler::weight(record.size, record.rate);
            let row = rows
                .entry((record.stack, record.size, record.task))
                .or_default();
            row.1.add(&Estimate {
                objects: weight,
                bytes: weight * record.size as f64,
                samples: 1,
            });
            row.2 = Some(row.2.map_or(record.time, |t| t.min(record.time)));
        }
        let frames: HashMap<u32, Arc<[usize]>> = copy.stacks.into_iter().collect();
        // Every address of the stacks that appear, once: symbolized in one pass.
        let ips: HashSet<usize> = match symbolization {
            Symbolization::InProcess => rows
                .keys()
                .filter_map(|(stack, _, _)| frames.get(stack))
                .flat_map(|ips| ips.iter().copied())
                .collect(),
            Symbolization::Offline => HashSet::new(),
        };

        let mut profile = Profile::empty(taken_at, sample_rate);
        profile.symbolization = symbolization;
        profile.mappings = symbolize::mappings();
        let mut builder = symbolize::Builder::new(&mut profile, &ips);
        let mut stack_index: HashMap<u32, usize> = HashMap::new();
        let mut samples = Vec::with_capacity(rows.len());
        let mut task_names: HashMap<u32, Option<&'static str>> = HashMap::new();
        for ((stack, size, task), (alloc, inuse, oldest)) in rows {
            let Some(ips) = frames.get(&stack) else {
                continue;
            };
            let index = *stack_index
                .entry(stack)
                .or_insert_with(|| builder.add_stack(ips));
            let median_lifetime = copy.lifetimes.get(&stack).and_then(lifetimes::median);
            samples.push(Sample {
                median_lifetime,
                stack: index,
                size: size as u64,
                alloc,
                inuse,
                oldest: oldest.map(|t| Duration::from_nanos(now.saturating_sub(t))),
                base_inuse: None,
                task: *task_names
                    .entry(task)
                    .or_insert_with(|| crate::task::name_of(task)),
            });
        }
        drop(builder);
        profile.samples = samples;
        profile.sort_samples();
        profile
    }

    /// Orders the rows for readers: largest in-use first (in a diff, largest growth),
    /// then largest allocated.
    fn sort_samples(&mut self) {
        let key = |s: &Sample| {
            let base = s.base_inuse.map_or(0.0, |b| b.bytes);
            (s.inuse.bytes - base, s.alloc.bytes)
        };
        self.samples.sort_by(|a, b| {
            let (a_key, b_key) = (key(a), key(b));
            b_key
                .0
                .total_cmp(&a_key.0)
                .then(b_key.1.total_cmp(&a_key.1))
                .then(a.stack.cmp(&b.stack))
                .then(a.size.cmp(&b.size))
                .then(a.task.cmp(&b.task))
        });
    }

    /// The rows allocated by the task `name` only (see [`crate::task`]): every view of
    /// the result is that task's.
    ///
    /// ```rust,standalone_crate
    /// # #[global_allocator]
    /// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
    /// # fn main() {
    /// memsentry::profile::set_sample_rate(1);
    /// let kept = {
    ///     let _scope = memsentry::task::scope("doc::filter");
    ///     vec![1u8; 4096]
    /// };
    /// let mine = memsentry::profile::heap().filter_task("doc::filter");
    /// assert!(mine.samples().iter().all(|s| s.task == Some("doc::filter")));
    /// assert_eq!(mine.totals().1.bytes, 4096.0);
    /// # drop(kept);
    /// # }
    /// ```
    #[must_use]
    pub fn filter_task(&self, name: &str) -> Profile {
        let mut out = self.clone();
        out.samples.retain(|s| s.task == Some(name));
        out
    }

    /// The tasks that allocated the rows, each once, sorted.
    #[must_use]
    pub fn tasks(&self) -> Vec<&'static str> {
        let mut tasks: Vec<&'static str> = self.samples.iter().filter_map(|s| s.task).collect();
        tasks.sort_unstable();
        tasks.dedup();
        tasks
    }

    /// When the profile was taken.
    #[must_use]
    pub fn taken_at(&self) -> SystemTime {
        self.taken_at
    }

    /// The sampling rate when the profile was taken (the pprof `period`).
    #[must_use]
    pub fn sample_rate(&self) -> u64 {
        self.sample_rate
    }

    /// How samples' stacks were being walked when the profile was taken (see
    /// [`unwinder`](fn@unwinder)).
    #[must_use]
    pub fn unwinder(&self) -> Unwinder {
        self.unwinder
    }

    /// How the profile's addresses were (or are to be) symbolized.
    #[must_use]
    pub fn symbolization(&self) -> Symbolization {
        self.symbolization
    }

    /// Whether this profile is a [diff](Profile::diff).
    #[must_use]
    pub fn is_diff(&self) -> bool {
        self.base.is_some()
    }

    /// In a [diff](Profile::diff): when its base was taken.
    #[must_use]
    pub fn base_taken_at(&self) -> Option<SystemTime> {
        self.base.map(|b| b.taken_at)
    }

    /// The rows: one per (call stack, block size), largest in-use bytes first (in a diff,
    /// largest growth first).
    #[must_use]
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The call stack of `sample`, leaf (the allocating function) first, inlined frames
    /// expanded; the allocator's own frames are trimmed.
    pub fn frames<'a>(&'a self, sample: &Sample) -> impl Iterator<Item = Frame<'a>> + 'a {
        let stack = self.stacks.get(sample.stack).map_or(&[][..], Vec::as_slice);
        stack.iter().flat_map(move |&location| {
            let location = &self.locations[location];
            let address = location.address;
            let unknown = location.lines.is_empty().then_some(Frame {
                function: "",
                file: "",
                line: 0,
                address,
            });
            location
                .lines
                .iter()
                .map(move |&(function, line)| {
                    let function = &self.functions[function];
                    Frame {
                        function: &function.name,
                        file: &function.file,
                        line,
                        address,
                    }
                })
                .chain(unknown)
        })
    }

    /// The rows whose call stack passes through `function`: a frame whose name is
    /// `function` or ends with `::function` (so `handle` matches `my_app::api::handle`;
    /// closures inside it, `…::handle::{{closure}}`, do not).
    ///
    /// ```rust,standalone_crate
    /// # #[global_allocator]
    /// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
    /// #[inline(never)]
    /// fn load_cache() -> Vec<u64> {
    ///     vec![7; 1 << 20]
    /// }
    ///
    /// # fn main() {
    /// let cache = load_cache();
    /// let profile = memsentry::profile::heap();
    /// let held: f64 = profile.samples_through("load_cache").map(|s| s.inuse.bytes).sum();
    /// assert!(held >= 8.0 * 1024.0 * 1024.0 * 0.99); // 8 MiB blocks are sampled all but surely
    /// # drop(cache);
    /// # }
    /// ```
    pub fn samples_through<'a>(&'a self, function: &'a str) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |sample| {
            self.frames(sample).any(|frame| {
                frame
                    .function
                    .strip_suffix(function)
                    .is_some_and(|head| head.is_empty() || head.ends_with("::"))
            })
        })
    }

    /// Totals over all samples: (allocated since start, in use now); in a diff,
    /// (allocated since the base, in use now).
    #[must_use]
    pub fn totals(&self) -> (Estimate, Estimate) {
        let mut alloc = Estimate::default();
        let mut inuse = Estimate::default();
        for sample in &self.samples {
            alloc.add(&sample.alloc);
            inuse.add(&sample.inuse);
        }
        (alloc, inuse)
    }

    /// Writes the profile to `path` as gzipped pprof (`profile.proto`), the format of
    /// Go's heap profiles: `go tool pprof PATH` opens it.
    ///
    /// # Errors
    ///
    /// [`ProfileError::Write`], naming `path`, if the file cannot be created or written.
    pub fn write_pprof(&self, path: impl AsRef<Path>) -> Result<(), ProfileError> {
        write_file(path.as_ref(), |writer| self.encode_pprof(writer))
    }

    /// Encodes the profile as gzipped pprof into `writer`.
    ///
    /// # Errors
    ///
    /// Whatever `writer` returns.
    pub fn encode_pprof<W: io::Write>(&self, writer: W) -> io::Result<()> {
        pprof::encode(self, None, writer)
    }

    /// [`encode_pprof`](Profile::encode_pprof), with `sample_type` as the file's default
    /// view (what `go tool pprof` shows without `-sample_index`), if the file has it: a
    /// heap profile has the four Go types, a diff also the change types.
    ///
    /// # Errors
    ///
    /// Whatever `writer` returns.
    pub fn encode_pprof_as<W: io::Write>(
        &self,
        sample_type: SampleType,
        writer: W,
    ) -> io::Result<()> {
        pprof::encode(self, Some(sample_type), writer)
    }
}

/// Creates `path` and fills it with `write`, buffered, then syncs it to disk.
fn write_file(
    path: &Path,
    write: impl FnOnce(&mut io::BufWriter<std::fs::File>) -> io::Result<()>,
) -> Result<(), ProfileError> {
    let error = |source| ProfileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(error)?;
    let mut writer = io::BufWriter::new(file);
    write(&mut writer).map_err(error)?;
    let file = writer.into_inner().map_err(|e| error(e.into_error()))?;
    file.sync_all().map_err(error)
}

#[cfg(test)]
mod tests;
