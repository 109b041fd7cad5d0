//! 1,000 short-lived threads, more of them alive at once than there are counter slots,
//! some allocating only while their thread-locals are destroyed: nothing is lost, and
//! every slot is given back.

// `memsentry/clippy.toml` bans allocating types for the allocator's hot path; tests are not.
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::alloc::{GlobalAlloc, Layout};

use memsentry::MemSentry;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

const THREADS: usize = 1_000;
/// Alive at once: more than memsentry's 128 slots, so some threads use the shared shards.
const BATCH: usize = 200;
const BLOCKS_PER_THREAD: u64 = 10;

/// Sizes no part of std's thread machinery asks for, so their rows count only this test.
fn body_layout() -> Layout {
    Layout::from_size_align(1_234, 8).unwrap() // 1280-byte class
}
fn teardown_layout() -> Layout {
    Layout::from_size_align(777, 8).unwrap() // 896-byte class
}

/// Allocates and frees one block in its destructor, i.e. during thread teardown.
struct AllocOnDrop;

impl Drop for AllocOnDrop {
    fn drop(&mut self) {
        // SAFETY: non-zero layout; freed right away with the same layout.
        unsafe {
            let ptr = GLOBAL.alloc(teardown_layout());
            assert!(!ptr.is_null());
            GLOBAL.dealloc(ptr, teardown_layout());
        }
    }
}

thread_local! {
    static TEARDOWN: AllocOnDrop = const { AllocOnDrop };
}

fn row(snapshot: &memsentry::Snapshot, layout: Layout) -> memsentry::Counts {
    snapshot
        .class(memsentry::class_bucket(layout))
        .map(|c| c.counts)
        .unwrap_or_default()
}

#[test]
fn short_lived_threads_lose_nothing() {
    // Exact counts: with sampling on, the sampler's own (counted) allocations would
    // show up too.
    memsentry::profile::set_sample_rate(0);
    let slots_before = memsentry::__owned_slots();
    let before = memsentry::snapshot();
    for batch in 0..THREADS / BATCH {
        // The whole batch is alive at once before anyone allocates in its body, so
        // BATCH - 128 threads find no free slot and count in the shared shards.
        let all_started = std::sync::Barrier::new(BATCH);
        std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(BATCH);
            for i in 0..BATCH {
                let all_started = &all_started;
                handles.push(scope.spawn(move || match (batch * BATCH + i) % 3 {
                    // Allocate in the body only.
                    0 => {
                        all_started.wait();
                        body();
                    }
                    // Register the allocating destructor before the body's allocations:
                    // unless std's thread start-up allocated first, it runs after
                    // memsentry gave the slot back (shared shards).
                    1 => {
                        TEARDOWN.with(|_| ());
                        all_started.wait();
                        body();
                    }
                    // Allocate nothing in the body: the thread's allocations (if std's
                    // start-up makes none) happen during teardown.
                    _ => {
                        TEARDOWN.with(|_| ());
                        all_started.wait();
                    }
                }));
            }
            // An explicit join waits for the OS thread to exit, thread-local destructors
            // included; the end of the scope only waits for the closures to return.
            for handle in handles {
                handle.join().unwrap();
            }
        });
    }
    let after = memsentry::snapshot();

    let body_threads = (0..THREADS).filter(|i| i % 3 != 2).count() as u64;
    let teardown_threads = (0..THREADS).filter(|i| i % 3 != 0).count() as u64;

    let body = row(&after, body_layout()).since(&row(&before, body_layout()));
    assert_eq!(body.allocations, body_threads * BLOCKS_PER_THREAD);
    assert_eq!(body.frees, body_threads * BLOCKS_PER_THREAD);
    assert_eq!(
        body.allocated_bytes,
        body_threads * BLOCKS_PER_THREAD * 1_234
    );
    assert_eq!(body.freed_bytes, body.allocated_bytes);

    let teardown = row(&after, teardown_layout()).since(&row(&before, teardown_layout()));
    assert_eq!(teardown.allocations, teardown_threads);
    assert_eq!(teardown.frees, teardown_threads);
    assert_eq!(teardown.allocated_bytes, teardown_threads * 777);

    assert_eq!(
        memsentry::__owned_slots(),
        slots_before,
        "every exited thread gave its slot back"
    );
}

fn body() {
    let mut held = [std::ptr::null_mut::<u8>(); BLOCKS_PER_THREAD as usize];
    // SAFETY: non-zero layout; every block is freed below with the same layout.
    unsafe {
        for slot in &mut held {
            *slot = GLOBAL.alloc(body_layout());
            assert!(!slot.is_null());
        }
        for ptr in held {
            GLOBAL.dealloc(ptr, body_layout());
        }
    }
}
