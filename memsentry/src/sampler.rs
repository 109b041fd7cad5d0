//! **[S]** The sampled path: the live-sample table, the stack interner and the
//! per-stack cumulative totals.
//!
//! Two tables, each a fixed array of hash maps behind [`SpinLock`]s, so that every
//! operation takes one lock (one atomic read-modify-write):
//!
//! - the **stack table**, sharded by a hash of the frames: each shard interns its stacks
//!   and keeps their cumulative totals, so a sample updates both under one lock;
//! - the **live table**, sharded by the address's run of the free-side filter
//!   (`hot::sampler`): a sample's record and the filter count that announces it change
//!   together, under the lock of that shard, which the filter's words need no other.
//!
//! Reached from the allocator only when an allocation is sampled (about once per `R`
//! bytes) or a free may be of a sampled block. Whatever allocates here runs under
//! `hot::sampler::Guard`, so the allocations made here are counted but never sampled and
//! can never recurse into this module ([`take`], the free side's, allocates nothing). It
//! takes the tables' shard locks, but never holds one while waiting for anything else.
//! While it holds one it frees only its own tables' memory, never a sampled block, so a
//! free that finds its thread holding a lock (`spin::held_by_this_thread`) skips the
//! table, which could need that very lock.

use core::hash::{BuildHasher, Hasher};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use hashbrown::HashTable;

use crate::hot::sampler::{FILTER_SHARDS, FilterShard, FilterSlot, now_nanos};
use crate::spin::SpinLock;

/// What is kept about one live sampled block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    /// Interned stack id.
    pub(crate) stack: u32,
    /// Requested bytes.
    pub(crate) size: usize,
    /// The sampling rate when the block was sampled: its weight depends on it.
    pub(crate) rate: u64,
    /// Monotonic nanoseconds when it was sampled.
    pub(crate) time: u64,
    /// The task that allocated it (`crate::task`'s index; 0: none).
    pub(crate) task: u32,
}

/// A record taken out of the table by a `realloc` in flight, to be put back if the
/// `realloc` fails.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Taken(Record);

impl Taken {
    /// Requested bytes of the block.
    pub(crate) fn size(&self) -> usize {
        self.0.size
    }
}

/// Cumulative (since start) sampled allocations of one (stack, size).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cumulative {
    /// Raw number of samples.
    pub(crate) samples: u64,
    /// Estimated objects: the sum of the samples' weights.
    pub(crate) objects: f64,
    /// Estimated bytes: the sum of weight × size.
    pub(crate) bytes: f64,
}

/// The weight of a sample of `size` bytes taken at `rate`: the inverse of the probability
/// that such an allocation is sampled, `1 / (1 − e^(−size/rate))`; exactly 1 at rates 0
/// and 1 (every allocation sampled).
pub(crate) fn weight(size: usize, rate: u64) -> f64 {
    if rate <= 1 {
        return 1.0;
    }
    let probability = -(-(size as f64) / rate as f64).exp_m1();
    if probability > 0.0 {
        1.0 / probability
    } else {
        1.0
    }
}

/// A small, fast hasher for addresses and frame arrays: words are combined with a
/// multiply-xorshift, finished with a full 64×64→128 multiply so that every output bit
/// depends on every input bit (aligned addresses have constant low bits).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WordHasher(u64);

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Whole words first (a frame array is all whole words): a constant-length copy is
        // one load, where a variable-length one was a call to `memcpy` per word.
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(MULTIPLIER);
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        let product = u128::from(self.0) * u128::from(MULTIPLIER ^ 0xD6E8_FEB8_6659_FD93);
        (product as u64) ^ ((product >> 64) as u64)
    }
}

impl BuildHasher for WordHasher {
    type Hasher = WordHasher;

    fn build_hasher(&self) -> WordHasher {
        WordHasher(0)
    }
}

/// One shard of the live table: the sampled blocks whose addresses fall in one run of
/// the free-side filter, and that run's counts.
#[derive(Debug)]
#[repr(align(128))]
struct LiveShard {
    /// Block address → record, for every sampled block still allocated.
    records: HashMap<usize, Record, WordHasher>,
    filter: FilterShard,
}

impl LiveShard {
    const fn new() -> Self {
        Self {
            records: HashMap::with_hasher(WordHasher(0)),
            filter: FilterShard::new(),
        }
    }
}

/// The live table, sharded as the filter is (see the module docs).
static LIVE: [SpinLock<LiveShard>; FILTER_SHARDS] =
    [const { SpinLock::new(LiveShard::new()) }; FILTER_SHARDS];

/// The shard that holds (or would hold) the records of the blocks whose addresses are in
/// filter slot `slot`.
fn live_shard(slot: FilterSlot) -> &'static SpinLock<LiveShard> {
    // In bounds: `shard` is below FILTER_SHARDS (the compiler sees it).
    &LIVE[slot.shard()]
}

/// Shards of the stack table: enough that threads rarely meet on one.
const STACK_SHARDS: usize = 64;

/// One shard of the stack table: the interned stacks whose frames hash here, and the
/// cumulative totals of their samples, so that a sample's stack and totals take one lock.
#[derive(Debug)]
#[repr(align(128))]
struct StackShard {
    /// Captured frames (instruction pointers, leaf first) and their stack id, found by
    /// [`hash_frames`] (the hash that also picked the shard: a sample hashes its frames
    /// once).
    ids: HashTable<(Arc<[usize]>, u32)>,
    /// (stack id, requested size, task) → cumulative samples, for this shard's stacks.
    cumulative: HashMap<(u32, usize, u32), Cumulative, WordHasher>,
}

impl StackShard {
    const fn new() -> Self {
        Self {
            ids: HashTable::new(),
            cumulative: HashMap::with_hasher(WordHasher(0)),
        }
    }
}

static STACKS: [SpinLock<StackShard>; STACK_SHARDS] =
    [const { SpinLock::new(StackShard::new()) }; STACK_SHARDS];
/// The next stack id to hand out.
static NEXT_STACK: AtomicU32 = AtomicU32::new(0);

/// Lifetime buckets of sampled blocks: under 1 µs, 10 µs, 100 µs, 1 ms, 10 ms, 100 ms,
/// 1 s, 10 s, 1 min, 10 min, 1 h, and longer. Upper bounds in nanoseconds.
pub(crate) const LIFETIME_BOUNDS: [u64; 11] = [
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    60_000_000_000,
    600_000_000_000,
    3_600_000_000_000,
];
/// Buckets: one per bound and one past the last.
pub(crate) const LIFETIME_BUCKETS: usize = LIFETIME_BOUNDS.len() + 1;

/// Sampled blocks freed, per lifetime bucket: estimated objects and bytes (weighted).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Lifetimes {
    pub(crate) objects: [f64; LIFETIME_BUCKETS],
    pub(crate) bytes: [f64; LIFETIME_BUCKETS],
}

const LIFETIME_SHARDS: usize = 16;

/// Lifetimes by stack id, sharded by id. An entry is made when a stack is first sampled
/// (which may allocate: under the guard), so a free only updates one (no allocation).
static LIFETIMES: [SpinLock<Option<HashMap<u32, Lifetimes, WordHasher>>>; LIFETIME_SHARDS] =
    [const { SpinLock::new(None) }; LIFETIME_SHARDS];

fn lifetime_shard(stack: u32) -> &'static SpinLock<Option<HashMap<u32, Lifetimes, WordHasher>>> {
    &LIFETIMES[stack as usize % LIFETIME_SHARDS]
}

/// The bucket of a lifetime in nanoseconds.
pub(crate) fn lifetime_bucket(nanos: u64) -> usize {
    LIFETIME_BOUNDS.partition_point(|&bound| bound <= nanos)
}

/// Makes room for `stack`'s lifetimes (at a sample, under the guard).
fn note_stack_lifetimes(stack: u32) {
    lifetime_shard(stack)
        .lock()
        .get_or_insert_with(|| HashMap::with_hasher(WordHasher(0)))
        .entry(stack)
        .or_default();
}

/// Counts the lifetime of a sampled block freed now. Allocates nothing: the entry exists.
fn note_lifetime(record: &Record) {
    let lived = now_nanos().saturating_sub(record.time);
    let weight = weight(record.size, record.rate);
    let bucket = lifetime_bucket(lived);
    if let Some(lifetimes) = lifetime_shard(record.stack)
        .lock()
        .as_mut()
        .and_then(|map| map.get_mut(&record.stack))
    {
        lifetimes.objects[bucket] += weight;
        lifetimes.bytes[bucket] += weight * record.size as f64;
    }
}

/// Every stack's lifetimes (copies), for a profile. Under the guard.
pub(crate) fn lifetimes() -> HashMap<u32, Lifetimes> {
    let mut out = HashMap::new();
    for shard in &LIFETIMES {
        if let Some(map) = shard.lock().as_ref() {
            out.extend(map.iter().map(|(&id, &l)| (id, l)));
        }
    }
    out
}
/// Bytes of interned frame arrays (for the profiler's own memory figure).
static FRAME_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The hash of a stack's frames: it picks the stack's shard ([`stack_shard`]) and finds
/// the stack in that shard's `ids`.
fn hash_frames(frames: &[usize]) -> u64 {
    WordHasher(0).hash_one(frames)
}

/// The shard of the stack whose frames hash to `hash`.
fn stack_shard(hash: u64) -> &'static SpinLock<StackShard> {
    // Bits 32.. of the hash: the shard's own table indexes its buckets with the low bits
    // and tags them with the top seven, which must stay spread within a shard.
    &STACKS[(hash >> 32) as usize % STACK_SHARDS]
}

/// Records a sample: the block at `address` of `size` bytes, sampled at `rate`, allocated
/// by `task` (0: none). The stack is captured from here; frames whose stack pointer is at
/// or below `marker` (an address in the frame of the allocator's sampling hook) are the
/// hook's and the sampler's, and are skipped.
#[inline(never)]
pub(crate) fn record(address: usize, size: usize, rate: u64, marker: usize, task: u32) {
    let mut frames = crate::unwind::Frames::new();
    crate::unwind::capture(&mut frames, marker);
    let frames = frames.as_slice();
    let weight = weight(size, rate);
    let hash = hash_frames(frames);
    let stack = {
        let mut shard = stack_shard(hash).lock();
        let stack = intern(&mut shard.ids, hash, frames);
        let totals = shard.cumulative.entry((stack, size, task)).or_default();
        totals.samples += 1;
        totals.objects += weight;
        totals.bytes += weight * size as f64;
        stack
    };
    let record = Record {
        stack,
        size,
        rate,
        time: now_nanos(),
        task,
    };
    note_stack_lifetimes(stack);
    insert_live(address, record);
    if let Some(observe) = OBSERVER.get() {
        observe(address, &record, frames);
    }
    note_live(&record);
}

/// What sees every sample as it is recorded (its block's address, its record, its
/// stack), under the sampler's guard: the measured scopes' collector (`crate::budget`)
/// registers itself here when a scope first collects. Layers above the sampler hear of
/// samples this way, so that it calls none of them.
static OBSERVER: OnceLock<fn(usize, &Record, &[usize])> = OnceLock::new();

/// Makes `observer` see every sample from now on (the first call only; later ones are
/// ignored: there is one observer).
pub(crate) fn observe_samples(observer: fn(usize, &Record, &[usize])) {
    let _ = OBSERVER.set(observer);
}

/// The estimated bytes of the live samples (each weighted), kept as they come and go: what
/// the peak snapshot follows.
static LIVE_ESTIMATE: AtomicU64 = AtomicU64::new(0);
/// The live estimate when the last peak snapshot was taken (0: none since start or the
/// last reset).
static PEAK_MARK: AtomicU64 = AtomicU64::new(0);
/// A snapshot is taken again when the estimate passes the mark by this share (5%).
const PEAK_STEP_DIVISOR: u64 = 20;

/// The live samples as they stood at the highest live estimate seen.
#[derive(Debug, Default)]
pub(crate) struct PeakSnapshot {
    pub(crate) records: Vec<Record>,
    pub(crate) at: Option<std::time::SystemTime>,
    pub(crate) estimate: u64,
}

static PEAK: std::sync::Mutex<PeakSnapshot> = std::sync::Mutex::new(PeakSnapshot {
    records: Vec::new(),
    at: None,
    estimate: 0,
});

/// A record's estimated bytes (its weight times its size), rounded.
fn estimate_of(record: &Record) -> u64 {
    (weight(record.size, record.rate) * record.size as f64).round() as u64
}

/// Counts a new live sample in the estimate, and snapshots the live table when the
/// estimate has grown past the last peak by [`PEAK_STEP_DIVISOR`]'s share. Under the
/// guard, no shard lock held.
fn note_live(record: &Record) {
    let estimate = estimate_of(record);
    let live = LIVE_ESTIMATE
        .fetch_add(estimate, Ordering::Relaxed)
        .wrapping_add(estimate);
    let mark = PEAK_MARK.load(Ordering::Relaxed);
    if live <= mark.saturating_add(mark / PEAK_STEP_DIVISOR) {
        return;
    }
    // One thread snapshots each step.
    if PEAK_MARK
        .compare_exchange(mark, live, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // Never waits: a reader holding the snapshot (a dump) costs this step its snapshot.
    let Ok(mut peak) = PEAK.try_lock() else {
        return;
    };
    let mut records = Vec::with_capacity(peak.records.len());
    for_each_live(|record| records.push(*record));
    *peak = PeakSnapshot {
        records,
        at: Some(std::time::SystemTime::now()),
        estimate: live,
    };
}

/// Takes a removed record out of the live estimate.
fn note_gone(record: &Record) {
    let estimate = estimate_of(record);
    let _ = LIVE_ESTIMATE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
        Some(live.saturating_sub(estimate))
    });
}

/// The peak snapshot's records, time and estimate (copies). Must run under the guard.
pub(crate) fn peak() -> (Vec<Record>, Option<std::time::SystemTime>, u64) {
    let peak = PEAK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (peak.records.clone(), peak.at, peak.estimate)
}

/// The peak's time and estimate, without its records (for the reporter).
pub(crate) fn peak_summary() -> (Option<std::time::SystemTime>, u64) {
    let peak = PEAK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (peak.at, peak.estimate)
}

/// Starts a new peak window: the next sample snapshots the live table again.
pub(crate) fn reset_peak() {
    let mut peak = PEAK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *peak = PeakSnapshot::default();
    PEAK_MARK.store(0, Ordering::Relaxed);
}

/// The live record of the block at `address`, if it is sampled (a copy; the record
/// stays). Must run under the guard.
pub(crate) fn live_record(address: usize) -> Option<Record> {
    let slot = FilterSlot::of(address);
    let shard = live_shard(slot).lock();
    shard.records.get(&address).copied()
}

/// Puts `record` in the live table and counts it in the free-side filter. A record
/// already there is stale (its block was freed while bookkeeping was off): it is
/// replaced, and the filter keeps its count (already incremented for this address).
/// Inlined: it is the tail of every sample (out of line, passing the record through
/// memory cost ~25 instructions per sample).
#[inline(always)]
fn insert_live(address: usize, record: Record) {
    let slot = FilterSlot::of(address);
    let mut shard = live_shard(slot).lock();
    if shard.records.insert(address, record).is_none() {
        shard.filter.insert(slot);
    }
}

/// Removes the record of the block at `address`, if it was sampled.
pub(crate) fn take(address: usize) -> Option<Taken> {
    let slot = FilterSlot::of(address);
    let mut shard = live_shard(slot).lock();
    let record = shard.records.remove(&address)?;
    shard.filter.remove(slot);
    drop(shard);
    note_gone(&record);
    note_lifetime(&record);
    Some(Taken(record))
}

/// Puts back a record [`take`]n for a `realloc` that failed (the block stays).
pub(crate) fn put_back(address: usize, taken: Taken) {
    insert_live(address, taken.0);
    let estimate = estimate_of(&taken.0);
    LIVE_ESTIMATE.fetch_add(estimate, Ordering::Relaxed);
}

/// Takes every table lock, live shards first, then stacks, then lifetimes, each in array
/// order (for `fork`: `crate::fork`). No other code holds two of them at once, so this
/// order cannot deadlock.
pub(crate) fn lock_all_for_fork() {
    for shard in &LIVE {
        shard.lock_for_fork();
    }
    for shard in &STACKS {
        shard.lock_for_fork();
    }
    for shard in &LIFETIMES {
        shard.lock_for_fork();
    }
}

/// Releases the locks [`lock_all_for_fork`] took.
///
/// # Safety
///
/// This thread called `lock_all_for_fork` (in a forked child: the forking thread did,
/// before `fork`), and has not called this since.
pub(crate) unsafe fn unlock_all_after_fork() {
    for shard in &LIVE {
        // SAFETY: the caller's contract: this thread took every one of them.
        unsafe { shard.unlock_after_fork() };
    }
    for shard in &STACKS {
        // SAFETY: as above.
        unsafe { shard.unlock_after_fork() };
    }
    for shard in &LIFETIMES {
        // SAFETY: as above.
        unsafe { shard.unlock_after_fork() };
    }
}

/// Calls `f` with each live record, one shard locked at a time.
fn for_each_live(mut f: impl FnMut(&Record)) {
    for shard in &LIVE {
        for record in shard.lock().records.values() {
            f(record);
        }
    }
}

/// The id of the stack `frames`, whose [`hash_frames`] is `hash`, in `ids` (its shard's),
/// interned if new.
fn intern(ids: &mut HashTable<(Arc<[usize]>, u32)>, hash: u64, frames: &[usize]) -> u32 {
    if let Some(&(_, id)) = ids.find(hash, |(known, _)| **known == *frames) {
        return id;
    }
    FRAME_BYTES.fetch_add(core::mem::size_of_val(frames) + 16, Ordering::Relaxed);
    let id = NEXT_STACK.fetch_add(1, Ordering::Relaxed);
    ids.insert_unique(hash, (Arc::from(frames), id), |(known, _)| {
        hash_frames(known)
    });
    id
}

/// A copy of the tables, read by a profile dump.
#[derive(Debug, Default)]
pub(crate) struct TableCopy {
    /// Interned stacks: (id, frames leaf first).
    pub(crate) stacks: Vec<(u32, Arc<[usize]>)>,
    /// Cumulative totals per (stack, size, task).
    pub(crate) cumulative: Vec<((u32, usize, u32), Cumulative)>,
    /// Live records.
    pub(crate) live: Vec<Record>,
    /// Freed samples' lifetimes by stack id (filled by the callers that show them).
    pub(crate) lifetimes: HashMap<u32, Lifetimes>,
}

/// Copies the tables. Must run under the guard (it allocates while holding shard locks,
/// and nested allocations must not be sampled into the shards it holds).
pub(crate) fn read() -> TableCopy {
    let mut out = TableCopy::default();
    for shard in &STACKS {
        let shard = shard.lock();
        out.stacks.extend(
            shard
                .ids
                .iter()
                .map(|(frames, id)| (*id, Arc::clone(frames))),
        );
        out.cumulative
            .extend(shard.cumulative.iter().map(|(&key, &totals)| (key, totals)));
    }
    for_each_live(|record| out.live.push(*record));
    out
}

/// In-use estimates per allocating task, from the live samples: task index → (objects,
/// bytes). Samples without a task are left out.
pub(crate) fn live_by_task() -> std::collections::HashMap<u32, (f64, f64)> {
    let mut out = std::collections::HashMap::new();
    // Allocates while holding shard locks: nested allocations must not be sampled.
    let Some(_guard) = crate::hot::sampler::Guard::enter() else {
        return out;
    };
    for_each_live(|record| {
        if record.task != 0 {
            let weight = weight(record.size, record.rate);
            let sum: &mut (f64, f64) = out.entry(record.task).or_default();
            sum.0 += weight;
            sum.1 += weight * record.size as f64;
        }
    });
    out
}

/// The sampler's own bookkeeping, in figures.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    pub(crate) live_samples: usize,
    pub(crate) stacks: usize,
    /// Approximate bytes held by the tables and the filter, and by the blocks of placed
    /// samples beyond their requests.
    pub(crate) bytes: usize,
}

/// Sizes of the tables (takes each shard's lock briefly).
pub(crate) fn usage() -> Usage {
    // hashbrown: one control byte per bucket besides the entry.
    let table = |capacity: usize, entry: usize| capacity * (entry + 1);
    let (mut live_samples, mut live_capacity, mut placed_slack) = (0, 0, 0);
    for shard in &LIVE {
        let shard = shard.lock();
        live_samples += shard.records.len();
        live_capacity += shard.records.capacity();
        placed_slack += shard
            .records
            .iter()
            .filter(|&(&address, record)| is_placed(address, record.size))
            .map(|(_, record)| placed_slack_of(record.size))
            .sum::<usize>();
    }
    let (mut stacks, mut id_capacity, mut cumulative_capacity) = (0, 0, 0);
    for shard in &STACKS {
        let shard = shard.lock();
        stacks += shard.ids.len();
        id_capacity += shard.ids.capacity();
        cumulative_capacity += shard.cumulative.capacity();
    }
    let bytes = crate::hot::sampler::FILTER_BYTES
        + table(live_capacity, core::mem::size_of::<(usize, Record)>())
        + table(id_capacity, core::mem::size_of::<(Arc<[usize]>, u32)>())
        + table(
            cumulative_capacity,
            core::mem::size_of::<((u32, usize, u32), Cumulative)>(),
        )
        + FRAME_BYTES.load(Ordering::Relaxed)
        + placed_slack;
    Usage {
        live_samples,
        stacks,
        bytes,
    }
}

/// Forgets the live records of blocks that are not placed samples (bookkeeping was
/// turned off: their frees are no longer seen, so the records would go stale).
/// Cumulative totals stay, and so do placed samples' records: frees of placed samples
/// are seen whatever the switch says, and need their records to be freed right.
pub(crate) fn forget_live() {
    let Some(_guard) = crate::hot::sampler::Guard::enter() else {
        return;
    };
    for shard in &LIVE {
        let shard = &mut *shard.lock();
        let LiveShard { records, filter } = shard;
        records.retain(|&address, record| {
            let keep = is_placed(address, record.size);
            if !keep {
                filter.remove(FilterSlot::of(address));
                note_gone(record);
            }
            keep
        });
    }
}

/// Bytes the block holding a placed sample of `size` bytes takes beyond the request.
fn placed_slack_of(size: usize) -> usize {
    let usable = crate::hot::size_class::usable_size(
        size + crate::hot::sampler::PLACED_OFFSET,
        crate::hot::sampler::PLACED_ALIGN,
    );
    usize::try_from(usable).map_or(0, |usable| usable.saturating_sub(size))
}

/// Whether a live record of `size` bytes at `address` is a placed sample's: placed
/// samples are the only sampled blocks of at most `PLACE_MAX` bytes there (a sampled
/// block of such a size that is not placed is aligned to 32 or more).
pub(crate) fn is_placed(address: usize, size: usize) -> bool {
    size <= crate::hot::sampler::PLACE_MAX
        && crate::hot::sampler::at_placed_offset(address as *mut u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        assert_eq!(weight(100, 1), 1.0);
        assert_eq!(weight(100, 0), 1.0);
        // Small blocks: weight ≈ rate / size.
        let w = weight(16, 512 * 1024);
        assert!((w - 32768.5).abs() < 0.01, "{w}");
        // Blocks much larger than the rate are always sampled.
        assert!((weight(8 << 20, 512 * 1024) - 1.0).abs() < 1e-6);
        // At size = rate: 1 / (1 - 1/e).
        let w = weight(4096, 4096);
        assert!((w - 1.0 / (1.0 - (-1.0f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn interned_stacks_keep_their_ids_as_the_table_grows() {
        // Enough stacks to grow a table several times: each must be found again, under
        // the id it first got, and a new stack never reuses one.
        let mut ids = HashTable::new();
        let stack = |i: usize| [0x5555_0000 + i, 0x5555_1000, i % 7];
        let first: Vec<u32> = (0..5_000)
            .map(|i| intern(&mut ids, hash_frames(&stack(i)), &stack(i)))
            .collect();
        assert_eq!(ids.len(), 5_000);
        let mut distinct = first.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), first.len(), "one id per stack");
        for (i, &id) in first.iter().enumerate() {
            assert_eq!(intern(&mut ids, hash_frames(&stack(i)), &stack(i)), id);
        }
        assert_eq!(ids.len(), 5_000, "found again, not interned twice");
    }

    fn record_at(size: usize) -> Record {
        Record {
            stack: 0,
            size,
            rate: 1,
            time: 0,
            task: 0,
        }
    }

    fn maybe_sampled(address: usize) -> bool {
        crate::hot::sampler::maybe_sampled(address as *mut u8)
    }

    #[test]
    fn filter_follows_the_live_table_and_sticks() {
        // Addresses of one filter slot (and so of one shard).
        let addresses: Vec<usize> = crate::hot::sampler::addresses_in_slot(4_321)
            .take(300)
            .collect();
        let at = |i: usize| addresses[i];
        let base = at(0);
        assert!(!maybe_sampled(base));
        insert_live(at(0), record_at(16));
        insert_live(at(1), record_at(16));
        assert!(maybe_sampled(base));
        assert!(take(at(0)).is_some());
        assert!(maybe_sampled(base), "one sample of the slot is still live");
        assert!(take(at(0)).is_none(), "taken once");
        assert!(take(at(1)).is_some());
        assert!(!maybe_sampled(base));
        // A record replaced in place is counted once.
        insert_live(at(2), record_at(16));
        insert_live(at(2), record_at(32));
        assert_eq!(take(at(2)).map(|t| t.0.size), Some(32));
        assert!(!maybe_sampled(base));
        // Past 255 live samples a slot's count saturates and stays set.
        for i in 0..300 {
            insert_live(at(i), record_at(16));
        }
        for i in 0..300 {
            assert!(take(at(i)).is_some());
        }
        assert!(maybe_sampled(base), "saturated counters are sticky");
    }

    #[test]
    fn filter_bit_stays_set_while_any_sample_of_its_slot_lives() {
        // Four threads share one slot and so one shard, and four more use the
        // neighbouring slots of the same bit-set word: whatever the interleaving, a
        // thread that holds a sample must see its bit set. A lost update of the word, or
        // a remover clearing a bit after another thread's insert had set it again, would
        // fail this.
        const SLOT: usize = 64 * 300; // the first slot of a word
        std::thread::scope(|scope| {
            for t in 0..8 {
                scope.spawn(move || {
                    let (slot, nth) = if t < 4 { (SLOT, t) } else { (SLOT + t - 3, 0) };
                    let address = crate::hot::sampler::addresses_in_slot(slot)
                        .nth(nth)
                        .expect("every slot recurs");
                    for _ in 0..20_000 {
                        insert_live(address, record_at(16));
                        assert!(maybe_sampled(address));
                        assert!(take(address).is_some());
                    }
                });
            }
        });
    }

    #[test]
    fn hasher_spreads_aligned_addresses() {
        let hash = |x: usize| WordHasher(0).hash_one(x);
        let low_bits: std::collections::HashSet<u64> = (0..1024)
            .map(|i| hash(0x7f00_0000_0000 + i * 4096) & 0xFF)
            .collect();
        assert!(low_bits.len() > 200, "{}", low_bits.len());
    }
}
