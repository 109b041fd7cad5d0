//! **[C]** Per-thread shards for a task name's bookkeeping.
//!
//! The instances of one task name run on every worker thread of an executor, so what
//! they update at each start, poll and end must not be one shared location: that line
//! would bounce between the cores (and a shared lock would serialise them). Each thread
//! gets a *home* shard, handed out round-robin the first time it asks, and updates the
//! home copy; readers sum or scan all [`SHARDS`] copies.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Shards per name: up to this many threads never share one.
pub(super) const SHARDS: usize = 16;

/// Hands out home shards.
static NEXT_HOME: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's home shard; `usize::MAX` until it first asks.
    static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The calling thread's home shard (below [`SHARDS`]).
pub(super) fn home() -> usize {
    HOME.try_with(|home| {
        if home.get() == usize::MAX {
            home.set(NEXT_HOME.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        home.get()
    })
    // During thread teardown: any shard is correct, only maybe shared.
    .unwrap_or(0)
}

/// A cache line of its own (64 bytes), so that neighbouring shards never share one.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded<T>(T);

/// [`SHARDS`] copies of `T`, one per home shard.
#[derive(Debug, Default)]
pub(super) struct Sharded<T> {
    shards: [Padded<T>; SHARDS],
}

impl<T> Sharded<T> {
    /// The copy of shard `shard` (below [`SHARDS`]; others wrap around).
    pub(super) fn get(&self, shard: usize) -> &T {
        &self.shards[shard % SHARDS].0
    }

    /// The calling thread's copy.
    pub(super) fn mine(&self) -> &T {
        self.get(home())
    }

    /// Every copy.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|padded| &padded.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_get_their_own_shards_round_robin() {
        let here = home();
        assert_eq!(home(), here, "a thread keeps its shard");
        let others: Vec<usize> = (0..SHARDS - 1)
            .map(|_| std::thread::spawn(home).join().unwrap())
            .collect();
        assert!(others.iter().all(|&shard| shard < SHARDS));
        // Successive threads take successive shards (other tests' threads may take
        // some in between, so only "not all the same" is certain).
        assert!(others.iter().any(|&shard| shard != here));
    }
}
