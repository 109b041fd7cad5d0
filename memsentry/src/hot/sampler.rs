//! **[H]** The sampler's hot-path half: the per-thread byte countdown, the free-side
//! filter and the re-entrancy guard.
//!
//! # Poisson sampling over bytes
//!
//! Each thread keeps "bytes until the next sample", drawn from an exponential
//! distribution with mean `R` (the sampling rate). Every allocation subtracts its size;
//! the one that takes the countdown below zero is sampled and a new countdown is drawn.
//! That is a Poisson process over allocated bytes (Go's `MemProfileRate`, tcmalloc):
//! an allocation of `s` bytes is sampled with probability `1 − e^(−s/R)`, independently
//! of what came before, so weighting each sample by the inverse of that probability gives
//! unbiased estimates (see `profile`).
//!
//! Unsampled allocations pay one thread-local load, a subtraction, a store and a compare.
//! `R = 1` samples every allocation (weight 1); `R = 0` samples nothing: the countdown is
//! then set to [`OFF_RECHECK`] bytes, so a thread notices a rate set later at run time.
//!
//! # Frees
//!
//! A free must find out whether its block was sampled without touching the table.
//!
//! **Placed samples.** A sampled block of a common request (at most [`PLACE_MAX`] bytes,
//! aligned to at most [`PLACE_MAX_ALIGN`]: every request the counters' fast path counts)
//! is moved, before `alloc` returns it, to [`PLACED_OFFSET`] bytes into a block of its
//! own aligned to [`PLACED_ALIGN`] (`placed_layout`), as tcmalloc gives each sampled
//! object a span of its own. A free of such a request then asks "possibly sampled?" of
//! the address alone ([`at_placed_offset`]: a subtraction and a mask test, no load). Few
//! unsampled blocks sit at that offset of a page: jemalloc's slabs start on page
//! boundaries and hold objects at multiples of their size class, so only the classes that
//! are odd multiples of 16 bytes put one object in 256 there (none of the other small
//! classes, and no large block: jemalloc offsets those by multiples of 64). Those few
//! frees look in the filter below, then in the table. The cost is memory: a placed sample
//! occupies one 4 KiB block (8 KiB from 4,081 bytes up), about 0.8% of the memory of
//! live small blocks at the default rate, and up to 256× at rate 1 (a test setting).
//!
//! **Everything else** (larger or over-aligned requests, and the few unsampled blocks at
//! the placed offset) goes through a global counting filter of [`FILTER_LEN`] slots,
//! indexed by a hash of the address, which counts the live samples of each slot (one
//! byte, incremented when a sample is recorded and decremented when it is removed), and a
//! bit set mirrors "count non-zero": a free whose bit is clear (one load, a bit test) was
//! not sampled. Frees read only the 8 KiB bit set, not the counts, so the lines they keep
//! in the L1 cache are an eighth as many. Counts that reach 255 stay there ("sticky"):
//! such frees always look in the table, which is correct, only slower. Reading the bit
//! set costs a free 9 instructions and a load; the placed-offset test, 4 and no load: so
//! the fast path takes the test, and only what it cannot settle reads the filter.
//!
//! The filter is cut into [`FILTER_SHARDS`] runs of whole bit-set words, one per shard
//! of the sampler's live table, and each run's counts live in that shard
//! ([`FilterShard`]): a slot is updated only by whoever holds its shard's lock, with the
//! record it counts, so the counts and the bits they drive need no lock or atomic
//! read-modify-write of their own. Updates happen once per sample, never on the fast path.
//!
//! # Re-entrancy
//!
//! Recording a sample allocates (the table, the stack interner). [`Guard`] marks the
//! thread as busy while it does: nested allocations are counted but never sampled. A
//! free that may be of a sampled block skips the table while its thread holds one of the
//! table's locks (then it frees the table's own memory, never a sampled block, and the
//! lookup could need that very lock): `spin::held_by_this_thread`.

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

/// The sampling rate before anything sets it: one sample per 512 KiB on average.
pub(crate) const DEFAULT_RATE: u64 = 512 * 1024;
/// With sampling off, how many bytes a thread allocates between looks at the rate.
const OFF_RECHECK: i64 = 1 << 20;
/// Slots of the free-side filter (a power of two).
pub(crate) const FILTER_LEN: usize = 1 << 16;
/// Words of the filter's bit set: 8 KiB, all the fast path ever reads.
const FILTER_WORDS: usize = FILTER_LEN / 64;
/// Bytes of the filter: the bit set and the counts.
pub(crate) const FILTER_BYTES: usize = FILTER_LEN / 8 + FILTER_LEN;
/// Runs the filter is cut into, one per shard of the live table (a power of two).
pub(crate) const FILTER_SHARDS: usize = 64;
/// Filter slots per run: whole words of the bit set, so no word spans two runs.
const SHARD_SLOTS: usize = FILTER_LEN / FILTER_SHARDS;
const _: () = assert!(SHARD_SLOTS.is_multiple_of(64));

/// Largest request whose samples are placed (see the module docs): the largest the
/// counters' fast path counts, so that passing that path implies placeable.
pub(crate) const PLACE_MAX: usize = super::counters::EXACT_MAX;
/// Largest alignment of a request whose samples are placed: [`PLACED_OFFSET`]'s.
pub(crate) const PLACE_MAX_ALIGN: usize = 16;
/// Alignment of the block that holds a placed sample.
pub(crate) const PLACED_ALIGN: usize = 4096;
/// Where a placed sample starts in its block: an offset at which few unsampled blocks
/// sit (see the module docs), aligned to [`PLACE_MAX_ALIGN`].
pub(crate) const PLACED_OFFSET: usize = 16;
const _: () = assert!(PLACED_OFFSET.is_multiple_of(PLACE_MAX_ALIGN));

/// Mean bytes between samples; 0 = off, 1 = every allocation.
static RATE: AtomicU64 = AtomicU64::new(DEFAULT_RATE);
/// One bit per filter slot, set while the slot's count is non-zero: what frees read.
static FILTER_BITS: [AtomicU64; FILTER_WORDS] = [const { AtomicU64::new(0) }; FILTER_WORDS];
/// Seed for the per-thread generators; 0 = derive one from the clock and addresses.
static SEED: AtomicU64 = AtomicU64::new(0);
/// Threads seeded since the seed was last set: each gets its own stream.
static SEEDED_THREADS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// xorshift64* state; 0 = not seeded yet.
    static RNG: Cell<u64> = const { Cell::new(0) };
    /// Set while this thread records a sample or reads the table.
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// This thread's own sampling rate while a measured scope asks for one
    /// (`crate::budget`); 0: the process's rate.
    static THREAD_RATE: Cell<u64> = const { Cell::new(0) };
}

/// Runs `f` on this thread's countdown: bytes until its next sample, kept beside the
/// counters' slot pointer (`counters::FastLocals`). Starts at 0, so the first allocation
/// takes the slow path, which seeds the generator and draws the first countdown.
#[inline(always)]
fn with_countdown<R>(f: impl FnOnce(&Cell<i64>) -> R) -> Result<R, std::thread::AccessError> {
    super::counters::FAST.try_with(|fast| f(&fast.countdown))
}

/// The current sampling rate.
pub(crate) fn rate() -> u64 {
    RATE.load(Ordering::Relaxed)
}

/// Sets the sampling rate for samples taken from now on. The calling thread draws a new
/// countdown at once; other threads at their next sample.
pub(crate) fn set_rate(rate: u64) {
    RATE.store(rate, Ordering::Relaxed);
    if RNG.try_with(Cell::get).is_ok_and(|state| state != 0) {
        let countdown = draw(thread_rate());
        let _ = with_countdown(|c| c.set(countdown));
    }
}

/// Makes this thread sample at `rate` (0: at the process's rate again) until called
/// again, without changing the other threads' rate; returns the thread's rate before
/// (0: the process's). Draws a new countdown at once. Slow path only: for scopes.
pub(crate) fn set_thread_rate(rate: u64) -> u64 {
    let previous = THREAD_RATE.try_with(|r| r.replace(rate)).unwrap_or(0);
    if previous != rate && RNG.try_with(Cell::get).is_ok_and(|state| state != 0) {
        let countdown = draw(thread_rate());
        let _ = with_countdown(|c| c.set(countdown));
    }
    previous
}

/// The rate this thread samples at: its own, or the process's.
fn thread_rate() -> u64 {
    match THREAD_RATE.try_with(Cell::get) {
        Ok(0) | Err(_) => rate(),
        Ok(rate) => rate,
    }
}

/// Makes threads that draw their first countdown after this call use streams derived
/// from `seed` (for reproducible experiments).
pub(crate) fn set_seed(seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
    SEEDED_THREADS.store(0, Ordering::Relaxed);
}

/// Counts `size` allocated bytes against this thread's countdown; `true` when the
/// allocation may be sampled (the countdown went below zero): the caller hands the block
/// to `MemSentry::sample`.
#[inline(always)]
pub(crate) fn due(size: usize) -> bool {
    // A `Layout`'s size is at most `isize::MAX`, so the cast is lossless.
    let size = size as i64;
    with_countdown(|countdown| {
        let left = countdown.get().wrapping_sub(size);
        countdown.set(left);
        left < 0
    })
    .unwrap_or(false)
}

/// Gives back to this thread's countdown the `size` bytes [`due`] counted for an
/// allocation that failed: as if it had not been asked for. (Left counted, a failed
/// request of nearly `isize::MAX` bytes would push the countdown so far below zero that
/// the next one wrapped around and this thread sampled nothing more.)
#[cold]
pub(crate) fn give_back(size: usize) {
    // A `Layout`'s size is at most `isize::MAX`, so the cast is lossless.
    let _ = with_countdown(|countdown| countdown.set(countdown.get().wrapping_add(size as i64)));
}

/// Whether samples of a request of `size` bytes aligned to `align` are placed.
#[inline(always)]
pub(crate) fn placeable(size: usize, align: usize) -> bool {
    size <= PLACE_MAX && align <= PLACE_MAX_ALIGN
}

/// Whether `ptr` lies where placed samples do, [`PLACED_OFFSET`] bytes into a page: for a
/// placeable request, "possibly sampled?" (if not, certainly not). No load.
#[inline(always)]
pub(crate) fn at_placed_offset(ptr: *mut u8) -> bool {
    (ptr as usize).wrapping_sub(PLACED_OFFSET) & (PLACED_ALIGN - 1) == 0
}

/// The layout of the block that holds a placed sample of `size` bytes
/// (`size <= PLACE_MAX`, so it is always valid).
#[inline]
pub(crate) fn placed_layout(size: usize) -> Option<core::alloc::Layout> {
    core::alloc::Layout::from_size_align(size + PLACED_OFFSET, PLACED_ALIGN).ok()
}

/// A slot of the free-side filter. The slot of an address: which of the bit set's 128
/// cache lines comes from the address's 2 MiB region, which of that line's 512 bits from
/// the whole address, each by Fibonacci hashing (the top bits of the value times
/// 2^64/φ). Blocks on any stride spread over their line's bits, and regions over the
/// lines. A few instructions, never on the fast path: only samples, and frees that the
/// placed-offset test cannot settle (requests over 4 KiB or over-aligned, the rare
/// ordinary block at the placed offset), compute it.
///
/// Why by region: each sample writes a word of the bit set and each such free reads one,
/// so with one hash over all the slots a free on one core found its line freshly written
/// by another core about as often as samples happen. jemalloc serves each thread from an
/// arena of its own (up to four per CPU), whose memory comes from mappings of its own, so
/// by region a thread's samples mostly write lines that only its own frees read; and as a
/// live-table shard is a run of two lines, its records mostly sit in shards of its own
/// too. (Low address bits alone would put a slab's 8 KiB regions on a few slots.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FilterSlot(usize);

impl FilterSlot {
    /// The slot of `address`. Recording a sample and taking it out each compute it once,
    /// for the live-table shard and the filter count both.
    #[inline(always)]
    pub(crate) fn of(address: usize) -> FilterSlot {
        let hash = |value: u64, bits: u32| (value.wrapping_mul(FIBONACCI) >> (64 - bits)) as usize;
        let address = address as u64;
        let line = hash(address >> REGION_SHIFT, LINE_BITS);
        // Pre-mixed: the product's top bits alone spread blocks on page-multiple strides
        // over fewer of the line's bits than a random draw would (4 KiB apart: 164 of ~200).
        FilterSlot((line << BIT_BITS) | hash(address ^ (address >> 7), BIT_BITS))
    }

    /// The filter run, and live-table shard, that the slot belongs to: below
    /// [`FILTER_SHARDS`].
    #[inline(always)]
    pub(crate) fn shard(self) -> usize {
        self.0 / SHARD_SLOTS
    }
}

/// 2^64/φ, rounded down: [`FilterSlot::of`]'s multiplier.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;
/// The filter's regions: 2 MiB (a huge page).
const REGION_SHIFT: u32 = 21;
/// Slots per 64-byte line of the bit set: 2^9.
const BIT_BITS: u32 = 9;
/// Lines of the bit set: 2^7.
const LINE_BITS: u32 = FILTER_LEN.trailing_zeros() - BIT_BITS;
const _: () = assert!(1 << BIT_BITS == 64 * 8 && (1 << LINE_BITS) * 64 == FILTER_WORDS * 8);

/// The bit-set word of filter slot `slot` (`< FILTER_LEN`) and the slot's bit in it.
#[inline(always)]
fn filter_bit(slot: usize) -> (&'static AtomicU64, u64) {
    // In bounds: slot < FILTER_LEN, so slot / 64 < FILTER_WORDS (the compiler sees it).
    (&FILTER_BITS[slot / 64], 1 << (slot % 64))
}

/// Whether the block at `ptr` may have been sampled (if not, certainly not): one load
/// and a bit test.
///
/// `Relaxed` suffices: a block's sample is recorded by the allocating thread before
/// `alloc` returns, and whoever frees the block got the pointer through some
/// synchronisation that orders the free after that.
#[inline(always)]
pub(crate) fn maybe_sampled(ptr: *mut u8) -> bool {
    let (word, bit) = filter_bit(FilterSlot::of(ptr as usize).0);
    word.load(Ordering::Relaxed) & bit != 0
}

/// The live-sample counts of one run of filter slots: the slots whose
/// [`shard`](FilterSlot::shard) is this run's index.
///
/// Exactly one `FilterShard` exists per run, inside the live table's shard of the same
/// index, so `&mut FilterShard` (its shard's lock held) is the right to update those
/// slots' counts and their words of the bit set: no other thread writes them meanwhile.
#[derive(Debug)]
pub(crate) struct FilterShard {
    /// Live samples per slot of the run (255: saturated, sticky).
    counts: [u8; SHARD_SLOTS],
}

impl FilterShard {
    pub(crate) const fn new() -> Self {
        Self {
            counts: [0; SHARD_SLOTS],
        }
    }

    /// Notes that a sample whose address is in `slot` (of this run) was recorded.
    pub(crate) fn insert(&mut self, FilterSlot(slot): FilterSlot) {
        let count = &mut self.counts[slot % SHARD_SLOTS];
        let n = *count;
        if n != u8::MAX {
            *count = n + 1;
        }
        if n == 0 {
            set_bit(slot, true);
        }
    }

    /// Notes that a sample whose address is in `slot` (of this run) was removed.
    pub(crate) fn remove(&mut self, FilterSlot(slot): FilterSlot) {
        let count = &mut self.counts[slot % SHARD_SLOTS];
        let n = *count;
        // 255 is sticky: its true count is unknown. 0 cannot happen (only what was
        // inserted is removed), and stays 0 rather than wrapping.
        if n != u8::MAX && n != 0 {
            *count = n - 1;
            if n == 1 {
                set_bit(slot, false);
            }
        }
    }
}

/// Sets or clears the bit of filter slot `slot`. Only through a [`FilterShard`]: its
/// run's words have no other writer, so a load and a store cannot lose an update.
fn set_bit(slot: usize, on: bool) {
    let (word, bit) = filter_bit(slot);
    let old = word.load(Ordering::Relaxed);
    word.store(if on { old | bit } else { old & !bit }, Ordering::Relaxed);
}

/// Marks this thread as inside the sampler for as long as it lives.
///
/// Allocations made meanwhile (the sampler's own: its tables, a profile being built) are
/// never sampled, so they must not use up the countdown either: the guard puts the
/// countdown back as it found it (or as [`take_sample`] drew it) when it is dropped.
/// Otherwise a countdown that ran out under the guard would make the thread's next
/// allocation a sample whatever its size, weighted as if it had been drawn at random
/// (after a profile dump, which allocates megabytes, that was every time).
pub(crate) struct Guard {
    countdown: i64,
}

impl Guard {
    /// `None` if this thread is already inside the sampler (or its thread-locals are gone).
    pub(crate) fn enter() -> Option<Guard> {
        // `then`, not `then_some`: a `Guard` built eagerly and dropped when the thread is
        // already busy would clear the flag its owner still relies on.
        BUSY.try_with(|busy| {
            (!busy.replace(true)).then(|| Guard {
                countdown: with_countdown(Cell::get).unwrap_or(0),
            })
        })
        .ok()
        .flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = with_countdown(|countdown| countdown.set(self.countdown));
        let _ = BUSY.try_with(|busy| busy.set(false));
    }
}

/// Decides whether an allocation of `size` bytes, whose [`due`] said so, is sampled, and
/// draws the next countdown, which `guard` (this thread's) keeps for after it. Returns
/// the rate to weight the sample with, or `None`.
pub(crate) fn take_sample(guard: &mut Guard, size: usize) -> Option<u64> {
    let rate = thread_rate();
    let state = RNG.try_with(Cell::get).ok()?;
    let mut countdown = with_countdown(Cell::get).ok()?;
    if state == 0 {
        // First look at this thread: seed, draw a countdown, and charge this allocation
        // against it (the process is memoryless: the result is the same in law).
        let _ = RNG.try_with(|rng| rng.set(seed_thread()));
        countdown = draw(rate).wrapping_sub(size as i64);
    }
    let sampled = countdown < 0 && rate != 0;
    if countdown < 0 {
        countdown = draw(rate);
    }
    let _ = with_countdown(|c| c.set(countdown));
    guard.countdown = countdown;
    sampled.then_some(rate)
}

/// A countdown for `rate`: exponential with mean `rate`; 0 for `rate = 1` (every
/// allocation); [`OFF_RECHECK`] for `rate = 0`.
fn draw(rate: u64) -> i64 {
    match rate {
        0 => OFF_RECHECK,
        1 => 0,
        _ => {
            // Uniform in (0, 1]: 53 random bits, never 0, so the logarithm is finite.
            let uniform = ((next_random() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
            let bytes = -uniform.ln() * rate as f64;
            // Saturating float-to-int cast: huge draws stay huge.
            bytes as i64
        }
    }
}

/// xorshift64* (Vigna, 2016): plenty for choosing sample points, and allocation-free.
fn next_random() -> u64 {
    RNG.try_with(|rng| {
        let mut x = rng.get();
        if x == 0 {
            x = seed_thread();
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
    .unwrap_or(0x9E37_79B9_7F4A_7C15)
}

/// A non-zero generator state for the calling thread.
fn seed_thread() -> u64 {
    let index = SEEDED_THREADS.fetch_add(1, Ordering::Relaxed);
    let mut seed = SEED.load(Ordering::Relaxed);
    if seed == 0 {
        // No seed set: the clock and this thread's stack address differ between runs
        // and threads.
        let marker = 0u8;
        // The fine clock (once per thread): runs started within a tick still differ.
        seed = clock_nanos(libc::CLOCK_MONOTONIC)
            ^ (core::ptr::addr_of!(marker) as u64).rotate_left(32);
    }
    let state = splitmix64(seed ^ splitmix64(index));
    if state == 0 { 1 } else { state }
}

/// SplitMix64's output function: spreads close inputs over the whole range.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Monotonic nanoseconds, for a sample's time and the "now" its age is taken against:
/// `CLOCK_MONOTONIC_COARSE`, the time of the last timer tick (a few milliseconds'
/// resolution, plenty for the age of a live block). The vDSO reads it without the
/// timestamp counter: ~8 ns where `CLOCK_MONOTONIC` takes ~37 on this project's machine,
/// and more from cold caches, once per sample. No allocation, no lock.
pub(crate) fn now_nanos() -> u64 {
    clock_nanos(libc::CLOCK_MONOTONIC_COARSE)
}

/// Nanoseconds on `clock` (0 if the kernel does not have it).
fn clock_nanos(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`; an unknown clock only makes the call
    // fail with EINVAL, leaving `ts` zero.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The addresses whose filter slot is `slot` (`< FILTER_LEN`), in increasing order from
/// 2^40, 16 bytes apart: a search, for tests (the regions of the slot's line, about one
/// in 128; in each, about one address in 512).
#[cfg(test)]
pub(crate) fn addresses_in_slot(slot: usize) -> impl Iterator<Item = usize> {
    let line = slot >> BIT_BITS;
    (1usize << (40 - REGION_SHIFT)..)
        .map(|region| region << REGION_SHIFT)
        .filter(move |&start| FilterSlot::of(start).0 >> BIT_BITS == line)
        .flat_map(|start| (0..1usize << (REGION_SHIFT - 4)).map(move |step| start + step * 16))
        .filter(move |&address| FilterSlot::of(address).0 == slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_spread_over_their_regions_line_and_regions_over_the_lines() {
        use std::collections::HashSet;
        let base = 0x7f12_3400_0000usize; // the start of a 2 MiB region
        // Within a region: one line, and 256 blocks on any stride spread over its 512
        // bits (drawn at random they would take ~201 distinct ones).
        for stride in [16usize, 64, 4096, 8192] {
            let slots: HashSet<usize> = (0..256)
                .map(|i| FilterSlot::of(base + i * stride).0)
                .collect();
            let lines: HashSet<usize> = slots.iter().map(|slot| slot >> BIT_BITS).collect();
            assert_eq!(lines.len(), 1, "stride {stride}");
            assert!(slots.len() > 180, "stride {stride}: {} slots", slots.len());
        }
        // Consecutive regions take every line, and blocks 1 MiB or more apart spread over
        // all the slots (1,024 drawn at random would share about 8).
        let lines: HashSet<usize> = (0..1024)
            .map(|i| FilterSlot::of(base + (i << REGION_SHIFT)).0 >> BIT_BITS)
            .collect();
        assert_eq!(lines.len(), 1 << LINE_BITS);
        for stride in [1usize << 20, 1 << 21, 1 << 24] {
            let slots: HashSet<usize> = (0..1024)
                .map(|i| FilterSlot::of(base + i * stride).0)
                .collect();
            assert!(slots.len() > 990, "stride {stride}: {} slots", slots.len());
        }
    }

    #[test]
    fn addresses_in_a_slot_are_distinct_and_in_it() {
        let addresses: std::collections::HashSet<usize> =
            addresses_in_slot(12_345).take(1000).collect();
        assert_eq!(addresses.len(), 1000);
        assert!(addresses.iter().all(|&a| FilterSlot::of(a).0 == 12_345));
    }

    #[test]
    fn draws_have_the_requested_mean() {
        let rate = 4096;
        let n = 200_000;
        let sum: f64 = (0..n).map(|_| draw(rate) as f64).sum();
        let mean = sum / f64::from(n);
        // Standard error of the mean: rate / sqrt(n) ≈ 9.2; allow 6 of them (the draws
        // are truncated to whole bytes, so their mean is half a byte under the rate).
        assert!((mean - rate as f64).abs() < 55.0, "mean {mean}");
        assert_eq!(draw(1), 0);
        assert_eq!(draw(0), OFF_RECHECK);
    }

    #[test]
    fn allocations_under_the_guard_leave_the_countdown_alone() {
        let set = |value: i64| with_countdown(|c| c.set(value)).unwrap();
        let get = || with_countdown(Cell::get).unwrap();
        set(1000);
        {
            let _guard = Guard::enter().expect("not busy yet");
            assert!(!due(600));
            assert!(due(600), "runs out under the guard");
        }
        assert_eq!(get(), 1000, "put back as the guard found it");
        // A sample's guard keeps the countdown drawn for after it.
        set(-8);
        let mut guard = Guard::enter().expect("not busy yet");
        let _ = take_sample(&mut guard, 8);
        let drawn = get();
        assert!(drawn >= 0);
        let _ = due(1 << 40);
        drop(guard);
        assert_eq!(get(), drawn);
    }

    #[test]
    fn guard_is_not_reentrant() {
        let outer = Guard::enter().expect("not busy yet");
        assert!(Guard::enter().is_none());
        assert!(
            Guard::enter().is_none(),
            "a refused entry leaves the flag set"
        );
        drop(outer);
        assert!(Guard::enter().is_some());
    }
}
