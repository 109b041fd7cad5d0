//! **[S]** The sites of a measured scope: every allocation the scope makes is sampled
//! (its thread's rate set to 1 while the scope runs), and the sampler hands each sample
//! here as well, to the scope's collector, while the sampler's guard is held.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::profile::{Profile, Symbolization};
use crate::sampler::{Cumulative, Record, TableCopy};

/// Past this many blocks remembered, the collector forgets the freed ones (and again each
/// time the number doubles): its memory follows the scope's live samples.
const PRUNE_FROM: usize = 4096;

/// What one scope sampled.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    data: Mutex<Data>,
}

#[derive(Debug, Default)]
struct Data {
    /// The scope's stacks, by the sampler's ids.
    stacks: HashMap<u32, Arc<[usize]>>,
    /// Sampled allocations per (stack, size).
    cumulative: HashMap<(u32, usize), Cumulative>,
    /// Sampled blocks the scope allocated, by address: (stack, size, rate, time).
    blocks: HashMap<usize, (u32, usize, u64, u64)>,
    prune_at: usize,
}

thread_local! {
    /// The collector of the scope open on this thread, if it collects. Set before the
    /// scope opens (setting it the first time may allocate), read under the sampler's
    /// guard.
    static CURRENT: RefCell<Option<Arc<Collector>>> = const { RefCell::new(None) };
}

/// Makes `collector` this thread's, returning the one before.
pub(super) fn set_current(collector: Option<Arc<Collector>>) -> Option<Arc<Collector>> {
    if collector.is_some() {
        crate::sampler::observe_samples(on_sample);
    }
    CURRENT
        .try_with(|current| current.replace(collector))
        .ok()
        .flatten()
}

/// Sees every sample (registered with the sampler by [`set_current`]), under its guard:
/// adds it to this thread's collector, if any.
fn on_sample(address: usize, record: &Record, frames: &[usize]) {
    let Ok(Some(collector)) = CURRENT.try_with(|current| current.borrow().clone()) else {
        return;
    };
    let mut data = collector
        .data
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    data.stacks
        .entry(record.stack)
        .or_insert_with(|| Arc::from(frames));
    let weight = crate::sampler::weight(record.size, record.rate);
    let totals = data
        .cumulative
        .entry((record.stack, record.size))
        .or_default();
    totals.samples += 1;
    totals.objects += weight;
    totals.bytes += weight * record.size as f64;
    data.blocks.insert(
        address,
        (record.stack, record.size, record.rate, record.time),
    );
    if data.blocks.len() >= data.prune_at.max(PRUNE_FROM) {
        data.blocks
            .retain(|&address, block| still_live(address, *block));
        data.prune_at = data.blocks.len() * 2;
    }
}

/// Whether the block the scope allocated at `address` is still live: the sampler's record
/// there is the one taken for it.
fn still_live(address: usize, (stack, size, _, time): (u32, usize, u64, u64)) -> bool {
    crate::sampler::live_record(address)
        .is_some_and(|r| r.stack == stack && r.size == size && r.time == time)
}

impl Collector {
    /// Adds what `inner`, a scope that ran inside this one, collected.
    pub(super) fn absorb(&self, inner: &Collector) {
        let _guard = crate::hot::sampler::Guard::enter();
        let inner = inner.data.lock().unwrap_or_else(PoisonError::into_inner);
        let mut data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        for (&id, frames) in &inner.stacks {
            data.stacks.entry(id).or_insert_with(|| Arc::clone(frames));
        }
        for (&key, totals) in &inner.cumulative {
            let sum = data.cumulative.entry(key).or_default();
            sum.samples += totals.samples;
            sum.objects += totals.objects;
            sum.bytes += totals.bytes;
        }
        data.blocks
            .extend(inner.blocks.iter().map(|(&a, &b)| (a, b)));
    }

    /// The scope's sites as a profile: allocations per stack, and in use the blocks it
    /// allocated that are still live (its leaks).
    pub(super) fn profile(&self) -> Profile {
        // Reading and symbolizing allocate: not to be sampled into this collector (nor
        // anywhere).
        let _guard = crate::hot::sampler::Guard::enter();
        let data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        let live: Vec<Record> = data
            .blocks
            .iter()
            .filter(|&(&address, &block)| still_live(address, block))
            .map(|(_, &(stack, size, rate, time))| Record {
                stack,
                size,
                rate,
                time,
                task: 0,
            })
            .collect();
        let copy = TableCopy {
            stacks: data
                .stacks
                .iter()
                .map(|(&id, frames)| (id, Arc::clone(frames)))
                .collect(),
            cumulative: data
                .cumulative
                .iter()
                .map(|(&(stack, size), &totals)| ((stack, size, 0), totals))
                .collect(),
            live,
            lifetimes: std::collections::HashMap::new(),
        };
        drop(data);
        Profile::build(
            SystemTime::now(),
            crate::hot::sampler::now_nanos(),
            1,
            copy,
            Symbolization::InProcess,
        )
    }
}
