//! Stress at rate 1 (every allocation sampled): two threads, random alloc / free /
//! realloc with frees of blocks the other thread allocated. No crash or deadlock; the
//! in-use estimate equals the exact live bytes at a quiescent point; nothing of ours is
//! left in the sample table once everything is freed.
//!
//! Its own binary, without the test harness, so that no other test shares the process.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::alloc::{Layout, alloc, dealloc, realloc};
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use memsentry::MemSentry;
use memsentry::profile::{self, Profile};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

const THREADS: usize = 2;
const OPS_PER_THREAD: usize = 1_000_000;
/// Blocks each thread keeps at most.
const LIVE: usize = 2_000;

#[derive(Clone, Copy)]
struct Block {
    ptr: usize,
    size: usize,
}

// SAFETY: a block is plain memory owned by whoever holds the `Block`.
unsafe impl Send for Block {}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

#[inline(never)]
fn stress_alloc(size: usize) -> Block {
    // SAFETY: non-zero size.
    let ptr = unsafe { alloc(layout(size)) };
    assert!(!ptr.is_null());
    Block {
        ptr: ptr as usize,
        size,
    }
}

#[inline(never)]
fn stress_realloc(block: Block, size: usize) -> Block {
    // SAFETY: `block` is live with this layout; `size` is non-zero.
    let ptr = unsafe { realloc(block.ptr as *mut u8, layout(block.size), size) };
    assert!(!ptr.is_null());
    Block {
        ptr: ptr as usize,
        size,
    }
}

fn free(block: Block) {
    // SAFETY: `block` is live with this layout, and freed once.
    unsafe { dealloc(block.ptr as *mut u8, layout(block.size)) };
}

/// Live bytes the profile attributes to this test's allocation sites.
fn ours(profile: &Profile) -> (u64, f64) {
    profile
        .samples()
        .iter()
        .filter(|s| {
            profile.frames(s).any(|f| {
                f.function.ends_with("stress_alloc") || f.function.ends_with("stress_realloc")
            })
        })
        .fold((0, 0.0), |(n, bytes), s| {
            (n + s.inuse.samples, bytes + s.inuse.bytes)
        })
}

fn main() {
    profile::set_sample_rate(1);
    let barrier = Barrier::new(THREADS + 1);
    // Ground truth at the quiescent point: blocks and bytes the threads hold.
    let (truth_blocks, truth_bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<Block>()).unzip();
    let live_bytes = std::thread::scope(|scope| {
        let handles: Vec<_> = receivers
            .into_iter()
            .enumerate()
            .map(|(t, inbox)| {
                let outbox = senders[(t + 1) % THREADS].clone();
                let barrier = &barrier;
                let (truth_blocks, truth_bytes) = (&truth_blocks, &truth_bytes);
                scope.spawn(move || {
                    profile::set_sample_rate(1);
                    let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ (t as u64 + 1);
                    let mut next = move || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng
                    };
                    let size = |r: u64| match r % 100 {
                        0 => 4096 + (r >> 8) as usize % 60_000,
                        1..=10 => 256 + (r >> 8) as usize % 3840,
                        _ => 1 + (r >> 8) as usize % 255,
                    };
                    let mut blocks: Vec<Block> = Vec::with_capacity(LIVE + 64);
                    for _ in 0..OPS_PER_THREAD {
                        // Frees of blocks the other thread allocated.
                        while let Ok(block) = inbox.try_recv() {
                            free(block);
                        }
                        let pick = (next() % LIVE as u64) as usize;
                        match next() % 8 {
                            0 if pick < blocks.len() => {
                                let block = blocks.swap_remove(pick);
                                outbox.send(block).unwrap();
                            }
                            1 | 2 if pick < blocks.len() => {
                                let old = blocks[pick];
                                blocks[pick] = stress_realloc(old, size(next()));
                            }
                            3 | 4 if pick < blocks.len() => free(blocks.swap_remove(pick)),
                            _ if blocks.len() < LIVE => blocks.push(stress_alloc(size(next()))),
                            _ => free(blocks.swap_remove(pick % blocks.len())),
                        }
                    }
                    // Quiescent point: everyone done, inboxes drained after the barrier.
                    barrier.wait();
                    barrier.wait();
                    while let Ok(block) = inbox.try_recv() {
                        free(block);
                    }
                    truth_blocks.fetch_add(blocks.len() as u64, Ordering::Relaxed);
                    let bytes: usize = blocks.iter().map(|b| b.size).sum();
                    truth_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                    barrier.wait();
                    barrier.wait();
                    blocks.into_iter().for_each(free);
                })
            })
            .collect();
        drop(senders);
        barrier.wait(); // all threads done with their operations
        barrier.wait(); // (no more sends)
        barrier.wait(); // inboxes drained: each thread now holds only its `blocks`
        let profile = profile::heap();
        let (samples, bytes) = ours(&profile);
        barrier.wait(); // let them free everything
        for handle in handles {
            handle.join().unwrap();
        }
        (samples, bytes)
    });
    let (samples, bytes) = live_bytes;
    let truth = (
        truth_blocks.load(Ordering::Relaxed),
        truth_bytes.load(Ordering::Relaxed) as f64,
    );
    println!("quiescent point: {samples} live samples, {bytes} bytes; truth {truth:?}");
    assert!(samples > 0);
    assert_eq!(
        (samples, bytes),
        truth,
        "rate 1: the in-use estimate is exact"
    );

    let (after_samples, after_bytes) = ours(&profile::heap());
    assert_eq!(
        (after_samples, after_bytes),
        (0, 0.0),
        "every block freed: none of ours is left in the sample table"
    );
    println!("ok: sample table empty after freeing, in-use estimate was exact");
}
