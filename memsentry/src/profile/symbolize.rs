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

/// Whether a frame belongs to the allocator's machinery rather than to the program:
/// such frames at the leaf end of a stack are trimmed.
fn is_allocator_frame(name: &str) -> bool {
    // The `#[global_allocator]` shims, generated in the user's crate: `my_app::_::__rust_alloc`.
    if name.contains("::_::__rust_") {
        return true;
    }
    const PREFIXES: [&str; 12] = [
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
        "<memsentry::alloc::MemSentry",
        "backtrace::",
    ];
    PREFIXES.iter().any(|prefix| name.starts_with(prefix))
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
                skip = lines
                    .iter()
                    .take_while(|line| is_allocator_frame(&line.function.name))
                    .count();
                if skip == lines.len() && !lines.is_empty() {
                    continue; // wholly the allocator's
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
    })
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
    fn allocator_frames() {
        assert!(is_allocator_frame("__rust_alloc"));
        assert!(is_allocator_frame("my_app::_::__rust_alloc_zeroed"));
        assert!(is_allocator_frame("alloc::alloc::exchange_malloc"));
        assert!(is_allocator_frame(
            "<memsentry::alloc::MemSentry<A> as core::alloc::global::GlobalAlloc>::alloc"
        ));
        assert!(!is_allocator_frame("alloc::raw_vec::RawVec<T,A>::grow_one"));
        assert!(!is_allocator_frame("demo::leak"));
    }
}
