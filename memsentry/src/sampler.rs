//! **[S]** The sampled path: the live-sample table, the stack interner and the
//! per-stack cumulative totals.
//!
//! Reached from the allocator only when an allocation is sampled (about once per `R`
//! bytes) or a free hits the filter, and always under `hot::sampler::Guard`, so the
//! allocations made here are counted but never sampled and can never recurse into this
//! module. It allocates and takes the tables' shard locks, but never holds a lock while
//! waiting for anything else, and never frees a block that was allocated outside the
//! guard (so the free path never needs a lock this thread holds).

use core::hash::{BuildHasher, Hasher};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;

use crate::hot::sampler::{filter_insert, filter_remove, now_nanos};

/// Deepest stack captured (frames past it are dropped; the leaf side is kept).
pub(crate) const MAX_FRAMES: usize = 64;
/// Shards of each table: enough that threads rarely meet on one.
const SHARDS: usize = 64;

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
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
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

struct Tables {
    /// Block address → record, for every sampled block still allocated.
    live: DashMap<usize, Record, WordHasher>,
    /// Captured frames (instruction pointers, leaf first) → stack id.
    stacks: DashMap<Arc<[usize]>, u32, WordHasher>,
    /// (stack id, requested size, task) → cumulative samples.
    cumulative: DashMap<(u32, usize, u32), Cumulative, WordHasher>,
    next_stack: AtomicU32,
    /// Bytes of interned frame arrays (for the profiler's own memory figure).
    frame_bytes: AtomicUsize,
}

static TABLES: OnceLock<Tables> = OnceLock::new();

fn tables() -> &'static Tables {
    // A thread arriving while another initialises waits for it; the initialiser only
    // allocates (never sampled: it is under the guard), so it never waits on anyone.
    TABLES.get_or_init(|| Tables {
        live: DashMap::with_hasher_and_shard_amount(WordHasher(0), SHARDS),
        stacks: DashMap::with_hasher_and_shard_amount(WordHasher(0), SHARDS),
        cumulative: DashMap::with_hasher_and_shard_amount(WordHasher(0), SHARDS),
        next_stack: AtomicU32::new(0),
        frame_bytes: AtomicUsize::new(0),
    })
}

/// Records a sample: the block at `address` of `size` bytes, sampled at `rate`, allocated
/// by `task` (0: none). The stack is captured from here; frames whose stack pointer is at
/// or below `marker` (an address in the frame of the allocator's sampling hook) are the
/// hook's and the sampler's, and are skipped.
#[inline(never)]
pub(crate) fn record(address: usize, size: usize, rate: u64, marker: usize, task: u32) {
    let mut frames = [0usize; MAX_FRAMES];
    let depth = crate::unwind::capture(&mut frames, marker);
    let tables = tables();
    let stack = intern(tables, &frames[..depth]);
    let weight = weight(size, rate);
    {
        let mut totals = tables.cumulative.entry((stack, size, task)).or_default();
        totals.samples += 1;
        totals.objects += weight;
        totals.bytes += weight * size as f64;
    }
    let record = Record {
        stack,
        size,
        rate,
        time: now_nanos(),
        task,
    };
    insert_live(tables, address, record);
}

/// Puts `record` in the live table and counts it in the free-side filter. A record
/// already there is stale (its block was freed while bookkeeping was off): it is
/// replaced, and the filter keeps its count (already incremented for this address).
fn insert_live(tables: &Tables, address: usize, record: Record) {
    if tables.live.insert(address, record).is_none() {
        filter_insert(address);
    }
}

/// Removes the record of the block at `address`, if it was sampled.
pub(crate) fn take(address: usize) -> Option<Taken> {
    let (_, record) = TABLES.get()?.live.remove(&address)?;
    filter_remove(address);
    Some(Taken(record))
}

/// Puts back a record [`take`]n for a `realloc` that failed (the block stays).
pub(crate) fn put_back(address: usize, taken: Taken) {
    insert_live(tables(), address, taken.0);
}

fn intern(tables: &Tables, frames: &[usize]) -> u32 {
    if let Some(id) = tables.stacks.get(frames) {
        return *id;
    }
    *tables.stacks.entry(Arc::from(frames)).or_insert_with(|| {
        tables
            .frame_bytes
            .fetch_add(core::mem::size_of_val(frames) + 16, Ordering::Relaxed);
        tables.next_stack.fetch_add(1, Ordering::Relaxed)
    })
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
}

/// Copies the tables. Must run under the guard (it allocates while holding shard locks,
/// and nested allocations must not be sampled into the shards it holds).
pub(crate) fn read() -> TableCopy {
    let Some(tables) = TABLES.get() else {
        return TableCopy::default();
    };
    let mut out = TableCopy {
        stacks: Vec::with_capacity(tables.stacks.len()),
        cumulative: Vec::with_capacity(tables.cumulative.len()),
        live: Vec::with_capacity(tables.live.len()),
    };
    for entry in &tables.stacks {
        out.stacks.push((*entry.value(), Arc::clone(entry.key())));
    }
    for entry in &tables.cumulative {
        out.cumulative.push((*entry.key(), *entry.value()));
    }
    for entry in &tables.live {
        out.live.push(*entry.value());
    }
    out
}

/// In-use estimates per allocating task, from the live samples: task index → (objects,
/// bytes). Samples without a task are left out.
pub(crate) fn live_by_task() -> std::collections::HashMap<u32, (f64, f64)> {
    let mut out = std::collections::HashMap::new();
    // Allocates while holding shard read locks: nested allocations must not be sampled.
    let Some(_guard) = crate::hot::sampler::Guard::enter() else {
        return out;
    };
    let Some(tables) = TABLES.get() else {
        return out;
    };
    for entry in &tables.live {
        let record = entry.value();
        if record.task != 0 {
            let weight = weight(record.size, record.rate);
            let sum: &mut (f64, f64) = out.entry(record.task).or_default();
            sum.0 += weight;
            sum.1 += weight * record.size as f64;
        }
    }
    out
}

/// The sampler's own bookkeeping, in figures.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    pub(crate) live_samples: usize,
    pub(crate) stacks: usize,
    /// Approximate bytes held by the tables and the filter.
    pub(crate) bytes: usize,
}

/// Sizes of the tables (takes each shard's read lock briefly).
pub(crate) fn usage() -> Usage {
    let filter = crate::hot::sampler::FILTER_BYTES;
    let Some(tables) = TABLES.get() else {
        return Usage {
            bytes: filter,
            ..Usage::default()
        };
    };
    // hashbrown: one control byte per bucket besides the entry.
    let table = |capacity: usize, entry: usize| capacity * (entry + 1);
    let bytes = filter
        + table(
            tables.live.capacity(),
            core::mem::size_of::<(usize, Record)>(),
        )
        + table(
            tables.stacks.capacity(),
            core::mem::size_of::<(Arc<[usize]>, u32)>(),
        )
        + table(
            tables.cumulative.capacity(),
            core::mem::size_of::<((u32, usize), Cumulative)>(),
        )
        + tables.frame_bytes.load(Ordering::Relaxed);
    Usage {
        live_samples: tables.live.len(),
        stacks: tables.stacks.len(),
        bytes,
    }
}

/// Forgets every live record (bookkeeping was turned off: frees are no longer seen, so
/// the records would go stale). Cumulative totals stay.
pub(crate) fn forget_live() {
    let Some(_guard) = crate::hot::sampler::Guard::enter() else {
        return;
    };
    if let Some(tables) = TABLES.get() {
        tables.live.retain(|&address, _| {
            filter_remove(address);
            false
        });
    }
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
    fn hasher_spreads_aligned_addresses() {
        let hash = |x: usize| WordHasher(0).hash_one(x);
        let low_bits: std::collections::HashSet<u64> = (0..1024)
            .map(|i| hash(0x7f00_0000_0000 + i * 4096) & 0xFF)
            .collect();
        assert!(low_bits.len() > 200, "{}", low_bits.len());
    }
}
