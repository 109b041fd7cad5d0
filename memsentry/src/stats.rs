//! **[C]** jemalloc's own figures (through `tikv-jemalloc-ctl`), the process's resident
//! set size and its cgroup's memory limit.

use std::sync::OnceLock;

use tikv_jemalloc_ctl::{epoch, epoch_mib, raw, stats};

/// jemalloc's view of the heap, read after advancing its statistics epoch.
///
/// These are jemalloc's `stats.*` counters and its two `arenas.*_decay_ms` settings (see
/// the `mallctl` section of
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
    /// Bytes in dirty pages of all arenas (`stats.arenas.<i>.pdirty` pages of
    /// `arenas.page` bytes, `<i>` = `MALLCTL_ARENAS_ALL`): freed pages jemalloc keeps,
    /// still resident, to reuse before [`dirty_decay_ms`](Self::dirty_decay_ms) passes or
    /// [`release_memory`](crate::release_memory) purges them. Part of
    /// [`resident`](Self::resident). 0 if jemalloc could not report it.
    pub dirty: u64,
    /// Bytes in muzzy pages of all arenas (`stats.arenas.<i>.pmuzzy` pages): purged
    /// lazily (`MADV_FREE`), so the kernel may reclaim them but need not until memory runs
    /// short; they may still count in the process's resident set. 0 if jemalloc could
    /// not report it.
    pub muzzy: u64,
    /// How long, in milliseconds, a dirty page waits before it is purged
    /// (`arenas.dirty_decay_ms`, the setting of arenas jemalloc creates; jemalloc's
    /// default is 10 000). -1: dirty pages are never purged unless asked, 0: at once.
    /// Whatever this says (unless it or the muzzy setting is -1, or jemalloc's background
    /// threads are on), freed extents of 8 MiB and more (`opt.oversize_threshold`),
    /// including freed large blocks that coalesce to that size, are purged at once. 0 if
    /// jemalloc could not report it.
    pub dirty_decay_ms: i64,
    /// How long, in milliseconds, a muzzy page waits before it is purged for good
    /// (`arenas.muzzy_decay_ms`). jemalloc's default is 0: decaying dirty pages are purged
    /// for good rather than made muzzy. -1: never purged unless asked. 0 if jemalloc could
    /// not report it.
    pub muzzy_decay_ms: i64,
}

struct Mibs {
    epoch: epoch_mib,
    allocated: stats::allocated_mib,
    active: stats::active_mib,
    resident: stats::resident_mib,
    mapped: stats::mapped_mib,
    retained: stats::retained_mib,
    metadata: stats::metadata_mib,
    /// The figures `tikv-jemalloc-ctl` has no typed wrapper for, each `None` where its
    /// lookup failed: that field then reads as 0 and the others are unaffected.
    pages: Option<PageMibs>,
    dirty_decay_ms: Option<RawMib<2>>,
    muzzy_decay_ms: Option<RawMib<2>>,
}

/// `stats.arenas.<i>.pdirty` and `.pmuzzy` count pages: their MIBs and the page size.
struct PageMibs {
    /// `arenas.page` (size_t): it does not change while the process runs.
    page_size: u64,
    dirty: RawMib<4>,
    muzzy: RawMib<4>,
}

// The `mallctl` names read through `raw`, all documented in
// https://jemalloc.net/jemalloc.3.html#mallctl_namespace . 4096 is `MALLCTL_ARENAS_ALL`
// (jemalloc_macros.h), the index that names all arenas together.
/// `arenas.page` (size_t, r-): the page size.
const ARENAS_PAGE: Name<2> = Name(b"arenas.page\0");
/// `stats.arenas.<i>.pdirty` (size_t, r-, `--enable-stats`): pages in dirty extents,
/// refreshed by `epoch`.
const STATS_ARENAS_ALL_PDIRTY: Name<4> = Name(b"stats.arenas.4096.pdirty\0");
/// `stats.arenas.<i>.pmuzzy` (size_t, r-, `--enable-stats`): pages in muzzy extents,
/// refreshed by `epoch`.
const STATS_ARENAS_ALL_PMUZZY: Name<4> = Name(b"stats.arenas.4096.pmuzzy\0");
/// `arenas.dirty_decay_ms` (ssize_t, rw): the dirty decay time arenas are created with.
const ARENAS_DIRTY_DECAY_MS: Name<2> = Name(b"arenas.dirty_decay_ms\0");
/// `arenas.muzzy_decay_ms` (ssize_t, rw): the muzzy decay time arenas are created with.
const ARENAS_MUZZY_DECAY_MS: Name<2> = Name(b"arenas.muzzy_decay_ms\0");
/// `arena.<i>.purge` (void, --): purges all unused dirty and muzzy pages of arena `<i>`,
/// of every arena for `MALLCTL_ARENAS_ALL`.
const ARENA_ALL_PURGE: Name<3> = Name(b"arena.4096.purge\0");
/// `thread.tcache.flush` (void, --): returns the calling thread's cached free blocks to
/// their arenas.
const THREAD_TCACHE_FLUSH: Name<3> = Name(b"thread.tcache.flush\0");

/// A NUL-terminated `mallctl` name of `N` period-separated components
/// (`raw::name_to_mib` asserts both, so the count is part of the type).
struct Name<const N: usize>(&'static [u8]);

/// A `mallctl` name of `N` components, parsed once ([`raw::name_to_mib`]).
#[derive(Clone, Copy)]
struct RawMib<const N: usize>([usize; N]);

impl<const N: usize> RawMib<N> {
    /// `name` parsed; `None` if jemalloc does not know it.
    fn lookup(name: &Name<N>) -> Option<Self> {
        let mut mib = [0; N];
        raw::name_to_mib(name.0, &mut mib).ok()?;
        Some(Self(mib))
    }

    /// The value of a `size_t` `mallctl`.
    fn read_size(&self) -> Option<u64> {
        // SAFETY: `read_mib`'s one requirement is that what jemalloc writes be a valid
        // `T`: every bit pattern is a valid `usize`, and the MIBs read so name `size_t`
        // mallctls (the names above). jemalloc refuses (EINVAL) a length other than its
        // value's, and `read_mib` checks the length it wrote.
        let value: usize = unsafe { raw::read_mib(&self.0) }.ok()?;
        u64::try_from(value).ok()
    }

    /// The value of an `ssize_t` `mallctl`.
    fn read_signed_size(&self) -> Option<i64> {
        // SAFETY: as in `read_size`: every bit pattern is a valid `isize`, and the MIBs
        // read so name `ssize_t` mallctls (the two `*_decay_ms` above).
        let value: isize = unsafe { raw::read_mib(&self.0) }.ok()?;
        i64::try_from(value).ok()
    }

    /// Calls a void `mallctl` (no value read or written); whether jemalloc did it.
    fn call_void(&self) -> bool {
        // SAFETY: `self.0` is a MIB of `N` components from `mallctlnametomib`, passed
        // with its length. Void mallctls (`arena.<i>.purge`, `thread.tcache.flush`) take
        // neither an old nor a new value: null `oldp`, `oldlenp` and `newp` with `newlen`
        // 0 is how jemalloc(3) says to call them (and what its `NEITHER_READ_NOR_WRITE`
        // check requires), so jemalloc dereferences no pointer of ours but the MIB.
        let result = unsafe {
            tikv_jemalloc_sys::mallctlbymib(
                self.0.as_ptr(),
                N,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        result == 0
    }
}

impl PageMibs {
    fn lookup() -> Option<Self> {
        Some(Self {
            page_size: RawMib::lookup(&ARENAS_PAGE)?.read_size()?,
            dirty: RawMib::lookup(&STATS_ARENAS_ALL_PDIRTY)?,
            muzzy: RawMib::lookup(&STATS_ARENAS_ALL_PMUZZY)?,
        })
    }

    /// Bytes in the pages `mib` counts; 0 if it cannot be read.
    fn bytes(&self, mib: &RawMib<4>) -> u64 {
        mib.read_size()
            .map_or(0, |pages| pages.saturating_mul(self.page_size))
    }
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
            pages: PageMibs::lookup(),
            dirty_decay_ms: RawMib::lookup(&ARENAS_DIRTY_DECAY_MS),
            muzzy_decay_ms: RawMib::lookup(&ARENAS_MUZZY_DECAY_MS),
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
            dirty: self.pages.as_ref().map_or(0, |p| p.bytes(&p.dirty)),
            muzzy: self.pages.as_ref().map_or(0, |p| p.bytes(&p.muzzy)),
            dirty_decay_ms: decay_ms(self.dirty_decay_ms.as_ref()),
            muzzy_decay_ms: decay_ms(self.muzzy_decay_ms.as_ref()),
        })
    }
}

/// A `*_decay_ms` setting; 0 if it cannot be read.
fn decay_ms(mib: Option<&RawMib<2>>) -> i64 {
    mib.and_then(RawMib::read_signed_size).unwrap_or(0)
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

/// Flushes the calling thread's cache of freed blocks (`thread.tcache.flush`), then
/// purges every arena's unused dirty and muzzy pages (`arena.<MALLCTL_ARENAS_ALL>.purge`);
/// whether the purge was done. Walks every arena under its locks: cold code only, never
/// from the allocator. The MIBs are looked up once and cached.
pub(crate) fn purge_all_arenas() -> bool {
    static MIBS: OnceLock<(Option<RawMib<3>>, Option<RawMib<3>>)> = OnceLock::new();
    let (flush, purge) = MIBS.get_or_init(|| {
        (
            RawMib::lookup(&THREAD_TCACHE_FLUSH),
            RawMib::lookup(&ARENA_ALL_PURGE),
        )
    });
    // Fails (EFAULT) where this thread has no cache; the purge is what matters.
    if let Some(flush) = flush {
        flush.call_void();
    }
    purge.as_ref().is_some_and(RawMib::call_void)
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

/// Where cgroup hierarchies are mounted when `/proc/self/mountinfo` cannot be read: the
/// unified (v2) hierarchy at the top (pure v2) or under `unified` (hybrid), and the v1
/// memory controller. These are the mount points systemd, Docker and Kubernetes use.
const DEFAULT_V2_MOUNTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];
const DEFAULT_V1_MEMORY_MOUNT: &str = "/sys/fs/cgroup/memory";

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// The cgroup its top directory is: `/`, or a cgroup's path when only that subtree
    /// is mounted (a container without a cgroup namespace sees its own cgroup so).
    pub(crate) root: String,
    /// Where it is mounted.
    pub(crate) mount_point: String,
}

/// The cgroup hierarchies that can hold a memory limit: v2 (`cgroup2`) and the v1
/// hierarchies with the `memory` controller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CgroupMounts {
    pub(crate) v2: Vec<CgroupMount>,
    pub(crate) v1_memory: Vec<CgroupMount>,
}

impl CgroupMounts {
    /// The mounts `/proc/self/mountinfo` lists, read once (mounts of cgroup hierarchies do
    /// not move under a running service); the usual mount points if it cannot be read.
    pub(crate) fn get() -> &'static CgroupMounts {
        static MOUNTS: OnceLock<CgroupMounts> = OnceLock::new();
        MOUNTS.get_or_init(|| {
            std::fs::read_to_string("/proc/self/mountinfo").map_or_else(
                |_| CgroupMounts::defaults(),
                |text| CgroupMounts::parse(&text),
            )
        })
    }

    fn defaults() -> CgroupMounts {
        let at = |mount_point: &str| CgroupMount {
            root: "/".to_owned(),
            mount_point: mount_point.to_owned(),
        };
        CgroupMounts {
            v2: DEFAULT_V2_MOUNTS.iter().map(|point| at(point)).collect(),
            v1_memory: vec![at(DEFAULT_V1_MEMORY_MOUNT)],
        }
    }

    /// The cgroup mounts in `mountinfo` text (proc(5): `ID PARENT MAJOR:MINOR ROOT
    /// MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`); lines that do not
    /// parse are skipped.
    fn parse(mountinfo: &str) -> CgroupMounts {
        let mut mounts = CgroupMounts::default();
        for line in mountinfo.lines() {
            let Some((mount, filesystem)) = line.split_once(" - ") else {
                continue;
            };
            let mut mount = mount.split(' ').skip(3);
            let (Some(root), Some(mount_point)) = (mount.next(), mount.next()) else {
                continue;
            };
            let mut filesystem = filesystem.split(' ');
            let (Some(fstype), Some(_source), Some(options)) =
                (filesystem.next(), filesystem.next(), filesystem.next())
            else {
                continue;
            };
            let entry = || CgroupMount {
                root: unescape(root),
                mount_point: unescape(mount_point),
            };
            if fstype == "cgroup2" {
                mounts.v2.push(entry());
            } else if fstype == "cgroup" && options.split(',').any(|o| o == "memory") {
                mounts.v1_memory.push(entry());
            }
        }
        mounts
    }
}

/// A mountinfo path field with its octal escapes (`\040` for a space, `\011`, `\012`,
/// `\134`) decoded.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        if let Some(byte) = octal {
            out.push(byte);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| field.to_owned())
}

/// `path` (a cgroup path from `/proc/self/cgroup`) relative to a mount's `root`: `path`
/// itself under a root of `/`, what follows `root` when `path` lies under it, `None` when
/// it does not.
pub(crate) fn relative_to<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    if root == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(root.trim_end_matches('/'))?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Limits at or above this are "no limit": cgroup v1 writes its maximum as
/// `PAGE_COUNTER_MAX` pages (9223372036854771712 with 4 KiB pages).
const NO_LIMIT: u64 = 1 << 62;

/// The memory limit of the process's cgroup in bytes: the smallest limit set on its
/// cgroup or any ancestor (v2 `memory.max`, v1 `memory.limit_in_bytes`), as the kernel
/// enforces; `None` where no limit is set or no hierarchy with the memory controller is
/// mounted. Hierarchies are found in `/proc/self/mountinfo` (once); the limit files are
/// read into stack buffers on every call.
pub(crate) fn cgroup_memory_limit() -> Option<u64> {
    let mut buffer = [0u8; 4096];
    let membership = read_small("/proc/self/cgroup", &mut buffer)?;
    let mut limit: Option<u64> = None;
    for (v2, mount, path) in memory_cgroups(membership) {
        let file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        limit = min_limit(limit, hierarchy_limit(&mount.mount_point, path, file));
    }
    limit
}

/// The process's memory cgroups in `membership` (`/proc/self/cgroup`'s text): for each
/// mounted hierarchy that can hold one, whether it is v2, the mount, and the cgroup's path
/// relative to the mount's root (a path outside the root, not expected, as it is: levels
/// whose files are missing are skipped by the readers), in the order of the lines.
pub(crate) fn memory_cgroups(
    membership: &str,
) -> impl Iterator<Item = (bool, &'static CgroupMount, &str)> {
    let mounts = CgroupMounts::get();
    membership.lines().flat_map(move |line| {
        let mut fields = line.splitn(3, ':');
        let (id, controllers, path) = (fields.next(), fields.next(), fields.next());
        let (v2, hierarchies): (bool, &'static [CgroupMount]) = match (id, controllers, path) {
            (Some("0"), Some(""), Some(_)) => (true, &mounts.v2),
            (Some(_), Some(controllers), Some(_))
                if controllers.split(',').any(|c| c == "memory") =>
            {
                (false, &mounts.v1_memory)
            }
            _ => (false, &[]),
        };
        let path = path.unwrap_or("");
        hierarchies
            .iter()
            .map(move |mount| (v2, mount, relative_to(path, &mount.root).unwrap_or(path)))
    })
}

fn min_limit(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The smallest limit in `file` of the cgroup at `path` under `root` and of each of its
/// ancestors up to `root` itself. Levels whose file is missing are skipped (the top of a
/// v2 hierarchy has no `memory.max`).
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
    read_whole(&std::fs::File::open(path).ok()?, buffer)
}

/// The whole of an open small file, read from its start with `pread` (so a file opened
/// once can be read again and again) into `buffer`; `None` if it cannot be read, is not
/// UTF-8 or does not fit.
pub(crate) fn read_whole<'a>(file: &std::fs::File, buffer: &'a mut [u8]) -> Option<&'a str> {
    use std::os::unix::fs::FileExt;
    let mut len = 0;
    loop {
        match file.read_at(buffer.get_mut(len..)?, u64::try_from(len).ok()?) {
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
pub(crate) fn parse_limit(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < NO_LIMIT).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_mallctl_names_parse_and_read() {
        // `raw::name_to_mib` asserts each name has exactly its MIB's components.
        let pages = PageMibs::lookup().expect("arenas.page and stats.arenas.4096.p*");
        assert!(pages.page_size >= 4096 && pages.page_size.is_power_of_two());
        assert!(RawMib::lookup(&ARENA_ALL_PURGE).is_some());
        assert!(RawMib::lookup(&THREAD_TCACHE_FLUSH).is_some());
        let decay = RawMib::lookup(&ARENAS_DIRTY_DECAY_MS).expect("arenas.dirty_decay_ms");
        assert!(decay.read_signed_size().is_some_and(|ms| ms >= -1));
        let decay = RawMib::lookup(&ARENAS_MUZZY_DECAY_MS).expect("arenas.muzzy_decay_ms");
        assert!(decay.read_signed_size().is_some_and(|ms| ms >= -1));
        assert!(purge_all_arenas());
    }

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
    fn mountinfo_names_the_cgroup_hierarchies() {
        let at = |root: &str, point: &str| CgroupMount {
            root: root.to_owned(),
            mount_point: point.to_owned(),
        };
        // A hybrid host (systemd's layout), with optional fields after the options.
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            CgroupMounts::parse(hybrid),
            CgroupMounts {
                v2: vec![at("/", "/sys/fs/cgroup/unified")],
                v1_memory: vec![at("/", "/sys/fs/cgroup/memory")],
            }
        );
        // A container without a cgroup namespace: its own cgroup, bind-mounted; a v1
        // hierarchy co-mounting memory with another controller; a mount point with a
        // space; lines that do not parse.
        let odd = "\
1234 1200 0:26 /docker/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw,nsdelegate
77 60 0:40 / /mnt/my\\040cgroups rw - cgroup none rw,hugetlb,memory
garbage
88 60 0:41 / - cgroup2
";
        assert_eq!(
            CgroupMounts::parse(odd),
            CgroupMounts {
                v2: vec![at("/docker/abc", "/sys/fs/cgroup")],
                v1_memory: vec![at("/", "/mnt/my cgroups")],
            }
        );
        assert_eq!(CgroupMounts::parse(""), CgroupMounts::default());
        assert_eq!(unescape(r"a\134b\0"), r"a\b\0");
    }

    #[test]
    fn cgroup_paths_are_taken_relative_to_the_mount_root() {
        assert_eq!(relative_to("/a/b", "/"), Some("/a/b"));
        assert_eq!(relative_to("/docker/abc", "/docker/abc"), Some(""));
        assert_eq!(relative_to("/docker/abc/sub", "/docker/abc/"), Some("/sub"));
        assert_eq!(relative_to("/docker/abcdef", "/docker/abc"), None);
        assert_eq!(relative_to("/other", "/docker/abc"), None);
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
