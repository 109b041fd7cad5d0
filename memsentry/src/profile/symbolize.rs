//! Dump-time symbolization: instruction pointers → functions, files and lines, with a
//! process-wide cache; and the process's executable mappings.
//!
//! Only ever runs from [`heap`](super::heap), never in the allocator.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Function, Location, Mapping, Profile};

/// One (possibly inlined) frame at an address, innermost first.
#[derive(Clone, Debug)]
struct Line {
    function: Arc<Function>,
    line: u32,
}

/// The cache: address → its frames. Bounded: past [`CACHE_LIMIT`] addresses it is
/// emptied (dumps then re-resolve what they need; nothing grows without bound).
#[derive(Default)]
struct Cache {
    addresses: HashMap<usize, Arc<[Line]>>,
    functions: HashMap<Function, Arc<Function>>,
}

const CACHE_LIMIT: usize = 1 << 16;

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// Resolves `addresses` (return addresses, as captured), through the cache.
fn resolve_all(addresses: &HashSet<usize>) -> HashMap<usize, Arc<[Line]>> {
    let mut guard = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = guard.get_or_insert_with(Cache::default);
    if cache.addresses.len() + addresses.len() > CACHE_LIMIT {
        *cache = Cache::default();
    }
    let mut out = HashMap::with_capacity(addresses.len());
    for &address in addresses {
        let lines = match cache.addresses.get(&address) {
            Some(lines) => Arc::clone(lines),
            None => {
                let lines = resolve_one(address, &mut cache.functions);
                // A dump with more addresses than the cache holds keeps only the first.
                if cache.addresses.len() < CACHE_LIMIT {
                    cache.addresses.insert(address, Arc::clone(&lines));
                }
                lines
            }
        };
        out.insert(address, lines);
    }
    out
}

fn resolve_one(address: usize, functions: &mut HashMap<Function, Arc<Function>>) -> Arc<[Line]> {
    let mut lines = Vec::new();
    // `resolve` looks up `address - 1`: a return address's call instruction.
    backtrace::resolve(address as *mut core::ffi::c_void, |symbol| {
        let name = symbol.name();
        let function = Function {
            name: name
                .as_ref()
                .map_or_else(String::new, |name| format!("{name:#}"))
                .into(),
            system_name: name
                .as_ref()
                .map_or(&b""[..], |name| name.as_bytes())
                .escape_ascii()
                .to_string()
                .into(),
            file: symbol
                .filename()
                .map_or_else(String::new, |file| file.display().to_string())
                .into(),
        };
        let function = Arc::clone(
            functions
                .entry(function.clone())
                .or_insert_with(|| Arc::new(function)),
        );
        lines.push(Line {
            function,
            line: symbol.lineno().unwrap_or(0),
        });
    });
    lines.into()
}

/// The `#[global_allocator]` shims, generated in the user's crate: `my_app::_::__rust_alloc`.
const SHIM: &str = "::_::__rust_";

/// Names of the allocator's machinery, by prefix.
const ALLOCATOR_PREFIXES: [&str; 14] = [
    "__rust_alloc",
    "__rust_dealloc",
    "__rust_realloc",
    "__rustc::",
    "__rdl_",
    "__rg_",
    "alloc::alloc::",
    "<alloc::alloc::Global as core::alloc::Allocator>",
    "memsentry::hot::",
    "memsentry::sampler::",
    "memsentry::unwind::",
    "<memsentry::alloc::MemSentry",
    "memsentry::alloc::",
    "backtrace::",
];

/// Source files of the allocator's machinery: memsentry's modules of the prefixes above,
/// and std's `alloc::alloc`.
const ALLOCATOR_FILES: [&str; 4] = ["hot/", "sampler.rs", "alloc.rs", "unwind/"];

/// Whether a frame belongs to the allocator's machinery rather than to the program:
/// such frames at the leaf end of a stack are trimmed.
///
/// By name, and also by file: a binary built with `debug = "line-tables-only"` names
/// inlined frames without their path (`count_alloc_fast`, `alloc_impl`), but their files say
/// whose code they are.
fn is_allocator_frame(name: &str, file: &str) -> bool {
    name.contains(SHIM)
        || ALLOCATOR_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
        || is_allocator_file(file)
}

/// `…/memsentry[-VERSION]/src/{hot/…,sampler.rs,alloc.rs,unwind.rs}` or std's
/// `…/library/alloc/src/alloc.rs`.
fn is_allocator_file(file: &str) -> bool {
    let file = file.replace('\\', "/");
    if file.ends_with("library/alloc/src/alloc.rs") {
        return true;
    }
    file.match_indices("/src/").any(|(at, _)| {
        let crate_dir = file[..at].rsplit('/').next().unwrap_or("");
        let rest = &file[at + "/src/".len()..];
        (crate_dir == "memsentry" || crate_dir.starts_with("memsentry-"))
            && ALLOCATOR_FILES.iter().any(|f| rest.starts_with(f))
    })
}

/// [`is_allocator_frame`] as a regular expression (RE2 syntax, matched against whole
/// names), for pprof's `drop_frames`: readers that symbolize an offline profile drop
/// these frames and everything they call, as this process trims them.
pub(super) fn allocator_frames_regex() -> String {
    let escape = |s: &str| {
        s.chars().fold(String::new(), |mut out, c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                out.push('\\');
            }
            out.push(c);
            out
        })
    };
    let mut alternatives = vec![format!(".*{}.*", escape(SHIM))];
    alternatives.extend(
        ALLOCATOR_PREFIXES
            .iter()
            .map(|p| format!("{}.*", escape(p))),
    );
    alternatives.join("|")
}

/// Adds stacks to a profile, sharing locations and functions between them.
pub(super) struct Builder<'a> {
    profile: &'a mut Profile,
    /// (address, leading inlined lines trimmed) → location index.
    locations: HashMap<(usize, usize), usize>,
    functions: HashMap<Arc<Function>, usize>,
    resolved: HashMap<usize, Arc<[Line]>>,
}

impl<'a> Builder<'a> {
    /// A builder for stacks made of the addresses `ips` (resolved here, all at once).
    pub(super) fn new(profile: &'a mut Profile, ips: &HashSet<usize>) -> Self {
        Builder {
            profile,
            locations: HashMap::new(),
            functions: HashMap::new(),
            resolved: resolve_all(ips),
        }
    }

    /// Adds the stack `ips` (leaf first, every address among those given to
    /// [`Builder::new`]), returning its index in `profile.stacks`.
    pub(super) fn add_stack(&mut self, ips: &[usize]) -> usize {
        let mut stack = Vec::with_capacity(ips.len());
        let mut trimming = true;
        for &ip in ips {
            let lines = self
                .resolved
                .get(&ip)
                .cloned()
                .unwrap_or_else(|| Arc::new([]));
            let mut skip = 0;
            if trimming {
                if lines.is_empty() {
                    // Not symbolized (offline, or no debug information): by address.
                    if in_allocator(ip) {
                        continue;
                    }
                } else {
                    skip = lines
                        .iter()
                        .take_while(|line| {
                            is_allocator_frame(&line.function.name, &line.function.file)
                        })
                        .count();
                    if skip == lines.len() {
                        continue; // wholly the allocator's
                    }
                }
                trimming = false;
            }
            let location = match self.locations.get(&(ip, skip)) {
                Some(&index) => index,
                None => {
                    let lines = lines[skip..]
                        .iter()
                        .map(|line| (self.function(&line.function), line.line))
                        .collect();
                    let index = self.profile.locations.len();
                    self.profile.locations.push(Location {
                        address: ip as u64,
                        mapping: mapping_of(&self.profile.mappings, ip as u64),
                        lines,
                    });
                    self.locations.insert((ip, skip), index);
                    index
                }
            };
            stack.push(location);
        }
        self.profile.stacks.push(stack);
        self.profile.stacks.len() - 1
    }

    fn function(&mut self, function: &Arc<Function>) -> usize {
        if let Some(&index) = self.functions.get(function) {
            return index;
        }
        let index = self.profile.functions.len();
        self.profile.functions.push(Function::clone(function));
        self.functions.insert(Arc::clone(function), index);
        index
    }
}

fn mapping_of(mappings: &[Mapping], address: u64) -> Option<usize> {
    mappings
        .iter()
        .position(|m| m.start <= address && address < m.limit)
}

/// The process's executable file mappings, from `/proc/self/maps`; the main binary's
/// first (pprof's convention). Empty if the file cannot be read.
pub(super) fn mappings() -> Vec<Mapping> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let exe = std::env::current_exe()
        .ok()
        .map(|path| path.display().to_string());
    let mut mappings: Vec<Mapping> = maps.lines().filter_map(parse_maps_line).collect();
    mappings.iter_mut().for_each(complete);
    // Stable: keeps address order within each group.
    mappings.sort_by_key(|m| Some(&m.file) != exe.as_ref());
    mappings
}

/// One executable, file-backed line of `/proc/PID/maps`:
/// `start-limit perms offset dev inode path`.
fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut fields = line.split_ascii_whitespace();
    let (start, limit) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let file = fields.nth(2)?;
    if !perms.contains('x') || !file.starts_with('/') {
        return None;
    }
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        limit: u64::from_str_radix(limit, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        file: file.to_owned(),
        build_id: String::new(),
    })
}

/// What pprof needs from a mapped ELF file besides its name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ElfInfo {
    /// The GNU build ID in hex; empty if it has none.
    build_id: String,
    /// Executable `PT_LOAD` segments: (file offset, virtual address) where each begins.
    exec_segments: Vec<(u64, u64)>,
}

/// ELF facts by file, read once per process (a mapped file does not change under it).
static ELF_INFO: Mutex<Option<HashMap<String, ElfInfo>>> = Mutex::new(None);

/// The facts of the ELF file at `path`; empty if it cannot be read. Reads only the
/// headers and the note, not the whole file.
fn elf_info(path: &str) -> ElfInfo {
    let mut guard = ELF_INFO.lock().unwrap_or_else(PoisonError::into_inner);
    let known = guard.get_or_insert_with(HashMap::new);
    if let Some(info) = known.get(path) {
        return info.clone();
    }
    let info = read_elf_info(path).unwrap_or_default();
    known.insert(path.to_owned(), info.clone());
    info
}

fn read_elf_info(path: &str) -> Option<ElfInfo> {
    use object::{Object as _, ObjectSegment as _, SegmentFlags};
    let cache = object::ReadCache::new(std::fs::File::open(path).ok()?);
    let file = object::File::parse(&cache).ok()?;
    let build_id = file
        .build_id()
        .ok()
        .flatten()
        .map(|id| id.iter().map(|byte| format!("{byte:02x}")).collect())
        .unwrap_or_default();
    let exec_segments = file
        .segments()
        .filter(|segment| {
            matches!(
                segment.flags(),
                SegmentFlags::Elf { p_flags, .. } if p_flags.contains(object::elf::PF_X)
            )
        })
        .map(|segment| (segment.file_range().0, segment.address()))
        .collect();
    Some(ElfInfo {
        build_id,
        exec_segments,
    })
}

/// Where the allocator's machinery lies in this process's executable: the address
/// ranges of its functions whose names [`is_allocator_frame`] accepts (the
/// `#[global_allocator]` shims, memsentry's hooks, std's `alloc::alloc`), read once from
/// the executable's symbol table. Offline profiles have no names to trim by, and a
/// reader's symbolizer may not name these frames either (the shims carry no debug
/// information): their leading frames are trimmed by address instead. Empty if the
/// executable has no symbol table (stripped).
fn allocator_ranges() -> &'static [(u64, u64)] {
    static RANGES: std::sync::OnceLock<Vec<(u64, u64)>> = std::sync::OnceLock::new();
    RANGES.get_or_init(|| read_allocator_ranges().unwrap_or_default())
}

fn read_allocator_ranges() -> Option<Vec<(u64, u64)>> {
    use object::{Object as _, ObjectSymbol as _, SymbolKind};
    let exe = std::env::current_exe().ok()?.display().to_string();
    let main = mappings().into_iter().find(|m| m.file == exe)?;
    let (_, vaddr) = elf_info(&exe)
        .exec_segments
        .into_iter()
        .find(|&(offset, _)| offset == main.offset)?;
    // Run-time address minus link-time address.
    let bias = main.start.wrapping_sub(vaddr);
    let cache = object::ReadCache::new(std::fs::File::open(&exe).ok()?);
    let file = object::File::parse(&cache).ok()?;
    let mut ranges: Vec<(u64, u64)> = file
        .symbols()
        .filter(|symbol| symbol.kind() == SymbolKind::Text && symbol.size() > 0)
        .filter(|symbol| {
            symbol.name_bytes().is_ok_and(|name| {
                let name = format!("{:#}", backtrace::SymbolName::new(name));
                is_allocator_frame(&name, "")
            })
        })
        .map(|symbol| {
            let start = symbol.address().wrapping_add(bias);
            (start, start.wrapping_add(symbol.size()))
        })
        .collect();
    ranges.sort_unstable();
    Some(ranges)
}

/// Whether the return address `ip` lies in one of the allocator's functions.
fn in_allocator(ip: usize) -> bool {
    // A return address may be one past its call's function: look at the call itself.
    let address = (ip as u64).wrapping_sub(1);
    let ranges = allocator_ranges();
    let after = ranges.partition_point(|&(start, _)| start <= address);
    after > 0 && address < ranges[after - 1].1
}

/// Fills in `mapping`'s build ID, and makes it start where its executable segment
/// starts. The kernel maps whole pages, so a segment that does not begin on a page
/// boundary (common with lld, and with GNU ld for small binaries) begins a little after
/// the mapping. A reader that computes the load bias from the segment's virtual
/// address (Go's `go tool pprof` does) is then off by that little, unless the mapping
/// says precisely where the segment is; the bytes before it are padding, no code.
fn complete(mapping: &mut Mapping) {
    let info = elf_info(&mapping.file);
    let len = mapping.limit - mapping.start;
    if let Some(segment) = info
        .exec_segments
        .iter()
        .map(|&(offset, _)| offset)
        .filter(|&o| o >= mapping.offset && o - mapping.offset < len)
        .min()
    {
        mapping.start += segment - mapping.offset;
        mapping.offset = segment;
    }
    mapping.build_id = info.build_id;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let m =
            parse_maps_line("55d0c8a00000-55d0c8b00000 r-xp 00012000 08:01 1234   /usr/bin/demo")
                .unwrap();
        assert_eq!(
            (m.start, m.limit, m.offset),
            (0x55d0_c8a0_0000, 0x55d0_c8b0_0000, 0x12000)
        );
        assert_eq!(m.file, "/usr/bin/demo");
        assert!(parse_maps_line("7f00-7f10 rw-p 00000000 00:00 0 [heap]").is_none());
        assert!(parse_maps_line("7f00-7f10 r-xp 00000000 00:00 0").is_none());
        assert!(parse_maps_line("garbage").is_none());
    }

    #[test]
    fn this_binary_is_mapped_first() {
        let mappings = mappings();
        let exe = std::env::current_exe().unwrap().display().to_string();
        assert_eq!(
            mappings.first().map(|m| m.file.as_str()),
            Some(exe.as_str())
        );
        let here = this_binary_is_mapped_first as *const () as u64;
        assert!(mapping_of(&mappings, here).is_some());
    }

    #[test]
    fn build_ids_match_readelf() {
        let exe = std::env::current_exe().unwrap().display().to_string();
        let id = elf_info(&exe).build_id;
        // The test binary is linked by cc, which adds a build ID on Debian and most
        // distributions; `readelf -n` prints it as "Build ID: <hex>".
        let readelf = std::process::Command::new("readelf")
            .args(["-n", &exe])
            .output()
            .expect("readelf (binutils) is installed with gcc");
        let notes = String::from_utf8_lossy(&readelf.stdout);
        let expected = notes
            .lines()
            .find_map(|line| line.trim().strip_prefix("Build ID: "))
            .expect("the test binary has a build ID");
        assert_eq!(id, expected);
        assert_eq!(mappings()[0].build_id, expected);
        assert_eq!(elf_info("/nonexistent/binary"), ElfInfo::default());
    }

    #[test]
    fn mappings_start_at_their_executable_segment() {
        let exe = std::env::current_exe().unwrap().display().to_string();
        let segments: Vec<u64> = elf_info(&exe)
            .exec_segments
            .iter()
            .map(|&(offset, _)| offset)
            .collect();
        assert!(!segments.is_empty());
        let main = &mappings()[0];
        assert!(segments.contains(&main.offset), "{main:?} vs {segments:x?}");
        // A page-aligned mapping of a segment that starts 0x160 bytes into its page.
        let mut mapping = Mapping {
            start: 0x5000_0000,
            limit: 0x5017_0000,
            offset: segments[0] & !0xfff,
            file: exe.clone(),
            build_id: String::new(),
        };
        let inside = segments[0] - mapping.offset;
        complete(&mut mapping);
        assert_eq!(mapping.offset, segments[0]);
        assert_eq!(mapping.start, 0x5000_0000 + inside);
        assert!(!mapping.build_id.is_empty());
    }

    #[test]
    fn the_allocator_is_found_by_address() {
        let ranges = allocator_ranges();
        assert!(!ranges.is_empty(), "the test binary has a symbol table");
        // `__rust_alloc` (or `__rustc::__rust_alloc`) is among them, and this test is not.
        let here = the_allocator_is_found_by_address as *const () as usize;
        assert!(!in_allocator(here + 1));
        let (start, end) = ranges[0];
        assert!(in_allocator(start as usize + 1) && end > start);
        assert!(!in_allocator(end as usize + 1) || ranges.iter().any(|r| r.0 == end));
    }

    #[test]
    fn the_drop_frames_regex_names_the_same_frames() {
        let regex = allocator_frames_regex();
        assert!(
            regex.starts_with(".*::_::__rust_.*|__rust_alloc.*|"),
            "{regex}"
        );
        assert!(
            regex.contains("|<memsentry::alloc::MemSentry.*|"),
            "{regex}"
        );
        assert!(regex.contains("|<alloc::alloc::Global as core::alloc::Allocator>.*|"));
        assert_eq!(regex.split('|').count(), 1 + ALLOCATOR_PREFIXES.len());
    }

    #[test]
    fn allocator_frames() {
        let by_name = |name: &str| is_allocator_frame(name, "");
        assert!(by_name("__rust_alloc"));
        assert!(by_name("my_app::_::__rust_alloc_zeroed"));
        assert!(by_name("alloc::alloc::exchange_malloc"));
        assert!(by_name(
            "<memsentry::alloc::MemSentry<A> as core::alloc::global::GlobalAlloc>::alloc"
        ));
        assert!(by_name("memsentry::alloc::MemSentry<A>::reallocate_placed"));
        assert!(!by_name("alloc::raw_vec::RawVec<T,A>::grow_one"));
        assert!(!by_name("demo::leak"));
        // Short names (line tables only): the file decides.
        let by_file = |file: &str| is_allocator_frame("f", file);
        assert!(by_file("/work/memsentry/src/hot/mod.rs"));
        assert!(by_file("/work/memsentry/src/unwind/table.rs"));
        assert!(by_file(
            "/root/.cargo/registry/src/index.crates.io-1/memsentry-0.1.0/src/sampler.rs"
        ));
        assert!(by_file("/rustc/59807616e1fa/library/alloc/src/alloc.rs"));
        assert!(!by_file(
            "/rustc/59807616e1fa/library/alloc/src/raw_vec/mod.rs"
        ));
        assert!(!by_file("/work/memsentry/src/profile/tests.rs"));
        assert!(!by_file("/work/memsentry/tests/alloc.rs"));
        assert!(!by_file("/work/not-memsentry/src/alloc.rs"));
        assert!(!by_file("/work/demo/src/main.rs"));
    }
}
