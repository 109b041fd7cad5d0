//! **[C]** [`release_memory`]: hands jemalloc's unused pages back to the OS, the
//! counterpart of Go's `debug.FreeOSMemory`.

use crate::stats::{self, JemallocStats};

/// What [`release_memory`] found before and after its purge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReleasedMemory {
    /// The process's resident set before the purge (`/proc/self/statm`); `None` where it
    /// cannot be read.
    pub resident_before: Option<u64>,
    /// The process's resident set after the purge.
    pub resident_after: Option<u64>,
    /// jemalloc's figures before the purge ([`JemallocStats::dirty`] and
    /// [`muzzy`](JemallocStats::muzzy) are what it can release); `None` if jemalloc could
    /// not report them.
    pub jemalloc_before: Option<JemallocStats>,
    /// jemalloc's figures right after the purge: no dirty or muzzy pages are left, unless
    /// other threads freed memory in the meantime.
    pub jemalloc_after: Option<JemallocStats>,
}

impl ReleasedMemory {
    /// How far the process's resident set fell; where it cannot be read, how far
    /// jemalloc's `resident` fell; 0 if neither can be read. Saturating: 0, not a negative
    /// figure, when other threads made the process grow meanwhile.
    #[must_use]
    pub fn released_bytes(&self) -> u64 {
        let fall = |before: Option<u64>, after: Option<u64>| {
            before.zip(after).map(|(b, a)| b.saturating_sub(a))
        };
        fall(self.resident_before, self.resident_after)
            .or_else(|| {
                fall(
                    self.jemalloc_before.map(|j| j.resident),
                    self.jemalloc_after.map(|j| j.resident),
                )
            })
            .unwrap_or(0)
    }
}

/// Returns the memory jemalloc keeps for reuse to the OS now: the counterpart of Go's
/// [`debug.FreeOSMemory`](https://pkg.go.dev/runtime/debug#FreeOSMemory).
///
/// A freed block's pages are not returned to the OS at once: jemalloc keeps them as
/// *dirty* pages, still resident, to reuse, and purges them gradually over
/// [`JemallocStats::dirty_decay_ms`] (10 s by default). That decay advances as the
/// program allocates and frees (or on jemalloc's background threads, off by default), so
/// a process that goes quiet after a burst can keep them resident indefinitely. This
/// flushes the calling thread's cache of freed blocks (`thread.tcache.flush`), then
/// purges every arena's dirty and muzzy pages (`arena.<MALLCTL_ARENAS_ALL>.purge`, see
/// [jemalloc(3)](https://jemalloc.net/jemalloc.3.html#mallctl_namespace)) with
/// `madvise(MADV_DONTNEED)`, so the resident set falls by what they held. Unlike Go's,
/// there is no collection to run first: what the program dropped is already free.
/// Blocks other threads freed into their own caches stay there.
///
/// Cost: it walks every arena, holding each one's decay lock while it purges, with one
/// `madvise` call per extent; threads that free into an arena meanwhile may wait for it,
/// and pages reused later fault in again. Milliseconds for tens of MiB. Call it rarely
/// (after a burst, before an idle period, or when near a memory limit), never from the
/// allocator; to return memory sooner all the time, set a shorter `dirty_decay_ms` in
/// jemalloc's configuration instead. jemalloc keeps the address space (see
/// [`JemallocStats::retained`]), which costs no memory.
///
/// ```rust,standalone_crate
/// # #[global_allocator]
/// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
/// # fn main() {
/// // 64 MiB in 2 KiB blocks, written to (so resident), then freed: dirty pages.
/// let blocks: Vec<Vec<u8>> = (0..32 * 1024).map(|_| vec![1u8; 2048]).collect();
/// drop(std::hint::black_box(blocks));
///
/// let released = memsentry::release_memory();
/// let after = released.jemalloc_after.expect("jemalloc's statistics");
/// assert_eq!((after.dirty, after.muzzy), (0, 0));
/// println!("released {}", memsentry::Bytes(released.released_bytes()));
/// # }
/// ```
pub fn release_memory() -> ReleasedMemory {
    let jemalloc_before = stats::jemalloc_stats();
    let resident_before = stats::process_resident_bytes();
    // Nothing to report if it fails: the figures after then show nothing released.
    stats::purge_all_arenas();
    // Neither read allocates or frees, so no page turns dirty between the purge and them.
    let jemalloc_after = stats::jemalloc_stats();
    let resident_after = stats::process_resident_bytes();
    ReleasedMemory {
        resident_before,
        resident_after,
        jemalloc_before,
        jemalloc_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_bytes_falls_back_and_saturates() {
        let jemalloc = |resident| {
            Some(JemallocStats {
                resident,
                ..JemallocStats::default()
            })
        };
        let mut released = ReleasedMemory {
            resident_before: Some(100),
            resident_after: Some(40),
            jemalloc_before: jemalloc(90),
            jemalloc_after: jemalloc(10),
        };
        assert_eq!(released.released_bytes(), 60);
        released.resident_after = Some(120);
        assert_eq!(released.released_bytes(), 0, "grew meanwhile");
        released.resident_after = None;
        assert_eq!(released.released_bytes(), 80, "jemalloc's resident");
        released.jemalloc_after = None;
        assert_eq!(released.released_bytes(), 0);
    }
}
