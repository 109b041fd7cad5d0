//! **[C]** jemalloc's own figures (through `tikv-jemalloc-ctl`) and the process's
//! resident set size.

use std::io::Read;
use std::sync::OnceLock;

use tikv_jemalloc_ctl::{epoch, epoch_mib, stats};

/// jemalloc's view of the heap, read after advancing its statistics epoch.
///
/// These are jemalloc's `stats.*` counters (see the `mallctl` section of
/// [jemalloc(3)](https://jemalloc.net/jemalloc.3.html#mallctl_namespace)). From smallest to
/// largest: `allocated ≤ active ≤ resident ≤ mapped` in the usual case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JemallocStats {
    /// Bytes in blocks the application holds (`stats.allocated`): each block counted at
    /// its size class, so it is memsentry's live class bytes plus any allocations made
    /// through jemalloc outside the Rust global allocator.
    pub allocated: u64,
    /// Bytes in active pages (`stats.active`): pages that hold at least one live block.
    /// `active − allocated` is fragmentation inside slabs and page runs.
    pub active: u64,
    /// Bytes in physically resident data pages mapped by jemalloc (`stats.resident`),
    /// including its metadata and dirty pages not yet returned to the OS.
    pub resident: u64,
    /// Bytes in extents mapped by jemalloc and in use (`stats.mapped`): address space,
    /// not necessarily backed by memory.
    pub mapped: u64,
    /// Bytes in virtual memory kept mapped but returned to the OS (`stats.retained`,
    /// e.g. after `madvise(MADV_DONTNEED)`): address space only, no physical memory.
    pub retained: u64,
    /// Bytes jemalloc uses for its own bookkeeping (`stats.metadata`).
    pub metadata: u64,
}

struct Mibs {
    epoch: epoch_mib,
    allocated: stats::allocated_mib,
    active: stats::active_mib,
    resident: stats::resident_mib,
    mapped: stats::mapped_mib,
    retained: stats::retained_mib,
    metadata: stats::metadata_mib,
}

impl Mibs {
    fn lookup() -> tikv_jemalloc_ctl::Result<Self> {
        Ok(Self {
            epoch: epoch::mib()?,
            allocated: stats::allocated::mib()?,
            active: stats::active::mib()?,
            resident: stats::resident::mib()?,
            mapped: stats::mapped::mib()?,
            retained: stats::retained::mib()?,
            metadata: stats::metadata::mib()?,
        })
    }

    fn read(&self) -> tikv_jemalloc_ctl::Result<JemallocStats> {
        // The `stats.*` values are cached and only refreshed when the epoch advances.
        self.epoch.advance()?;
        let read = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
        Ok(JemallocStats {
            allocated: read(self.allocated.read()?),
            active: read(self.active.read()?),
            resident: read(self.resident.read()?),
            mapped: read(self.mapped.read()?),
            retained: read(self.retained.read()?),
            metadata: read(self.metadata.read()?),
        })
    }
}

/// Reads jemalloc's statistics; `None` if jemalloc cannot report them. The MIBs (the
/// parsed `mallctl` names) are looked up once and cached.
pub(crate) fn jemalloc_stats() -> Option<JemallocStats> {
    static MIBS: OnceLock<Option<Mibs>> = OnceLock::new();
    MIBS.get_or_init(|| Mibs::lookup().ok())
        .as_ref()?
        .read()
        .ok()
}

/// The process's resident set size in bytes (`/proc/self/statm`); `None` where that is
/// not available. Reads into a stack buffer: no allocation.
pub(crate) fn process_resident_bytes() -> Option<u64> {
    let mut buffer = [0u8; 256];
    let mut file = std::fs::File::open("/proc/self/statm").ok()?;
    let len = file.read(&mut buffer).ok()?;
    let text = std::str::from_utf8(buffer.get(..len)?).ok()?;
    // Fields: size resident shared text lib data dt, in pages.
    let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: `sysconf` has no memory-safety preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.checked_mul(u64::try_from(page_size).ok()?)
}
