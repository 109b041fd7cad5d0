//! **[S]** Unwinding code without frame pointers: the call-frame information (`.eh_frame`)
//! of every loaded object, turned once into a compact table, as the Linux kernel's ORC
//! unwinder keeps one.
//!
//! On x86-64 nearly every row of `.eh_frame` says: the canonical frame address (CFA) is
//! the stack pointer or the frame pointer plus a constant; the return address is saved at
//! CFA − 8; the caller's frame pointer is saved at CFA + a constant, or not at all. The
//! table keeps exactly that, one 8-byte [`Rule`] per address range, sorted by address
//! (found by binary search, with a small per-thread cache in front for the return
//! addresses a program's stacks repeat). A row it cannot express (a DWARF expression,
//! another register as base, a signal frame) becomes a rule that ends the walk, counted,
//! rather than a guess.
//!
//! The table is built from `dl_iterate_phdr`'s list of objects (each object's
//! `PT_GNU_EH_FRAME` segment, `.eh_frame_hdr`, lists its FDEs), parsed with `gimli`, while
//! the loader's lock is held (so no object is unloaded under the parser). It is built on
//! a sample's slow path under the sampler's guard (it allocates; nothing it allocates is
//! sampled), by one thread at a time: other threads' samples walk by DWARF meanwhile. A
//! table is immutable once published; when a walk meets an address outside every object
//! the table knows and the loader has added objects since, a new table is built and
//! published, and the old one is kept (never freed: another thread may be reading it;
//! one table per `dlopen` seen, in practice a handful).

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, NativeEndian, RegisterRule, UnwindSection, X86_64,
};

/// One row of the table: how to find the CFA (`kind`'s base register plus
/// `cfa_offset`) and the caller's frame pointer (saved at CFA + `bp_offset`, or not saved
/// where `bp_offset` is 0). The return address is at CFA − 8, as the x86-64 ABI saves it
/// (a row that says otherwise is not expressed). 8 bytes, read field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(8))]
pub(crate) struct Rule {
    cfa_offset: i32,
    bp_offset: i16,
    kind: u8,
}

/// No rule: no code here, or a row the table cannot express. Ends a walk. (Zero: a
/// thread's empty cache is zeroed memory.)
const END: u8 = 0;
/// CFA = stack pointer + offset.
const FROM_SP: u8 = 1;
/// CFA = frame pointer + offset.
const FROM_BP: u8 = 2;
/// The outermost frame: its return address is undefined (`_start`, a thread's start).
const OUTERMOST: u8 = 3;
/// The caller's frame pointer is this frame's (not saved): a saved slot is never at the
/// CFA itself.
const NOT_SAVED: i16 = 0;
/// The return address's offset from the CFA.
const RA_OFFSET: isize = -8;

impl Rule {
    const END: Rule = Rule::new(END, 0, NOT_SAVED);

    const fn new(kind: u8, cfa_offset: i32, bp_offset: i16) -> Rule {
        Rule {
            cfa_offset,
            bp_offset,
            kind,
        }
    }
}

/// The unwind table of every object loaded when it was built.
#[derive(Debug, Default)]
pub(crate) struct Table {
    /// Start addresses, sorted; each rule holds from its start to the next one's.
    starts: Vec<u64>,
    rules: Vec<Rule>,
    /// The objects' executable address ranges, sorted: an address outside all of them
    /// may belong to an object loaded since.
    objects: Vec<(u64, u64)>,
    /// The loader's count of objects added, when the table was built.
    adds: u64,
    /// Rows that became [`Rule::END`] because the table cannot express them.
    unsupported: u64,
    /// This table's number (1, 2, … as tables replace each other).
    generation: u64,
}

/// What a walk found where it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The outermost frame (its return address undefined) or a full buffer.
    Done,
    /// An address with no rule, or a rule the table cannot express.
    NoRule,
    /// A rule pointed outside the thread's stack.
    OutOfBounds,
}

static TABLE: AtomicPtr<Table> = AtomicPtr::new(core::ptr::null_mut());
static BUILDING: AtomicBool = AtomicBool::new(false);
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Walks that stopped early, for [`usage`].
pub(crate) static STOPPED_NO_RULE: AtomicU64 = AtomicU64::new(0);
pub(crate) static STOPPED_OUT_OF_BOUNDS: AtomicU64 = AtomicU64::new(0);
/// The last table's build time, for [`usage`].
static BUILD_MICROS: AtomicU64 = AtomicU64::new(0);

/// The table's bytes, rows, build time (µs) and unsupported rows, and the walks that
/// stopped early: for `profile::usage`.
pub(crate) fn usage() -> [u64; 5] {
    let (bytes, rows, unsupported) = table().map_or((0, 0, 0), |t| {
        (t.bytes(), t.starts.len() as u64, t.unsupported)
    });
    [
        bytes,
        rows,
        BUILD_MICROS.load(Ordering::Relaxed),
        unsupported,
        STOPPED_NO_RULE.load(Ordering::Relaxed) + STOPPED_OUT_OF_BOUNDS.load(Ordering::Relaxed),
    ]
}

/// The published table, if one is built.
pub(crate) fn table() -> Option<&'static Table> {
    let table = TABLE.load(Ordering::Acquire);
    // SAFETY: a published table is a leaked `Box` that is never freed or changed (see
    // the module docs), so a shared `'static` reference to it stays valid.
    unsafe { table.as_ref() }
}

/// The table, built first if there is none yet; `None` while another thread builds one
/// (walk by DWARF meanwhile) or if none can be built. Runs under the sampler's guard.
pub(crate) fn table_or_build() -> Option<&'static Table> {
    table().or_else(rebuild)
}

/// Builds and publishes a new table, unless another thread is building one.
fn rebuild() -> Option<&'static Table> {
    if BUILDING.swap(true, Ordering::Acquire) {
        return None;
    }
    let started = std::time::Instant::now();
    let mut table = build();
    table.generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    BUILD_MICROS.store(
        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    let published: &'static Table = Box::leak(Box::new(table));
    TABLE.store(core::ptr::from_ref(published).cast_mut(), Ordering::Release);
    BUILDING.store(false, Ordering::Release);
    Some(published)
}

impl Table {
    fn bytes(&self) -> u64 {
        (self.starts.capacity() * 8 + self.rules.capacity() * 8 + self.objects.capacity() * 16)
            as u64
    }

    /// The rule for the code at `ip`.
    fn find(&self, ip: u64) -> Rule {
        let index = self.starts.partition_point(|&start| start <= ip);
        match index.checked_sub(1) {
            Some(index) => self.rules.get(index).copied().unwrap_or(Rule::END),
            None => Rule::END,
        }
    }

    /// Whether `ip` lies in an object this table covers.
    fn knows(&self, ip: u64) -> bool {
        let index = self.objects.partition_point(|&(start, _)| start <= ip);
        index
            .checked_sub(1)
            .and_then(|i| self.objects.get(i))
            .is_some_and(|&(_, end)| ip < end)
    }
}

/// The number of objects the loader has added (glibc's `dlpi_adds`).
fn loader_adds() -> u64 {
    unsafe extern "C" fn callback(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `dl_iterate_phdr` passes a valid `info` for the call, and `data` is the
        // `u64` below, which outlives the iteration.
        unsafe { *data.cast::<u64>() = (*info).dlpi_adds };
        1 // one object tells the count
    }
    let mut adds = 0u64;
    // SAFETY: the callback matches the expected signature and only writes `adds`.
    unsafe { libc::dl_iterate_phdr(Some(callback), (&raw mut adds).cast()) };
    adds
}

/// Builds the table of every loaded object.
fn build() -> Table {
    unsafe extern "C" fn callback(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `Builder` passed below, alive for the whole iteration and
        // used by nothing else meanwhile; `info` is valid for this call.
        let (builder, info) = unsafe { (&mut *data.cast::<Builder>(), &*info) };
        builder.adds = info.dlpi_adds;
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers of a loaded object.
        let headers =
            unsafe { core::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        builder.add_object(info.dlpi_addr, headers);
        0
    }
    let mut builder = Builder::default();
    // SAFETY: the callback matches the expected signature; it reads the objects' mapped
    // segments while the loader's lock keeps them mapped.
    unsafe { libc::dl_iterate_phdr(Some(callback), (&raw mut builder).cast()) };
    builder.finish()
}

#[derive(Default)]
struct Builder {
    rows: Vec<(u64, Rule)>,
    objects: Vec<(u64, u64)>,
    adds: u64,
    unsupported: u64,
}

impl Builder {
    /// Adds the rows of the object loaded at `bias` with program headers `headers`.
    fn add_object(&mut self, bias: u64, headers: &[libc::Elf64_Phdr]) {
        let mut hdr = None;
        for header in headers {
            match header.p_type {
                libc::PT_LOAD if header.p_flags & libc::PF_X != 0 => {
                    let start = bias.wrapping_add(header.p_vaddr);
                    self.objects
                        .push((start, start.wrapping_add(header.p_memsz)));
                }
                libc::PT_GNU_EH_FRAME => hdr = Some(header),
                _ => {}
            }
        }
        let Some(hdr) = hdr else { return };
        let hdr_address = bias.wrapping_add(hdr.p_vaddr);
        // `.eh_frame` runs from its address to the end of the loaded segment holding it.
        let segment_end = |address: u64| {
            headers
                .iter()
                .filter(|h| h.p_type == libc::PT_LOAD)
                .map(|h| {
                    let start = bias.wrapping_add(h.p_vaddr);
                    (start, start.wrapping_add(h.p_memsz))
                })
                .find(|&(start, end)| start <= address && address < end)
                .map(|(_, end)| end)
        };
        let (Ok(hdr_len), Some(_)) = (usize::try_from(hdr.p_memsz), segment_end(hdr_address))
        else {
            return;
        };
        // SAFETY: the object is loaded (the loader's lock is held) and its
        // PT_GNU_EH_FRAME segment, inside a loaded segment, is mapped for its size.
        let hdr_bytes =
            unsafe { core::slice::from_raw_parts(hdr_address as usize as *const u8, hdr_len) };
        let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_address);
        let Ok(parsed) = EhFrameHdr::new(hdr_bytes, NativeEndian).parse(&bases, 8) else {
            return;
        };
        let gimli::Pointer::Direct(eh_frame_address) = parsed.eh_frame_ptr() else {
            return;
        };
        let Some(end) = segment_end(eh_frame_address) else {
            return;
        };
        let Ok(len) = usize::try_from(end - eh_frame_address) else {
            return;
        };
        // SAFETY: from `.eh_frame`'s start to the end of the loaded segment that holds it:
        // mapped while the loader's lock is held.
        let eh_bytes =
            unsafe { core::slice::from_raw_parts(eh_frame_address as usize as *const u8, len) };
        let mut eh_frame = EhFrame::new(eh_bytes, NativeEndian);
        eh_frame.set_address_size(8);
        let bases = bases.set_eh_frame(eh_frame_address);
        let Some(table) = parsed.table() else { return };
        let mut context = gimli::UnwindContext::new();
        for entry in table.iter(&bases) {
            let Ok((_, pointer)) = entry else { continue };
            let Ok(offset) = table.pointer_to_offset(pointer) else {
                continue;
            };
            let Ok(fde) = eh_frame.fde_from_offset(&bases, offset, EhFrame::cie_from_offset) else {
                continue;
            };
            if fde.cie().is_signal_trampoline() {
                self.rows.push((fde.initial_address(), Rule::END));
                self.rows.push((fde.end_address(), Rule::END));
                self.unsupported += 1;
                continue;
            }
            let Ok(mut rows) = fde.rows(&eh_frame, &bases, &mut context) else {
                continue;
            };
            while let Ok(Some(row)) = rows.next_row() {
                let rule = self.rule(row);
                self.rows.push((row.start_address(), rule));
            }
            // Where the FDE ends, nothing holds until another starts there.
            self.rows.push((fde.end_address(), Rule::END));
        }
    }

    /// A row as a rule; [`Rule::END`] (counted) for what the table cannot express.
    fn rule(&mut self, row: &gimli::UnwindTableRow<usize>) -> Rule {
        let unsupported = |this: &mut Builder| {
            this.unsupported += 1;
            Rule::END
        };
        let (kind, cfa_offset) = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => {
                let kind = if *register == X86_64::RSP {
                    FROM_SP
                } else if *register == X86_64::RBP {
                    FROM_BP
                } else {
                    return unsupported(self);
                };
                // The walk relies on a positive offset from the stack pointer.
                match i32::try_from(*offset) {
                    Ok(offset) if offset % 8 == 0 && (offset > 0 || kind == FROM_BP) => {
                        (kind, offset)
                    }
                    _ => return unsupported(self),
                }
            }
            CfaRule::Expression(_) => return unsupported(self),
        };
        // Saved slots lie below the CFA, 8-aligned: the walk relies on it (checked here).
        let saved_slot = |offset: i64| offset < 0 && offset % 8 == 0;
        match row.register(X86_64::RA) {
            Some(RegisterRule::Offset(offset)) if offset as isize == RA_OFFSET => {}
            Some(RegisterRule::Undefined) => return Rule::new(OUTERMOST, 0, NOT_SAVED),
            _ => return unsupported(self),
        }
        let bp_offset = match row.register(X86_64::RBP) {
            None | Some(RegisterRule::SameValue) => NOT_SAVED,
            Some(RegisterRule::Offset(offset)) if saved_slot(offset) => {
                match i16::try_from(offset) {
                    Ok(offset) => offset,
                    Err(_) => return unsupported(self),
                }
            }
            Some(_) => return unsupported(self),
        };
        Rule::new(kind, cfa_offset, bp_offset)
    }

    fn finish(mut self) -> Table {
        // Sorted by address; at one address the last row written wins (an FDE's start
        // after the previous one's end marker).
        self.rows.sort_by_key(|&(start, _)| start);
        let mut starts: Vec<u64> = Vec::with_capacity(self.rows.len());
        let mut rules: Vec<Rule> = Vec::with_capacity(self.rows.len());
        for (start, rule) in self.rows {
            if starts.last() == Some(&start) {
                if rule != Rule::END
                    && let Some(last) = rules.last_mut()
                {
                    *last = rule;
                }
                continue;
            }
            // Consecutive equal rules merge.
            if rules.last() == Some(&rule) {
                continue;
            }
            starts.push(start);
            rules.push(rule);
        }
        starts.shrink_to_fit();
        rules.shrink_to_fit();
        self.objects.sort_unstable();
        Table {
            starts,
            rules,
            objects: self.objects,
            adds: self.adds,
            unsupported: self.unsupported,
            generation: 0,
        }
    }
}

/// Sets of the per-thread cache of rules by return address (a power of two), and entries
/// per set. A walk meets some 20–30 return addresses again and again; four ways keep two
/// or three of them that hash to one set from evicting each other at every walk (with one
/// way, two such addresses cost two binary searches a walk, ~130 instructions each).
const SETS: usize = 64;
const WAYS: usize = 4;

/// A thread's cache: (address, rule) pairs, set-associative by address, newest first in
/// each set, valid for the table of generation `generation`.
struct RuleCache {
    generation: Cell<u64>,
    sets: [[Cell<(u64, Rule)>; WAYS]; SETS],
}

impl RuleCache {
    const fn new() -> RuleCache {
        RuleCache {
            generation: Cell::new(0),
            // Empty entries: (0, END) holds the right rule for address 0 too.
            sets: [const { [const { Cell::new((0, Rule::END)) }; WAYS] }; SETS],
        }
    }
}

thread_local! {
    /// 4 KiB a thread, constant-initialised, no destructor.
    static RULES: RuleCache = const { RuleCache::new() };
}

impl RuleCache {
    /// Empties the cache if it holds another table's rules.
    fn sync(&self, table: &Table) {
        if self.generation.get() != table.generation {
            for entry in self.sets.as_flattened() {
                entry.set((0, Rule::END));
            }
            self.generation.set(table.generation);
        }
    }

    /// The rule for `ip`, from the cache or the table.
    #[inline(always)]
    fn lookup(&self, table: &Table, ip: u64) -> Rule {
        // Fibonacci hashing: the top bits of the product spread nearby addresses.
        let set = &self.sets[(ip.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SETS];
        for entry in set {
            let (cached, rule) = entry.get();
            if cached == ip {
                return rule;
            }
        }
        self.miss(set, table, ip)
    }

    /// A rule not cached: found in the table, and put first in its set (the oldest goes).
    #[inline(never)]
    fn miss(&self, set: &[Cell<(u64, Rule)>; WAYS], table: &Table, ip: u64) -> Rule {
        let rule = table.find(ip);
        for way in (1..WAYS).rev() {
            set[way].set(set[way - 1].get());
        }
        set[0].set((ip, rule));
        rule
    }
}

/// Walks the calling stack by `table`: pushes the return address of every frame whose
/// CFA lies above `marker` (as the DWARF walk does), reading only `[low, top)`, this
/// thread's stack from the walker's frame up. Returns why it stopped.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
pub(crate) fn walk(
    table: &Table,
    out: &mut super::frames::Frames,
    marker: usize,
    top: usize,
) -> Stop {
    // The thread's cache, looked up once for the walk. (In thread teardown, when it may
    // be gone, an empty one on the stack.)
    RULES
        .try_with(|cache| walk_with(cache, table, out, marker, top))
        .unwrap_or_else(|_| walk_with(&RuleCache::new(), table, out, marker, top))
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn walk_with(
    cache: &RuleCache,
    table: &Table,
    out: &mut super::frames::Frames,
    marker: usize,
    top: usize,
) -> Stop {
    cache.sync(table);
    let (ip, sp, bp): (usize, usize, usize);
    // SAFETY: reads the instruction pointer and two registers; touches no memory.
    unsafe {
        core::arch::asm!(
            "lea {ip}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            ip = out(reg) ip,
            sp = out(reg) sp,
            bp = out(reg) bp,
            options(nomem, nostack, preserves_flags)
        );
    }
    // Every frame's stack pointer is 8-aligned (the walker's is checked here, each CFA
    // as it is found): the reads' bounds rely on it.
    if !sp.is_multiple_of(8) {
        return Stop::OutOfBounds;
    }
    let walk = Walk {
        cache,
        table,
        low: sp,
        top,
    };
    let mut frame = Frame { ip, sp, bp };
    // The frames at or below the marker (the walker's, the sampler's, the allocator
    // hook's) are skipped. The first address is this function's own (exact); the others
    // are return addresses, which point after their call: their call lies one byte before.
    let mut at = ip;
    loop {
        if let Err(stop) = walk.unwind(&mut frame, at) {
            return stop;
        }
        // A frame is kept when its stack pointer (the CFA of the frame it called) lies
        // above the marker, as the DWARF walk keeps it.
        if frame.sp > marker {
            break;
        }
        at = frame.ip.wrapping_sub(1);
    }
    loop {
        if !out.push(frame.ip) {
            return Stop::Done; // full
        }
        let at = frame.ip.wrapping_sub(1);
        if let Err(stop) = walk.unwind(&mut frame, at) {
            return stop;
        }
        if frame.ip == 0 {
            return Stop::Done;
        }
    }
}

/// A frame's registers, as far as a walk restores them.
struct Frame {
    ip: usize,
    sp: usize,
    bp: usize,
}

/// What a walk reads by.
struct Walk<'a> {
    cache: &'a RuleCache,
    table: &'a Table,
    /// The walker's own stack pointer, 8-aligned: nothing below it is read.
    low: usize,
    /// The end of the mapping that holds this thread's stack: nothing at or above it is
    /// read.
    top: usize,
}

#[cfg(target_arch = "x86_64")]
impl Walk<'_> {
    /// Turns `frame`, whose code is at `at`, into its caller; `Err(Done)` if it is the
    /// outermost frame.
    #[inline(always)]
    fn unwind(&self, frame: &mut Frame, at: usize) -> Result<(), Stop> {
        let mut rule = self.cache.lookup(self.table, at as u64);
        if !matches!(rule.kind, FROM_SP | FROM_BP) {
            if rule.kind == OUTERMOST {
                return Err(Stop::Done);
            }
            rule = self.reload(rule, at)?;
        }
        // The CFA: above the frame's stack pointer, within the stack, 8-aligned. A rule
        // from the stack pointer has a positive offset, a multiple of 8 (the table keeps
        // no other): only its end needs a test.
        let cfa = if rule.kind == FROM_SP {
            frame.sp.wrapping_add_signed(rule.cfa_offset as isize)
        } else {
            let cfa = frame.bp.wrapping_add_signed(rule.cfa_offset as isize);
            if cfa <= frame.sp || !cfa.is_multiple_of(8) {
                return Err(Stop::OutOfBounds);
            }
            cfa
        };
        if cfa > self.top {
            return Err(Stop::OutOfBounds);
        }
        if rule.bp_offset != NOT_SAVED {
            // Saved slots lie below the CFA at negative multiples of 8 (the table keeps no
            // other rule): within the stack if at or above `low`.
            let slot = cfa.wrapping_add_signed(rule.bp_offset as isize);
            if slot < self.low {
                return Err(Stop::OutOfBounds);
            }
            // SAFETY: `slot` is 8-aligned, at or above `low` (the walker's own frame) and
            // below the CFA, itself at most `top` (the end of this thread's stack
            // mapping): mapped memory of this thread's stack, read as a plain integer.
            frame.bp = unsafe { (slot as *const usize).read() };
        }
        // SAFETY: CFA − 8 is 8-aligned, below `top` and at or above the frame's stack
        // pointer (8-aligned, below the CFA), itself at or above `low`: mapped memory of
        // this thread's stack, as above.
        frame.ip = unsafe { (cfa.wrapping_add_signed(RA_OFFSET) as *const usize).read() };
        frame.sp = cfa;
        Ok(())
    }

    /// The rule for `at` when the cache's is not one to unwind by: the outermost frame
    /// (`Err(Done)`), or no rule. If `at` lies outside every object the table knows and
    /// the loader has added objects since it was built (a library loaded since), a new
    /// table's rule.
    #[cold]
    #[inline(never)]
    fn reload(&self, mut rule: Rule, at: usize) -> Result<Rule, Stop> {
        if rule.kind == END
            && !self.table.knows(at as u64)
            && loader_adds() != self.table.adds
            && let Some(newer) = rebuild()
        {
            // This walk goes on by the old table (the rest of its frames are known to
            // it); later walks take the new one.
            rule = newer.find(at as u64);
        }
        match rule.kind {
            FROM_SP | FROM_BP => Ok(rule),
            OUTERMOST => Err(Stop::Done),
            _ => Err(Stop::NoRule),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_one_word() {
        assert_eq!(size_of::<Rule>(), 8);
        assert_eq!(size_of::<(u64, Rule)>(), 16);
    }

    #[test]
    fn the_table_covers_this_test_binary() {
        let table = build();
        assert!(table.starts.len() > 1000, "{} rows", table.starts.len());
        assert!(table.starts.windows(2).all(|w| w[0] < w[1]));
        let here = the_table_covers_this_test_binary as *const () as u64;
        assert!(table.knows(here));
        assert_ne!(table.find(here + 4).kind, END);
        assert!(!table.knows(8));
        assert_eq!(table.find(8), Rule::END);
    }
}
