//! **[S]** Stack capture for samples: a frame-pointer walk where the program keeps frame
//! pointers, a walk by memsentry's cached unwind table (`table`) where it does not,
//! libgcc's DWARF unwinder where neither agrees with it.
//!
//! libgcc's unwinder (`_Unwind_Backtrace`, through `backtrace`) works on any build but
//! costs ~2,000 instructions a frame: it finds and interprets each frame's call-frame
//! information anew. Following the chain of saved frame pointers costs a few instructions
//! a frame, and is right only if every frame on the stack keeps one
//! (`-C force-frame-pointers=yes`; Rust's standard library is built that way, most other
//! code is not by default). The table walk reads the same call-frame information, turned
//! once into a sorted table of rules ("CFA = SP + 16, return address at CFA − 8"), with a
//! per-thread cache of the rules of recent return addresses: tens of instructions a frame,
//! on any build.
//!
//! So the process *checks*: its first [`CHECKS`] samples walk all three ways. If every
//! frame-pointer walk gives the same frames as the DWARF walk (the DWARF walk may go up
//! to [`OUTER_SLACK`] frames further, into code that keeps no frame pointer, such as the
//! C runtime's thread entry), later samples walk frame pointers; otherwise, if every table
//! walk agreed, the table; otherwise DWARF for the rest of the process, said once on
//! stderr. A checked sample records the frames of the walk that agreed, so a call site
//! has the same stack before and after the check. [`set`] overrides the choice.
//!
//! The frame-pointer and table walks read only memory between the walker's own frame and
//! the end of the mapping that holds the thread's stack (read once per thread from
//! `/proc/self/maps`), aligned, strictly upwards: whatever a register or a rule says, they
//! never read unmapped memory. They run under the sampler's guard, like everything in
//! `crate::sampler`, and take no lock (building the table takes the loader's, once).

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

mod frames;
#[cfg(target_arch = "x86_64")]
pub(crate) mod table;

pub(crate) use frames::{Frames, MAX_FRAMES};

/// Samples that walk both ways before the frame-pointer walk is trusted.
const CHECKS: u32 = 16;
/// Frames the DWARF walk may find beyond the frame-pointer walk's outermost one.
const OUTER_SLACK: usize = 3;

const CHECKING: u8 = 0;
const FRAME_POINTERS: u8 = 1;
const DWARF: u8 = 2;
const TABLE: u8 = 3;

static MODE: AtomicU8 = AtomicU8::new(if cfg!(target_arch = "x86_64") {
    CHECKING
} else {
    DWARF
});
/// Samples checked since the mode was last set to checking.
static AGREED: AtomicU32 = AtomicU32::new(0);
/// Whether a frame-pointer walk disagreed during the check.
static FP_DISAGREED: AtomicBool = AtomicBool::new(false);
/// Table walks that agreed, and whether one disagreed, during the check.
static TABLE_AGREED: AtomicU32 = AtomicU32::new(0);
static TABLE_DISAGREED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The mapping that holds this thread's stack, `start..end`, as last read; empty
    /// until read (and when it could not be).
    static STACK_MAPPING: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// How the sampler walks stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unwinder {
    /// Both ways, comparing, for the first samples of the process (see [`set_unwinder`]).
    ///
    /// [`set_unwinder`]: crate::profile::set_unwinder
    Checking,
    /// Following saved frame pointers: a few instructions a frame.
    FramePointers,
    /// DWARF call-frame information, through libgcc: ~2,000 instructions a frame.
    Dwarf,
    /// DWARF call-frame information through memsentry's cached table of every loaded
    /// object's unwind rules: tens of instructions a frame, on code without frame
    /// pointers.
    Table,
}

impl core::fmt::Display for Unwinder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Unwinder::Checking => "checking frame pointers against DWARF",
            Unwinder::FramePointers => "frame pointers",
            Unwinder::Dwarf => "DWARF",
            Unwinder::Table => "unwind tables",
        })
    }
}

/// The current choice.
pub(crate) fn current() -> Unwinder {
    match MODE.load(Ordering::Relaxed) {
        CHECKING => Unwinder::Checking,
        FRAME_POINTERS => Unwinder::FramePointers,
        TABLE => Unwinder::Table,
        _ => Unwinder::Dwarf,
    }
}

/// Sets the choice; `Checking` starts the check again. On targets without a
/// frame-pointer walk (all but x86-64), always DWARF.
pub(crate) fn set(unwinder: Unwinder) {
    let mode = match unwinder {
        _ if !cfg!(target_arch = "x86_64") => DWARF,
        Unwinder::Checking => CHECKING,
        Unwinder::FramePointers => FRAME_POINTERS,
        Unwinder::Dwarf => DWARF,
        Unwinder::Table => TABLE,
    };
    AGREED.store(0, Ordering::Relaxed);
    TABLE_AGREED.store(0, Ordering::Relaxed);
    FP_DISAGREED.store(false, Ordering::Relaxed);
    TABLE_DISAGREED.store(false, Ordering::Relaxed);
    MODE.store(mode, Ordering::Relaxed);
}

/// Captures the calling stack's return addresses, leaf first, into `out` (empty),
/// skipping the frames at or below `marker` (an address in the frame of the allocator's
/// sampling hook: the hook's and the sampler's frames).
#[inline(never)]
pub(crate) fn capture(out: &mut Frames, marker: usize) {
    let mode = MODE.load(Ordering::Relaxed);
    if mode == FRAME_POINTERS {
        walk_frame_pointers(out, marker);
        if !out.is_empty() {
            return;
        }
        // Nothing walkable here (an alternate signal stack, no /proc): DWARF this once.
    } else if mode == TABLE {
        if walk_table(out, marker) {
            return;
        }
        // No table yet (another thread builds it), or nothing walkable: DWARF this once.
        out.clear();
    }
    // One call site for the DWARF walk whatever the mode: its frames, kept when nothing
    // is skipped (`marker` 0), stay the same.
    walk_dwarf(out, marker);
    if mode == CHECKING {
        check(out, marker);
    }
}

/// Walks frame pointers and the table too, and compares both with `dwarf`, the DWARF
/// walk's result; after [`CHECKS`] samples, settles the mode.
///
/// `dwarf` keeps the frames that the walk that agreed found, the frame-pointer walk's
/// first: the stack the sample records is then the one that later samples of the same
/// call site record (the DWARF walk's extra outer frames would make it a site of its own).
#[inline(never)]
fn check(dwarf: &mut Frames, marker: usize) {
    let mut fp = Frames::new();
    walk_frame_pointers(&mut fp, marker);
    let fp_agrees = agree(fp.as_slice(), dwarf.as_slice());
    if !fp_agrees {
        FP_DISAGREED.store(true, Ordering::Relaxed);
    }
    let mut table = Frames::new();
    let mut table_agrees = false;
    if walk_table(&mut table, marker) {
        table_agrees = agree(table.as_slice(), dwarf.as_slice());
        if table_agrees {
            TABLE_AGREED.fetch_add(1, Ordering::Relaxed);
        } else {
            TABLE_DISAGREED.store(true, Ordering::Relaxed);
        }
    }
    // An agreeing walk's frames are a prefix of the DWARF walk's: shortening keeps them.
    if fp_agrees && !FP_DISAGREED.load(Ordering::Relaxed) {
        dwarf.truncate(fp.len());
    } else if table_agrees {
        dwarf.truncate(table.len());
    }
    if AGREED.fetch_add(1, Ordering::Relaxed) + 1 < CHECKS {
        return;
    }
    let next = if !FP_DISAGREED.load(Ordering::Relaxed) {
        FRAME_POINTERS
    } else if !TABLE_DISAGREED.load(Ordering::Relaxed)
        && TABLE_AGREED.load(Ordering::Relaxed) >= CHECKS / 2
    {
        TABLE
    } else {
        DWARF
    };
    if MODE
        .compare_exchange(CHECKING, next, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
        && next == DWARF
    {
        // Said once: every later sample pays libgcc's price.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"memsentry: neither frame pointers nor memsentry's unwind table walked this \
              program's stacks as libgcc's unwinder does: samples walk stacks with libgcc \
              (slower; see profile::unwinder)\n",
        );
    }
}

/// The table walk ([`table`]), building the table first if there is none yet;
/// `false` if there is no table to walk by (another thread is building it) or the walk
/// found no frame.
fn walk_table(out: &mut Frames, marker: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let Some(table) = table::table_or_build() else {
            return false;
        };
        let here = 0u8;
        let Some(top) = mapping_end_of(core::ptr::addr_of!(here) as usize) else {
            return false;
        };
        match table::walk(table, out, marker, top) {
            table::Stop::Done => {}
            table::Stop::NoRule => {
                table::STOPPED_NO_RULE.fetch_add(1, Ordering::Relaxed);
            }
            table::Stop::OutOfBounds => {
                table::STOPPED_OUT_OF_BOUNDS.fetch_add(1, Ordering::Relaxed);
            }
        }
        !out.is_empty()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (out, marker);
        false
    }
}

/// The calling stack walked by libgcc and by the unwind table, each leaf first, from the
/// caller's frame up, and whether the table walk stopped early: for tests that compare
/// the two on builds without frame pointers. Not part of the API.
#[inline(never)]
pub(crate) fn both_walks() -> (Vec<usize>, Vec<usize>) {
    let marker = 0u8;
    let marker = core::hint::black_box(core::ptr::addr_of!(marker)) as usize;
    both_walks_below(marker)
}

#[inline(never)]
fn both_walks_below(marker: usize) -> (Vec<usize>, Vec<usize>) {
    // Building the table allocates: not to be sampled (nor these walks' vectors).
    let _guard = crate::hot::sampler::Guard::enter();
    let mut dwarf = Frames::new();
    walk_dwarf(&mut dwarf, marker);
    let mut table = Frames::new();
    walk_table(&mut table, marker);
    (dwarf.as_slice().to_vec(), table.as_slice().to_vec())
}

/// Whether a frame-pointer walk found what the DWARF walk found (see the module docs).
fn agree(fp: &[usize], dwarf: &[usize]) -> bool {
    !fp.is_empty()
        && fp.len() <= dwarf.len()
        && (dwarf.len() - fp.len() <= OUTER_SLACK || fp.len() == MAX_FRAMES)
        && dwarf.starts_with(fp)
}

/// The DWARF walk: libgcc's unwinder through `backtrace`.
fn walk_dwarf(out: &mut Frames, marker: usize) {
    let mut past_sampler = false;
    // SAFETY: `trace_unsynchronized` is unsafe only because some platforms' unwinders
    // (Windows' dbghelp) are not thread-safe; on Linux it calls libgcc's
    // `_Unwind_Backtrace`, which is. We avoid `backtrace::trace` because it takes the
    // crate's global lock, which a dump holds while it symbolizes (and allocates). The
    // closure does not allocate or panic: it writes within `out`'s bounds.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            if !past_sampler {
                // `sp` is the frame's own stack pointer (libgcc's and libunwind's
                // `_Unwind_GetCFA` at this point of the walk): the hook's frame and the
                // frames it called lie at or below the marker, its caller above.
                let sp = frame.sp() as usize;
                if sp != 0 && sp <= marker {
                    return true;
                }
                past_sampler = true;
            }
            let ip = frame.ip() as usize;
            if ip == 0 {
                return false; // the outermost frame of a thread: nothing above it
            }
            out.push(ip)
        });
    }
}

/// The frame-pointer walk. Each frame record is two words at the address its frame
/// pointer holds: the caller's frame pointer, then the return address into the caller.
/// Records at or below `marker` belong to the sampler's frames; the hook's own record
/// lies just above the marker (its locals sit below its saved frame pointer) and holds
/// the return address into its caller, the first frame kept.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn walk_frame_pointers(out: &mut Frames, marker: usize) {
    let mut fp: usize;
    // SAFETY: reads a register, touches no memory and no flags.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags));
    }
    let here = 0u8;
    let mut low = core::ptr::addr_of!(here) as usize;
    // Everything from this frame up to the end of its mapping is mapped. Rounded down to
    // 16 (a no-op: mappings end on a page boundary) so that the loop's tests suffice.
    let Some(top) = mapping_end_of(low).map(|end| end & !15) else {
        return;
    };
    loop {
        // A record must lie wholly within [low, top), and on x86-64 a saved frame pointer
        // is 16-byte aligned (the call pushes 8 bytes onto a 16-aligned stack, the push
        // of the caller's frame pointer 8 more). A 16-aligned `fp` below the 16-aligned
        // `top` leaves the record's 16 bytes below it too.
        if fp < low || !fp.is_multiple_of(16) || fp >= top {
            break;
        }
        // SAFETY: [fp, fp + 16) lies between this function's frame and the top of this
        // thread's stack: mapped, readable memory that this thread owns. The words are
        // read as plain integers; nothing is assumed about them.
        let (next, ret) = unsafe {
            let record = fp as *const usize;
            (record.read(), record.add(1).read())
        };
        if fp > marker {
            if ret == 0 {
                break;
            }
            if !out.push(ret) {
                break; // full
            }
        }
        // Strictly upwards: a cycle or a garbage pointer below ends the walk.
        low = fp + 16;
        fp = next;
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn walk_frame_pointers(_out: &mut Frames, _marker: usize) {}

/// The end of the mapping that holds `address`, an address in this thread's stack. The
/// mapping is read once per thread, and again when `address` lies outside it (the main
/// thread's stack grew, or this runs on an alternate signal stack); `None` if even then
/// it does not hold `address`.
#[cfg(target_arch = "x86_64")]
fn mapping_end_of(address: usize) -> Option<usize> {
    let (start, end) = STACK_MAPPING.try_with(Cell::get).ok()?;
    if (start..end).contains(&address) {
        return Some(end);
    }
    let (start, end) = mapping_of(address)?;
    let _ = STACK_MAPPING.try_with(|cell| cell.set((start, end)));
    Some(end)
}

/// The memory mapping (`start..end`) that contains `address`, from `/proc/self/maps`:
/// everything in it is mapped.
///
/// Read with `open`/`read` into a buffer on the stack: no allocation, no lock.
/// (`pthread_getattr_np` would allocate and, for the main thread, take the thread's own
/// lock around reading the same file; an allocation sampled inside it, from std's start-up
/// code, would deadlock.) Only the mapping's start and end are parsed; a line longer
/// than the buffer (a very long path) is skipped.
///
/// Out of line and cold: it runs once per thread, and its 4 KiB buffer would otherwise
/// sit in every walk's frame.
#[cfg(target_arch = "x86_64")]
#[cold]
#[inline(never)]
fn mapping_of(address: usize) -> Option<(usize, usize)> {
    // SAFETY: a NUL-terminated path and plain flags; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 4096];
    let mut pending = 0;
    let mut found = None;
    while found.is_none() {
        let free = &mut buf[pending..];
        // SAFETY: writes at most `free.len()` bytes into `free`, memory we own.
        let read = unsafe { libc::read(fd, free.as_mut_ptr().cast(), free.len()) };
        let Ok(read @ 1..) = usize::try_from(read) else {
            break;
        };
        pending += read;
        let mut start = 0;
        while let Some(newline) = buf[start..pending].iter().position(|&b| b == b'\n') {
            if let Some((low, high)) = parse_range(&buf[start..start + newline])
                && (low..high).contains(&address)
            {
                found = Some((low, high));
            }
            start += newline + 1;
        }
        buf.copy_within(start..pending, 0);
        pending -= start;
        if pending == buf.len() {
            pending = 0; // one line fills the buffer: not a range we can use
        }
    }
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    found
}

/// `start-end` (hexadecimal) at the beginning of a `/proc/self/maps` line.
fn parse_range(line: &[u8]) -> Option<(usize, usize)> {
    let hex = |text: &[u8]| -> Option<usize> {
        if text.is_empty() || text.len() > 16 {
            return None;
        }
        text.iter().try_fold(0usize, |n, &b| {
            let digit = (b as char).to_digit(16)?;
            Some((n << 4) | digit as usize)
        })
    };
    let range = line.split(|&b| b == b' ').next()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    Some((hex(&range[..dash])?, hex(&range[dash + 1..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_ranges() {
        assert_eq!(
            parse_range(b"7ffd1c3a2000-7ffd1c3c3000 rw-p 00000000 00:00 0    [stack]"),
            Some((0x7ffd_1c3a_2000, 0x7ffd_1c3c_3000))
        );
        assert_eq!(
            parse_range(b"00400000-00452000 r-xp"),
            Some((0x40_0000, 0x45_2000))
        );
        assert_eq!(parse_range(b""), None);
        assert_eq!(parse_range(b"zz-10 r"), None);
        assert_eq!(parse_range(b"10000000000000000-2 r"), None, "over 64 bits");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn this_stack_is_inside_its_mapping() {
        let here = 0u8;
        let address = core::ptr::addr_of!(here) as usize;
        let (start, end) = mapping_of(address).expect("/proc/self/maps lists this stack");
        assert!(start <= address && address < end);
        assert_eq!(mapping_end_of(address), Some(end));
        assert!(
            end - address < 1 << 30,
            "a stack, not the whole address space"
        );
    }

    #[test]
    fn agreement_rule() {
        let dwarf = [1, 2, 3, 4, 5, 6];
        assert!(agree(&[1, 2, 3, 4, 5, 6], &dwarf));
        assert!(
            agree(&[1, 2, 3], &dwarf),
            "the C runtime's frames may be missing"
        );
        assert!(!agree(&[1, 2], &dwarf), "more than the outer slack missing");
        assert!(
            !agree(&[1, 3, 4, 5, 6], &dwarf),
            "a frame skipped in the middle"
        );
        assert!(!agree(&[], &dwarf));
        assert!(!agree(&[9, 2, 3, 4, 5, 6], &dwarf));
        assert!(!agree(&[1, 2, 3, 4, 5, 6, 7], &dwarf), "longer than DWARF");
    }
}
