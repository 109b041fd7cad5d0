//! **[C]** The live instances of one task name: how many there are, and since when the
//! oldest has run.
//!
//! Every instance's start and end update this set, on whatever threads the executor
//! runs them, so it is sharded (see `shard`): an instance is kept in the home shard of
//! the thread that started it, and its end goes back to that shard from any thread.
//! Threads thus start and end instances under locks of their own: with one mutex per
//! name, two threads running the same task spent ~7 times longer per instance than one
//! (BENCHMARKS.md, "Task attribution").

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::shard::{Sharded, home};

/// One shard's instances, by (start, sequence number): the first is the oldest.
#[derive(Debug, Default)]
struct Instances {
    /// Tells apart instances that started at the same `Instant`.
    next: u64,
    live: BTreeSet<(Instant, u64)>,
}

/// Locks a shard's instances.
fn lock(shard: &Mutex<Instances>) -> MutexGuard<'_, Instances> {
    // Nothing panics while holding it; a poisoned set is still consistent.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A started instance, to hand back to [`LiveSet::end`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Instance {
    start: Instant,
    sequence: u64,
    shard: usize,
}

/// The live instances of one task name.
#[derive(Debug, Default)]
pub(super) struct LiveSet {
    shards: Sharded<Mutex<Instances>>,
}

impl LiveSet {
    /// Notes an instance starting now, on this thread.
    pub(super) fn start(&self) -> Instance {
        let shard = home();
        let mut instances = lock(self.shards.get(shard));
        let sequence = instances.next;
        instances.next += 1;
        let start = Instant::now();
        instances.live.insert((start, sequence));
        Instance {
            start,
            sequence,
            shard,
        }
    }

    /// Notes that `instance` ended (on any thread).
    pub(super) fn end(&self, instance: Instance) {
        lock(self.shards.get(instance.shard))
            .live
            .remove(&(instance.start, instance.sequence));
    }

    /// How many instances are live, and when the oldest of them started.
    pub(super) fn count_and_oldest(&self) -> (u64, Option<Instant>) {
        let mut count = 0;
        let mut oldest: Option<Instant> = None;
        for shard in self.shards.iter() {
            let instances = lock(shard);
            count += instances.live.len() as u64;
            if let Some(&(start, _)) = instances.live.first() {
                oldest = Some(oldest.map_or(start, |o| o.min(start)));
            }
        }
        (count, oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_finds_the_oldest_across_threads() {
        let set = LiveSet::default();
        assert_eq!(set.count_and_oldest(), (0, None));
        let first = set.start();
        // Started on other threads (other home shards), ended here, and the reverse.
        let others: Vec<Instance> = (0..4)
            .map(|_| std::thread::scope(|s| s.spawn(|| set.start()).join().unwrap()))
            .collect();
        assert!(others.iter().any(|i| i.shard != first.shard));
        assert_eq!(set.count_and_oldest(), (5, Some(first.start)));
        set.end(first);
        let (count, oldest) = set.count_and_oldest();
        assert_eq!(count, 4);
        assert_eq!(oldest, Some(others[0].start));
        std::thread::scope(|s| {
            for instance in &others {
                s.spawn(|| set.end(*instance));
            }
        });
        assert_eq!(set.count_and_oldest(), (0, None));
    }

    #[test]
    fn instances_starting_at_the_same_instant_stay_apart() {
        let set = LiveSet::default();
        let a = set.start();
        let b = set.start();
        assert_ne!(a, b);
        set.end(a);
        assert_eq!(set.count_and_oldest(), (1, Some(b.start)));
        set.end(b);
        assert_eq!(set.count_and_oldest(), (0, None));
    }
}
