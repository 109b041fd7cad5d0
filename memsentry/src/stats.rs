//! **[C]** jemalloc's own figures (through `tikv-jemalloc-ctl`), the process's resident
//! set size and its cgroup's memory limit.

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
    let text = read_small("/proc/self/statm", &mut buffer)?;
    // Fields: size resident shared text lib data dt, in pages.
    let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: `sysconf` has no memory-safety preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.checked_mul(u64::try_from(page_size).ok()?)
}

/// Where cgroup hierarchies are mounted: the unified (v2) hierarchy at the top (pure v2)
/// or under `unified` (hybrid), and the v1 memory controller. These are the mount points
/// systemd, Docker and Kubernetes use.
const CGROUP_V2_ROOTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];
const CGROUP_V1_MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";

/// Limits at or above this are "no limit": cgroup v1 writes its maximum as
/// `PAGE_COUNTER_MAX` pages (9223372036854771712 with 4 KiB pages).
const NO_LIMIT: u64 = 1 << 62;

/// The memory limit of the process's cgroup in bytes: the smallest limit set on its
/// cgroup or any ancestor (v2 `memory.max`, v1 `memory.limit_in_bytes`), as the kernel
/// enforces; `None` where no limit is set or cgroups are not mounted where expected.
/// Reads into stack buffers: no allocation for paths under a few hundred bytes.
pub(crate) fn cgroup_memory_limit() -> Option<u64> {
    let mut buffer = [0u8; 4096];
    let membership = read_small("/proc/self/cgroup", &mut buffer)?;
    let mut limit: Option<u64> = None;
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            for root in CGROUP_V2_ROOTS {
                limit = min_limit(limit, hierarchy_limit(root, path, "memory.max"));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let found = hierarchy_limit(CGROUP_V1_MEMORY_ROOT, path, "memory.limit_in_bytes");
            limit = min_limit(limit, found);
        }
    }
    limit
}

fn min_limit(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The smallest limit in `file` of the cgroup at `path` under `root` and of each of its
/// ancestors up to `root` itself. Levels whose file is missing are skipped: in a
/// container without a cgroup namespace `/proc/self/cgroup` shows the host's path while
/// the container's own cgroup is mounted at the root.
fn hierarchy_limit(root: &str, path: &str, file: &str) -> Option<u64> {
    let mut limit = None;
    let mut dir = path.trim_end_matches('/');
    loop {
        limit = min_limit(limit, limit_file(root, dir, file));
        match dir.rfind('/') {
            Some(parent) => dir = &dir[..parent],
            None => return limit,
        }
    }
}

/// The limit in `root``dir`/`file`, if the file exists and sets one.
fn limit_file(root: &str, dir: &str, file: &str) -> Option<u64> {
    let mut path = [0u8; 512];
    let path = join(&mut path, &[root, dir, "/", file])?;
    let mut buffer = [0u8; 64];
    parse_limit(read_small(path, &mut buffer)?)
}

/// `parts` concatenated in `buffer`; `None` if they do not fit.
fn join<'a>(buffer: &'a mut [u8], parts: &[&str]) -> Option<&'a str> {
    let mut len = 0;
    for part in parts {
        let end = len + part.len();
        buffer.get_mut(len..end)?.copy_from_slice(part.as_bytes());
        len = end;
    }
    std::str::from_utf8(&buffer[..len]).ok()
}

/// Reads a small file into `buffer`; `None` if it cannot be read, is not UTF-8 or does
/// not fit.
fn read_small<'a>(path: &str, buffer: &'a mut [u8]) -> Option<&'a str> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = 0;
    loop {
        match file.read(buffer.get_mut(len..)?) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        if len == buffer.len() {
            return None;
        }
    }
    std::str::from_utf8(&buffer[..len]).ok()
}

/// A limit file's value: bytes, or `None` for `max` (v2) and v1's "unlimited" figure.
fn parse_limit(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < NO_LIMIT).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_values() {
        assert_eq!(parse_limit("268435456\n"), Some(268_435_456));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(
            parse_limit("9223372036854771712\n"),
            None,
            "v1's no-limit value"
        );
        assert_eq!(parse_limit(""), None);
        assert_eq!(min_limit(Some(5), None), Some(5));
        assert_eq!(min_limit(Some(5), Some(3)), Some(3));
        assert_eq!(min_limit(None, None), None);
    }

    #[test]
    fn paths_join_within_the_buffer() {
        let mut buffer = [0u8; 32];
        assert_eq!(
            join(&mut buffer, &["/sys/fs/cgroup", "/a/b", "/", "memory.max"]),
            Some("/sys/fs/cgroup/a/b/memory.max")
        );
        let mut small = [0u8; 8];
        assert_eq!(join(&mut small, &["/sys/fs/cgroup"]), None);
    }
}
