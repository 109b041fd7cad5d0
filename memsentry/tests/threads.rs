//! 8 threads doing 100k mixed alloc/free/realloc each, with frees of blocks allocated on
//! other threads: the totals equal what the threads did, exactly.

// `memsentry/clippy.toml` bans allocating types for the allocator's hot path; tests are not.
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Barrier;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use memsentry::{Counts, MemSentry};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

const THREADS: usize = 8;
const OPS: usize = 100_000;
const LOCAL: usize = 128;
const MAILBOXES: usize = 64;

/// Blocks start with their size, so whoever frees one (maybe another thread) knows its
/// layout.
fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Mostly 16–256 bytes, sometimes up to 64 KiB.
    fn size(&mut self) -> usize {
        let r = self.next();
        let size = if r.is_multiple_of(16) {
            r % 65_536
        } else {
            16 + r % 241
        };
        (size as usize).max(8)
    }
}

/// What one thread did, counted in plain integers (no allocation).
#[derive(Default)]
struct Tally(Counts);

impl Tally {
    fn alloc(&mut self, size: usize) {
        self.0.allocations += 1;
        self.0.allocated_bytes += size as u64;
        self.0.allocated_class_bytes += memsentry::size_class(layout(size));
    }

    fn free(&mut self, size: usize) {
        self.0.frees += 1;
        self.0.freed_bytes += size as u64;
        self.0.freed_class_bytes += memsentry::size_class(layout(size));
    }
}

/// # Safety
/// `ptr` must be a live block from `new_block`.
unsafe fn free_block(ptr: *mut u8, tally: &mut Tally) {
    // SAFETY: blocks start with their size (see `new_block`) and were allocated with
    // `layout(size)`.
    unsafe {
        let size = ptr.cast::<usize>().read();
        GLOBAL.dealloc(ptr, layout(size));
        tally.free(size);
    }
}

fn new_block(size: usize, tally: &mut Tally) -> *mut u8 {
    // SAFETY: size >= 8 and align 8, so the size header fits.
    unsafe {
        let ptr = GLOBAL.alloc(layout(size));
        assert!(!ptr.is_null());
        ptr.cast::<usize>().write(size);
        tally.alloc(size);
        ptr
    }
}

fn work(seed: u64, mailboxes: &[AtomicPtr<u8>]) -> Tally {
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let mut local = [std::ptr::null_mut::<u8>(); LOCAL];
    for _ in 0..OPS {
        let i = (rng.next() % LOCAL as u64) as usize;
        match rng.next() % 4 {
            // Allocate (freeing what was there).
            0 | 1 => {
                if !local[i].is_null() {
                    // SAFETY: non-null entries of `local` are live blocks we own.
                    unsafe { free_block(local[i], &mut tally) };
                }
                local[i] = new_block(rng.size(), &mut tally);
            }
            // Reallocate: a free plus an allocation.
            2 if !local[i].is_null() => {
                let new_size = rng.size();
                // SAFETY: a live block we own, reallocated with its current layout; the
                // new block gets its new size written.
                unsafe {
                    let old_size = local[i].cast::<usize>().read();
                    let moved = GLOBAL.realloc(local[i], layout(old_size), new_size);
                    assert!(!moved.is_null());
                    moved.cast::<usize>().write(new_size);
                    tally.free(old_size);
                    tally.alloc(new_size);
                    local[i] = moved;
                }
            }
            // Swap with a mailbox: what comes out may have been allocated elsewhere.
            _ => {
                let slot = &mailboxes[(rng.next() % MAILBOXES as u64) as usize];
                local[i] = slot.swap(local[i], Ordering::AcqRel);
            }
        }
    }
    for ptr in local {
        if !ptr.is_null() {
            // SAFETY: a live block we own.
            unsafe { free_block(ptr, &mut tally) };
        }
    }
    tally
}

#[test]
fn eight_threads_with_cross_thread_frees_are_counted_exactly() {
    // Exact counts: with sampling on, the sampler's own (counted) allocations would
    // show up too.
    memsentry::profile::set_sample_rate(0);
    let mailboxes: Vec<AtomicPtr<u8>> = (0..MAILBOXES)
        .map(|_| AtomicPtr::new(std::ptr::null_mut()))
        .collect();
    let results: Vec<[AtomicU64; 6]> = (0..THREADS).map(|_| Default::default()).collect();
    // Everyone (workers and this thread) meets at each: spawned, started, done, released.
    let barrier = Barrier::new(THREADS + 1);

    std::thread::scope(|scope| {
        for (t, result) in results.iter().enumerate() {
            let (mailboxes, barrier) = (&mailboxes, &barrier);
            scope.spawn(move || {
                barrier.wait(); // spawned: thread start-up allocations are behind us
                barrier.wait(); // `before` is taken
                let Tally(c) = work(0x5eed_0000 + t as u64 * 7919, mailboxes);
                let values = [
                    c.allocations,
                    c.frees,
                    c.allocated_bytes,
                    c.freed_bytes,
                    c.allocated_class_bytes,
                    c.freed_class_bytes,
                ];
                for (cell, value) in result.iter().zip(values) {
                    cell.store(value, Ordering::Relaxed);
                }
                barrier.wait(); // done
                barrier.wait(); // `after` is taken: exit (teardown is not measured)
            });
        }
        barrier.wait();
        let before = memsentry::totals();
        barrier.wait();
        barrier.wait();
        // Free what is left in the mailboxes, on this thread.
        let mut leftovers = Tally::default();
        for slot in &mailboxes {
            let ptr = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !ptr.is_null() {
                // SAFETY: mailbox entries are live blocks; we took ownership by swapping.
                unsafe { free_block(ptr, &mut leftovers) };
            }
        }
        let after = memsentry::totals();
        barrier.wait();

        let mut expected = leftovers.0;
        for result in &results {
            let v: Vec<u64> = result.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            expected.allocations += v[0];
            expected.frees += v[1];
            expected.allocated_bytes += v[2];
            expected.freed_bytes += v[3];
            expected.allocated_class_bytes += v[4];
            expected.freed_class_bytes += v[5];
        }
        assert!(expected.allocations > (THREADS * OPS / 2) as u64);
        assert_eq!(
            expected.allocations, expected.frees,
            "the workload frees everything"
        );
        let measured = after.since(&before);
        assert_eq!(measured, expected);
        assert_eq!(after.live_bytes(), before.live_bytes());
    });
}
