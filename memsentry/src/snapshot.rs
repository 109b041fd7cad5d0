//! **[C]** Reading the counters: [`totals`], [`snapshot`], [`Snapshot::delta`].

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use crate::hot::counters::{self, ClassSums};
use crate::hot::size_class::{NUM_CLASSES, size_of_index};
use crate::stats::{self, JemallocStats};

/// Allocation counts, from the allocator's point of view.
///
/// *Requested* bytes are what the program asked for (`Layout::size`); *class* bytes are
/// what jemalloc hands out, the request rounded up to its size class. Their difference
/// is internal fragmentation.
///
/// All values are cumulative since the process started (or since bookkeeping was last
/// turned on: see [`set_enabled`](crate::set_enabled)), except the `live_*` figures,
/// which are derived: what was allocated and not yet freed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Successful allocations (`alloc`, `alloc_zeroed`, and the new block of a `realloc`).
    pub allocations: u64,
    /// Frees (`dealloc`, and the old block of a successful `realloc`).
    pub frees: u64,
    /// Requested bytes allocated.
    pub allocated_bytes: u64,
    /// Requested bytes freed.
    pub freed_bytes: u64,
    /// Class bytes allocated.
    pub allocated_class_bytes: u64,
    /// Class bytes freed.
    pub freed_class_bytes: u64,
}

impl Counts {
    /// Blocks allocated and not yet freed.
    #[must_use]
    pub fn live_objects(&self) -> u64 {
        self.allocations.saturating_sub(self.frees)
    }

    /// Requested bytes allocated and not yet freed: the program's live heap.
    #[must_use]
    pub fn live_bytes(&self) -> u64 {
        self.allocated_bytes.saturating_sub(self.freed_bytes)
    }

    /// Class bytes allocated and not yet freed: what the live blocks occupy in jemalloc.
    #[must_use]
    pub fn live_class_bytes(&self) -> u64 {
        self.allocated_class_bytes
            .saturating_sub(self.freed_class_bytes)
    }

    /// Internal fragmentation of the live heap: class bytes minus requested bytes.
    #[must_use]
    pub fn fragmentation_bytes(&self) -> u64 {
        self.live_class_bytes().saturating_sub(self.live_bytes())
    }

    /// Internal fragmentation as a fraction of live class bytes (0 when nothing is live).
    #[must_use]
    pub fn fragmentation_ratio(&self) -> f64 {
        ratio(self.fragmentation_bytes(), self.live_class_bytes()).unwrap_or(0.0)
    }

    /// Field-wise sum (wrapping, like the counters).
    pub(crate) fn plus(&self, other: &Self) -> Self {
        Self {
            allocations: self.allocations.wrapping_add(other.allocations),
            frees: self.frees.wrapping_add(other.frees),
            allocated_bytes: self.allocated_bytes.wrapping_add(other.allocated_bytes),
            freed_bytes: self.freed_bytes.wrapping_add(other.freed_bytes),
            allocated_class_bytes: self
                .allocated_class_bytes
                .wrapping_add(other.allocated_class_bytes),
            freed_class_bytes: self.freed_class_bytes.wrapping_add(other.freed_class_bytes),
        }
    }

    fn add_class(&mut self, sums: &ClassSums) {
        self.allocations = self.allocations.wrapping_add(sums.allocations);
        self.frees = self.frees.wrapping_add(sums.frees);
        self.allocated_bytes = self.allocated_bytes.wrapping_add(sums.allocated_bytes);
        self.freed_bytes = self.freed_bytes.wrapping_add(sums.freed_bytes);
        self.allocated_class_bytes = self
            .allocated_class_bytes
            .wrapping_add(sums.allocated_class_bytes);
        self.freed_class_bytes = self.freed_class_bytes.wrapping_add(sums.freed_class_bytes);
    }

    /// What was counted between `earlier` and these counts (each field saturating at 0).
    ///
    /// ```rust,standalone_crate
    /// # #[global_allocator]
    /// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
    /// # fn main() {
    /// # // A sampled allocation would count the sampler's own allocations too.
    /// # memsentry::profile::set_sample_rate(0);
    /// let before = memsentry::totals();
    /// let block = Box::new([0u8; 300]);
    /// let during = memsentry::totals().since(&before);
    /// assert_eq!((during.allocations, during.allocated_bytes), (1, 300));
    /// assert_eq!(during.allocated_class_bytes, 320); // the size class
    /// # drop(block);
    /// # }
    /// ```
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            allocations: self.allocations.saturating_sub(earlier.allocations),
            frees: self.frees.saturating_sub(earlier.frees),
            allocated_bytes: self.allocated_bytes.saturating_sub(earlier.allocated_bytes),
            freed_bytes: self.freed_bytes.saturating_sub(earlier.freed_bytes),
            allocated_class_bytes: self
                .allocated_class_bytes
                .saturating_sub(earlier.allocated_class_bytes),
            freed_class_bytes: self
                .freed_class_bytes
                .saturating_sub(earlier.freed_class_bytes),
        }
    }
}

/// The counts of one jemalloc size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClassStats {
    /// The class's size in bytes. Small classes (up to 14 KiB): every block in the class
    /// occupies exactly this much. Large requests are whole pages, bucketed by jemalloc's
    /// nominal class: blocks in this row are larger than the previous row's size and at
    /// most this size, and `counts`' class bytes are their exact page-rounded sizes.
    pub size: u64,
    /// The counts of blocks served from this class.
    pub counts: Counts,
}

/// The program-wide counts, summed over all threads and size classes.
///
/// Allocation-free and cheap (it sums the per-thread counters, a few microseconds), so it
/// can be called often, and from anywhere but a signal handler.
///
/// ```rust,standalone_crate
/// # #[global_allocator]
/// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
/// # fn main() {
/// # // A sampled allocation would count the sampler's own allocations too.
/// # memsentry::profile::set_sample_rate(0);
/// let before = memsentry::totals();
/// let block = vec![0u64; 512];
/// let after = memsentry::totals();
/// assert_eq!(after.allocations - before.allocations, 1);
/// assert_eq!(after.allocated_bytes - before.allocated_bytes, 4096);
/// # drop(block);
/// # }
/// ```
#[must_use]
pub fn totals() -> Counts {
    let mut sums = [ClassSums::default(); NUM_CLASSES];
    counters::read_into(&mut sums);
    let mut counts = Counts::default();
    for class in &sums {
        counts.add_class(class);
    }
    counts
}

/// A point-in-time view of the heap: memsentry's counters, jemalloc's statistics and the
/// process's resident set.
///
/// Taken without stopping the program: counters of different threads are read one after
/// the other, so a snapshot is consistent to within the allocations made while it was
/// taken (frees are read first, so live figures never go negative).
///
/// ```rust,standalone_crate
/// # #[global_allocator]
/// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
/// # fn main() {
/// let snapshot = memsentry::snapshot();
/// println!("{} live in {} blocks", memsentry::Bytes(snapshot.totals.live_bytes()),
///          snapshot.totals.live_objects());
/// println!("{snapshot}"); // the full table
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Snapshot {
    /// Wall-clock time the snapshot was taken.
    pub taken_at: SystemTime,
    /// Totals over all size classes.
    pub totals: Counts,
    /// Allocations the inner allocator refused (returned null).
    pub failed_allocations: u64,
    /// Per-class counts, smallest class first; classes never used are left out.
    pub classes: Vec<ClassStats>,
    /// jemalloc's own figures; `None` if jemalloc could not report them.
    pub jemalloc: Option<JemallocStats>,
    /// The process's resident set size (RSS) in bytes, from `/proc/self/statm`; `None`
    /// where that is not available.
    pub resident_bytes: Option<u64>,
    /// The memory limit the kernel enforces on the process: the smallest limit of its
    /// cgroup and the cgroup's ancestors (v2 `memory.max`, v1 `memory.limit_in_bytes`,
    /// read under `/sys/fs/cgroup`), like Go's `/gc/gomemlimit:bytes` for a container.
    /// `None` where no limit is set or cgroups are not mounted there. Compare it with
    /// [`resident_bytes`](Self::resident_bytes): the kernel charges resident pages (and
    /// page cache) against it, not live bytes.
    pub memory_limit_bytes: Option<u64>,
    /// Monotonic time of the snapshot, for rates.
    at: Instant,
}

/// Takes a [`Snapshot`].
///
/// Costs a sum over the per-thread counters, one `epoch` advance and ten `mallctl` reads,
/// one read of `/proc/self/statm` and a few small cgroup files: tens of microseconds. The
/// counters are read before anything is allocated, so the snapshot's own allocations show
/// up in the next one.
#[must_use]
pub fn snapshot() -> Snapshot {
    // First, as it allocates the first time (it reads where cgroups are mounted, once):
    // those allocations belong to this snapshot, not to the next one's.
    let memory_limit_bytes = stats::cgroup_memory_limit();
    let mut sums = [ClassSums::default(); NUM_CLASSES];
    counters::read_into(&mut sums);
    let failed_allocations = counters::failures();
    let at = Instant::now();
    let taken_at = SystemTime::now();
    let jemalloc = stats::jemalloc_stats();
    let resident_bytes = stats::process_resident_bytes();

    let mut totals = Counts::default();
    // One allocation, of a size known in advance (tests account for it exactly).
    let mut classes = Vec::with_capacity(sums.iter().filter(|c| c.allocations != 0).count());
    for (index, class) in sums.iter().enumerate() {
        totals.add_class(class);
        if class.allocations != 0 {
            let mut counts = Counts::default();
            counts.add_class(class);
            classes.push(ClassStats {
                size: size_of_index(index),
                counts,
            });
        }
    }
    Snapshot {
        taken_at,
        totals,
        failed_allocations,
        classes,
        jemalloc,
        resident_bytes,
        memory_limit_bytes,
        at,
    }
}

impl Snapshot {
    /// What happened between `earlier` and this snapshot: counts and rates, the Rust
    /// counterpart of reading Go's `runtime/metrics` on a ticker.
    ///
    /// If `earlier` is in fact the later of the two, counts and the interval saturate at
    /// zero rather than going negative.
    #[must_use]
    pub fn delta(&self, earlier: &Snapshot) -> Delta {
        Delta {
            elapsed: self.at.saturating_duration_since(earlier.at),
            counts: self.totals.since(&earlier.totals),
            failed_allocations: self
                .failed_allocations
                .saturating_sub(earlier.failed_allocations),
            live_bytes_change: signed_change(earlier.totals.live_bytes(), self.totals.live_bytes()),
        }
    }

    /// The row of the class (or large bucket) named `size` bytes, if any block of it was
    /// allocated.
    #[must_use]
    pub fn class(&self, size: u64) -> Option<&ClassStats> {
        self.classes.iter().find(|class| class.size == size)
    }
}

/// The activity between two snapshots; see [`Snapshot::delta`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Delta {
    /// Time between the two snapshots.
    pub elapsed: Duration,
    /// Allocations, frees and bytes within the interval.
    pub counts: Counts,
    /// Failed allocations within the interval.
    pub failed_allocations: u64,
    /// Change of live (requested) bytes: positive when the heap grew.
    pub live_bytes_change: i64,
}

impl Delta {
    /// Requested bytes allocated per second.
    #[must_use]
    pub fn allocated_bytes_per_sec(&self) -> f64 {
        self.per_sec(self.counts.allocated_bytes)
    }

    /// Requested bytes freed per second.
    #[must_use]
    pub fn freed_bytes_per_sec(&self) -> f64 {
        self.per_sec(self.counts.freed_bytes)
    }

    /// Allocations per second.
    #[must_use]
    pub fn allocations_per_sec(&self) -> f64 {
        self.per_sec(self.counts.allocations)
    }

    /// Frees per second.
    #[must_use]
    pub fn frees_per_sec(&self) -> f64 {
        self.per_sec(self.counts.frees)
    }

    /// Allocations per free in the interval: above 1 the number of live blocks grows.
    /// `None` when nothing was freed.
    #[must_use]
    pub fn alloc_free_ratio(&self) -> Option<f64> {
        ratio(self.counts.allocations, self.counts.frees)
    }

    fn per_sec(&self, value: u64) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            value as f64 / seconds
        } else {
            0.0
        }
    }
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator != 0).then(|| numerator as f64 / denominator as f64)
}

fn signed_change(from: u64, to: u64) -> i64 {
    if to >= from {
        i64::try_from(to - from).unwrap_or(i64::MAX)
    } else {
        i64::try_from(from - to).map_or(i64::MIN, |drop| -drop)
    }
}

/// A byte count shown with a binary unit: `512 B`, `1.5 KiB`, `12.0 MiB`.
///
/// ```
/// assert_eq!(memsentry::Bytes(1536).to_string(), "1.5 KiB");
/// assert_eq!(format!("{:>9}", memsentry::Bytes(3 << 20)), "  3.0 MiB");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 < 1024 {
            return f.pad(&format!("{} B", self.0));
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        f.pad(&format!("{value:.1} {}", UNITS[unit]))
    }
}

impl fmt::Display for Snapshot {
    /// A human-readable table: totals, jemalloc's figures, then one row per size class.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        writeln!(
            f,
            "live        {} requested in {} blocks, {} in size classes (fragmentation {:.1}%)",
            Bytes(t.live_bytes()),
            t.live_objects(),
            Bytes(t.live_class_bytes()),
            t.fragmentation_ratio() * 100.0
        )?;
        writeln!(
            f,
            "cumulative  {} allocations ({}), {} frees ({}), {} failed",
            t.allocations,
            Bytes(t.allocated_bytes),
            t.frees,
            Bytes(t.freed_bytes),
            self.failed_allocations
        )?;
        match &self.jemalloc {
            Some(j) => {
                writeln!(
                    f,
                    "jemalloc    allocated {}, active {}, resident {}, mapped {}, retained {}, metadata {}",
                    Bytes(j.allocated),
                    Bytes(j.active),
                    Bytes(j.resident),
                    Bytes(j.mapped),
                    Bytes(j.retained),
                    Bytes(j.metadata)
                )?;
                writeln!(
                    f,
                    "            dirty {} (decay {} ms), muzzy {} (decay {} ms)",
                    Bytes(j.dirty),
                    j.dirty_decay_ms,
                    Bytes(j.muzzy),
                    j.muzzy_decay_ms
                )?;
            }
            None => writeln!(f, "jemalloc    (statistics unavailable)")?,
        }
        match self.resident_bytes {
            Some(rss) => write!(f, "process     resident {}", Bytes(rss))?,
            None => write!(f, "process     resident (unavailable)")?,
        }
        match self.memory_limit_bytes {
            Some(limit) => writeln!(f, ", cgroup memory limit {}", Bytes(limit))?,
            None => writeln!(f, ", no cgroup memory limit")?,
        }
        writeln!(
            f,
            "{:>10} {:>12} {:>12} {:>10} {:>11} {:>11} {:>6}",
            "class", "allocs", "frees", "live", "live req", "live class", "frag"
        )?;
        for class in &self.classes {
            let c = &class.counts;
            writeln!(
                f,
                "{:>10} {:>12} {:>12} {:>10} {:>11} {:>11} {:>5.1}%",
                Bytes(class.size),
                c.allocations,
                c.frees,
                c.live_objects(),
                Bytes(c.live_bytes()),
                Bytes(c.live_class_bytes()),
                c.fragmentation_ratio() * 100.0
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(allocations: u64, frees: u64, allocated: u64, freed: u64) -> Counts {
        Counts {
            allocations,
            frees,
            allocated_bytes: allocated,
            freed_bytes: freed,
            allocated_class_bytes: allocations * 64,
            freed_class_bytes: frees * 64,
        }
    }

    fn snapshot_at(at: Instant, totals: Counts) -> Snapshot {
        Snapshot {
            taken_at: SystemTime::UNIX_EPOCH,
            totals,
            failed_allocations: 0,
            classes: Vec::new(),
            jemalloc: None,
            resident_bytes: None,
            memory_limit_bytes: None,
            at,
        }
    }

    #[test]
    fn live_figures_and_fragmentation() {
        let c = counts(10, 4, 500, 200);
        assert_eq!(c.live_objects(), 6);
        assert_eq!(c.live_bytes(), 300);
        assert_eq!(c.live_class_bytes(), 384);
        assert_eq!(c.fragmentation_bytes(), 84);
        assert!((c.fragmentation_ratio() - 84.0 / 384.0).abs() < 1e-12);
        assert_eq!(Counts::default().fragmentation_ratio(), 0.0);
    }

    #[test]
    fn delta_counts_and_rates() {
        let start = Instant::now();
        let earlier = snapshot_at(start, counts(100, 40, 10_000, 4_000));
        let mut later = snapshot_at(
            start + Duration::from_secs(2),
            counts(300, 140, 30_000, 9_000),
        );
        later.failed_allocations = 3;
        let d = later.delta(&earlier);
        assert_eq!(d.elapsed, Duration::from_secs(2));
        assert_eq!(d.counts.allocations, 200);
        assert_eq!(d.counts.frees, 100);
        assert_eq!(d.counts.allocated_bytes, 20_000);
        assert_eq!(d.counts.freed_bytes, 5_000);
        assert_eq!(d.failed_allocations, 3);
        assert_eq!(d.allocated_bytes_per_sec(), 10_000.0);
        assert_eq!(d.freed_bytes_per_sec(), 2_500.0);
        assert_eq!(d.allocations_per_sec(), 100.0);
        assert_eq!(d.frees_per_sec(), 50.0);
        assert_eq!(d.alloc_free_ratio(), Some(2.0));
        // live went from 6,000 to 21,000
        assert_eq!(d.live_bytes_change, 15_000);

        let backwards = earlier.delta(&later);
        assert_eq!(backwards.elapsed, Duration::ZERO);
        assert_eq!(backwards.counts, Counts::default());
        assert_eq!(backwards.live_bytes_change, -15_000);
        assert_eq!(backwards.allocations_per_sec(), 0.0);
        assert_eq!(backwards.alloc_free_ratio(), None);
    }

    #[test]
    fn bytes_display() {
        assert_eq!(Bytes(0).to_string(), "0 B");
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes(1024).to_string(), "1.0 KiB");
        assert_eq!(Bytes(10 << 30).to_string(), "10.0 GiB");
        assert_eq!(Bytes(u64::MAX).to_string(), "16.0 EiB");
    }

    #[test]
    fn signed_change_extremes() {
        assert_eq!(signed_change(0, u64::MAX), i64::MAX);
        assert_eq!(signed_change(u64::MAX, 0), i64::MIN);
        assert_eq!(signed_change(5, 3), -2);
    }
}
